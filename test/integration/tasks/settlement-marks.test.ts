/**
 * The group-committed settlement marks (TaskStore.markSettlement, issue #16) against the statement
 * they replace, one `UPDATE tasks SET settlement = $2 WHERE id = $1 AND settlement = 'pending'` per
 * mark, kept here as the reference. Twin tasks in every settlement state get the same marks, the
 * reference one after another and the batched all at once (repeats and contradicting marks of one
 * task among them); the settlements left must match, and the marks must have gone as batches.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { type TaskStore } from "../../../src/tasks/store";
import { newTaskRow, taskStoreNode, type TaskStoreNode } from "../../support/task-store-node";
import { prng } from "../../support/fuzz";

jest.setTimeout(60_000);

const harness = taskStoreNode();
let node: TaskStoreNode["node"];
let store: TaskStore;
beforeAll(() => ({ node, store } = harness));

type Settlement = "none" | "pending" | "settled" | "released";
type Mark = "settled" | "released";

async function task(settlement: Settlement) {
	const id = randomUUID();
	await store.insert(
		newTaskRow({
			id,
			userId: "u1",
			projectId: "marks",
			tier: "pro",
			prepared: { models: [], promptTokens: 1, contextTokensBudget: 0, maxOutputTokens: 1, maxCostCredits: 1 },
			enqueuedAt: Date.now()
		})
	);
	// A finished task (a running or queued one does not settle; the mark only looks at `settlement`).
	await node.runtime.sequelize.query(
		`UPDATE tasks SET state = 'succeeded', finished_at = now(), settlement = $2 WHERE id = $1`,
		{ bind: [id, settlement] }
	);
	return id;
}

const reference = (id: string, s: Mark) =>
	node.runtime.sequelize.query(`UPDATE tasks SET settlement = $2 WHERE id = $1 AND settlement = 'pending'`, {
		bind: [id, s]
	});

async function settlementOf(id: string): Promise<Settlement> {
	const [r] = await node.runtime.sequelize.query<{ settlement: Settlement }>(
		`SELECT settlement FROM tasks WHERE id = $1`,
		{ bind: [id], type: QueryTypes.SELECT }
	);
	return r.settlement;
}

test("marks sent at once leave every task as the marks one by one do, in batches", async () => {
	const rand = prng(2026);
	const states: Settlement[] = ["none", "pending", "pending", "pending", "settled", "released"];
	const twins = await Promise.all(
		Array.from({ length: 60 }, async () => {
			const s = states[Math.floor(rand() * states.length)];
			// One to three marks per task; the first one sent wins while the task is pending.
			const marks = Array.from({ length: 1 + Math.floor(rand() * 3) }, () =>
				rand() < 0.7 ? ("settled" as const) : ("released" as const)
			);
			return { s, marks, a: await task(s), b: await task(s) };
		})
	);
	for (const t of twins) for (const m of t.marks) await reference(t.a, m);
	const sent = jest.spyOn(store, "q");
	try {
		// Marks in the order they are sent: each task's in its own order, interleaved with the others'.
		const order = twins.flatMap(t => t.marks.map((m, k) => ({ id: t.b, m, k }))).sort((x, y) => x.k - y.k);
		await Promise.all(order.map(o => store.markSettlement(o.id, o.m)));
		const statements = sent.mock.calls.filter(([sql]) => String(sql).includes("unnest($1::uuid[], $2::text[])"));
		expect(statements.length).toBeGreaterThanOrEqual(1);
		expect(statements.length).toBeLessThan(order.length);
	} finally {
		sent.mockRestore();
	}
	for (const t of twins)
		expect({ from: t.s, marks: t.marks, settlement: await settlementOf(t.b) }).toEqual({
			from: t.s,
			marks: t.marks,
			settlement: await settlementOf(t.a)
		});
});
