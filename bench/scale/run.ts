/**
 * Scale-out benchmark (a script, not a test): does the cluster's throughput grow with its nodes?
 *
 *  1. ai workers: 1, 2 and 4 `ai` nodes, each a separate `bin/forgefluid.ts` process over NATS with
 *     AI_CONCURRENCY slots, against a paced fake model (the fake OpenAI server in its own process:
 *     an answer of CHUNKS tokens over ANSWER_MS). The gateway (`api`) and the core (users, projects,
 *     payments, tasks) are two more processes. Tasks go in over HTTP (POST /api/v1/tasks) from a
 *     closed loop that keeps OUTSTANDING tasks per slot queued or running, so every slot always has
 *     work and the queue never empties. Reported per node count: tasks/s in the measured window
 *     (each run counted by the share of it inside the window), p50 / p99 wait (created → first
 *     lease), the run time, the share each node took, the CPU time per task of every process (the
 *     database's backends included) and the ratio to one node. The ideal is slots / answer time
 *     tasks/s and, by Little's law, a wait of (OUTSTANDING − 1) answer times at every node count.
 *     Why 4 s per answer by default: the whole cluster costs about 75 ms of CPU per task, so 32 slots
 *     at 1 s per answer would need 2.4 cores, more than a 2-core machine has (ANSWER_MS=1000 shows it).
 *  2. gateway replicas: 1 and 2 `api` nodes on a cheap route (GET /api/v1/ai/models, anonymous:
 *     the per-IP rate limit in Redis, then `ai.models` on the ai node over NATS), autocannon with the
 *     connections split evenly over the replicas (as a load balancer would), and the CPU time per
 *     request of each process.
 *
 * Run: ./forge bench:scale   (options: NODES=1,2,4 AI_CONCURRENCY=8 ANSWER_MS=4000 CHUNKS=10
 * OUTSTANDING=2 WARMUP_S=5 MEASURE_S=24 USERS=16 GATEWAYS=1,2 GATEWAY_S=10 CONNECTIONS=32
 * PARTS=ai,gateway TEST_PG_ADMIN_URL=… TEST_REDIS_URL=… TEST_NATS_URL=…)
 * Its own database, Redis prefix and Moleculer namespace, dropped at the end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { ServiceBroker } from "moleculer";
import { Client } from "pg";
import { loadConfig } from "../../src/config";
import { percentile } from "../../src/tasks/rules";
import { bearerFor, createTestDatabase, freePort, isolatedEnv, NATS_URL } from "../../test/support/env";
import { startForgeNode, stopForgeNodes } from "../../test/support/node-process";
import { cpuSeconds } from "../support/cpu";
import { machine } from "../support/machine";

const NODES = (process.env.NODES ?? "1,2,4").split(",").map(Number);
const SLOTS = Number(process.env.AI_CONCURRENCY ?? 8);
const ANSWER_MS = Number(process.env.ANSWER_MS ?? 4000);
const CHUNKS = Number(process.env.CHUNKS ?? 10);
const OUTSTANDING = Number(process.env.OUTSTANDING ?? 2);
const WARMUP_S = Number(process.env.WARMUP_S ?? 5);
const MEASURE_S = Number(process.env.MEASURE_S ?? 24);
const USERS = Number(process.env.USERS ?? 16);
const GATEWAYS = (process.env.GATEWAYS ?? "1,2").split(",").map(Number);
const GATEWAY_S = Number(process.env.GATEWAY_S ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32);
const PARTS = new Set((process.env.PARTS ?? "ai,gateway").split(",").map(p => p.trim()));

const ROOT = path.resolve(__dirname, "..", "..");
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const load = () =>
	os
		.loadavg()
		.map(l => l.toFixed(2))
		.join(" ");

/** The paced model: bench/ai/fake-server.ts in its own process (first token, then one every step). */
function startModel(): Promise<{ url: string; proc: ChildProcess }> {
	const step = Math.round(ANSWER_MS / CHUNKS);
	const proc = spawn(process.execPath, ["-r", "@swc-node/register", path.join(ROOT, "bench/ai/fake-server.ts")], {
		cwd: ROOT,
		env: { ...process.env, CHUNKS: String(CHUNKS), FIRST_TOKEN_MS: String(step), CHUNK_DELAY_MS: String(step) },
		stdio: ["ignore", "pipe", "inherit"]
	});
	return new Promise((resolve, reject) => {
		proc.stdout!.once("data", (b: Buffer) => resolve({ url: b.toString().trim(), proc }));
		proc.once("exit", code => reject(new Error(`the fake model exited (${code})`)));
	});
}

