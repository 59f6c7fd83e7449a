/**
 * Added time from submit to the first streamed token (issue #16): what the platform adds between a
 * client's `POST /api/v1/tasks` and the first `delta` on the task's event stream, over the same
 * prompt sent straight to the model (a script, not a test).
 *
 * - The model: the fake OpenAI server in its own process (bench/ai/fake-server.ts), answering at once
 *   (FIRST_TOKEN_MS=0) so what is measured is the path, not the model.
 * - platform: the client (this process) posts a chat task over HTTP, then opens
 *   `GET /api/v1/tasks/:id/events` and reads it until the first `delta` frame (then to the end). A
 *   task that finished before its stream was open sends no deltas, only its final state with the
 *   text: that frame's arrival counts then, and the report says how many there were.
 * - platform, POST with the stream (MODES=get,post; post on this checkout only): the client posts
 *   the task with `Accept: text/event-stream` and reads the answer, the task's event stream itself,
 *   until the first `delta` frame (no second request).
 * - direct: the same prompt with the `openai` SDK from this process, straight to the fake server,
 *   time to the first content chunk.
 * The two alternate (sequential: task by task; concurrent: each client alternates), so both run under
 * the same load, and the figure is platform − direct at p50 and p99.
 *
 * Layouts (each `bin/forgefluid.ts` process over the real NATS, its own database, Redis prefix and
 * namespace):
 * - one: every TypeScript service in one node process;
 * - cluster: `./forge cluster`'s three nodes: gateway (api), core (users, projects, payments),
 *   workers (tasks, ai, context-bridge, orgs).
 * Context: the bench's projects are empty (head version 0), so the worker calls no `context.select`
 * (it has nothing to select from; a task leased at insert does not ask `projects.access` either); the
 * Python context node is not started. The context service's own latency is measured by bench/context.
 *
 * Where the time goes: each platform task's steps from its timestamps: the client's send and 202,
 * the row's `created_at` (the insert) and `started_at` (the lease, on the tasks node's clock), the
 * fake server's arrival of the upstream request (ARRIVALS=1: it prints them), and the first delta at
 * the client. All processes share this machine's clock.
 *
 * The floor (FLOOR=0 skips it): bench/firsttoken/floor-server.ts, a bare Node HTTP server doing one
 * committed insert per request, under the same client, sequential and CONCURRENCY at once, with its
 * CPU per request (server, PostgreSQL backends, this client); and each platform's CPU per task over
 * the concurrent phase (its node processes and its database's backends, background included).
 *
 * BASELINE=<dir>: a second platform from another checkout of the repository (its own processes,
 * database and namespace: e.g. the previous commit exported with `git archive`, node_modules linked),
 * started beside this one; every path (this checkout, the baseline, direct) takes turns, task by task.
 *
 * Run: npm run bench:firsttoken   (options: BASELINE=<dir> MODES=get,post LAYOUTS=one,cluster SEQ=100 CONCURRENCY=50 CONC_ROUNDS=6
 * WARMUP=20 USERS=8 AI_CONCURRENCY=64 AI_POLL_MS=1000 FLOOR=0 TEST_PG_ADMIN_URL=… TEST_REDIS_URL=… TEST_NATS_URL=…)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { ServiceBroker } from "moleculer";
import OpenAI from "openai";
import { Client } from "pg";
import { loadConfig } from "../../src/config";
import { percentile } from "../../src/tasks/rules";
import { bearerFor, createTestDatabase, freePort, isolatedEnv, NATS_URL } from "../../test/support/env";
import { startForgeNode, stopForgeNodes } from "../../test/support/node-process";
import { cpuSeconds, pgBackendCpu, pgBackendCpuDelta } from "../support/cpu";
import { machine } from "../support/machine";

const LAYOUTS = (process.env.LAYOUTS ?? "one,cluster").split(",").map(s => s.trim()) as Array<"one" | "cluster">;
const SEQ = Number(process.env.SEQ ?? 100);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 50);
const CONC_ROUNDS = Number(process.env.CONC_ROUNDS ?? 6);
const WARMUP = Number(process.env.WARMUP ?? 20);
const USERS = Number(process.env.USERS ?? 8);
const SLOTS = Number(process.env.AI_CONCURRENCY ?? 64);
const POLL_MS = process.env.AI_POLL_MS ?? "1000";
/** FLOOR=0: skip the bare server's floor (one HTTP request and one commit per task). */
const FLOOR = process.env.FLOOR !== "0";
/** get: POST /tasks, then GET /tasks/:id/events; post: POST /tasks answering with the stream (this checkout only). */
const MODES = (process.env.MODES ?? "get,post").split(",").map(s => s.trim()) as Array<"get" | "post">;
/** A platform task that has not streamed and ended by then counts as an error (and is not waited for). */
const TASK_TIMEOUT_MS = Number(process.env.TASK_TIMEOUT_MS ?? 60_000);

