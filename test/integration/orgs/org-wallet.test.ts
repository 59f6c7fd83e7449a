/**
 * Whose credits pay (issue 19 part 2), through the real gateway, tasks, users, projects, orgs and
 * payments services on PostgreSQL: a task in an organisation's project is held and settled on the
 * organisation's wallet, also when its member is removed while it runs (once); monthly caps per member,
 * per API key and per payer refuse at the hold with their own 402 codes, exactly under 50 parallel
 * submissions; `?orgId=` on the balance and the ledger for billing roles only; and the ledger still
 * sums to zero per transaction and in total. The fake ai worker answers ai.prepare (100 credits) and
 * never leases: the test plays the worker where a task must run.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import { ALL, api, makeUser, type TestNode, type TestUser } from "../tasks/helpers";

jest.setTimeout(120_000);

let db: TestDatabase;
let node: TestNode;

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: [...ALL, "orgs"],
		extraServices: [fakeAiWorker({ slots: 64, price: 100, cost: 40, leases: false })],
		env: { RATE_LIMIT_PER_MINUTE: "100000", TASKS_SWEEP_MS: "200", TASKS_SNAPSHOT_MS: "200" }
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const ORG = randomUUID();
const OTHER_ORG = randomUUID();
const PAYER = `org:${ORG}`;
let owner: TestUser; // owner of ORG
let mia: TestUser; // member of ORG, capped
let max: TestUser; // member of ORG, removed while his task runs
let bill: TestUser; // billing member of ORG
let bob: TestUser; // owner of OTHER_ORG
let orgProject: string;
/** What one task holds (the fake's 100 credits, less the tier's fee discount). */
let holdAmount: number;

const submit = (u: TestUser, projectId = orgProject, headers: Record<string, string> = {}, token = u.token) =>
	api(node, "POST", "/tasks", token, { projectId, kind: "chat", prompt: `hi ${randomUUID()}` }, headers);
const codes = (rs: Array<{ status: number; body: any }>) => {
	const out: Record<string, number> = {};
	for (const r of rs) {
		const k = `${r.status} ${r.body?.error?.code ?? ""}`.trim();
		out[k] = (out[k] ?? 0) + 1;
	}
	return out;
};
const counter = async (name: string) =>
	Number(
		(
			await sql<{ spent: string }>(
				`SELECT spent FROM spend_counters WHERE counter = $1 AND month = date_trunc('month', now() AT TIME ZONE 'UTC')::date`,
				[name]
			)
		)[0]?.spent ?? 0
	);