interface Bench {
	env: Record<string, string>;
	pg: Client;
	client: ServiceBroker;
	/** Gateway replicas, by start order: the first one takes the task submissions. */
	gateways: Array<{ proc: ChildProcess; port: number }>;
	core: ChildProcess;
	modelPid: number | undefined;
	ai: ChildProcess[];
	users: Array<{ token: string; projectId: string }>;
}

async function startGateway(b: Bench) {
	const port = await freePort();
	const n = b.gateways.length + 1;
	const proc = await startForgeNode({ ...b.env, SERVICES: "api", NODE_ID: `gateway-${n}`, PORT: String(port) });
	b.gateways.push({ proc, port });
	// Ready only once the new replica sees every service the bench's routes call.
	for (const end = Date.now() + 30_000; Date.now() < end; await sleep(200)) {
		const r = await fetch(`http://127.0.0.1:${port}/health/ready`).then(
			x => x.json() as Promise<{ services?: Record<string, { available: boolean }> }>,
			() => ({ services: {} as Record<string, { available: boolean }> })
		);
		if (["users", "projects", "payments", "tasks", "ai"].every(s => r.services?.[s]?.available)) return;
	}
	throw new Error(`gateway-${n} did not see every service in 30 s`);
}

const spoolDir = (b: Bench, i: number) => path.join(os.tmpdir(), `${b.env.NAMESPACE}-ai-${i}`);

/** ai nodes up to `n`, started together; resolves once the tasks service counts all their slots. */
async function scaleAiTo(b: Bench, n: number) {
	const extra = Array.from({ length: n - b.ai.length }, (_, i) => b.ai.length + i + 1);
	const started = await Promise.allSettled(
		extra.map(i =>
			startForgeNode({
				...b.env,
				SERVICES: "ai",
				NODE_ID: `ai-${i}`,
				// Each node its own spool, as each machine has its own disk.
				OUTCOME_SPOOL_DIR: spoolDir(b, i)
			})
		)
	);
	// Nodes that did start are stopped with the others at the end, even when one of them failed.
	for (const r of started) if (r.status === "fulfilled") b.ai.push(r.value);
	const failed = started.find(r => r.status === "rejected");
	if (failed) throw (failed as PromiseRejectedResult).reason;
	while (b.ai.length > n) await stopForgeNodes([b.ai.pop()!]);
	for (const end = Date.now() + 30_000; ; await sleep(200)) {
		const s = (await b.client.call("tasks.refreshStats")) as { capacity: number };
		if (s.capacity === n * SLOTS) return;
		if (Date.now() > end) throw new Error(`tasks counts ${s.capacity} slots, expected ${n * SLOTS}`);
	}
}

async function open(b: Bench): Promise<number> {
	const r = await b.pg.query(`SELECT count(*)::int AS n FROM tasks WHERE state IN ('queued', 'running')`);
	return r.rows[0].n as number;
}

/**
 * The closed loop: every 50 ms, submits what is missing for `target` tasks queued or running
 * (users in turn, over HTTP through the first gateway) until `stop()` is called. Counts refusals.
 */
