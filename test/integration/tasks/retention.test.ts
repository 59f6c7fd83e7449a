/**
 * Retention of finished tasks (src/tasks/retention.ts): real tasks run and settle through users,
 * projects and payments with the fake ai worker, their finish is moved 31 days back, then
 * `tasks.prune` moves them into the daily summaries. The summaries equal the pruned tasks' totals, the
 * ledger, the usage attributions and the usage report are unchanged, a pruned task answers 404 in the
 * error shape, and a second run changes nothing.
 */
import { QueryTypes } from "sequelize";
import { createTestDatabase, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import { chargedCredits, usageTokens } from "../../../src/tasks/retention";
import type { TaskRow } from "../../../src/tasks/store";
import { api, makeUser, startTasksNode, type TestNode, type TestUser } from "./helpers";

jest.setTimeout(90_000);

let db: TestDatabase;
let node: TestNode;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTasksNode(
		db,
		[
			fakeAiWorker({
				slots: 4,
				runMs: 0,
				deltas: 0,
				cost: 40,
				failWith: t => (t.prompt.includes("fail") ? { code: "MODEL_ERROR", retryable: false } : null)
			})
		],
		// Batches of 3 rows, so a run takes several; the timer stays out of the way.
		{ RETENTION_BATCH_ROWS: "3", RETENTION_PAUSE_MS: "0", RETENTION_EVERY_MS: "86400000" }
	);
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

async function settled(ids: string[]) {
	const end = Date.now() + 30_000;
	for (;;) {
		const [r] = await sql<{ n: string }>(
			`SELECT count(*) AS n FROM tasks WHERE id = ANY($1::uuid[]) AND settlement IN ('settled', 'released')`,
			[ids]
		);
		if (Number(r.n) === ids.length) return;
		if (Date.now() > end) throw new Error("tasks did not settle");
		await new Promise(r => setTimeout(r, 50));
	}
}

async function submit(u: TestUser, prompt: string): Promise<string> {
	const r = await api(node, "POST", "/tasks", u.token, { projectId: u.projectId, kind: "chat", prompt });
	expect(r.status).toBe(202);
	return (r.body as { task: { id: string } }).task.id;
}

const ledgerState = async () => ({
	transactions: await sql(`SELECT * FROM ledger_transactions ORDER BY id`),
	entries: await sql(`SELECT * FROM ledger_entries ORDER BY id`),
	holds: await sql(`SELECT * FROM credit_holds ORDER BY task_id`),
	attributions: await sql(`SELECT * FROM usage_attributions ORDER BY task_id`)
});

// A fixed range around the run: the report's own default ends at the request's time.
const day0 = new Date(Date.now() - 5 * 86_400_000).toISOString().slice(0, 10);
const day1 = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
const usageReports = async (users: TestUser[]) => {
	const range = `from=${day0}&to=${day1}`;
	return Promise.all(
		users.flatMap(u =>
			(["day", "model", "project"] as const).map(
				async g => (await api(node, "GET", `/billing/usage?groupBy=${g}&${range}`, u.token)).body
			)
		)
	);
};

test("pruning keeps summaries equal to the pruned tasks' totals, the ledger and the usage report unchanged, and is idempotent", async () => {
	const a = await makeUser(node, "pro");
	const b = await makeUser(node, "team");
	const ids = [
		await submit(a, "one"),
		await submit(a, "two"),
		await submit(a, "please fail"),
		await submit(b, "three"),
		await submit(b, "four"),
		await submit(b, "five"),
		await submit(b, "fail again")
	];
	const fresh = await submit(a, "still young");
	await settled([...ids, fresh]);
	// All but one finished 31 days ago (the default TASKS_RETENTION_DAYS is 30).
	await sql(`UPDATE tasks SET finished_at = finished_at - interval '31 days' WHERE id = ANY($1::uuid[])`, [ids]);
	const rows = await sql<TaskRow>(`SELECT * FROM tasks WHERE id = ANY($1::uuid[])`, [ids]);
	expect(rows.map(r => r.state).sort()).toEqual([
		"failed",
		"failed",
		"succeeded",
		"succeeded",
		"succeeded",
		"succeeded",
		"succeeded"
	]);
	const before = await ledgerState();
	const reports = await usageReports([a, b]);

	const dry = (await node.broker.call("tasks.prune", { dryRun: true })) as {
		ran: boolean;
		tables: Record<string, number>;
	};
	expect(dry).toMatchObject({ ran: true, dryRun: true, tables: { tasks: ids.length } });
	expect(await sql(`SELECT id FROM tasks WHERE id = ANY($1::uuid[])`, [ids])).toHaveLength(ids.length);

	const metric = () =>
		(node.broker.metrics.getMetric("retention.pruned.rows.total")?.get({ table: "tasks" })?.value as number) ?? 0;
	const counted = metric();
	const run = (await node.broker.call("tasks.prune", {})) as {
		ran: boolean;
		tables: Record<string, number>;
		unfinished: string[];
	};
	expect(run).toMatchObject({ ran: true, dryRun: false, tables: { tasks: ids.length }, unfinished: [] });
	expect(metric() - counted).toBe(ids.length);
	expect(await sql(`SELECT id FROM tasks WHERE id = ANY($1::uuid[])`, [ids])).toEqual([]);
	expect(await sql(`SELECT id FROM tasks WHERE id = $1`, [fresh])).toHaveLength(1);
	expect(await sql(`SELECT task_id FROM task_contexts WHERE task_id = ANY($1::uuid[])`, [ids])).toEqual([]);

	// The summaries equal the pruned tasks' totals, per user and state.
	type Sum = {
		user_id: string;
		state: string;
		tasks: string;
		attempts: string;
		cost_credits: string;
		input_tokens: string;
		output_tokens: string;
	};
	const sums = await sql<Sum>(
		`SELECT user_id, state, sum(tasks) AS tasks, sum(attempts) AS attempts, sum(cost_credits) AS cost_credits,
			sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens
		 FROM task_daily_summaries GROUP BY user_id, state ORDER BY user_id, state`
	);
	const expected = new Map<
		string,
		{ tasks: number; attempts: number; cost: number; input: number; output: number }
	>();
	for (const r of rows) {
		const k = `${r.user_id}|${r.state}`;
		const e = expected.get(k) ?? { tasks: 0, attempts: 0, cost: 0, input: 0, output: 0 };
		e.tasks++;
		e.attempts += r.attempts;
		e.cost += chargedCredits(r);
		e.input += usageTokens(r.usage, "promptTokens");
		e.output += usageTokens(r.usage, "completionTokens");
		expected.set(k, e);
	}
	expect(
		Object.fromEntries(
			sums.map(s => [
				`${s.user_id}|${s.state}`,
				{
					tasks: Number(s.tasks),
					attempts: Number(s.attempts),
					cost: Number(s.cost_credits),
					input: Number(s.input_tokens),
					output: Number(s.output_tokens)
				}
			])
		)
	).toEqual(Object.fromEntries(expected));
	expect([...expected.values()].reduce((x, e) => x + e.cost, 0)).toBeGreaterThan(0);
	// Money and audit: unchanged.
	expect(await ledgerState()).toEqual(before);
	expect(await usageReports([a, b])).toEqual(reports);

	// A pruned task: 404 in the error shape, saying how long finished tasks are kept.
	const gone = await api(node, "GET", `/tasks/${ids[0]}`, a.token);
	expect(gone.status).toBe(404);
	expect(gone.body).toMatchObject({ error: { code: "NOT_FOUND", details: { finishedTasksKeptDays: 30 } } });
	expect((await api(node, "GET", `/tasks/${fresh}`, a.token)).status).toBe(200);

	// The history of a user: its summaries.
	const h = (await node.broker.call("tasks.history", { userId: b.id })) as {
		days: Array<{ userId: string; tasks: number; state: string }>;
	};
	expect(h.days.reduce((x, d) => x + d.tasks, 0)).toBe(4);
	expect(h.days.every(d => d.userId === b.id)).toBe(true);

	// Idempotent: a second run finds nothing and changes nothing.
	const summariesAfter = await sql(`SELECT * FROM task_daily_summaries ORDER BY user_id, state, model`);
	const again = (await node.broker.call("tasks.prune", {})) as { tables: Record<string, number> };
	expect(again.tables.tasks).toBe(0);
	expect(await sql(`SELECT * FROM task_daily_summaries ORDER BY user_id, state, model`)).toEqual(summariesAfter);
	expect(await ledgerState()).toEqual(before);
});

test("a run another node holds the lock of is skipped", async () => {
	const held = await node.runtime.sequelize.connectionManager.getConnection({ type: "write" });
	const c = held as unknown as { query(q: string): Promise<unknown> };
	try {
		await c.query(`SELECT pg_advisory_lock(hashtext('forgefluid retention'), hashtext('tasks'))`);
		expect(await node.broker.call("tasks.prune", {})).toMatchObject({ ran: false });
	} finally {
		await c.query(`SELECT pg_advisory_unlock(hashtext('forgefluid retention'), hashtext('tasks'))`);
		node.runtime.sequelize.connectionManager.releaseConnection(held);
	}
	expect(await node.broker.call("tasks.prune", {})).toMatchObject({ ran: true });
});

test("the queue's reads cannot scan finished rows: their functions have sequential and bitmap scans off, and answer as the inline queries", async () => {
	const rows = await sql<{ name: string; config: string[] | null }>(
		`SELECT p.oid::regprocedure::text AS name, p.proconfig AS config FROM pg_proc p
		 WHERE p.proname IN ('tasks_lease', 'tasks_queue_head', 'tasks_eligible_ranked', 'tasks_eligible_count', 'tasks_running_count', 'tasks_queued_rows')`
	);
	expect(rows).toHaveLength(7);
	for (const r of rows)
		expect(r.config).toEqual(expect.arrayContaining(["enable_seqscan=off", "enable_bitmapscan=off", "jit=off"]));
	// Queued tasks beside the finished ones of the test above: the worker's node is drained meanwhile.
	const u = await makeUser(node, "team");
	await node.broker.call("tasks.drain", { nodeID: node.broker.nodeID });
	for (let i = 0; i < 5; i++) await submit(u, `queued ${i}`);
	const now = new Date(Date.now() + 1_000);
	const ranked = await sql(`SELECT * FROM tasks_eligible_ranked($1) ORDER BY id`, [now]);
	const inline = await sql(
		`SELECT id, user_id, tier, enqueued_at, boost_ms, row_number() OVER (PARTITION BY user_id ORDER BY enqueued_at, id) - 1 AS user_rank
		 FROM tasks WHERE state = 'queued' AND (not_before IS NULL OR not_before <= $1) ORDER BY id`,
		[now]
	);
	expect(ranked).toEqual(inline);
	expect(await sql(`SELECT * FROM tasks_queued_rows() ORDER BY id`)).toEqual(
		await sql(
			`SELECT id, user_id, tier, enqueued_at, boost_ms, attempts, not_before FROM tasks WHERE state = 'queued' ORDER BY id`
		)
	);
	expect(await sql(`SELECT tasks_eligible_count($1) AS n`, [now])).toEqual([{ n: "5" }]);
	expect(await sql(`SELECT tasks_running_count() AS n`)).toEqual(
		await sql(`SELECT count(*) AS n FROM tasks WHERE state = 'running'`)
	);
	expect(ranked).toHaveLength(5);
	await node.broker.call("tasks.drain", { nodeID: node.broker.nodeID, undo: true });
});
