/**
 * Task queue benchmark (a script, not a test):
 *  1. scheduling overhead: `TaskStore.lease` and the admission backlog query on a 2,000-task queue;
 *  2. end-to-end throughput: submit → dispatch → complete through `tasks.submit` (projects, users,
 *     payments, the fake ai worker with zero run time), against BullMQ's priority queue on the same
 *     Redis with a zero-latency worker;
 *  3. per-tier p50/p99 wait under a 5× overload, in two tier mixes run one after the other: a typical
 *     one (most submissions from free and pro users; team and enterprise together at 1× capacity)
 *     and equal shares (enterprise alone submits 1.25× capacity, so its wait grows with the length
 *     of the overload whatever the order: the run prints that floor next to the measured p99).
 * Run: node -r @swc-node/register bench/queue/run.ts   (options: N=1000 OVERLOAD_S=5 BENCH_PG_ADMIN_URL=… BENCH_REDIS_URL=…
 * PARTS=sched,e2e,overload — a comma list of the parts to run, all by default; MIXES=typical,equal;
 * DB_NAMED_STATEMENTS=false for the lease as an unnamed statement; FINISHED_ROWS=1000000 measures the
 * scheduling part on an empty database and one with that many finished tasks, in turns; stale, then analyzed statistics;
 * BENCH_CPU_PROF=<dir> writes a V8 CPU profile of the end-to-end part's measured window there;
 * BENCH_PG_STATEMENT_CPU=1 prints the PostgreSQL backend CPU per statement group;
 * BENCH_EXPLAIN=1 prints, for each database of the scheduling part, the plans PostgreSQL ran for a
 * one-slot lease, a 16-slot lease and the admission backlog query, nested statements included
 * (auto_explain), with the pages each plan node touched)
 */
import { randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import os from "node:os";
import path from "node:path";
import { Queue, Worker } from "bullmq";
import pg from "pg";
import { QueryTypes } from "sequelize";
import { TIERS, TIER_ORDER, type TierName } from "../../src/domain/tiers";
import { percentile } from "../../src/tasks/rules";
import { TaskStore } from "../../src/tasks/store";
import { createTestDatabase, REDIS_URL, startTestNode } from "../../test/support/env";
import { fakeAiWorker } from "../../test/support/fake-ai-worker";
import { admin, seedQueue } from "../../test/support/task-store-node";
import { pgBackendCpu, pgBackendCpuDelta } from "../support/cpu";
import { machine } from "../support/machine";

const N = Number(process.env.N ?? 1000);
const OVERLOAD_S = Number(process.env.OVERLOAD_S ?? 5);
/** Finished tasks written into the table for a second scheduling measurement (0: only the empty table's). */
const FINISHED_ROWS = Number(process.env.FINISHED_ROWS ?? 0);
const PARTS = new Set((process.env.PARTS ?? "sched,e2e,overload").split(",").map(p => p.trim()));

/** Shares of the submissions per tier (free, pro, team, enterprise), in percent. */
const MIXES: Record<string, Record<TierName, number>> = {
	typical: { free: 50, pro: 30, team: 12, enterprise: 8 },
	equal: { free: 25, pro: 25, team: 25, enterprise: 25 }
};
const MIX_NAMES = (process.env.MIXES ?? "typical,equal")
	.split(",")
	.map(m => m.trim())
	.filter(m => m in MIXES);

/** The tier of each submission: smooth weighted round robin over the shares (deterministic, evenly spread). */
function tierSequence(shares: Record<TierName, number>, n: number): TierName[] {
	const current = Object.fromEntries(TIER_ORDER.map(t => [t, 0])) as Record<TierName, number>;
	const sum = TIER_ORDER.reduce((a, t) => a + shares[t], 0);
	const out: TierName[] = [];
	for (let i = 0; i < n; i++) {
		for (const t of TIER_ORDER) current[t] += shares[t];
		const pick = TIER_ORDER.reduce((best, t) => (current[t] > current[best] ? t : best), TIER_ORDER[0]);
		current[pick] -= sum;
		out.push(pick);
	}
	return out;
}
const ms = (n: number | null) => (n === null ? "–" : n.toFixed(n < 10 ? 2 : 0));

type Node = Awaited<ReturnType<typeof startTestNode>>;

/**
 * Statements counted, not estimated: every query any pg client of this process sends while
 * `counting` is on (Sequelize's BEGIN/COMMIT included, the timers' queries too), except the
 * bench's own, marked with a leading comment. Grouped by the statement's opening text.
 */
const BENCH = "/* bench */ ";
const statements = new Map<string, number>();
let counting = false;
/**
 * BENCH_PG_STATEMENT_CPU=1: the CPU time of the PostgreSQL backend per statement group, from the
 * backend's /proc/<pid>/schedstat (ns on the CPU) read when each statement's answer arrives: a
 * connection runs one statement at a time, so what its backend ran since its previous answer is this
 * statement's (idle backends do not run). Costs this process a file read per statement.
 */
const STATEMENT_CPU = process.env.BENCH_PG_STATEMENT_CPU === "1";
const statementCpuNs = new Map<string, number>();
const backendNs = new Map<number, number>();
function readBackendNs(pid: number): number | null {
	try {
		return Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]);
	} catch {
		return null;
	}
}
function chargeStatement(pid: number | undefined, key: string) {
	if (!pid) return;
	const ns = readBackendNs(pid);
	if (ns === null) return;
	const before = backendNs.get(pid);
	backendNs.set(pid, ns);
	if (before !== undefined && counting) statementCpuNs.set(key, (statementCpuNs.get(key) ?? 0) + ns - before);
}
/**
 * BENCH_EXPLAIN=1: the last lease (1 and 16 slots) and backlog statements the store sent, replayed in
 * a rolled-back transaction on a session with auto_explain (explain below).
 */