const ROOT = path.resolve(__dirname, "..", "..");
/** Another checkout (e.g. the previous commit, `git archive` into a directory with node_modules): run beside this one. */
const BASELINE = process.env.BASELINE ? path.resolve(process.env.BASELINE) : null;

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));
const wall = () => performance.timeOrigin + performance.now();
const load = () =>
	os
		.loadavg()
		.map(l => l.toFixed(2))
		.join(" ");

interface Model {
	url: string;
	proc: ChildProcess;
	arrivals: Map<string, number>;
}

function startModel(): Promise<Model> {
	const proc = spawn(process.execPath, ["-r", "@swc-node/register", path.join(ROOT, "bench/ai/fake-server.ts")], {
		cwd: ROOT,
		env: { ...process.env, CHUNKS: "8", FIRST_TOKEN_MS: "0", CHUNK_DELAY_MS: "0", ARRIVALS: "1" },
		stdio: ["ignore", "pipe", "inherit"]
	});
	const arrivals = new Map<string, number>();
	return new Promise((resolve, reject) => {
		let buf = "";
		let url: string | null = null;
		proc.stdout!.on("data", (b: Buffer) => {
			buf += b.toString();
			let i: number;
			while ((i = buf.indexOf("\n")) >= 0) {
				const line = buf.slice(0, i).trim();
				buf = buf.slice(i + 1);
				const m = /^arrival (\S+) (\S+)$/.exec(line);
				if (m) arrivals.set(m[1], Number(m[2]));
				else if (!url && line) {
					url = line;
					resolve({ url, proc, arrivals });
				}
			}
		});
		proc.once("exit", code => reject(new Error(`the fake model exited (${code})`)));
	});
}

interface Platform {
	layout: "one" | "cluster";
	name: string;
	/** How the client reaches the stream (several paths may share one platform's processes). */
	mode: "get" | "post";
	/** Failed platform tasks by message (they are left out of the figures). */
	errors: Map<string, number>;
	procs: ChildProcess[];
	port: number;
	pg: Client;
	client: ServiceBroker;
	users: Array<{ token: string; projectId: string }>;
	db: { name: string; url: string };
	drop(): Promise<void>;
}