beforeAll(async () => {
	[owner, mia, max, bill, bob] = await Promise.all([1, 2, 3, 4, 5].map(() => makeUser(node, "pro", 1_000)));
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Acme', $2), ($3, 'Other', $4)`, [
		ORG,
		owner.id,
		OTHER_ORG,
		bob.id
	]);
	for (const [org, u, role] of [
		[ORG, owner.id, "owner"],
		[ORG, mia.id, "member"],
		[ORG, max.id, "member"],
		[ORG, bill.id, "billing"],
		[OTHER_ORG, bob.id, "owner"]
	])
		await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3)`, [org, u, role]);
	const p = await api(node, "POST", "/projects", owner.token, { name: "shared", orgId: ORG });
	expect(p.status).toBe(201);
	orgProject = p.body.id;
	await node.broker.call("payments.grant", {
		userId: PAYER,
		credits: 1_000_000,
		operator: "test",
		reason: "org wallet",
		source: "paid",
		key: `grant-${ORG}`
	});
});

test("a member's task in the organisation's project is held on the organisation; removed while it runs, it settles there once", async () => {
	const r = await submit(max);
	expect(r.status).toBe(202);
	const taskId = r.body.task.id as string;
	expect(await sql(`SELECT user_id, payer_id FROM tasks WHERE id = $1`, [taskId])).toEqual([
		{ user_id: max.id, payer_id: PAYER }
	]);
	const [hold] = await sql<{ user_id: string; amount: string; counters: string[] }>(
		`SELECT user_id, amount, counters FROM credit_holds WHERE task_id = $1`,
		[taskId]
	);
	expect(hold.user_id).toBe(PAYER);
	expect(hold.counters).toEqual([`member:${PAYER}:${max.id}`, `payer:${PAYER}`]);
	holdAmount = Number(hold.amount);
	expect(holdAmount).toBeGreaterThan(0);
	// The member's own wallet is untouched; the organisation's holds it.
	expect((await api(node, "GET", "/billing/balance", max.token)).body).toMatchObject({ available: 1_000, held: 0 });
	expect((await api(node, "GET", `/billing/balance?orgId=${ORG}`, owner.token)).body).toMatchObject({
		held: holdAmount
	});
	expect(
		await sql(`SELECT attr.payer_id, attr.member_id FROM usage_attributions attr WHERE task_id = $1`, [taskId])
	).toEqual([{ payer_id: PAYER, member_id: max.id }]);

	const leaseId = randomUUID();
	const leased = (await node.broker.call("tasks.lease", { nodeID: "worker-t", slots: 1, leaseId })) as Array<{
		taskId: string;
	}>;
	expect(leased.map(t => t.taskId)).toEqual([taskId]);
	// Removed while the task runs.
	const removed = await api(node, "DELETE", `/orgs/${ORG}/members/${max.id}`, owner.token);
	expect(removed.status).toBe(200);
	await expect(
		node.broker.call("tasks.complete", {
			taskId,
			leaseId,
			result: { text: "done" },
			usage: { promptTokens: 1, completionTokens: 2 },
			costCredits: 40
		})
	).resolves.toMatchObject({ state: "succeeded" });
	let settled: Array<{ user_id: string }> = [];
	for (let i = 0; i < 200 && !settled.length; i++) {
		settled = await sql(`SELECT user_id FROM ledger_transactions WHERE kind = 'settle' AND cause_id = $1`, [
			taskId
		]);
		if (!settled.length) await new Promise(res => setTimeout(res, 25));
	}
	// A sweep afterwards (a retried settlement) settles nothing more.
	await node.broker.call("tasks.sweep");
	expect(
		await sql(`SELECT user_id FROM ledger_transactions WHERE kind = 'settle' AND cause_id = $1`, [taskId])
	).toEqual([{ user_id: PAYER }]);
	expect(await sql(`SELECT state, user_id FROM credit_holds WHERE task_id = $1`, [taskId])).toEqual([
		{ state: "settled", user_id: PAYER }
	]);
	const charged = Number(
		(await sql<{ charged: string }>(`SELECT charged FROM credit_holds WHERE task_id = $1`, [taskId]))[0].charged
	);
	// The counters keep what was charged, nothing of the hold's tail.
	expect(await counter(`member:${PAYER}:${max.id}`)).toBe(charged);
	expect((await api(node, "GET", "/billing/balance", max.token)).body).toMatchObject({ available: 1_000, held: 0 });
	// No longer a member: no more tasks in the organisation's project, and no view of its billing.
	expect((await submit(max)).status).toBe(404);
	expect((await api(node, "GET", `/billing/balance?orgId=${ORG}`, max.token)).status).toBe(404);
});

test("50 parallel submissions against a member cap that covers exactly 10: 10 accepted, 40 refused 402 MEMBER_CAP_REACHED", async () => {
	const cap = await api(node, "PATCH", `/orgs/${ORG}/members/${mia.id}`, owner.token, {
		monthlyCapCredits: 10 * holdAmount
	});
	expect(cap.status).toBe(200);
	const rs = await Promise.all(Array.from({ length: 50 }, () => submit(mia)));
	expect(codes(rs)).toEqual({ "202": 10, "402 MEMBER_CAP_REACHED": 40 });
	const refused = rs.find(r => r.status === 402)!;
	expect(refused.body.error.details).toMatchObject({ capCredits: String(10 * holdAmount) });
	expect(await counter(`member:${PAYER}:${mia.id}`)).toBe(10 * holdAmount);
	expect(
		Number((await sql<{ n: string }>(`SELECT count(*) AS n FROM tasks WHERE user_id = $1`, [mia.id]))[0].n)
	).toBe(10);
	// No hold, no intent, no task left by a refusal.
	expect(
		Number(
			(await sql<{ n: string }>(`SELECT count(*) AS n FROM task_hold_intents WHERE user_id = $1`, [PAYER]))[0].n
		)
	).toBe(0);
	// A cancelled task gives its hold back to the cap: one more fits, then none.
	const first = rs.find(r => r.status === 202)!;
	expect((await api(node, "POST", `/tasks/${first.body.task.id}/cancel`, mia.token)).status).toBeLessThan(300);
	let after = 0;
	for (let i = 0; i < 200 && after !== 9 * holdAmount; i++) {
		after = await counter(`member:${PAYER}:${mia.id}`);
		if (after !== 9 * holdAmount) await new Promise(res => setTimeout(res, 25));
	}
	expect(after).toBe(9 * holdAmount);
	expect((await submit(mia)).status).toBe(202);
	expect((await submit(mia)).body.error.code).toBe("MEMBER_CAP_REACHED");
	// The cap is the member's: another member is not bound by it.
	expect((await submit(owner)).status).toBe(202);
	// 41 refusals, one notice (billing.cap_reached), mailed to the organisation's billing contacts.
	expect(
		await sql(`SELECT crossing FROM billing_notices WHERE payer_id = $1 AND kind = 'cap_reached'`, [PAYER])
	).toEqual([{ crossing: expect.stringMatching(new RegExp(`^member:${PAYER}:${mia.id}:\\d{4}-\\d{2}-01$`)) }]);
	const mailsTo = async (u: TestUser) =>
		((await api(node, "GET", `/dev/outbox?to=${encodeURIComponent(`${u.id}@example.test`)}`, null)).body?.items ??
			[]) as Array<{ text: string }>;
	let mails: Array<{ text: string }> = [];
	for (let i = 0; i < 300 && !(mails.length && (await mailsTo(bill)).length); i++) {
		mails = await mailsTo(owner);
		if (!mails.length) await new Promise(res => setTimeout(res, 50));
	}
	expect(mails).toHaveLength(1);
	expect(mails[0].text).toContain(
		`a member's monthly spend cap of ${10 * holdAmount} credits on the organisation Acme`
	);
	expect(await mailsTo(mia)).toEqual([]);
});