const EXPLAIN = process.env.BENCH_EXPLAIN === "1";
const explained = new Map<string, { text: string; values: unknown[] }>();
const sendQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown;
(pg.Client.prototype as { query: unknown }).query = function (this: pg.Client, ...args: unknown[]) {
	const q = args[0] as string | { text?: string; name?: string; values?: unknown[] };
	const text = typeof q === "string" ? q : (q?.text ?? q?.name ?? "");
	if (EXPLAIN && typeof q === "object" && q?.values) {
		if (text.includes("FROM tasks_lease("))
			explained.set(`lease, ${String(q.values[2])} slot(s)`, { text, values: q.values });
		else if (text.includes("tasks_eligible_ranked") && text.includes("tasks_running_count() AS running FROM v"))
			explained.set("admission backlog query", { text, values: q.values });
	}
	const key = text.replace(/\s+/g, " ").trim().slice(0, 70);
	if (counting && !text.startsWith(BENCH)) statements.set(key, (statements.get(key) ?? 0) + 1);
	if (!STATEMENT_CPU) return sendQuery.apply(this, args);
	const pid = (this as unknown as { processID?: number }).processID;
	const last = args.length - 1;
	if (typeof args[last] === "function") {
		const cb = args[last] as (...a: unknown[]) => unknown;
		args[last] = (...a: unknown[]) => {
			chargeStatement(pid, key);
			return cb(...a);
		};
		return sendQuery.apply(this, args);
	}
	const r = sendQuery.apply(this, args) as { then?: unknown } | undefined;
	if (r && typeof r.then === "function")
		(r as Promise<unknown>).then(
			() => chargeStatement(pid, key),
			() => chargeStatement(pid, key)
		);
	return r;
};
function countStatements<T>(fn: () => Promise<T>): Promise<{ value: T; total: number; top: Array<[string, number]> }> {
	statements.clear();
	statementCpuNs.clear();
	counting = true;
	return fn().then(
		value => {
			counting = false;
			const top = [...statements.entries()].sort((a, b) => b[1] - a[1]);
			return { value, total: top.reduce((a, [, n]) => a + n, 0), top };
		},
		err => {
			counting = false;
			throw err;
		}
	);
}