async function startPlatform(layout: "one" | "cluster", model: Model, name: string, root: string): Promise<Platform> {
	const db = await createTestDatabase("ff_bench_ft");
	const env = isolatedEnv(db, {
		TRANSPORTER: NATS_URL,
		LOG_LEVEL: "error",
		OPENAI_API_KEY: "sk-bench",
		OPENAI_BASE_URL: model.url,
		AI_DEV_PROVIDER: "false",
		// The production defaults, not the test suites' faster polling (isolatedEnv's).
		OUTBOX_POLL_MS: "500",
		EVENT_RETRY_BASE_MS: "500",
		AI_POLL_MS: POLL_MS,
		AI_CONCURRENCY: String(SLOTS),
		RATE_LIMIT_PER_MINUTE: "1000000",
		RATE_LIMIT_ANON_PER_MINUTE: "1000000",
		TASKS_SSE_MAX_PER_USER: "1000"
	});
	const port = await freePort();
	const procs: ChildProcess[] = [];
	const node = async (id: string, services: string, extra: Record<string, string> = {}) =>
		procs.push(
			await startForgeNode(
				{ ...env, ...extra, NODE_ID: `${env.NAMESPACE}-${id}`, SERVICES: services },
				60_000,
				root
			)
		);
	if (layout === "one")
		await node("all", "api,users,projects,payments,tasks,ai,context-bridge,orgs", { PORT: String(port) });
	else {
		// The core first: it applies the migrations; the others find them applied.
		await node("core", "users,projects,payments");
		await Promise.all([
			node("workers", "tasks,ai,context-bridge,orgs"),
			node("gateway", "api", { PORT: String(port) })
		]);
	}
	const pg = new Client({ connectionString: db.url });
	await pg.connect();
	const client = new ServiceBroker({
		namespace: env.NAMESPACE,
		nodeID: `bench-${randomUUID().slice(0, 8)}`,
		transporter: { type: "NATS", options: { url: NATS_URL } },
		logger: false
	});
	await client.start();
	for (const end = Date.now() + 30_000; ; await sleep(200)) {
		const r = await fetch(`http://127.0.0.1:${port}/health/ready`).then(
			x => x.json() as Promise<{ services?: Record<string, { available: boolean }> }>,
			() => ({ services: {} as Record<string, { available: boolean }> })
		);
		if (["users", "projects", "payments", "tasks", "ai"].every(s => r.services?.[s]?.available)) break;
		if (Date.now() > end) throw new Error("the gateway does not see every service");
	}
	await client.waitForServices(["payments", "tasks"]);
	const config = loadConfig(env);
	const users: Platform["users"] = [];
	for (let i = 0; i < USERS; i++) {
		const id = randomUUID();
		// Enterprise: 32 tasks at once per user and no tier share cap.
		await pg.query(`INSERT INTO users (id, email, tier_override) VALUES ($1, $2, 'enterprise')`, [
			id,
			`${id}@bench.test`
		]);
		const token = bearerFor(config, id);
		const p = await fetch(`http://127.0.0.1:${port}/api/v1/projects`, {
			method: "POST",
			headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
			body: JSON.stringify({ name: `ft-${i}` })
		});
		const project = (await p.json()) as { id: string };
		await client.call("payments.grant", {
			userId: id,
			credits: 100_000_000,
			operator: "bench",
			reason: "bench",
			key: `g-${id}`
		});
		users.push({ token, projectId: project.id });
	}
	for (const end = Date.now() + 30_000; ; await sleep(200)) {
		const s = (await client.call("tasks.refreshStats").catch(() => ({ capacity: 0 }))) as { capacity: number };
		if (s.capacity >= SLOTS) break;
		if (Date.now() > end) throw new Error(`tasks counts ${s.capacity} slots, expected ${SLOTS}`);
	}
	return {
		layout,
		name,
		mode: "get",
		errors: new Map(),
		procs,
		port,
		pg,
		client,
		users,
		db: { name: db.name, url: db.url },
		async drop() {
			await client.stop().catch(() => undefined);
			// A node that does not stop in 20 s (an open stream it waits for) is killed.
			const kill = setTimeout(() => procs.forEach(pr => pr.kill("SIGKILL")), 20_000);
			await stopForgeNodes(procs);
			clearTimeout(kill);
			await pg.end().catch(() => undefined);
			await db.drop();
		}
	};
}

interface PlatformSample {
	tag: string;
	taskId: string;
	t0: number;
	posted: number;
	/** When the client first saw answer text: the first delta, or the final state for a task that finished first. */
	first: number;
	viaResult: boolean;
}

let seq = 0;
const newTag = () => `${process.pid.toString(36)}x${(seq++).toString(36)}`;
const promptOf = (tag: string) => `Say hello to the bench [ft:${tag}]`;

