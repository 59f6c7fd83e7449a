/**
 * Finished work is not thrown away: an outcome reported after its lease expired is taken as long as
 * no other attempt has leased the task, and the sweeper leaves the expired lease of a node that is
 * still in the cluster alone for TASKS_LEASE_GRACE_MS. Real tasks, payments, users and projects; the
 * fake ai worker only answers ai.prepare (no slots, so the test plays the worker by hand).
 */
import { QueryTypes } from "sequelize";
import { createTestDatabase, eventually, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import { api, makeUser, startTasksNode, type TestNode } from "./helpers";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: TestNode;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTasksNode(db, [fakeAiWorker({ slots: 2, price: 100, cost: 40, leases: false })], {
		TASKS_LEASE_GRACE_MS: "20000"
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

type Row = { state: string; lease_id: string | null; attempts: number; settlement: string; error: unknown };
const row = async (id: string) =>
	(
		await node.runtime.sequelize.query<Row>(
			`SELECT state, lease_id, attempts, settlement, error FROM tasks WHERE id = $1`,
			{ bind: [id], type: QueryTypes.SELECT }
		)
	)[0];
const expire = (id: string, agoMs: number) =>
	node.runtime.sequelize.query(
		`UPDATE tasks SET lease_expires_at = now() - ($2 || ' milliseconds')::interval WHERE id = $1`,
		{ bind: [id, String(agoMs)] }
	);

async function submitAndLease(nodeID: string) {
	const u = await makeUser(node, "pro", 10_000);
	const r = await api(node, "POST", "/tasks", u.token, { projectId: u.projectId, kind: "chat", prompt: "hello" });
	expect(r.status).toBe(202);
	const taskId = r.body.task.id as string;
	const leased = (await node.broker.call("tasks.lease", { nodeID, slots: 1 })) as Array<{
		taskId: string;
		leaseId: string;
	}>;
	expect(leased.map(l => l.taskId)).toEqual([taskId]);
	return { u, taskId, leaseId: leased[0].leaseId };
}

const complete = (taskId: string, leaseId: string) =>
	node.broker.call("tasks.complete", {
		taskId,
		leaseId,
		result: { text: "late but done" },
		usage: { promptTokens: 1, completionTokens: 2 },
		costCredits: 40
	});

test("an expired lease re-queued but not yet taken: its late outcome is accepted, settled once, not run again", async () => {
	const { u, taskId, leaseId } = await submitAndLease("worker-gone");
	await expire(taskId, 1000);
	// The holder is not in the cluster: the sweeper takes the lease back at once and re-queues the task.
	await eventually(async () => (await row(taskId)).state === "queued", 10_000, 50);
	expect(await row(taskId)).toMatchObject({ lease_id: leaseId, attempts: 1 });

	await expect(complete(taskId, leaseId)).resolves.toMatchObject({ ok: true, state: "succeeded" });
	await eventually(async () => (await row(taskId)).settlement === "settled", 10_000, 50);
	expect(await row(taskId)).toMatchObject({ state: "succeeded", lease_id: null, attempts: 1, error: null });
	// Nothing left to lease.
	expect(await node.broker.call("tasks.lease", { nodeID: "worker-2", slots: 1 })).toEqual([]);
	const bal = await api(node, "GET", "/billing/balance", u.token);
	expect(bal.body).toMatchObject({ held: 0 });
	expect((bal.body as { available: number }).available).toBeLessThan(10_000);
});

test("once another attempt has leased the task, the old lease's outcome is refused with LEASE_LOST", async () => {
	const { taskId, leaseId } = await submitAndLease("worker-gone-2");
	await expire(taskId, 1000);
	await eventually(async () => (await row(taskId)).state === "queued", 10_000, 50);
	const again = (await node.broker.call("tasks.lease", { nodeID: "worker-3", slots: 1 })) as Array<{
		leaseId: string;
	}>;
	expect(again).toHaveLength(1);
	expect(again[0].leaseId).not.toBe(leaseId);
	await expect(complete(taskId, leaseId)).rejects.toMatchObject({ code: 409, type: "LEASE_LOST" });
	await expect(complete(taskId, again[0].leaseId)).resolves.toMatchObject({ state: "succeeded" });
	expect(await row(taskId)).toMatchObject({ state: "succeeded", attempts: 2 });
});

test("the expired lease of a node still in the cluster is left to it for the grace period, then taken back", async () => {
	// The node's own id: it is in the registry, as a worker whose reports cannot reach PostgreSQL would be.
	const { taskId, leaseId } = await submitAndLease(node.broker.nodeID);
	await expire(taskId, 2000);
	// Several sweeps (every 200 ms) later it is still running under the same lease.
	const sweeps = (await node.broker.call("tasks.sweep")) as { expired: number };
	expect(sweeps.expired).toBe(0);
	await new Promise(r => setTimeout(r, 600));
	expect(await row(taskId)).toMatchObject({ state: "running", lease_id: leaseId });
	// Past the grace period it is taken back like any other.
	await expire(taskId, 25_000);
	await eventually(async () => (await row(taskId)).state === "queued", 10_000, 50);
	await expect(complete(taskId, leaseId)).resolves.toMatchObject({ state: "succeeded" });
});