async function users(node: Node, tier: TierName, n: number) {
	const out: Array<{ id: string; projectId: string }> = [];
	for (let i = 0; i < n; i++) {
		const id = randomUUID();
		await node.runtime.sequelize.query(`INSERT INTO users (id, email, tier_override) VALUES ($1, $2, $3)`, {
			bind: [id, `${id}@bench.test`, tier === "free" ? null : tier]
		});
		const meta = { user: { id, role: "user", scopes: ["*"] } };
		const p = (await node.broker.call("projects.create", { name: `bench-${i}` }, { meta })) as { id: string };
		await node.broker.call("payments.grant", {
			userId: id,
			credits: 100_000_000,
			operator: "bench",
			reason: "bench",
			key: `g-${id}`
		});
		out.push({ id, projectId: p.id });
	}
	return out;
}

const submit = (node: Node, u: { id: string; projectId: string }, i: number) =>
	node.broker.call(
		"tasks.submit",
		{ projectId: u.projectId, kind: "chat", prompt: `bench ${i}` },
		{ meta: { user: { id: u.id, role: "user", scopes: ["*"] } } }
	);

async function pool<T>(items: T[], concurrency: number, fn: (x: T, i: number) => Promise<unknown>) {
	let next = 0;
	await Promise.all(
		Array.from({ length: concurrency }, async () => {
			while (next < items.length) {
				const i = next++;
				await fn(items[i], i).catch(() => undefined);
			}
		})
	);
}

async function waitAllDone(node: Node, timeoutMs = 300_000) {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const [r] = await node.runtime.sequelize.query<{ n: string }>(
			`${BENCH}SELECT count(*) AS n FROM tasks WHERE state IN ('queued', 'running') OR settlement = 'pending'`,
			{ type: QueryTypes.SELECT }
		);
		if (Number(r.n) === 0) return;
		if (Date.now() > end) throw new Error("tasks did not drain");
		await new Promise(r => setTimeout(r, 20));
	}
}

/** The 2,000 queued tasks of a scheduling measurement (50 users, 4 tiers, boosts 0–90 s). */
const fillQueue = (store: TaskStore) => seedQueue(store, { tasks: 2_000, users: 50, now: Date.now() });

/**
 * FINISHED_ROWS: that many finished (succeeded, settled) tasks written in one INSERT … SELECT over
 * generate_series, older than the queue, spread over 5,000 users (the queue's 50 among them), with
 * boosts, results and usage like real rows. Project id `prefill`, so a phase's reset keeps them.
 */
async function prefillFinished(url: string, n: number) {
	// Its own connection: the node's pool has a statement timeout, and 1,000,000 rows take longer.
	const c = new pg.Client({ connectionString: url });
	await c.connect();
	try {
		await c.query(`SET statement_timeout = 0`);
		for (let from = 1; from <= n; from += 200_000)
			await c.query(
				`${BENCH}INSERT INTO tasks (id, user_id, project_id, tier, kind, prompt, request, prepared, request_hash, max_cost_credits,
			boost_ms, state, attempts, max_attempts, enqueued_at, started_at, last_started_at, finished_at, result, usage, cost_credits,
			settlement, created_at, updated_at)
		 SELECT gen_random_uuid(), 'u' || (g % 5000), 'prefill', (ARRAY['free', 'pro', 'team', 'enterprise'])[1 + g % 4], 'chat',
			'finished prompt ' || g, '{}'::jsonb,
			'{"models":[{"model":"m","group":"g","provider":"p"}],"promptTokens":10,"contextTokensBudget":0,"maxOutputTokens":100,"maxCostCredits":10}'::jsonb,
			'h', 10, (g % 4) * 30000, 'succeeded', 1, 3, t, t + interval '1 second', t + interval '1 second', t + interval '3 seconds',
			jsonb_build_object('text', 'answer ' || g), '{"promptTokens":10,"completionTokens":20}'::jsonb, 5, 'settled', t, t
		 FROM generate_series($1::integer, $2::integer) g, LATERAL (SELECT now() - interval '40 days' + g * interval '2 seconds' AS t) x`,
				[from, Math.min(n, from + 199_999)]
			);
	} finally {
		await c.end();
	}
}

