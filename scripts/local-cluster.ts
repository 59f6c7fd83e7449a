/**
 * A multi-node ForgeFluid cluster on this machine, against the local NATS, PostgreSQL, Redis and
 * RabbitMQ: the same build, one child process per node, each with its own NODE_ID and SERVICES.
 *
 *   npm run cluster -- [--port 3000] [--role name=svc[,svc]]... [--context-nodes 1] [--dist] [--namespace ns] [--database db]
 *
 * Default nodes: "gateway" (api, on --port) and two workers hosting the other services that exist
 * (read from ALL_SERVICES at run time). Each --role adds a node. --context-nodes Python context
 * nodes (`$FORGE_PYTHON -m forgefluid_context`, default 1; none, with a warning, when the venv
 * that ./forge creates is missing: tasks then run on the degraded context). --dist runs the compiled build
 * (dist/bin/forgefluid.js, `npm run build` first) as the image does. Waits until every node's
 * /health/ready answers 200, prints the URLs; Ctrl-C stops every node gracefully.
 *
 * Connection URLs come from TRANSPORTER, DATABASE_URL, REDIS_URL, AMQP_URL when set, else the local
 * defaults; the database (default forgefluid_cluster) is created if missing.
 */
import { ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Client } from "pg";
import { ALL_SERVICES } from "../src/config";
import { contextBinaries } from "../src/context/config";

const ROOT = path.resolve(__dirname, "..").replace(/[\\/]dist$/, "");
/** The services the nodes' own code knows: with --dist that is the build's list, not the sources'. */
let KNOWN: readonly string[] = ALL_SERVICES;
/** How the final service set is split over the two default workers; services not listed go to the last one. */
const DEFAULT_WORKERS: Array<{ name: string; services: string[] }> = [
	{ name: "core", services: ["users", "projects", "payments"] },
	{ name: "workers", services: ["tasks", "ai"] }
];
const READY_TIMEOUT_MS = 120_000;
const STOP_TIMEOUT_MS = 20_000;
const COLORS = [36, 33, 35, 32, 34, 31, 96, 93];

interface NodeSpec {
	name: string;
	services: string[];
	env: Record<string, string>;
	healthUrl: string;
	/** A node that is not bin/forgefluid (the Python context node), ready once it prints this line. */
	command?: string[];
	readyLine?: RegExp;
}

interface Running extends NodeSpec {
	child: ChildProcess;
	saidReady: boolean;
	exited: Promise<number | null>;
	exitCode?: number | null;
}

function fail(msg: string): never {
	console.error(`local-cluster: ${msg}`);
	process.exit(2);
}

function parseCli() {
	const { values } = parseArgs({
		options: {
			port: { type: "string", default: "3000" },
			"health-port": { type: "string" },
			role: { type: "string", multiple: true, default: [] },
			dist: { type: "boolean", default: false },
			namespace: { type: "string" },
			database: { type: "string", default: "forgefluid_cluster" },
			"context-nodes": { type: "string", default: "1" },
			help: { type: "boolean", short: "h", default: false }
		}
	});
	if (values.help) {
		console.log(fs.readFileSync(__filename, "utf8").split("*/")[0]);
		process.exit(0);
	}
	const port = Number(values.port);
	if (!Number.isInteger(port) || port < 1 || port > 65535) fail(`--port must be a TCP port (got '${values.port}')`);
	if (values.dist) {
		const built = path.join(ROOT, "dist", "src", "config.js");
		if (!fs.existsSync(built)) fail("dist/ is missing: run `npm run build` first");
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		KNOWN = (require(built) as { ALL_SERVICES: readonly string[] }).ALL_SERVICES;
	}
	const healthBase = values["health-port"] ? Number(values["health-port"]) : port + 101;
	const roles = (values.role as string[]).map(r => {
		const m = /^([A-Za-z0-9_-]+)=(.+)$/.exec(r);
		if (!m) fail(`--role must look like name=svc[,svc] (got '${r}')`);
		const services = m[2]
			.split(",")
			.map(s => s.trim())
			.filter(Boolean);
		const unknown = services.filter(s => !KNOWN.includes(s));
		if (unknown.length)
			fail(`--role ${m[1]} names unknown services: ${unknown.join(", ")} (known: ${KNOWN.join(", ")})`);
		return { name: m[1], services };
	});
	const contextNodes = Number(values["context-nodes"]);
	if (!Number.isInteger(contextNodes) || contextNodes < 0 || contextNodes > 16)
		fail(`--context-nodes must be 0..16 (got '${values["context-nodes"]}')`);
	return {
		port,
		contextNodes,
		healthBase,
		roles,
		dist: values.dist as boolean,
		namespace: values.namespace ?? `ffcluster-${port}`,
		database: values.database as string
	};
}