test("50 parallel submissions with an API key whose cap covers exactly 10: 10 accepted, 40 refused 402 KEY_CAP_REACHED", async () => {
	const kay = await makeUser(node, "pro", 1_000_000);
	const created = await api(node, "POST", "/users/me/api-keys", kay.token, {
		name: "ci",
		scopes: ["tasks:write", "ai:use"],
		monthlyCapCredits: 10 * holdAmount
	});
	expect(created.status).toBe(201);
	expect(created.body.monthlyCapCredits).toBe(10 * holdAmount);
	const key = created.body.key as string;
	const rs = await Promise.all(
		Array.from({ length: 50 }, () => submit(kay, kay.projectId, { "X-API-Key": key }, ""))
	);
	expect(codes(rs)).toEqual({ "202": 10, "402 KEY_CAP_REACHED": 40 });
	expect(await counter(`key:${created.body.id}`)).toBe(10 * holdAmount);
	// The cap is the key's: the same user's session is not bound by it.
	expect((await submit(kay, kay.projectId)).status).toBe(202);
	// Cleared by PATCH: the key submits again; set to 0, it submits nothing.
	const cleared = await api(node, "PATCH", `/users/me/api-keys/${created.body.id}`, kay.token, {
		monthlyCapCredits: null
	});
	expect(cleared.status).toBe(200);
	expect(cleared.body.monthlyCapCredits).toBeNull();
	expect((await submit(kay, kay.projectId, { "X-API-Key": key }, "")).status).toBe(202);
	await api(node, "PATCH", `/users/me/api-keys/${created.body.id}`, kay.token, { monthlyCapCredits: 0 });
	expect((await submit(kay, kay.projectId, { "X-API-Key": key }, "")).body.error?.code).toBe("KEY_CAP_REACHED");
	const listed = await api(node, "GET", "/users/me/api-keys", kay.token);
	expect(listed.body.items[0]).toMatchObject({ id: created.body.id, monthlyCapCredits: 0 });
	// Someone else's key: 404.
	expect(
		(await api(node, "PATCH", `/users/me/api-keys/${created.body.id}`, bob.token, { monthlyCapCredits: 1 })).status
	).toBe(404);
});