interface SchedFigures {
	label: string;
	one: number[];
	batch: number[];
	admission: number[];
	queued: number;
}

interface Side {
	label: string;
	node: Node;
	store: TaskStore;
	finish(ids: string[]): Promise<unknown>;
}

/**
 * A database ready for a measurement, on a fresh node (new connections, so the lease's plans are made
 * on the table as it is now): its queue reset to the same 2,000 tasks, then VACUUM (as autovacuum
 * would have; no ANALYZE, so column statistics stay what they were).
 */
async function openSide(db: Awaited<ReturnType<typeof createTestDatabase>>, label: string): Promise<Side> {
	// DB_NAMED_STATEMENTS=false measures the lease as an unnamed statement (transaction-mode poolers).
	const node = await startTestNode({
		db,
		services: ["tasks"],
		env: { LOG_LEVEL: "error", DB_NAMED_STATEMENTS: process.env.DB_NAMED_STATEMENTS ?? "true" }
	});
	const store = new TaskStore(node.runtime.sequelize, TIERS, node.config.dbNamedStatements);
	await node.runtime.sequelize.query(`${BENCH}DELETE FROM tasks WHERE project_id = 'p'`);
	await fillQueue(store);
	await admin(db.url, `${BENCH}VACUUM tasks`);
	// Leased tasks are finished at once (outside the timing), so per-user caps stay as in steady state.
	const finish = (ids: string[]) =>
		node.runtime.sequelize.query(
			`${BENCH}UPDATE tasks SET state = 'succeeded', lease_id = NULL, lease_expires_at = NULL WHERE id = ANY($1::uuid[])`,
			{ bind: [ids] }
		);
	return { label, node, store, finish };
}

/**
 * 300 one-slot leases, 50 16-slot leases and 100 admission backlog queries on each side, the sides
 * taking turns call by call, so both see the same load of a shared machine.
 */
async function measureSides(sides: Side[]): Promise<SchedFigures[]> {
	const out = sides.map(s => ({
		label: s.label,
		one: [] as number[],
		batch: [] as number[],
		admission: [] as number[]
	}));
	const lease = async (s: Side, slots: number) => {
		const t = performance.now();
		const got = await s.store.lease({
			nodeId: "bench",
			slots,
			now: Date.now(),
			leaseMs: 60_000,
			totalWorkers: 100_000
		});
		const ms = performance.now() - t;
		await s.finish(got.map(r => r.id));
		return ms / Math.max(1, slots === 1 ? 1 : got.length);
	};
	for (let i = 0; i < 300; i++) for (const [k, s] of sides.entries()) out[k].one.push(await lease(s, 1));
	for (let i = 0; i < 50; i++) for (const [k, s] of sides.entries()) out[k].batch.push(await lease(s, 16));
	for (let i = 0; i < 100; i++)
		for (const [k, s] of sides.entries()) {
			const t = performance.now();
			await s.store.backlog(Date.now());
			out[k].admission.push(performance.now() - t);
		}
	return out.map(o => ({ ...o, queued: 2_000 - 300 - 50 * 16 }));
}

/**
 * The plans of the recorded statements on `url`'s database as they run now (a new session, so plans
 * are made on the table's statistics as they are): auto_explain with nested statements and buffers,
 * inside a transaction that is rolled back (the leases are undone). Repeated nested plans (the lease
 * function runs its UPDATE once per task) are printed once, with how many times they ran.
 */
async function explain(url: string, label: string) {
	const c = new pg.Client({ connectionString: url });
	await c.connect();
	const notices: string[] = [];
	c.on("notice", n => notices.push(n.message ?? ""));
	try {
		await c.query(`${BENCH}LOAD 'auto_explain'`);
		await c.query(
			`${BENCH}SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on; SET auto_explain.log_analyze = on;
			 SET auto_explain.log_timing = off; SET auto_explain.log_buffers = on; SET auto_explain.log_level = notice`
		);
		for (const [what, st] of explained) {
			notices.length = 0;
			await c.query("BEGIN");
			await sendQuery.call(c, { text: st.text, values: st.values });
			await c.query("ROLLBACK");
			const seen = new Map<string, number>();
			for (const n of notices) {
				const plan = n.replace(/^duration: [\d.]+ ms\s*/, "").trim();
				seen.set(plan, (seen.get(plan) ?? 0) + 1);
			}
			console.log(`\nplans, ${label}, ${what} (auto_explain, nested statements; pages touched as Buffers):`);
			for (const [plan, times] of seen) console.log(`  [ran ${times}×]\n    ${plan.split("\n").join("\n    ")}`);
		}
	} finally {
		await c.end();
	}
}

