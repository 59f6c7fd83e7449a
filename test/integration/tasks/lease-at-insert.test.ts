/**
 * The lease at insert (docs/task-lifecycle.md "Dispatch") and its switch, on the real tasks and ai
 * services with the dev provider: with AI_LEASE_AT_INSERT on (the default) a submission on a node
 * whose worker is idle is answered running; with it off the same submission is answered queued with
 * its position and the worker leases it the usual way; both run to success and settle once.
 */
import { randomUUID } from "node:crypto";
import { createTestDatabase, eventually, startTestNode, type TestDatabase } from "../../support/env";
import { ALL, api, makeUser, type TestNode } from "./helpers";

jest.setTimeout(90_000);

const nodes: Array<{ db: TestDatabase; node: TestNode }> = [];

async function platform(leaseAtInsert: boolean): Promise<TestNode> {
	const db = await createTestDatabase();
	const node = await startTestNode({
		db,
		services: [...ALL, "ai"],
		env: {
			RATE_LIMIT_PER_MINUTE: "100000",
			AI_DEV_PROVIDER: "true",
			AI_LEASE_AT_INSERT: String(leaseAtInsert),
			AI_POLL_MS: "200"
		}
	});
	nodes.push({ db, node });
	return node;
}

afterAll(async () => {
	for (const { node, db } of nodes) {
		await node.stop();
		await db.drop();
	}
});

test.each([
	[true, "running"],
	[false, "queued"]
] as const)("AI_LEASE_AT_INSERT=%s: the idle node's submission is answered %s and runs once", async (on, state) => {
	const node = await platform(on);
	const u = await makeUser(node, "pro", 1_000);
	const r = await api(node, "POST", "/tasks", u.token, {
		projectId: u.projectId,
		kind: "chat",
		prompt: `hello ${randomUUID()}`,
		model: "dev-echo"
	});
	expect(r.status).toBe(202);
	expect(r.body.task.state).toBe(state);
	if (on) expect(r.body.position).toBeNull();
	else expect(typeof r.body.position).toBe("number");
	const id: string = r.body.task.id;
	await eventually(async () => (await api(node, "GET", `/tasks/${id}`, u.token)).body.state === "succeeded", 20_000);
	const t = (await api(node, "GET", `/tasks/${id}`, u.token)).body;
	expect(t.attempts).toBe(1);
	// Settled after the task's final state (settle, then announce the settlement): the hold is given back.
	const balance = async () => (await api(node, "GET", "/billing/balance", u.token)).body;
	await eventually(async () => (await balance()).held === 0, 20_000);
	expect((await balance()).available).toBe(1_000 - t.costCredits);
});
