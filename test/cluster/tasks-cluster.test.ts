/**
 * The task queue across processes over the real NATS: a core node (gateway, users, projects,
 * payments, tasks), a second tasks replica, and two fake ai worker nodes pulling concurrently.
 * No task runs twice at once; a worker killed mid-task has its task re-queued by the lease sweeper
 * and completed elsewhere, with exactly one settlement.
 */
import { randomUUID } from "node:crypto";
import Redis from "ioredis";
import { ServiceBroker } from "moleculer";
import { Client } from "pg";
import { loadConfig } from "../../src/config";
import { bearerFor, createTestDatabase, isolatedEnv, NATS_URL, REDIS_URL, type TestDatabase } from "../support/env";
import { spawnNode, type SpawnedNode } from "../support/cluster";
import type { FakeRun } from "../support/fake-ai-worker";

jest.setTimeout(120_000);

let db: TestDatabase;
let pg: Client;
let redis: Redis;
let client: ServiceBroker;
const nodes: SpawnedNode[] = [];

async function waitFor<T>(
	fn: () => Promise<T | null | undefined | false>,
	timeoutMs: number,
	stepMs = 100
): Promise<T> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const v = await fn();
		if (v) return v;
		if (Date.now() > end) throw new Error("condition not reached in time");
		await new Promise(r => setTimeout(r, stepMs));
	}
}

afterAll(async () => {
	await Promise.all(nodes.map(n => n.kill("SIGKILL")));
	await client?.stop().catch(() => undefined);
	redis?.disconnect();
	await pg?.end().catch(() => undefined);
	await db?.drop();
});