async function measureAndClose(sides: Side[], urls: string[] = []) {
	try {
		const out = await measureSides(sides);
		if (EXPLAIN) for (const [i, s] of sides.entries()) if (urls[i]) await explain(urls[i], s.label);
		return out;
	} finally {
		for (const s of sides) await s.node.stop();
	}
}

/**
 * The scheduling SQL on a 2,000-task queue; with FINISHED_ROWS, next to a second database holding the
 * same queue and that many finished tasks, measured in turns in the same run: first with the planner
 * statistics of the small table (ANALYZE before the prefill, autovacuum off for the table, VACUUM
 * after: row counts current, column statistics stale, as between two autovacuum analyses), then after
 * ANALYZE.
 */
async function schedulingOverhead(): Promise<SchedFigures[][]> {
	const empty = await createTestDatabase("ff_bench");
	const full = FINISHED_ROWS > 0 ? await createTestDatabase("ff_bench") : null;
	try {
		if (!full) return [await measureAndClose([await openSide(empty, "empty table")], [empty.url])];
		const t = performance.now();
		const node = await startTestNode({ db: full, services: ["tasks"], env: { LOG_LEVEL: "error" } });
		try {
			await fillQueue(new TaskStore(node.runtime.sequelize, TIERS, node.config.dbNamedStatements));
		} finally {
			await node.stop();
		}
		await admin(full.url, `${BENCH}ANALYZE tasks; ALTER TABLE tasks SET (autovacuum_enabled = false)`);
		await prefillFinished(full.url, FINISHED_ROWS);
		const prefillS = (performance.now() - t) / 1000;
		const rows = FINISHED_ROWS.toLocaleString("en");
		const stale = await measureAndClose(
			[
				await openSide(empty, "empty table"),
				await openSide(full, `${rows} finished, stale statistics (prefill ${prefillS.toFixed(0)} s)`)
			],
			[empty.url, full.url]
		);
		await admin(full.url, `${BENCH}ANALYZE tasks`);
		const analyzed = await measureAndClose(
			[await openSide(empty, "empty table"), await openSide(full, `${rows} finished, analyzed`)],
			[empty.url, full.url]
		);
		return [stale, analyzed];
	} finally {
		await empty.drop();
		await full?.drop();
	}
}

/** Busy and total CPU time of the whole machine (all processes, PostgreSQL and Redis included), ms. */
function machineCpu() {
	let busy = 0;
	let total = 0;
	for (const c of os.cpus()) {
		const t = c.times;
		busy += t.user + t.nice + t.sys + t.irq;
		total += t.user + t.nice + t.sys + t.irq + t.idle;
	}
	return { busy, total };
}

/**
 * CPU spent while `fn` runs: this process's (user + system), the whole machine's busy share, and with
 * BENCH_CPU_PROF=<dir> a V8 CPU profile of this process (open it in Chrome DevTools or speedscope).
 */
async function measureCpu<T>(label: string, fn: () => Promise<T>) {
	const dir = process.env.BENCH_CPU_PROF;
	const session = dir ? new Session() : null;
	if (session) {
		session.connect();
		await session.post("Profiler.enable");
		await session.post("Profiler.start");
	}
	const m0 = machineCpu();
	const c0 = process.cpuUsage();
	const value = await fn();
	const c = process.cpuUsage(c0);
	const m1 = machineCpu();
	if (session && dir) {
		const { profile } = await session.post("Profiler.stop");
		mkdirSync(dir, { recursive: true });
		const file = path.join(dir, `queue-${label}-${Date.now()}.cpuprofile`);
		writeFileSync(file, JSON.stringify(profile));
		console.log(`  CPU profile: ${file}`);
		session.disconnect();
	}
	return {
		value,
		processCpuMs: (c.user + c.system) / 1000,
		machineBusyShare: (m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)
	};
}