test("the organisation's own cap (owners and admins set it) refuses with PAYER_CAP_REACHED", async () => {
	expect((await api(node, "PATCH", `/orgs/${ORG}`, bill.token, { monthlyCapCredits: 1 })).status).toBe(403);
	const spent = await counter(`payer:${PAYER}`);
	const set = await api(node, "PATCH", `/orgs/${ORG}`, owner.token, { monthlyCapCredits: spent + holdAmount });
	expect(set.status).toBe(200);
	expect(set.body).toMatchObject({ name: "Acme", monthlyCapCredits: spent + holdAmount });
	expect((await submit(owner)).status).toBe(202);
	const refused = await submit(owner);
	expect(refused.status).toBe(402);
	expect(refused.body.error.code).toBe("PAYER_CAP_REACHED");
	expect((await api(node, "PATCH", `/orgs/${ORG}`, owner.token, { monthlyCapCredits: null })).body).toMatchObject({
		monthlyCapCredits: null
	});
	expect((await submit(owner)).status).toBe(202);
});

test("a user's own cap on their wallet (PUT /billing/cap) refuses with PAYER_CAP_REACHED", async () => {
	const sam = await makeUser(node, "pro", 1_000_000);
	const set = await api(node, "PUT", "/billing/cap", sam.token, { monthlyCapCredits: holdAmount });
	expect(set.status).toBe(200);
	expect(set.body).toMatchObject({ monthlyCapCredits: holdAmount, spentCredits: 0 });
	expect((await submit(sam, sam.projectId)).status).toBe(202);
	const refused = await submit(sam, sam.projectId);
	expect(refused.status).toBe(402);
	expect(refused.body.error.code).toBe("PAYER_CAP_REACHED");
	expect((await api(node, "GET", "/billing/cap", sam.token)).body).toMatchObject({
		monthlyCapCredits: holdAmount,
		spentCredits: holdAmount
	});
	expect((await api(node, "PUT", "/billing/cap", sam.token, { monthlyCapCredits: null })).body).toMatchObject({
		monthlyCapCredits: null
	});
	expect((await submit(sam, sam.projectId)).status).toBe(202);
});

test("?orgId= on the balance and the ledger: owners and billing see the organisation's; a member 403, another organisation's owner 404", async () => {
	const bal = await api(node, "GET", `/billing/balance?orgId=${ORG}`, bill.token);
	expect(bal.status).toBe(200);
	expect(bal.body.held).toBeGreaterThan(0);
	const ledger = await api(node, "GET", `/billing/ledger?orgId=${ORG}&limit=5`, bill.token);
	expect(ledger.status).toBe(200);
	expect(ledger.body.items).toHaveLength(5);
	expect((await api(node, "GET", `/billing/ledger?orgId=${ORG}`, mia.token)).status).toBe(403);
	expect((await api(node, "GET", `/billing/balance?orgId=${ORG}`, mia.token)).body.error.code).toBe(
		"INSUFFICIENT_ROLE"
	);
	expect((await api(node, "GET", `/billing/balance?orgId=${ORG}`, bob.token)).status).toBe(404);
	expect((await api(node, "GET", `/billing/ledger?orgId=${ORG}`, bob.token)).status).toBe(404);
	// Without orgId: the caller's own wallet.
	expect(
		(await api(node, "GET", "/billing/ledger", bill.token)).body.items.every((e: any) => e.kind === "grant")
	).toBe(true);
});

test("the ledger sums to zero, per transaction and in total, across the user and organisation payers", async () => {
	const [{ total }] = await sql<{ total: string }>(`SELECT coalesce(sum(amount), 0) AS total FROM ledger_entries`);
	expect(Number(total)).toBe(0);
	expect(
		await sql(`SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING sum(amount) <> 0`)
	).toEqual([]);
	// Every stored balance equals its entries; the counters equal held + settled holds of the month.
	expect(
		await sql(
			`SELECT a.key FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_key = a.key
			 WHERE a.key LIKE 'u:%' GROUP BY a.key, a.balance HAVING a.balance <> coalesce(sum(e.amount), 0)`
		)
	).toEqual([]);
	const [{ spent }] = await sql<{ spent: string }>(
		`SELECT coalesce(sum(CASE state WHEN 'held' THEN amount WHEN 'settled' THEN charged ELSE 0 END), 0) AS spent
		 FROM credit_holds WHERE user_id = $1`,
		[PAYER]
	);
	expect(await counter(`payer:${PAYER}`)).toBe(Number(spent));
});