test("two worker nodes and two tasks replicas: no double run; a killed worker's task completes elsewhere, settled once", async () => {
	db = await createTestDatabase();
	const env = isolatedEnv(db, {
		TRANSPORTER: NATS_URL,
		HEARTBEAT_INTERVAL_S: "1",
		HEARTBEAT_TIMEOUT_S: "3",
		TASKS_LEASE_MS: "1500",
		TASKS_SWEEP_MS: "250",
		TASKS_SNAPSHOT_MS: "250",
		RATE_LIMIT_PER_MINUTE: "100000",
		WORKER_RUN_MS: "1000",
		WORKER_SLOTS: "2",
		LOG_LEVEL: "error"
	});
	const core = await spawnNode(
		"test/cluster/tasks-node-main.ts",
		{ ...env, ROLE: "core", NODE_ID: "core-1" },
		60_000
	);
	nodes.push(core);
	const [tasks2, w1, w2] = await Promise.all([
		spawnNode("test/cluster/tasks-node-main.ts", { ...env, ROLE: "tasks", NODE_ID: "tasks-2" }, 60_000),
		spawnNode("test/cluster/tasks-node-main.ts", { ...env, ROLE: "worker", NODE_ID: "worker-1" }, 60_000),
		spawnNode("test/cluster/tasks-node-main.ts", { ...env, ROLE: "worker", NODE_ID: "worker-2" }, 60_000)
	]);
	nodes.push(tasks2, w1, w2);

	client = new ServiceBroker({
		namespace: env.NAMESPACE,
		nodeID: `test-client-${randomUUID().slice(0, 8)}`,
		transporter: { type: "NATS", options: { url: NATS_URL } },
		logger: false
	});
	await client.start();
	await client.waitForServices(["tasks", "payments", "ai"], 20_000);
	pg = new Client({ connectionString: db.url });
	await pg.connect();
	redis = new Redis(REDIS_URL);
	const config = loadConfig(env);
	const http = (method: string, path: string, token: string, body?: unknown) =>
		fetch(`http://127.0.0.1:${core.port}/api/v1${path}`, {
			method,
			headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
			body: body ? JSON.stringify(body) : undefined
		}).then(async r => ({ status: r.status, body: (await r.json()) as Record<string, any> }));

	// Both workers' capacity is visible to tasks (2 × 2 slots).
	await waitFor(
		async () => ((await client.call("tasks.refreshStats")) as { capacity: number }).capacity === 4,
		20_000
	);

	const users: Array<{ id: string; token: string; projectId: string }> = [];
	for (let i = 0; i < 5; i++) {
		const id = randomUUID();
		await pg.query(`INSERT INTO users (id, email, tier_override) VALUES ($1, $2, 'pro')`, [
			id,
			`${id}@example.test`
		]);
		const token = bearerFor(config, id);
		const p = await http("POST", "/projects", token, { name: `p${i}` });
		expect(p.status).toBe(201);
		await client.call("payments.grant", {
			userId: id,
			credits: 100_000,
			operator: "test",
			reason: "cluster test",
			key: `g-${id}`
		});
		users.push({ id, token, projectId: p.body.id });
	}
	const ids: string[] = [];
	for (let i = 0; i < 20; i++) {
		const u = users[i % users.length];
		const r = await http("POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: `cluster ${i}`
		});
		expect(r.status).toBe(202);
		ids.push(r.body.task.id);
	}

	const runsKey = `${env.REDIS_PREFIX}test:runs`;
	const readRuns = async () => (await redis.lrange(runsKey, 0, -1)).map(s => JSON.parse(s) as FakeRun);
	// Kill worker-2 while it is in the middle of a task.
	const victim = await waitFor(
		async () => {
			const runs = await readRuns();
			const started = runs.filter(r => r.nodeID === "worker-2" && r.endedAt === undefined);
			const ended = new Set(runs.filter(r => r.endedAt !== undefined).map(r => `${r.taskId}:${r.attempt}`));
			return started.find(r => !ended.has(`${r.taskId}:${r.attempt}`) && Date.now() - r.startedAt < 600);
		},
		30_000,
		20
	);
	await w2.kill("SIGKILL");
	const killedAt = Date.now();

	await waitFor(
		async () => {
			const r = await pg.query(
				`SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1::uuid[]) AND state = 'succeeded'`,
				[ids]
			);
			return r.rows[0].n === ids.length;
		},
		60_000,
		200
	);

	// The killed task: re-queued after the lease expired, run again on worker-1, attempt 2.
	const t = (await pg.query(`SELECT attempts, node_id, state, error FROM tasks WHERE id = $1`, [victim.taskId]))
		.rows[0];
	expect(t).toMatchObject({ state: "succeeded", attempts: 2, node_id: "worker-1", error: null });

	// No task ran twice at once: runs of the same task never overlap (the killed run ends at the kill).
	const runs = (await readRuns()).filter(r => r.endedAt !== undefined || r.nodeID === "worker-2");
	const final = new Map<string, FakeRun>();
	for (const r of runs)
		final.set(`${r.taskId}:${r.attempt}:${r.nodeID}`, {
			...final.get(`${r.taskId}:${r.attempt}:${r.nodeID}`),
			...r
		});
	const byTask = new Map<string, FakeRun[]>();
	for (const r of final.values()) byTask.set(r.taskId, [...(byTask.get(r.taskId) ?? []), r]);
	for (const [, list] of byTask) {
		const spans = list.map(r => [r.startedAt, r.endedAt ?? killedAt] as const).sort((a, b) => a[0] - b[0]);
		for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
	}
	expect(byTask.get(victim.taskId)!.length).toBe(2);
	// Work was spread over both workers.
	expect(new Set([...final.values()].map(r => r.nodeID))).toEqual(new Set(["worker-1", "worker-2"]));

	// Exactly one settlement per task, at the reported cost. A task is settled after its state is
	// written (and before it is announced); the sweeper retries a settlement that failed, so wait.
	await waitFor(
		async () => {
			const r = await pg.query(
				`SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1::uuid[]) AND settlement <> 'pending'`,
				[ids]
			);
			return r.rows[0].n === ids.length;
		},
		30_000,
		100
	);
	const holds = await pg.query(
		`SELECT task_id, state, list_actual_cost FROM credit_holds WHERE task_id = ANY($1::text[])`,
		[ids]
	);
	expect(holds.rows).toHaveLength(ids.length);
	expect(holds.rows.every(h => h.state === "settled" && h.list_actual_cost === "40")).toBe(true);
	const settles = await pg.query(
		`SELECT cause_id, count(*)::int AS n FROM ledger_transactions WHERE kind = 'settle' AND cause_id = ANY($1::text[]) GROUP BY cause_id`,
		[ids]
	);
	expect(settles.rows).toHaveLength(ids.length);
	expect(settles.rows.every(r => r.n === 1)).toBe(true);
});