async function endToEnd() {
	const db = await createTestDatabase("ff_bench");
	const node = await startTestNode({
		db,
		services: ["tasks", "users", "projects", "payments"],
		extraServices: [fakeAiWorker({ slots: 32, runMs: 0, deltas: 0, pollMs: 20 })],
		env: {
			LOG_LEVEL: "error",
			TASKS_SNAPSHOT_MS: "1000",
			TASKS_ADMISSION_FREE_DEFER_MS: "100000000",
			TASKS_ADMISSION_FREE_REJECT_MS: "100000000"
		}
	});
	try {
		const us = await users(node, "team", 20);
		const pg0 = await pgBackendCpu(db.url, db.name, BENCH);
		const t = performance.now();
		const cpu = await measureCpu("e2e", () =>
			countStatements(async () => {
				await pool(
					Array.from({ length: N }, (_, i) => i),
					32,
					(_x, i) => submit(node, us[i % us.length], i)
				);
				await waitAllDone(node);
			})
		);
		const counted = cpu.value;
		const pgCpuMs = pgBackendCpuDelta(pg0, await pgBackendCpu(db.url, db.name, BENCH));
		return {
			pgCpuMsPerTask: pgCpuMs / N,
			rate: N / ((performance.now() - t) / 1000),
			statements: counted.total / N,
			top: counted.top,
			cpuMsPerTask: cpu.processCpuMs / N,
			machineBusyShare: cpu.machineBusyShare
		};
	} finally {
		await node.stop();
		await db.drop();
	}
}

async function bullmq() {
	const name = `ffbench-${randomUUID().slice(0, 8)}`;
	const url = new URL(REDIS_URL);
	const connection = { host: url.hostname, port: Number(url.port || 6379) };
	const queue = new Queue(name, { connection });
	let done = 0;
	let resolveDone: () => void = () => undefined;
	const finished = new Promise<void>(r => (resolveDone = r));
	const worker = new Worker(name, async () => undefined, { connection, concurrency: 32 });
	worker.on("completed", () => {
		if (++done === N) resolveDone();
	});
	const t = performance.now();
	await pool(
		Array.from({ length: N }, (_, i) => i),
		32,
		(_x, i) => queue.add("job", { i }, { priority: 1 + (i % 4), removeOnComplete: true })
	);
	await finished;
	const rate = N / ((performance.now() - t) / 1000);
	await worker.close();
	await queue.obliterate({ force: true });
	await queue.close();
	return rate;
}