function submitter(b: Bench, target: number) {
	let running = true;
	let inFlight = 0;
	let next = 0;
	const refused = new Map<number, number>();
	const base = `http://127.0.0.1:${b.gateways[0].port}/api/v1`;
	const submitOne = async () => {
		const u = b.users[next++ % b.users.length];
		inFlight++;
		try {
			const r = await fetch(`${base}/tasks`, {
				method: "POST",
				headers: { authorization: `Bearer ${u.token}`, "content-type": "application/json" },
				body: JSON.stringify({ projectId: u.projectId, kind: "chat", prompt: `scale ${next}` })
			});
			await r.arrayBuffer();
			if (r.status !== 202) refused.set(r.status, (refused.get(r.status) ?? 0) + 1);
		} finally {
			inFlight--;
		}
	};
	const loop = (async () => {
		while (running) {
			const missing = target - (await open(b)) - inFlight;
			for (let i = 0; i < missing; i++) void submitOne().catch(() => refused.set(0, (refused.get(0) ?? 0) + 1));
			await sleep(50);
		}
	})();
	return {
		refused,
		async stop() {
			running = false;
			await loop;
			while (inFlight > 0) await sleep(10);
		}
	};
}

async function drain(b: Bench, timeoutMs = 120_000) {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const r = await b.pg.query(
			`SELECT count(*)::int AS n FROM tasks WHERE state IN ('queued', 'running') OR settlement = 'pending'`
		);
		if (r.rows[0].n === 0) return;
		if (Date.now() > end) throw new Error("tasks did not drain");
		await sleep(100);
	}
}

interface AiFigures {
	nodes: number;
	slots: number;
	rate: number;
	ideal: number;
	finished: number;
	failed: number;
	wait: { p50: number | null; p99: number | null };
	run: { p50: number | null; p99: number | null };
	perNode: Array<[string, number]>;
	/** CPU ms per finished task, by process (the database: its backends serving this bench's nodes). */
	cpuMsPerTask: Record<string, number | null>;
	refused: string;
	load: string;
}

/** The PostgreSQL backends serving the nodes (this database's, less the bench's own connection). */
async function backends(b: Bench): Promise<number[]> {
	const r = await b.pg.query<{ pid: number }>(
		`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`
	);
	return r.rows.map(x => x.pid);
}

/** CPU seconds so far of each process watched (the nodes, the model, this process, the database's backends). */
async function cpuNow(b: Bench): Promise<Record<string, number | null>> {
	const out: Record<string, number | null> = {
		core: cpuSeconds(b.core.pid),
		"gateway-1": cpuSeconds(b.gateways[0]?.proc.pid),
		model: cpuSeconds(b.modelPid),
		bench: cpuSeconds(process.pid)
	};
	b.ai.forEach((p, i) => (out[`ai-${i + 1}`] = cpuSeconds(p.pid)));
	for (const pid of await backends(b)) out[`pg:${pid}`] = cpuSeconds(pid);
	return out;
}

/** CPU ms per task between two snapshots; the backends summed as `postgres` (one that started meanwhile counts from 0). */
function cpuPerTask(before: Record<string, number | null>, after: Record<string, number | null>, tasks: number) {
	const out: Record<string, number | null> = {};
	let pg = 0;
	for (const [k, v] of Object.entries(after)) {
		if (v === null) continue;
		const d = v - (before[k] ?? (k.startsWith("pg:") ? 0 : v));
		if (k.startsWith("pg:")) pg += d;
		else out[k] = tasks ? (d * 1000) / tasks : null;
	}
	const ai = Object.entries(out).filter(([k]) => k.startsWith("ai-"));
	out["ai (all nodes)"] = ai.reduce((a, [, v]) => a + (v ?? 0), 0);
	for (const [k] of ai) delete out[k];
	out.postgres = tasks ? (pg * 1000) / tasks : null;
	return out;
}

