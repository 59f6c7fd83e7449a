/**
 * A lease call whose answer never reached the worker (docs/task-lifecycle.md, "Dispatch"): the tasks it
 * leased come back to that worker when it names the call's lease id in `recover`, under the same lease
 * and attempt, with the lease renewed; to no other node; and not once the lease was taken back. Then
 * end to end: a worker whose first lease calls time out (the test drops their answers) runs each task
 * once, attempt 1. Real tasks, payments, users and projects on PostgreSQL; the fake ai worker only
 * answers ai.prepare (no slots) in the first part, so the test plays the worker by hand.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { createTestDatabase, eventually, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import { LeasePump } from "../../../src/ai/lease-pump";
import { api, makeUser, startTasksNode, type TestNode } from "./helpers";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: TestNode;

beforeAll(async () => {
	db = await createTestDatabase();
	// 64 advertised slots: the tier's share of the workers does not limit the leases of this test.
	node = await startTasksNode(db, [fakeAiWorker({ slots: 64, price: 100, cost: 40, leases: false })], {
		TASKS_LEASE_GRACE_MS: "0"
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

type Leased = { taskId: string; leaseId: string; attempt: number; leaseExpiresAt: string };
type Row = { state: string; lease_id: string | null; attempts: number; node_id: string | null };
const row = async (id: string) =>
	(
		await node.runtime.sequelize.query<Row>(`SELECT state, lease_id, attempts, node_id FROM tasks WHERE id = $1`, {
			bind: [id],
			type: QueryTypes.SELECT
		})
	)[0];
const lease = (params: Record<string, unknown>) => node.broker.call("tasks.lease", params) as Promise<Leased[]>;

async function submit(n: number) {
	const u = await makeUser(node, "pro", 10_000);
	const ids: string[] = [];
	for (let i = 0; i < n; i++) {
		const r = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: `hello ${i}`
		});
		expect(r.status).toBe(202);
		ids.push(r.body.task.id as string);
	}
	return ids;
}

test("the tasks of a lost answer come back under the same lease and attempt, renewed, to that node only", async () => {
	const ids = await submit(2);
	const lost = randomUUID();
	const first = await lease({ nodeID: "worker-a", slots: 2, leaseId: lost });
	// Every task of the call carries the call's lease id.
	expect(first.map(t => t.taskId).sort()).toEqual([...ids].sort());
	expect(first.every(t => t.leaseId === lost && t.attempt === 1)).toBe(true);
	// The worker never saw that answer. Another node naming the lease id gets nothing of it.
	expect(await lease({ nodeID: "worker-b", slots: 0, recover: [lost] })).toEqual([]);
	await new Promise(r => setTimeout(r, 20));
	const next = randomUUID();
	const again = await lease({ nodeID: "worker-a", slots: 2, leaseId: next, recover: [lost] });
	expect(again.map(t => t.taskId).sort()).toEqual([...ids].sort());
	expect(again.every(t => t.leaseId === lost && t.attempt === 1)).toBe(true);
	expect(Date.parse(again[0].leaseExpiresAt)).toBeGreaterThan(Date.parse(first[0].leaseExpiresAt));
	for (const id of ids)
		expect(await row(id)).toMatchObject({ state: "running", lease_id: lost, attempts: 1, node_id: "worker-a" });
	// The recovered lease is a real one: heartbeats and the outcome are taken.
	await expect(node.broker.call("tasks.heartbeat", { taskId: ids[0], leaseId: lost })).resolves.toMatchObject({
		ok: true
	});
	for (const id of ids)
		await expect(
			node.broker.call("tasks.complete", {
				taskId: id,
				leaseId: lost,
				result: { text: "done" },
				usage: { promptTokens: 1, completionTokens: 2 },
				costCredits: 40
			})
		).resolves.toMatchObject({ state: "succeeded" });
	// Finished: nothing comes back any more.
	expect(await lease({ nodeID: "worker-a", slots: 0, recover: [lost] })).toEqual([]);
});

test("a lost answer whose lease was taken back by the sweeper brings nothing back", async () => {
	const [id] = await submit(1);
	const lost = randomUUID();
	expect(await lease({ nodeID: "worker-gone", slots: 1, leaseId: lost })).toHaveLength(1);
	await node.runtime.sequelize.query(
		`UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = $1`,
		{
			bind: [id]
		}
	);
	await eventually(async () => (await row(id)).state === "queued", 10_000, 50);
	expect(await lease({ nodeID: "worker-gone", slots: 0, recover: [lost] })).toEqual([]);
	// Leased again normally: a fresh attempt under the new call's lease id.
	const fresh = randomUUID();
	const t = await lease({ nodeID: "worker-c", slots: 1, leaseId: fresh });
	expect(t).toMatchObject([{ taskId: id, leaseId: fresh, attempt: 2 }]);
});

test("bad lease parameters are refused and change nothing", async () => {
	const [id] = await submit(1);
	await expect(lease({ nodeID: "worker-d", slots: 1, leaseId: "not-a-uuid" })).rejects.toMatchObject({
		type: "VALIDATION_ERROR"
	});
	await expect(lease({ nodeID: "worker-d", slots: 1, recover: ["x"] })).rejects.toMatchObject({
		type: "VALIDATION_ERROR"
	});
	await expect(
		lease({ nodeID: "worker-d", slots: 1, recover: Array.from({ length: 65 }, () => randomUUID()) })
	).rejects.toMatchObject({ type: "VALIDATION_ERROR" });
	expect(await row(id)).toMatchObject({ state: "queued", attempts: 0 });
	// Without a lease id the call still leases (a worker of the previous release).
	const t = await lease({ nodeID: "worker-d", slots: 1 });
	expect(t).toMatchObject([{ taskId: id, attempt: 1 }]);
});

test("a worker pump whose lease answers are lost runs each task once, attempt 1", async () => {
	const ids = await submit(3);
	const started: Leased[] = [];
	const running = new Set<string>();
	let drop = 2; // the first two answers are lost after the tasks node leased
	const pump = new LeasePump<Leased>({
		free: () => 2 - running.size,
		canLease: () => true,
		lease: async (slots, call) => {
			const answer = await lease({ nodeID: "worker-p", slots, leaseId: call.leaseId, recover: call.recover });
			if (drop > 0 && answer.some(t => t.leaseId === call.leaseId)) {
				drop--;
				throw Object.assign(new Error("Request timed out"), { type: "REQUEST_TIMEOUT" });
			}
			return answer;
		},
		start: t => {
			started.push(t);
			running.add(t.taskId);
		},
		isRunning: taskId => running.has(taskId)
	});
	await pump.pump(); // leases two tasks under L1; the answer is lost
	expect(started).toEqual([]);
	expect(pump.lost).toHaveLength(1);
	await pump.pump(); // gets those two back and leases the third under L2; this answer is lost too
	expect(started).toEqual([]);
	expect(pump.lost).toHaveLength(2);
	await pump.pump(); // all three come back (over the two slots: they were leased for slots freed since)
	expect(pump.lost).toEqual([]);
	expect(started.map(t => t.taskId).sort()).toEqual([...ids].sort());
	expect(started.every(t => t.attempt === 1)).toBe(true);
	// Nothing more comes back or is started twice.
	running.clear();
	await pump.pump();
	expect(started).toHaveLength(3);
	for (const id of ids) expect((await row(id)).attempts).toBe(1);
});
