/**
 * Money paths of task submission: a hold taken for a task that never came to exist is given back.
 * Real users, projects and payments services; the fake ai worker answers ai.prepare.
 */
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

const sql = <T extends object>(q: string, bind: unknown[] = []) => node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

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