async function viaPlatform(p: Platform, user: { token: string; projectId: string }): Promise<PlatformSample> {
	const tag = newTag();
	const base = `http://127.0.0.1:${p.port}/api/v1`;
	const auth = { authorization: `Bearer ${user.token}` };
	const signal = AbortSignal.timeout(TASK_TIMEOUT_MS);
	const t0 = wall();
	const r = await fetch(`${base}/tasks`, {
		signal,
		method: "POST",
		headers: {
			...auth,
			"content-type": "application/json",
			...(p.mode === "post" ? { accept: "text/event-stream" } : {})
		},
		body: JSON.stringify({ projectId: user.projectId, kind: "chat", prompt: promptOf(tag), maxOutputTokens: 16 })
	});
	let taskId = "";
	let ev: Response;
	let posted: number;
	if (p.mode === "post") {
		if (r.status !== 200 || !r.body)
			throw new Error(`submit with the stream answered ${r.status}: ${await r.text()}`);
		posted = wall();
		ev = r;
	} else {
		const body = (await r.json()) as { task?: { id: string } };
		if (r.status !== 202 || !body.task) throw new Error(`submit answered ${r.status}: ${JSON.stringify(body)}`);
		posted = wall();
		taskId = body.task.id;
		ev = await fetch(`${base}/tasks/${taskId}/events`, {
			signal,
			headers: { ...auth, accept: "text/event-stream" }
		});
		if (ev.status !== 200 || !ev.body) throw new Error(`events answered ${ev.status}`);
	}
	let first = -1;
	let viaResult = false;
	let text = "";
	const dec = new TextDecoder();
	for await (const chunk of ev.body as unknown as AsyncIterable<Uint8Array>) {
		text += dec.decode(chunk, { stream: true });
		if (!taskId) taskId = /"taskId":"([0-9a-f-]{36})"/.exec(text)?.[1] ?? "";
		if (first < 0 && /(^|\n)event: delta\n/.test(text)) first = wall();
		if (/(^|\n)event: (completed|failed|cancelled)\n/.test(text)) {
			// Finished before the stream was open: the answer's text comes with the final state, no delta.
			if (first < 0 && /(^|\n)event: completed\n/.test(text)) {
				first = wall();
				viaResult = true;
			}
			break;
		}
	}
	if (first < 0) throw new Error(`task ${taskId} ended with no answer: ${text.slice(-300)}`);
	return { tag, taskId, t0, posted, first, viaResult };
}

/** viaPlatform, a failure counted on the platform instead of thrown. */
async function tryPlatform(p: Platform, user: { token: string; projectId: string }, into: PlatformSample[]) {
	try {
		into.push(await viaPlatform(p, user));
	} catch (err) {
		const m = ((err as Error).message ?? String(err)).slice(0, 200);
		p.errors.set(m, (p.errors.get(m) ?? 0) + 1);
	}
}

function directPath(url: string) {
	const sdk = new OpenAI({ apiKey: "k", baseURL: url, maxRetries: 0 });
	return async (): Promise<number> => {
		const t0 = wall();
		let ttft = -1;
		const stream = await sdk.chat.completions.create({
			model: "gpt-4o-mini",
			messages: [{ role: "user", content: promptOf(newTag()) }],
			stream: true,
			stream_options: { include_usage: true },
			max_tokens: 16
		});
		for await (const c of stream) if (ttft < 0 && c.choices?.[0]?.delta?.content) ttft = wall() - t0;
		return ttft;
	};
}

interface Steps {
	submit: number[];
	answer: number[];
	lease: number[];
	prepare: number[];
	stream: number[];
}

/** Each task's steps, from the client's clock, the row's timestamps and the model's arrivals. */
async function stepsOf(p: Platform, model: Model, samples: PlatformSample[]): Promise<Steps> {
	const rows = await p.pg.query<{ id: string; created: number; started: number }>(
		`SELECT id, extract(epoch FROM created_at) * 1000 AS created, extract(epoch FROM started_at) * 1000 AS started
		 FROM tasks WHERE id = ANY($1::uuid[])`,
		[samples.map(s => s.taskId)]
	);
	const byId = new Map(rows.rows.map(r => [r.id, { created: Number(r.created), started: Number(r.started) }]));
	const out: Steps = { submit: [], answer: [], lease: [], prepare: [], stream: [] };
	for (const s of samples) {
		const row = byId.get(s.taskId);
		const arrival = model.arrivals.get(s.tag);
		if (!row || arrival === undefined) continue;
		out.submit.push(row.created - s.t0);
		out.answer.push(s.posted - row.created);
		out.lease.push(row.started - row.created);
		out.prepare.push(arrival - row.started);
		out.stream.push(s.first - arrival);
	}
	return out;
}