async function overload(shares: Record<TierName, number>) {
	const db = await createTestDatabase("ff_bench");
	const slots = 4;
	const runMs = 200;
	const node = await startTestNode({
		db,
		services: ["tasks", "users", "projects", "payments"],
		extraServices: [fakeAiWorker({ slots, runMs, deltas: 0, pollMs: 20 })],
		// Thresholds scaled to a seconds-long overload (the tier table's are minutes).
		env: {
			LOG_LEVEL: "error",
			TASKS_DEFAULT_RUN_MS: String(runMs),
			TASKS_SNAPSHOT_MS: "250",
			TASKS_ADMISSION_FREE_DEFER_MS: "1000",
			TASKS_ADMISSION_FREE_REJECT_MS: "3000",
			TASKS_ADMISSION_PRO_DEFER_MS: "3000",
			TASKS_ADMISSION_PRO_REJECT_MS: "9000"
		}
	});
	try {
		const byTier = Object.fromEntries(
			await Promise.all(TIER_ORDER.map(async t => [t, await users(node, t, 16)] as const))
		) as Record<TierName, Array<{ id: string; projectId: string }>>;
		const capacityPerS = (slots * 1000) / runMs;
		const rate = capacityPerS * 5;
		const total = Math.round(rate * OVERLOAD_S);
		const outcome = { accepted: 0, deferred: 0, refused: 0 };
		const calls: Promise<unknown>[] = [];
		const sequence = tierSequence(shares, total);
		const seen = Object.fromEntries(TIER_ORDER.map(t => [t, 0])) as Record<TierName, number>;
		const t0 = performance.now();
		for (let i = 0; i < total; i++) {
			const tier = sequence[i];
			const u = byTier[tier][seen[tier]++ % byTier[tier].length];
			calls.push(
				submit(node, u, i).then(
					r =>
						(r as { admission: { action: string } }).admission.action === "deferred"
							? outcome.deferred++
							: outcome.accepted++,
					() => outcome.refused++
				)
			);
			await new Promise(r => setTimeout(r, 1000 / rate));
		}
		const submitS = (performance.now() - t0) / 1000;
		const windowEnd = new Date();
		await Promise.all(calls);
		await waitAllDone(node);
		const rows = await node.runtime.sequelize.query<{ tier: TierName; wait: number }>(
			`SELECT tier, extract(epoch FROM started_at - created_at) * 1000 AS wait FROM tasks`,
			{ type: QueryTypes.SELECT }
		);
		const waits = Object.fromEntries(
			TIER_ORDER.map(t => {
				const xs = rows.filter(r => r.tier === t).map(r => Number(r.wait));
				return [t, { n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99) }];
			})
		) as Record<TierName, { n: number; p50: number | null; p99: number | null }>;
		// What the workers started while the submissions went on, per tier (tasks/s).
		const during = await node.runtime.sequelize.query<{ tier: TierName; n: string }>(
			`SELECT tier, count(*) AS n FROM tasks WHERE started_at <= $1 GROUP BY tier`,
			{ type: QueryTypes.SELECT, bind: [windowEnd] }
		);
		const startedPerS = Object.fromEntries(
			TIER_ORDER.map(t => [t, Number(during.find(d => d.tier === t)?.n ?? 0) / submitS])
		) as Record<TierName, number>;
		// However the queue is ordered, enterprise tasks beyond what the capacity can start during the
		// submissions wait at least for that excess to drain: the last one no less than this.
		const enterpriseSubmitted = seen.enterprise;
		const floorMs = Math.max(0, (enterpriseSubmitted - capacityPerS * submitS) / capacityPerS) * 1000;
		return {
			total,
			rate,
			capacityPerS,
			outcome,
			waits,
			submitS,
			enterpriseFloorMs: floorMs,
			submitted: seen,
			startedPerS
		};
	} finally {
		await node.stop();
		await db.drop();
	}
}