async function measureAi(b: Bench, n: number): Promise<AiFigures> {
	await scaleAiTo(b, n);
	const slots = n * SLOTS;
	const loadAtStart = load();
	const sub = submitter(b, Math.round(slots * OUTSTANDING));
	await sleep(WARMUP_S * 1000);
	const cpuBefore = await cpuNow(b);
	const from = new Date();
	await sleep(MEASURE_S * 1000);
	const to = new Date();
	const cpuAfter = await cpuNow(b);
	await sub.stop();
	await drain(b);
	const window = [from, to];
	const done = await b.pg.query<{ state: string; n: number }>(
		`SELECT state, count(*)::int AS n FROM tasks WHERE finished_at >= $1 AND finished_at < $2 GROUP BY state`,
		window
	);
	const finished = done.rows.find(r => r.state === "succeeded")?.n ?? 0;
	const failed = done.rows.filter(r => r.state !== "succeeded").reduce((a, r) => a + r.n, 0);
	// Throughput as the share of each run inside the window, summed: tasks on one node start and end
	// in step (every slot frees at about the same time), so a plain count of finishes in the window
	// would move by up to a node's slots with the window's phase.
	const share = await b.pg.query<{ n: number | null }>(
		`SELECT sum(extract(epoch FROM least(finished_at, $2) - greatest(last_started_at, $1))
				/ nullif(extract(epoch FROM finished_at - last_started_at), 0)) AS n
		 FROM tasks WHERE state = 'succeeded' AND last_started_at < $2 AND finished_at > $1`,
		window
	);
	const waits = await b.pg.query<{ ms: number }>(
		`SELECT extract(epoch FROM started_at - created_at) * 1000 AS ms FROM tasks WHERE started_at >= $1 AND started_at < $2`,
		window
	);
	const runs = await b.pg.query<{ ms: number }>(
		`SELECT extract(epoch FROM finished_at - last_started_at) * 1000 AS ms FROM tasks WHERE finished_at >= $1 AND finished_at < $2`,
		window
	);
	const perNode = await b.pg.query<{ node_id: string; n: number }>(
		`SELECT node_id, count(*)::int AS n FROM tasks WHERE finished_at >= $1 AND finished_at < $2 GROUP BY node_id ORDER BY node_id`,
		window
	);
	const w = waits.rows.map(r => Number(r.ms));
	const rt = runs.rows.map(r => Number(r.ms));
	const s = (to.getTime() - from.getTime()) / 1000;
	return {
		nodes: n,
		slots,
		rate: Number(share.rows[0].n ?? 0) / s,
		ideal: slots / (ANSWER_MS / 1000),
		finished,
		failed,
		wait: { p50: percentile(w, 50), p99: percentile(w, 99) },
		run: { p50: percentile(rt, 50), p99: percentile(rt, 99) },
		perNode: perNode.rows.map(r => [r.node_id, r.n]),
		cpuMsPerTask: cpuPerTask(cpuBefore, cpuAfter, Number(share.rows[0].n ?? 0)),
		refused: [...sub.refused.entries()].map(([k, v]) => `${k || "network"}: ${v}`).join(", ") || "none",
		load: loadAtStart
	};
}

interface GatewayFigures {
	replicas: number;
	rps: number;
	perReplica: Array<{ rps: number; p50: number; p99: number }>;
	cpuUs: Record<string, number | null>;
	errors: number;
	load: string;
}