/** This PostgreSQL's cost of one committed single-row insert (the floor under each write on the path). */
async function commitLatency(): Promise<{ p50: number; p99: number }> {
	const db = await createTestDatabase("ff_bench_ft_commit");
	const c = new Client({ connectionString: db.url });
	await c.connect();
	try {
		await c.query("CREATE TABLE probe (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())");
		const xs: number[] = [];
		for (let i = 0; i < 200; i++) {
			const t = performance.now();
			await c.query("INSERT INTO probe DEFAULT VALUES");
			xs.push(performance.now() - t);
		}
		return { p50: percentile(xs, 50)!, p99: percentile(xs, 99)! };
	} finally {
		await c.end();
		await db.drop();
	}
}

interface Floor {
	seq: { p50: number; p99: number };
	conc: { p50: number; p99: number; n: number };
	/** CPU ms per request at CONCURRENCY: the server process, its database's backends, the client (this process). */
	cpu: { server: number | null; pg: number; client: number };
	elapsedS: number;
}

/**
 * The floor (bench/firsttoken/floor-server.ts): a bare Node HTTP server that inserts one row per
 * request (one commit, pg.Pool of 10) and answers 202; sequential, then CONCURRENCY clients at once,
 * CONC_ROUNDS × 3 requests each. What any implementation of the submission needs here at least.
 */
async function floorOf(): Promise<Floor> {
	const db = await createTestDatabase("ff_bench_ft_floor");
	const proc = spawn(
		process.execPath,
		["-r", "@swc-node/register", path.join(ROOT, "bench/firsttoken/floor-server.ts")],
		{
			cwd: ROOT,
			env: { ...process.env, DATABASE_URL: db.url },
			stdio: ["ignore", "pipe", "inherit"]
		}
	);
	try {
		const url = await new Promise<string>((resolve, reject) => {
			let buf = "";
			proc.stdout!.on("data", (b: Buffer) => {
				buf += b.toString();
				const i = buf.indexOf("\n");
				if (i >= 0) resolve(buf.slice(0, i).trim());
			});
			proc.once("exit", code => reject(new Error(`the floor server exited (${code})`)));
		});
		const post = async () => {
			const t = performance.now();
			const r = await fetch(`${url}/tasks`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ kind: "chat", prompt: "Say hello to the bench", maxOutputTokens: 16 })
			});
			await r.json();
			if (r.status !== 202) throw new Error(`the floor server answered ${r.status}`);
			return performance.now() - t;
		};
		for (let i = 0; i < 50; i++) await post();
		const seq: number[] = [];
		for (let i = 0; i < SEQ; i++) seq.push(await post());
		const conc: number[] = [];
		const pg0 = await pgBackendCpu(db.url, db.name);
		const s0 = cpuSeconds(proc.pid);
		const c0 = process.cpuUsage();
		const t0 = performance.now();
		await Promise.all(
			Array.from({ length: CONCURRENCY }, async () => {
				for (let k = 0; k < CONC_ROUNDS * 3; k++) conc.push(await post());
			})
		);
		const elapsedS = (performance.now() - t0) / 1000;
		const c1 = process.cpuUsage(c0);
		const s1 = cpuSeconds(proc.pid);
		const pg1 = await pgBackendCpu(db.url, db.name);
		const n = conc.length;
		return {
			seq: { p50: percentile(seq, 50)!, p99: percentile(seq, 99)! },
			conc: { p50: percentile(conc, 50)!, p99: percentile(conc, 99)!, n },
			cpu: {
				server: s0 == null || s1 == null ? null : ((s1 - s0) * 1000) / n,
				pg: pgBackendCpuDelta(pg0, pg1) / n,
				client: (c1.user + c1.system) / 1000 / n
			},
			elapsedS
		};
	} finally {
		proc.kill("SIGTERM");
		await new Promise(r => proc.once("exit", r));
		await db.drop();
	}
}

const f = (n: number | null) => (n === null ? "–" : n.toFixed(2));