/** The default layout, limited to the services that exist now. */
function defaultRoles(): Array<{ name: string; services: string[] }> {
	const roles = [{ name: "gateway", services: KNOWN.includes("api") ? ["api"] : [] }];
	const placed = new Set(["api", ...DEFAULT_WORKERS.flatMap(w => w.services)]);
	const workers = DEFAULT_WORKERS.map(w => ({ name: w.name, services: w.services.filter(s => KNOWN.includes(s)) }));
	workers[workers.length - 1].services.push(...KNOWN.filter(s => !placed.has(s)));
	for (const w of workers) {
		if (w.services.length) roles.push(w);
		else
			console.log(
				`local-cluster: no "${w.name}" node: none of ${DEFAULT_WORKERS.find(d => d.name === w.name)!.services.join(", ")} exists yet`
			);
	}
	return roles.filter(r => r.services.length);
}

/** A signing key that survives restarts of the local cluster (tokens stay valid), kept out of git in .data/. */
function clusterJwtKeys(): string {
	if (process.env.JWT_KEYS) return process.env.JWT_KEYS;
	const file = path.join(ROOT, ".data", "cluster-jwt-keys");
	if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").trim();
	fs.mkdirSync(path.dirname(file), { recursive: true });
	const keys = `local:${crypto.randomBytes(48).toString("base64url")}`;
	fs.writeFileSync(file, keys, { mode: 0o600 });
	return keys;
}

async function ensureDatabase(url: string): Promise<void> {
	const target = new URL(url);
	const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
	if (!name) fail(`DATABASE_URL names no database (${url})`);
	const admin = new URL(url);
	admin.pathname = "/postgres";
	const client = new Client({ connectionString: admin.toString() });
	await client.connect();
	try {
		const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
		if (found.rowCount) return;
		await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
		console.log(`local-cluster: created database ${name}`);
	} catch (err) {
		// Another run created it between the check and the CREATE.
		if ((err as { code?: string }).code !== "42P04") throw err;
	} finally {
		await client.end();
	}
}

function getStatus(url: string): Promise<number> {
	return new Promise(resolve => {
		const req = http.get(url, { timeout: 2000 }, res => {
			res.resume();
			resolve(res.statusCode ?? 0);
		});
		req.on("timeout", () => req.destroy());
		req.on("error", () => resolve(0));
	});
}

function startNode(spec: NodeSpec, command: string[], color: number): Running {
	const label = `\x1b[${color}m[${spec.name}]\x1b[0m `;
	// Own process group: a terminal Ctrl-C reaches only this script, which then stops each node once.
	// (A node counts a second signal as "force exit".)
	const cmd = spec.command ?? command;
	const child = spawn(cmd[0], cmd.slice(1), {
		cwd: ROOT,
		env: spec.env,
		stdio: ["ignore", "pipe", "pipe"],
		detached: true
	});
	const running: Running = {
		...spec,
		child,
		saidReady: false,
		exited: new Promise(resolve => child.on("exit", code => resolve(code)))
	};
	for (const stream of [child.stdout!, child.stderr!]) {
		const out = stream === child.stderr ? process.stderr : process.stdout;
		createInterface({ input: stream }).on("line", line => {
			if (spec.readyLine?.test(line)) running.saidReady = true;
			out.write(`${label}${line}\n`);
		});
	}
	void running.exited.then(code => (running.exitCode = code));
	return running;
}

