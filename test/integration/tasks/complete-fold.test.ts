/**
 * The folded completion (TaskStore.completeLeased, one statement) against the rules it replaced: the
 * transactional completion (lock the leased row, record the context, finish, write the outbox event,
 * inside BEGIN/COMMIT), kept here as the reference. Twin tasks go through the same adversarial
 * sequences, one by each path, on real PostgreSQL; outcomes, rows, contexts and outbox events must match.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { writeOutboxEvent } from "../../../src/events/outbox";
import { type TaskStore, type TaskRow } from "../../../src/tasks/store";
import { taskStoreNode, type TaskStoreNode } from "../../support/task-store-node";

jest.setTimeout(60_000);

const harness = taskStoreNode();
let node: TaskStoreNode["node"];
let store: TaskStore;
beforeAll(() => ({ node, store } = harness));

interface Report {
	leaseId: string;
	costCredits: number;
	context?: Record<string, unknown>;
}
type Outcome = "ok" | "LEASE_LOST";
type Path = (taskId: string, r: Report) => Promise<Outcome>;

/** Lease ids (uuid column) by name. */
const LEASES: Record<string, string> = { L: randomUUID(), L1: randomUUID(), L2: randomUUID() };
const lease = (name: string) => LEASES[name];

const NOW = Date.parse("2026-12-03T10:00:00.000Z");

/** The completion as it was before the fold (src/tasks/reports.ts completeTask with its store calls). */
const reference: Path = (taskId, r) =>
	store.transaction(async tx => {
		const cur = await store.lockLeased(taskId, lease(r.leaseId), tx);
		if (!cur) return "LEASE_LOST";
		if (r.context) await store.saveContext(cur.id, cur.attempts, r.context, tx);
		const spent = Number(cur.spent_credits);
		const total = Math.min(spent + r.costCredits, Number(cur.max_cost_credits));
		const done = await store.finish(
			cur.id,
			{
				state: "succeeded",
				now: NOW,
				result: { text: "ok" },
				usage: { outputTokens: 3 },
				costCredits: total,
				spentCredits: spent
			},
			tx
		);
		await writeOutboxEvent(node.runtime.sequelize, tx, "tasks.finished", {
			taskId: done.id,
			userId: done.user_id,
			projectId: done.project_id,
			state: done.state,
			kind: done.kind,
			costCredits: total,
			usage: { outputTokens: 3 }
		});
		return "ok";
	});

const folded: Path = async (taskId, r) => {
	const row = await store.completeLeased({
		taskId,
		leaseId: lease(r.leaseId),
		now: NOW,
		result: { text: "ok" },
		usage: { outputTokens: 3 },
		costCredits: r.costCredits,
		...(r.context ? { context: r.context } : {}),
		event: { id: randomUUID(), occurredAt: new Date().toISOString() }
	});
	return row ? "ok" : "LEASE_LOST";
};

/** A task in a given lease state (what tasks_lease, the sweeper or a finish left behind). */
interface Start {
	state: string;
	leaseId: string | null;
	attempts: number;
	spent: number;
	max: number;
	error?: Record<string, unknown>;
}

async function task(over: Start) {
	const id = randomUUID();
	await store.insert({
		id,
		userId: "u1",
		projectId: "p1",
		tier: "pro",
		kind: "chat",
		prompt: "x",
		request: {},
		prepared: { models: [], promptTokens: 1, contextTokensBudget: 0, maxOutputTokens: 1, maxCostCredits: over.max },
		requestHash: "h",
		idempotencyKey: null,
		maxCostCredits: over.max,
		boostMs: 0,
		maxAttempts: 3,
		enqueuedAt: NOW - 60_000,
		notBefore: null
	});
	await node.runtime.sequelize.query(
		`UPDATE tasks SET state = $2::text, lease_id = $3::uuid, error = $7::jsonb, attempts = $4, spent_credits = $5,
			lease_expires_at = CASE WHEN $2::text = 'running' THEN $6::timestamptz END WHERE id = $1`,
		{
			bind: [
				id,
				over.state,
				over.leaseId && lease(over.leaseId),
				over.attempts,
				over.spent,
				new Date(NOW + 60_000),
				over.error ? JSON.stringify(over.error) : null
			]
		}
	);
	return id;
}

/** What a completion leaves behind, without the ids and clocks that differ between twins. */
async function trace(id: string) {
	const [row] = await node.runtime.sequelize.query<TaskRow>(`SELECT * FROM tasks WHERE id = $1`, {
		bind: [id],
		type: QueryTypes.SELECT
	});
	const contexts = await node.runtime.sequelize.query<{ attempt: number; context: unknown }>(
		`SELECT attempt, context FROM task_contexts WHERE task_id = $1`,
		{ bind: [id], type: QueryTypes.SELECT }
	);
	const events = await node.runtime.sequelize.query<{ topic: string; payload: Record<string, unknown> }>(
		`SELECT topic, payload, headers FROM outbox_events WHERE payload->>'taskId' = $1 ORDER BY id`,
		{ bind: [id], type: QueryTypes.SELECT }
	);
	const { id: _id, created_at: _c, updated_at: _u, ...rest } = row;
	return {
		row: rest,
		contexts,
		events: events.map(e => ({ ...e, payload: { ...e.payload, taskId: "(task)" } }))
	};
}