function report(label: string, samples: PlatformSample[], direct: number[]) {
	const platform = samples.map(s => s.first - s.t0);
	const late = samples.filter(s => s.viaResult).length;
	const p50 = percentile(platform, 50)! - percentile(direct, 50)!;
	const p99 = percentile(platform, 99)! - percentile(direct, 99)!;
	console.log(
		`  ${label}: platform p50 ${f(percentile(platform, 50))} p99 ${f(percentile(platform, 99))} ms (${platform.length}); ` +
			`direct p50 ${f(percentile(direct, 50))} p99 ${f(percentile(direct, 99))} ms (${direct.length}); ` +
			`added p50 ${f(p50)} ms, p99 ${f(p99)} ms` +
			(late ? `; ${late} finished before their stream was open (text from the final state)` : "")
	);
	return { p50, p99 };
}

function reportSteps(s: Steps) {
	const line = (name: string, xs: number[]) => `${name} p50 ${f(percentile(xs, 50))} p99 ${f(percentile(xs, 99))}`;
	console.log(
		`    steps (ms): ${[
			line("POST → insert", s.submit),
			line("insert → 202 (or the stream's 200) at the client", s.answer),
			line("insert → lease", s.lease),
			line("lease → upstream request", s.prepare),
			line("upstream request → first delta at the client", s.stream)
		].join("; ")}`
	);
}

interface Figures {
	sequential: { p50: number; p99: number };
	concurrent: { p50: number; p99: number };
}

/** Every platform and the direct call in turn (sequential), or each client cycling through them (concurrent). */
async function measure(ps: Platform[], model: Model): Promise<Figures[]> {
	const direct = directPath(model.url);
	const user = (p: Platform, i: number) => p.users[i % p.users.length];
	const paths = ps.length + 1;
	for (let i = 0; i < WARMUP; i++) {
		for (const p of ps) await tryPlatform(p, user(p, i), []);
		await direct();
	}
	// Sequential: one task at a time; the order of the paths rotates task by task.
	const loadSeq = load();
	const seqP: PlatformSample[][] = ps.map(() => []);
	const seqD: number[] = [];
	for (let i = 0; i < SEQ; i++)
		for (let k = 0; k < paths; k++) {
			const j = (i + k) % paths;
			if (j === ps.length) seqD.push(await direct());
			else await tryPlatform(ps[j], user(ps[j], i), seqP[j]);
		}
	await sleep(200);
	console.log(`  sequential, ${SEQ} tasks per path, load average ${loadSeq}`);
	const sequential: Figures["sequential"][] = [];
	for (const [j, p] of ps.entries()) {
		sequential.push(report(`${p.name}, sequential`, seqP[j], seqD));
		reportSteps(await stepsOf(p, model, seqP[j]));
	}

	// Concurrent: CONCURRENCY clients at once, each cycling through the paths CONC_ROUNDS times.
	const loadConc = load();
	const conP: PlatformSample[][] = ps.map(() => []);
	const conD: number[] = [];
	const procCpu = (p: Platform) => p.procs.reduce((a, pr) => a + (cpuSeconds(pr.pid) ?? 0) * 1000, 0);
	const cpu0 = await Promise.all(
		ps.map(async p => ({ node: procCpu(p), pg: await pgBackendCpu(p.db.url, p.db.name) }))
	);
	await Promise.all(
		Array.from({ length: CONCURRENCY }, async (_, c) => {
			for (let k = 0; k < paths * CONC_ROUNDS; k++) {
				const j = (k + c) % paths;
				if (j === ps.length) conD.push(await direct());
				else await tryPlatform(ps[j], user(ps[j], c), conP[j]);
			}
		})
	);
	const cpu1 = await Promise.all(
		ps.map(async p => ({ node: procCpu(p), pg: await pgBackendCpu(p.db.url, p.db.name) }))
	);
	await sleep(200);
	console.log(`  ${CONCURRENCY} concurrent clients, ${CONC_ROUNDS} tasks each per path, load average ${loadConc}`);
	const concurrent: Figures["concurrent"][] = [];
	for (const [j, p] of ps.entries()) {
		concurrent.push(report(`${p.name}, ${CONCURRENCY} concurrent`, conP[j], conD));
		reportSteps(await stepsOf(p, model, conP[j]));
		// Paths of one platform share its processes: its CPU is shared over all their tasks.
		const n = ps.reduce((a, q, k) => a + (q.procs === p.procs ? conP[k].length : 0), 0);
		console.log(
			`    CPU per task (ms, the concurrent phase, background included${n !== conP[j].length ? ", over the platform's paths together" : ""}): node processes ${f((cpu1[j].node - cpu0[j].node) / n)}, ` +
				`PostgreSQL backends ${f(pgBackendCpuDelta(cpu0[j].pg, cpu1[j].pg) / n)}`
		);
	}
	for (const p of ps)
		if (p.errors.size)
			console.log(
				`  ${p.name}: failed tasks (left out): ${[...p.errors].map(([m, n]) => `${n}× ${m}`).join("; ")}`
			);
	return ps.map((_, j) => ({ sequential: sequential[j], concurrent: concurrent[j] }));
}