async function main() {
	console.log(
		`machine: ${machine()}, load average ${os
			.loadavg()
			.map(l => l.toFixed(2))
			.join(" ")}`
	);
	if (PARTS.has("sched")) {
		const pct = (xs: number[], ys: number[]) => {
			const a = percentile(xs, 50);
			const b = percentile(ys, 50);
			return a === null || b === null
				? ""
				: `  ${((a / b - 1) * 100).toFixed(0).padStart(4)} % vs empty (target ≤ 10 %)`;
		};
		for (const round of await schedulingOverhead()) {
			const base = round[0];
			for (const s of round) {
				const vs = (pick: (f: SchedFigures) => number[]) => (s === base ? "" : pct(pick(s), pick(base)));
				console.log(
					`\nscheduling overhead, ${s.label} (2,000 queued at start, 50 users, 4 tiers; ms per leased task):`
				);
				console.log(
					`  lease 1 slot:     p50 ${ms(percentile(s.one, 50))}  p99 ${ms(percentile(s.one, 99))}${vs(f => f.one)}`
				);
				console.log(
					`  lease 16 slots:   p50 ${ms(percentile(s.batch, 50))}  p99 ${ms(percentile(s.batch, 99))}  (per task)${vs(f => f.batch)}`
				);
				console.log(
					`  admission query:  p50 ${ms(percentile(s.admission, 50))}  p99 ${ms(percentile(s.admission, 99))}  (~${s.queued} queued)${vs(f => f.admission)}`
				);
			}
		}
	}
	if (PARTS.has("e2e")) {
		const e2e = await endToEnd();
		const bull = await bullmq();
		console.log(`\nthroughput, submit → dispatch → complete, zero-latency worker, N=${N}:`);
		console.log(
			`  forgefluid tasks (reserve + insert + lease + complete + settle): ${e2e.rate.toFixed(0)} tasks/s`
		);
		console.log(`  BullMQ priority queue, same Redis (add + process):              ${bull.toFixed(0)} jobs/s`);
		console.log(`  ratio: ${(e2e.rate / bull).toFixed(3)}× BullMQ`);
		console.log(
			`  CPU of this process (every service, the worker, the bench): ${e2e.cpuMsPerTask.toFixed(2)} ms per task; ` +
				`the machine was ${(e2e.machineBusyShare * 100).toFixed(0)} % busy (all processes, PostgreSQL included)`
		);
		console.log(
			`  CPU of the PostgreSQL backends serving the bench's database (/proc): ${e2e.pgCpuMsPerTask.toFixed(2)} ms per task`
		);
		console.log(`  SQL statements per task, counted (every pg query of the process): ${e2e.statements.toFixed(1)}`);
		for (const [text, n] of e2e.top.slice(0, 25)) {
			const ns = statementCpuNs.get(text);
			const cpu = STATEMENT_CPU
				? `${ns === undefined ? "" : ((ns / n / 1000).toFixed(0) + " µs").padStart(9)} `
				: "";
			console.log(`    ${(n / N).toFixed(2).padStart(6)}  ${cpu} ${text}`);
		}
		if (STATEMENT_CPU) {
			const total = [...statementCpuNs.values()].reduce((a, b) => a + b, 0);
			console.log(
				`  (µs: PostgreSQL backend CPU per statement, BENCH_PG_STATEMENT_CPU; all statements together ${(total / N / 1e6).toFixed(2)} ms per task)`
			);
		}
	}
	if (PARTS.has("overload")) {
		for (const mix of MIX_NAMES) {
			const shares = MIXES[mix];
			const o = await overload(shares);
			const mixText = TIER_ORDER.map(t => `${t} ${shares[t]} %`).join(", ");
			console.log(
				`\n5× overload, ${mix} mix (${mixText}): ${o.total} submissions at ${o.rate}/s (sent in ${o.submitS.toFixed(1)} s) for capacity ${o.capacityPerS}/s: accepted ${o.outcome.accepted}, deferred ${o.outcome.deferred}, refused ${o.outcome.refused}`
			);
			console.log(`  wait (submission → start), ms:`);
			for (const t of TIER_ORDER)
				console.log(
					`  ${t.padEnd(10)} n=${String(o.waits[t].n).padStart(4)}  p50 ${ms(o.waits[t].p50).padStart(6)}  p99 ${ms(o.waits[t].p99).padStart(6)}`
				);
			const ratio = (t: TierName) => (((o.waits[t].p99 ?? 0) / (o.waits.free.p99 ?? 1)) * 100).toFixed(1);
			console.log(
				`  p99 / free p99: enterprise ${ratio("enterprise")} % (target ≤ 10 %), team ${ratio("team")} %, pro ${ratio("pro")} %`
			);
			console.log(
				`  started while submitting, per s: ${TIER_ORDER.map(t => `${t} ${o.startedPerS[t].toFixed(1)}`).join(", ")} (total ${TIER_ORDER.reduce((a, t) => a + o.startedPerS[t], 0).toFixed(1)})`
			);
			const served = TIER_ORDER.reduce((a, t) => a + o.startedPerS[t], 0);
			const floorServed = Math.max(0, (o.submitted.enterprise - served * o.submitS) / served) * 1000;
			console.log(
				`  enterprise demand ${((o.submitted.enterprise / o.submitS / o.capacityPerS) * 100).toFixed(0)} % of capacity; the last enterprise task waits, under any order, at least ` +
					`${ms(o.enterpriseFloorMs)} ms at the nominal ${o.capacityPerS}/s, ${ms(floorServed)} ms at the ${served.toFixed(1)}/s started while submitting`
			);
		}
	}
	process.exit(0);
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