const ctx = (n: number) => ({ state: "selected", tokenizer: "t", version: 1, frames: [{ n }] });

const SEQUENCES: Array<{
	name: string;
	start: Start;
	reports: Report[];
	expected: Outcome[];
}> = [
	{
		name: "one report with a context, cost under the hold",
		start: { state: "running", leaseId: "L", attempts: 1, spent: 0, max: 100 },
		reports: [{ leaseId: "L", costCredits: 40, context: ctx(1) }],
		expected: ["ok"]
	},
	{
		name: "cost over the hold (earlier attempt spent some): capped at the hold",
		start: { state: "running", leaseId: "L", attempts: 2, spent: 30, max: 100 },
		reports: [{ leaseId: "L", costCredits: 90 }],
		expected: ["ok"]
	},
	{
		name: "replayed completion: the second is LEASE_LOST, one event",
		start: { state: "running", leaseId: "L", attempts: 1, spent: 0, max: 100 },
		reports: [
			{ leaseId: "L", costCredits: 10, context: ctx(1) },
			{ leaseId: "L", costCredits: 99, context: ctx(2) }
		],
		expected: ["ok", "LEASE_LOST"]
	},
	{
		name: "stale lease id",
		start: { state: "running", leaseId: "L2", attempts: 2, spent: 5, max: 100 },
		reports: [{ leaseId: "L1", costCredits: 10, context: ctx(1) }],
		expected: ["LEASE_LOST"]
	},
	{
		name: "lease expired, re-queued with its lease id kept: the late outcome is taken",
		start: {
			state: "queued",
			leaseId: "L",
			attempts: 1,
			spent: 0,
			max: 100,
			error: { code: "LEASE_EXPIRED", message: "gone", attempt: 1 }
		},
		reports: [{ leaseId: "L", costCredits: 20 }],
		expected: ["ok"]
	},
	{
		name: "re-queued and its lease id cleared (a retry): refused",
		start: { state: "queued", leaseId: null, attempts: 1, spent: 0, max: 100 },
		reports: [{ leaseId: "L", costCredits: 20 }],
		expected: ["LEASE_LOST"]
	},
	{
		name: "already cancelled: refused",
		start: { state: "cancelled", leaseId: "L", attempts: 1, spent: 0, max: 100 },
		reports: [{ leaseId: "L", costCredits: 20 }],
		expected: ["LEASE_LOST"]
	}
];

describe.each(SEQUENCES)("$name", ({ start, reports, expected }) => {
	test("the folded statement gives the transactional completion's outcomes, row, context and event", async () => {
		const [a, b] = [await task(start), await task(start)];
		const outA: Outcome[] = [];
		const outB: Outcome[] = [];
		for (const r of reports) {
			outA.push(await reference(a, r));
			outB.push(await folded(b, r));
		}
		expect(outA).toEqual(expected);
		expect(outB).toEqual(expected);
		const [ta, tb] = [await trace(a), await trace(b)];
		expect(tb).toEqual(ta);
		expect(tb.events).toHaveLength(expected.includes("ok") ? 1 : 0);
	});
});

test("two reports of one lease racing: exactly one is taken, one event, as with the row lock", async () => {
	for (let i = 0; i < 5; i++) {
		const id = await task({ state: "running", leaseId: "L", attempts: 1, spent: 0, max: 100 });
		const outs = await Promise.all([
			folded(id, { leaseId: "L", costCredits: 10 }),
			folded(id, { leaseId: "L", costCredits: 20 }),
			reference(id, { leaseId: "L", costCredits: 30 })
		]);
		expect(outs.filter(o => o === "ok")).toHaveLength(1);
		expect((await trace(id)).events).toHaveLength(1);
	}
});

test("reports that arrive together go as one batched statement, each with the outcome, row, context and event it has alone", async () => {
	const twins = await Promise.all(
		SEQUENCES.map(async seq => ({ seq, a: await task(seq.start), b: await task(seq.start) }))
	);
	for (const { seq, a } of twins) {
		const outA: Outcome[] = [];
		for (const r of seq.reports) outA.push(await reference(a, r));
		expect({ name: seq.name, out: outA }).toEqual({ name: seq.name, out: seq.expected });
	}
	const sent = jest.spyOn(store, "q");
	try {
		// Every report of every sequence at once (a task's later reports after its earlier ones in the batch).
		const outs = await Promise.all(twins.map(({ seq, b }) => Promise.all(seq.reports.map(r => folded(b, r)))));
		const batched = sent.mock.calls.filter(([sql]) => String(sql).includes("unnest($1::uuid[], $2::uuid[]"));
		expect(batched.length).toBeGreaterThanOrEqual(1);
		for (const [i, { seq, a, b }] of twins.entries()) {
			expect({ name: seq.name, out: outs[i] }).toEqual({ name: seq.name, out: seq.expected });
			expect({ name: seq.name, trace: await trace(b) }).toEqual({ name: seq.name, trace: await trace(a) });
		}
	} finally {
		sent.mockRestore();
	}
});