async function main() {
	console.log(`submit → first streamed token, added over a direct call — ${machine()}, load average ${load()}`);
	console.log(
		`fake OpenAI model in its own process (first token at once); AI_POLL_MS=${POLL_MS}, AI_CONCURRENCY=${SLOTS}, ${USERS} users; empty projects (no context.select)`
	);
	const commit = await commitLatency();
	console.log(
		`PostgreSQL: one committed single-row insert p50 ${f(commit.p50)} ms, p99 ${f(commit.p99)} ms (load average ${load()})`
	);
	if (FLOOR) {
		const fl = await floorOf();
		console.log(
			`floor: a bare Node HTTP server, one committed insert per request (pg.Pool of 10), answering 202: ` +
				`sequential p50 ${f(fl.seq.p50)} p99 ${f(fl.seq.p99)} ms; ${CONCURRENCY} concurrent p50 ${f(fl.conc.p50)} p99 ${f(fl.conc.p99)} ms ` +
				`(${fl.conc.n} requests, ${(fl.conc.n / fl.elapsedS).toFixed(0)}/s); CPU per request: server ${f(fl.cpu.server)} ms, ` +
				`PostgreSQL ${f(fl.cpu.pg)} ms, client ${f(fl.cpu.client)} ms (load average ${load()})`
		);
	}
	const model = await startModel();
	const results: Array<{ layout: string; name: string; r: Figures }> = [];
	try {
		for (const layout of LAYOUTS) {
			console.log(
				`\n${layout === "one" ? "one node: every service in one process" : "cluster: gateway (api), core (users, projects, payments), workers (tasks, ai, context-bridge, orgs)"} over NATS`
			);
			const ps: Platform[] = [];
			try {
				const own = await startPlatform(layout, model, "this checkout", ROOT);
				if (MODES.includes("get")) ps.push({ ...own, name: "this checkout, POST then GET" });
				if (MODES.includes("post"))
					ps.push({ ...own, name: "this checkout, POST with the stream", mode: "post", errors: new Map() });
				if (BASELINE) ps.push(await startPlatform(layout, model, "baseline", BASELINE));
				const figures = await measure(ps, model);
				for (const [j, p] of ps.entries()) results.push({ layout, name: p.name, r: figures[j] });
			} finally {
				const dropped = new Set<ChildProcess[]>();
				for (const p of ps) {
					if (dropped.has(p.procs)) continue;
					dropped.add(p.procs);
					await p.drop();
				}
			}
		}
	} finally {
		model.proc.kill("SIGTERM");
	}
	console.log(
		"\ntargets (issue #16): sequential p50 ≤ 4 ms on one node, ≤ 6 ms on the cluster; 50 concurrent p99 ≤ 15 ms"
	);
	for (const { layout, name, r } of results) {
		const seqTarget = layout === "one" ? 4 : 6;
		console.log(
			`  ${layout}, ${name}: sequential added p50 ${f(r.sequential.p50)} ms (${r.sequential.p50 <= seqTarget ? "met" : "not met"}); ` +
				`${CONCURRENCY} concurrent added p99 ${f(r.concurrent.p99)} ms (${r.concurrent.p99 <= 15 ? "met" : "not met"})`
		);
	}
	console.log(`load average at the end ${load()}`);
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