/** autocannon against every replica at once, CONNECTIONS split evenly; CPU µs per request per process. */
async function measureGateways(b: Bench, replicas: number): Promise<GatewayFigures> {
	while (b.gateways.length < replicas) await startGateway(b);
	const targets = b.gateways.slice(0, replicas);
	const url = (port: number) => `http://127.0.0.1:${port}/api/v1/ai/models`;
	const per = Math.max(1, Math.floor(CONNECTIONS / replicas));
	await Promise.all(targets.map(g => autocannon({ url: url(g.port), connections: per, duration: 2 })));
	const watched: Record<string, number | undefined> = {
		...Object.fromEntries(targets.map((g, i) => [`gateway-${i + 1}`, g.proc.pid])),
		"ai-1": b.ai[0]?.pid,
		bench: process.pid
	};
	const before = Object.fromEntries(Object.entries(watched).map(([k, pid]) => [k, cpuSeconds(pid)]));
	const loadAtStart = load();
	const results = await Promise.all(
		targets.map(g => autocannon({ url: url(g.port), connections: per, duration: GATEWAY_S }))
	);
	const total = results.reduce((a, r) => a + r.requests.total, 0);
	const cpuUs: Record<string, number | null> = {};
	for (const [k, pid] of Object.entries(watched)) {
		const a = before[k];
		const c = cpuSeconds(pid);
		cpuUs[k] = a === null || c === null ? null : Math.round(((c - a) * 1e6) / total);
	}
	return {
		replicas,
		rps: results.reduce((a, r) => a + r.requests.average, 0),
		perReplica: results.map(r => ({ rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99 })),
		cpuUs,
		errors: results.reduce((a, r) => a + r.non2xx + r.errors, 0),
		load: loadAtStart
	};
}

const f1 = (n: number | null) => (n === null ? "–" : n.toFixed(0));

