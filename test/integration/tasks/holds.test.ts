/**
 * Money paths of task submission: a hold taken for a task that never came to exist is given back.
 * Real users, projects and payments services; the fake ai worker answers ai.prepare.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import type { Service } from "moleculer";
import { createTestDatabase, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import type { Ledger } from "../../../src/payments/ledger";
import { api, makeUser, startTasksNode, type TestNode } from "./helpers";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: TestNode;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTasksNode(db, [fakeAiWorker({ slots: 1, price: 100, cost: 40 })]);
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

test("a reserve whose answer is lost after the hold committed: the submit fails and the hold is released", async () => {
	const u = await makeUser(node, "pro", 1_000);
	const ledger = (node.broker.getLocalService("payments") as Service & { ledger: Ledger }).ledger;
	const reserve = ledger.reserve.bind(ledger);
	// The hold commits, then the answer never reaches tasks (a dropped connection, a timeout after commit).
	ledger.reserve = async p => {
		await reserve(p);
		throw new Error("connection reset after commit");
	};
	let r;
	try {
		r = await api(node, "POST", "/tasks", u.token, { projectId: u.projectId, kind: "chat", prompt: "hello" });
	} finally {
		ledger.reserve = reserve;
	}
	expect(r.status).toBe(500);
	expect(await sql(`SELECT id FROM tasks WHERE user_id = $1`, [u.id])).toEqual([]);
	const holds = await sql<{ state: string }>(`SELECT state FROM credit_holds WHERE user_id = $1`, [u.id]);
	expect(holds).toEqual([{ state: "released" }]);
	const bal = await api(node, "GET", "/billing/balance", u.token);
	expect(bal.body).toMatchObject({ available: 1_000, held: 0 });
});

test("a hold whose task never came to exist (node died between reserve and insert) is released by the sweeper", async () => {
	const u = await makeUser(node, "pro", 1_000);
	const tasks = node.broker.getLocalService("tasks") as Service & {
		store: { addHoldIntent(t: string, u: string): Promise<void> };
	};
	const taskId = randomUUID();
	// What submit does before the crash: the intent, then the hold.
	await tasks.store.addHoldIntent(taskId, u.id);
	await node.broker.call("payments.reserve", { userId: u.id, taskId, maxCost: 300, tier: "pro" });
	const during = (await api(node, "GET", "/billing/balance", u.token)).body as { available: number; held: number };
	expect(during.held).toBeGreaterThan(0); // 300 less the pro tier's fee discount
	expect(during.available + during.held).toBe(1_000);

	// Within the grace period nothing happens: a reserve may still be on its way.
	expect(await node.broker.call("tasks.sweep")).toMatchObject({ orphansReleased: 0 });
	expect(await sql(`SELECT task_id FROM task_hold_intents WHERE task_id = $1`, [taskId])).toHaveLength(1);

	await sql(`UPDATE task_hold_intents SET created_at = now() - interval '1 hour' WHERE task_id = $1`, [taskId]);
	expect(await node.broker.call("tasks.sweep")).toMatchObject({ orphansReleased: 1 });
	expect(await sql<{ state: string }>(`SELECT state FROM credit_holds WHERE task_id = $1`, [taskId])).toEqual([
		{ state: "released" }
	]);
	expect(await sql(`SELECT task_id FROM task_hold_intents WHERE task_id = $1`, [taskId])).toEqual([]);
	expect((await api(node, "GET", "/billing/balance", u.token)).body).toMatchObject({ available: 1_000, held: 0 });
	// A second sweep finds nothing more to do.
	expect(await node.broker.call("tasks.sweep")).toMatchObject({ orphansReleased: 0 });
});

test("a successful submit leaves no hold intent behind, and a refused one (402) none either", async () => {
	const u = await makeUser(node, "pro", 1_000);
	const ok = await api(node, "POST", "/tasks", u.token, { projectId: u.projectId, kind: "chat", prompt: "hello" });
	expect(ok.status).toBe(202);
	const poor = await makeUser(node, "free", 0);
	const refused = await api(node, "POST", "/tasks", poor.token, {
		projectId: poor.projectId,
		kind: "chat",
		prompt: "hello"
	});
	expect(refused.status).toBe(402);
	expect(
		await sql(`SELECT task_id FROM task_hold_intents WHERE user_id = ANY($1::text[])`, [[u.id, poor.id]])
	).toEqual([]);
});
