/**
 * Builds and starts one ForgeFluid node: the same code for the embedded single process and for each
 * node of a cluster. SERVICES picks what this node hosts; everything else comes from the config.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { ServiceBroker, ServiceSchema } from "moleculer";
import { brokerOptions, type TransporterOverride } from "../moleculer.config";
import { Config, ServiceName } from "../src/config";
import { startEmbeddedPostgres, EmbeddedPg } from "../src/runtime/embedded-postgres";
import { Runtime, attachRuntime } from "../src/runtime/runtime";
import { SERVICE_MODULES, DB_SERVICES } from "./services";
import OpsService from "../services/ops.service";

export interface ForgeNode {
	broker: ServiceBroker;
	runtime: Runtime;
	config: Config;
	stop(): Promise<void>;
}

/** A stable development signing key for embedded mode, so sessions survive restarts. */
function devJwtKey(dataDir: string): string {
	const file = path.join(dataDir, "dev-jwt-secret");
	if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").trim();
	fs.mkdirSync(dataDir, { recursive: true });
	const secret = crypto.randomBytes(48).toString("base64url");
	fs.writeFileSync(file, secret, { mode: 0o600 });
	return secret;
}

export async function createNode(
	config: Config,
	opts: {
		extraServices?: ServiceSchema[];
		services?: ServiceName[];
		/** Apply pending migrations at start; by default only a node hosting a database service does. */
		migrate?: boolean;
		start?: boolean;
		/** Embedded mode's loopback NATS (app/embedded.ts); cluster nodes take TRANSPORTER from the config. */
		transporter?: TransporterOverride;
	} = {}
): Promise<ForgeNode> {
	const services = opts.services ?? config.services;
	let embedded: EmbeddedPg | null = null;
	const needsDb = services.some(s => DB_SERVICES.includes(s));
	if (!config.databaseUrl && needsDb) {
		embedded = await startEmbeddedPostgres({
			dir: config.embeddedPg.dir,
			port: config.embeddedPg.port,
			database: "forgefluid",
			log: () => undefined
		});
		config = { ...config, databaseUrl: embedded.url };
	}
	if (!config.jwt.keys.length)
		config = {
			...config,
			jwt: { ...config.jwt, keys: [{ kid: "dev", secret: devJwtKey(config.dataDir) }], activeKid: "dev" }
		};

	const broker = new ServiceBroker(brokerOptions(config, opts.transporter));
	const runtime = new Runtime(config, broker.getLogger("runtime"));
	attachRuntime(broker, runtime);
	try {
		// Every node that hosts a service of the database applies pending migrations (under an advisory
		// lock), so a cluster converges on one schema whichever node starts first. A node without one (an
		// ai worker, a gateway) does not wait for PostgreSQL to start: a worker restarted during a
		// PostgreSQL outage is back in the cluster, replaying its spooled outcomes, before it returns.
		if (config.databaseUrl && (opts.migrate ?? needsDb)) await runtime.migrate();
		broker.createService(OpsService);
		for (const name of services) broker.createService(SERVICE_MODULES[name]());
		for (const schema of opts.extraServices ?? []) broker.createService(schema);
		if (opts.start !== false) await broker.start();
	} catch (err) {
		await broker.stop().catch(() => undefined);
		await runtime.close();
		await embedded?.stop();
		throw err;
	}

	let stopping: Promise<void> | null = null;
	return {
		broker,
		runtime,
		config,
		stop() {
			stopping ??= (async () => {
				await broker.stop();
				await runtime.close();
				await embedded?.stop();
			})();
			return stopping;
		}
	};
}