async function main() {
	console.log(`machine: ${machine()}, load average ${load()}`);
	const db = await createTestDatabase("ff_bench");
	const model = await startModel();
	const env = isolatedEnv(db, {
		TRANSPORTER: NATS_URL,
		LOG_LEVEL: "error",
		OPENAI_API_KEY: "sk-bench",
		OPENAI_BASE_URL: model.url,
		AI_DEV_PROVIDER: "false",
		// The production defaults, not the test suites' faster polling (isolatedEnv's).
		OUTBOX_POLL_MS: "500",
		EVENT_RETRY_BASE_MS: "500",
		AI_CONCURRENCY: String(SLOTS),
		RATE_LIMIT_PER_MINUTE: "1000000",
		RATE_LIMIT_ANON_PER_MINUTE: "1000000"
	});
	const b: Bench = {
		env,
		pg: new Client({ connectionString: db.url }),
		client: new ServiceBroker({
			namespace: env.NAMESPACE,
			nodeID: `bench-${randomUUID().slice(0, 8)}`,
			transporter: { type: "NATS", options: { url: NATS_URL } },
			logger: false
		}),
		gateways: [],
		core: null as unknown as ChildProcess,
		modelPid: model.proc.pid,
		ai: [],
		users: []
	};
	try {
		// The core first: it applies the migrations; the others find them applied.
		b.core = await startForgeNode({ ...env, SERVICES: "users,projects,payments,tasks", NODE_ID: "core" });
		await b.pg.connect();
		await b.client.start();
		await scaleAiTo(b, 1);
		await startGateway(b);
		const config = loadConfig(env);
		for (let i = 0; i < USERS; i++) {
			const id = randomUUID();
			// Enterprise: 32 tasks at once per user and no tier share cap, so only the slots limit the run.
			await b.pg.query(`INSERT INTO users (id, email, tier_override) VALUES ($1, $2, 'enterprise')`, [
				id,
				`${id}@bench.test`
			]);
			const token = bearerFor(config, id);
			const p = await fetch(`http://127.0.0.1:${b.gateways[0].port}/api/v1/projects`, {
				method: "POST",
				headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
				body: JSON.stringify({ name: `scale-${i}` })
			});
			const project = (await p.json()) as { id: string };
			await b.client.call("payments.grant", {
				userId: id,
				credits: 100_000_000,
				operator: "bench",
				reason: "bench",
				key: `g-${id}`
			});
			b.users.push({ token, projectId: project.id });
		}

		if (PARTS.has("ai")) {
			console.log(
				`\nai worker nodes: ${SLOTS} slots each (AI_CONCURRENCY), paced model ${CHUNKS} tokens over ${ANSWER_MS} ms, ` +
					`${OUTSTANDING} tasks per slot queued or running, ${WARMUP_S} s warm-up, ${MEASURE_S} s measured; ` +
					`gateway and core (users, projects, payments, tasks) on two more processes`
			);
			const rows: AiFigures[] = [];
			for (const n of NODES) {
				const r = await measureAi(b, n);
				rows.push(r);
				const one = rows.find(x => x.nodes === 1);
				console.log(
					`  ${n} node(s), ${r.slots} slots: ${r.rate.toFixed(2)} tasks/s (ideal ${r.ideal.toFixed(0)}, ${((r.rate / r.ideal) * 100).toFixed(0)} %)` +
						`${one ? `, ${(r.rate / one.rate).toFixed(2)}× one node` : ""}; wait p50 ${f1(r.wait.p50)} ms p99 ${f1(r.wait.p99)} ms ` +
						`(ideal ${((OUTSTANDING - 1) * ANSWER_MS).toFixed(0)}); run p50 ${f1(r.run.p50)} ms p99 ${f1(r.run.p99)} ms; ` +
						`finished ${r.finished}, failed ${r.failed}, submissions refused ${r.refused}; ` +
						`per node ${r.perNode.map(([k, v]) => `${k} ${v}`).join(", ")}; load average ${r.load}`
				);
				console.log(
					`    CPU ms per task: ${Object.entries(r.cpuMsPerTask)
						.map(([k, v]) => `${k} ${v === null ? "?" : v.toFixed(1)}`)
						.join(", ")}; ` +
						`at the ideal rate that is ${((Object.values(r.cpuMsPerTask).reduce<number>((a, v) => a + (v ?? 0), 0) * r.ideal) / 1000).toFixed(2)} cores of this machine's ${os.cpus().length}`
				);
			}
			const one = rows.find(x => x.nodes === 1);
			const four = rows.find(x => x.nodes === 4);
			if (one && four)
				console.log(
					`  4 nodes / 1 node: ${(four.rate / one.rate).toFixed(2)}× (target ≥ 3.6×: ${four.rate / one.rate >= 3.6 ? "met" : "not met"})`
				);
		}

		if (PARTS.has("gateway")) {
			// One ai node answers ai.models; the others would only share the cores.
			await scaleAiTo(b, 1);
			console.log(
				`\ngateway replicas: GET /api/v1/ai/models (anonymous), ${CONNECTIONS} connections split over the replicas, ${GATEWAY_S} s after 2 s warm-up`
			);
			const rows: GatewayFigures[] = [];
			for (const g of GATEWAYS) {
				const r = await measureGateways(b, g);
				rows.push(r);
				const one = rows.find(x => x.replicas === 1);
				console.log(
					`  ${g} replica(s): ${r.rps.toFixed(0)} req/s${one ? ` (${(r.rps / one.rps).toFixed(2)}× one replica)` : ""}; ` +
						`${r.perReplica.map((p, i) => `gateway-${i + 1} ${p.rps.toFixed(0)} req/s p50 ${p.p50} ms p99 ${p.p99} ms`).join("; ")}; ` +
						`errors ${r.errors}; CPU µs per request: ${Object.entries(r.cpuUs)
							.map(([k, v]) => `${k} ${v ?? "?"}`)
							.join(", ")}; load average ${r.load}`
				);
			}
		}
	} finally {
		await b.client.stop().catch(() => undefined);
		await stopForgeNodes([...b.gateways.map(g => g.proc), ...b.ai, ...(b.core ? [b.core] : [])]);
		model.proc.kill("SIGTERM");
		for (let i = 1; i <= Math.max(...NODES, 1); i++) rmSync(spoolDir(b, i), { recursive: true, force: true });
		await b.pg.end().catch(() => undefined);
		await db.drop();
	}
	console.log(`\nload average at the end ${load()}`);
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