async function main(): Promise<void> {
	const cli = parseCli();
	const roles = [...defaultRoles(), ...cli.roles];
	if (!roles.length) fail("no node to start");

	const urls = {
		TRANSPORTER: process.env.TRANSPORTER || "nats://127.0.0.1:4222",
		DATABASE_URL: process.env.DATABASE_URL || `postgres://postgres@127.0.0.1:5432/${cli.database}`,
		REDIS_URL: process.env.REDIS_URL || "redis://127.0.0.1:6379",
		AMQP_URL: process.env.AMQP_URL || "amqp://guest:guest@127.0.0.1:5672"
	};
	await ensureDatabase(urls.DATABASE_URL);

	const entry = cli.dist ? path.join(ROOT, "dist", "bin", "forgefluid.js") : path.join(ROOT, "bin", "forgefluid.ts");
	if (!fs.existsSync(entry))
		fail(`${path.relative(ROOT, entry)} is missing${cli.dist ? ": run `npm run build` first" : ""}`);
	const command = cli.dist ? [process.execPath, entry] : [process.execPath, "-r", "@swc-node/register", entry];

	const shared = {
		...urls,
		JWT_KEYS: clusterJwtKeys(),
		// Isolated from other clusters and test runs on the same servers: registry, cache keys, queues.
		NAMESPACE: cli.namespace,
		REDIS_PREFIX: `${cli.namespace}:`,
		AMQP_PREFIX: cli.namespace,
		LOG_FORMAT: process.env.LOG_FORMAT || "short",
		NODE_ENV: process.env.NODE_ENV || "development"
	};
	let apiPort = cli.port;
	let healthPort = cli.healthBase;
	const specs: NodeSpec[] = roles.map(role => {
		const hostsApi = role.services.includes("api");
		const port = hostsApi ? apiPort++ : 0;
		const hp = hostsApi ? 0 : healthPort++;
		const env: Record<string, string> = {
			...(process.env as Record<string, string>),
			...shared,
			NODE_ID: `${cli.namespace}-${role.name}`,
			SERVICES: role.services.join(","),
			PORT: String(port || cli.port),
			HEALTH_PORT: String(hp),
			// Every node serves /metrics on METRICS_PORT, as in the image (cluster mode: never on the API port).
			METRICS_PORT: String(hostsApi ? port + 300 : hp + 100)
		};
		if (hostsApi) env.PUBLIC_URL = process.env.PUBLIC_URL || `http://localhost:${port}`;
		return {
			name: role.name,
			services: role.services,
			env,
			healthUrl: `http://127.0.0.1:${port || hp}/health/ready`
		};
	});

	// The Python context nodes: the same NATS, namespace and database; Moleculer balances select over them.
	const { python } = contextBinaries(
		{
			python: process.env.FORGE_PYTHON ? path.resolve(process.env.FORGE_PYTHON) : null,
			natsServerBin: null,
			timeoutMs: 0,
			indexTimeoutMs: 0,
			embedded: false,
			embeddedNatsPort: 0,
			embeddedMetricsPort: 0
		},
		ROOT
	);
	if (cli.contextNodes && !fs.existsSync(python))
		console.log(
			`local-cluster: no context node: ${python} is missing (./forge creates the venv); context is degraded`
		);
	else
		for (let i = 1; i <= cli.contextNodes; i++) {
			const nodeId = `${cli.namespace}-context-${i}`;
			specs.push({
				name: `context-${i}`,
				services: ["context"],
				command: [python, "-m", "forgefluid_context"],
				readyLine: new RegExp(`node ${nodeId} ready`),
				healthUrl: "(ready line)",
				env: {
					...(process.env as Record<string, string>),
					TRANSPORTER: urls.TRANSPORTER,
					DATABASE_URL: urls.DATABASE_URL,
					NAMESPACE: cli.namespace,
					NODE_ID: nodeId,
					LOG_LEVEL: process.env.LOG_LEVEL || "info",
					PYTHONPATH: process.env.FORGE_CONTEXT_SRC || path.join(ROOT, "context", "src"),
					PYTHONUNBUFFERED: "1",
					// ready by its ready line; /metrics numbered like the TS workers' (health port + 100)
					HEALTH_PORT: "0",
					METRICS_PORT: String(healthPort++ + 100)
				}
			});
		}

	console.log(
		`local-cluster: namespace ${cli.namespace}, database ${new URL(urls.DATABASE_URL).pathname.slice(1)}, ${cli.dist ? "dist build" : "sources (swc)"}`
	);
	for (const s of specs)
		console.log(
			s.command
				? `  ${s.name.padEnd(10)} ${s.command.join(" ")}  (ready when it says so)`
				: `  ${s.name.padEnd(10)} SERVICES=${s.env.SERVICES}  health ${s.healthUrl}`
		);
	const nodes = specs.map((s, i) => startNode(s, command, COLORS[i % COLORS.length]));

	let stopping: Promise<void> | null = null;
	const stopAll = (code: number) => {
		stopping ??= (async () => {
			console.log("local-cluster: stopping every node (in-flight requests finish first)…");
			for (const n of nodes) if (n.exitCode === undefined) n.child.kill("SIGTERM");
			const timer = setTimeout(() => {
				for (const n of nodes)
					if (n.exitCode === undefined) {
						console.error(
							`local-cluster: ${n.name} did not stop in ${STOP_TIMEOUT_MS / 1000} s, killing it`
						);
						n.child.kill("SIGKILL");
					}
			}, STOP_TIMEOUT_MS);
			const codes = await Promise.all(nodes.map(n => n.exited));
			clearTimeout(timer);
			console.log(`local-cluster: stopped (${nodes.map((n, i) => `${n.name}=${codes[i]}`).join(", ")})`);
			process.exit(code);
		})();
		return stopping;
	};
	let signals = 0;
	for (const sig of ["SIGINT", "SIGTERM"] as const)
		process.on(sig, () => {
			if (++signals > 1) {
				for (const n of nodes) n.child.kill("SIGKILL");
				process.exit(1);
			}
			void stopAll(0);
		});
	// Last resort if this script dies some other way: never leave detached nodes behind.
	process.on("exit", () => {
		for (const n of nodes) if (n.exitCode === undefined) n.child.kill("SIGKILL");
	});
	for (const n of nodes)
		void n.exited.then(code => {
			if (!stopping) {
				console.error(`local-cluster: ${n.name} exited (code ${code}); stopping the cluster`);
				void stopAll(1);
			}
		});

	const deadline = Date.now() + READY_TIMEOUT_MS;
	const pending = new Set(nodes);
	while (pending.size && !stopping) {
		for (const n of [...pending])
			if (n.readyLine ? n.saidReady : (await getStatus(n.healthUrl)) === 200) pending.delete(n);
		if (!pending.size) break;
		if (Date.now() > deadline) {
			console.error(
				`local-cluster: not ready after ${READY_TIMEOUT_MS / 1000} s: ${[...pending].map(n => n.name).join(", ")}`
			);
			await stopAll(1);
			return;
		}
		await new Promise(r => setTimeout(r, 500));
	}
	if (stopping) return;

	const lines = ["", "local-cluster: every node is ready"];
	for (const n of nodes) {
		if (n.command)
			lines.push(
				`  ${n.name}: context (Python)   NODE_ID ${n.env.NODE_ID}   Metrics http://127.0.0.1:${n.env.METRICS_PORT}/metrics`
			);
		else if (n.services.includes("api")) {
			const base = `http://localhost:${n.env.PORT}`;
			lines.push(
				`  ${n.name}: API ${base}/api/v1   Docs ${base}/api/docs   Health ${base}/health/ready   Metrics http://127.0.0.1:${n.env.METRICS_PORT}/metrics`
			);
		} else
			lines.push(
				`  ${n.name}: ${n.services.join(", ")}   Health ${n.healthUrl}   Metrics http://127.0.0.1:${n.env.METRICS_PORT}/metrics`
			);
	}
	lines.push("Press Ctrl-C to stop.", "");
	console.log(lines.join("\n"));
}

main().catch(err => {
	console.error("local-cluster failed:", (err as Error)?.message ?? err);
	process.exit(1);
});
