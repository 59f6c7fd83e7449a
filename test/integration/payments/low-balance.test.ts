/**
 * Low-balance notices (issue 19 part 5) end to end: settlements through payments.reserve/settle on
 * the real PostgreSQL, the durable `billing.low_balance` once per crossing, mailed by the users
 * service (the dev outbox), per-payer thresholds through GET/PUT /billing/alerts (`?orgId=`); the same
 * checks after a balance falls without a settlement: credit expiring (the expiry sweep) and a clawback.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { createTestDatabase, eventually, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import { signUp } from "../../support/sign-up";
import { apiCaller } from "../../support/billing-http";
import type { ForgeNode } from "../../../app/node";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };

type Json = Record<string, any>; // response bodies are checked field by field
const call = apiCaller(() => node.baseUrl);
const SUBJECT = "ForgeFluid credit is running low";

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users", "payments", "orgs"],
		env: {
			RATE_LIMIT_PER_MINUTE: "100000",
			RATE_LIMIT_ANON_PER_MINUTE: "100000",
			SIGNUP_GRANT_CREDITS: "0",
			BILLING_LOW_BALANCE_CREDITS: "1000",
			CREDIT_EXPIRY_SWEEP_MS: "200"
		}
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

async function person() {
	const email = `${uniqueId("low")}@example.com`;
	const u = await signUp(node, email, "correct horse battery staple 42");
	return { email, id: u.userId as string, token: u.accessToken as string };
}

const grant = (userId: string, credits: number) =>
	node.broker.call("payments.grant", { userId, credits, operator: "test", reason: "test", key: randomUUID() });

/** The after-settlement checks the settle hook started on this node, until they are done. */
async function hookDone() {
	const svc = node.broker.getLocalService("payments") as unknown as { topUpChecks: Set<Promise<unknown>> };
	while (svc.topUpChecks.size) await Promise.allSettled([...svc.topUpChecks]);
}

/** A settlement and its hook's checks, then the checks once more: what they say now. */
async function spend(payerId: string, amount: number) {
	const taskId = randomUUID();
	await node.broker.call("payments.reserve", { userId: payerId, taskId, maxCost: amount });
	await node.broker.call("payments.settle", { userId: payerId, taskId, actualCost: amount });
	await hookDone();
	return node.broker.call<Json, { payerId: string }>("payments.checkBalanceNotices", { payerId });
}

const notices = (payerId: string) =>
	sql<{ crossing: string; details: Json }>(
		`SELECT crossing, details FROM billing_notices WHERE payer_id = $1 AND kind = 'low_balance' ORDER BY created_at`,
		[payerId]
	);
const mailsTo = async (email: string) => {
	const box = await call("GET", `/dev/outbox?to=${encodeURIComponent(email)}`);
	return ((box.json?.items ?? []) as Json[]).filter(m => m.subject === SUBJECT);
};

test("one notice per crossing under the default threshold, mailed once each", async () => {
	const alice = await person();
	await grant(alice.id, 5_000);
	expect((await spend(alice.id, 3_000)).lowBalance).toEqual({ noticed: false, reason: "above_threshold" });
	await spend(alice.id, 1_500); // 500 left: crossed
	expect(await notices(alice.id)).toHaveLength(1);
	expect((await spend(alice.id, 100)).lowBalance).toEqual({ noticed: false, reason: "still_below" });
	await spend(alice.id, 100);
	expect(await notices(alice.id)).toHaveLength(1);

	// A purchase lifts it above, and spending within the same gap between checks crosses again.
	await grant(alice.id, 10_000); // 10,300
	await spend(alice.id, 9_500); // 800
	const list = await notices(alice.id);
	expect(list.map(n => n.crossing)).toEqual(["1", "2"]);
	expect(list[1].details).toMatchObject({ payerId: alice.id, thresholdCredits: "1000", availableCredits: "800" });

	await eventually(async () => (await mailsTo(alice.email)).length === 2, 15_000);
	const texts = (await mailsTo(alice.email)).map(m => m.text as string);
	expect(texts.some(t => t.includes("Your account has 500 credits left, under the 1000 credits"))).toBe(true);
	expect(texts.some(t => t.includes("Your account has 800 credits left"))).toBe(true);
	expect((await mailsTo(alice.email))[0].links).toContain(`${node.config.users.mail.appUrl}/billing`);
});

test("parallel checks notice a crossing once", async () => {
	const bob = await person();
	await grant(bob.id, 1_200);
	const taskId = randomUUID();
	await node.broker.call("payments.reserve", { userId: bob.id, taskId, maxCost: 500 });
	await node.broker.call("payments.settle", { userId: bob.id, taskId, actualCost: 500 });
	await hookDone();
	// As if the hook had not run: the state before the crossing, four checks at once.
	await sql(
		`UPDATE billing_alerts SET below = false, seen_transaction_id = 0, crossings = 0 WHERE payer_id = $1 RETURNING payer_id`,
		[bob.id]
	);
	await sql(`DELETE FROM billing_notices WHERE payer_id = $1 RETURNING payer_id`, [bob.id]);
	const outcomes = await Promise.all(
		[1, 2, 3, 4].map(() => node.broker.call<Json, object>("payments.checkBalanceNotices", { payerId: bob.id }))
	);
	expect(outcomes.filter(o => o.lowBalance.noticed)).toHaveLength(1);
	expect(await notices(bob.id)).toHaveLength(1);
});

test("a payer's own threshold: higher, off (0), back to the default (null)", async () => {
	const carol = await person();
	await grant(carol.id, 50_000);
	expect((await call("GET", "/billing/alerts", { token: carol.token })).json).toEqual({
		lowBalanceCredits: null,
		effectiveLowBalanceCredits: 1000,
		defaultLowBalanceCredits: 1000,
		below: false
	});
	const put = await call("PUT", "/billing/alerts", { token: carol.token, body: { lowBalanceCredits: 0 } });
	expect(put.json).toMatchObject({ lowBalanceCredits: 0, effectiveLowBalanceCredits: 0 });
	expect((await spend(carol.id, 49_500)).lowBalance).toEqual({ noticed: false, reason: "off" });
	await call("PUT", "/billing/alerts", { token: carol.token, body: { lowBalanceCredits: 600 } });
	expect((await spend(carol.id, 1)).lowBalance).toEqual({ noticed: false, reason: "still_below" });
	expect((await notices(carol.id)).map(n => n.crossing)).toEqual(["1"]);
	const back = await call("PUT", "/billing/alerts", { token: carol.token, body: { lowBalanceCredits: null } });
	expect(back.json).toMatchObject({ lowBalanceCredits: null, effectiveLowBalanceCredits: 1000, below: true });
	expect((await call("PUT", "/billing/alerts", { token: carol.token, body: { lowBalanceCredits: -1 } })).status).toBe(
		422
	);
});

test("an organisation's threshold is set by its billing roles; its billing contacts are mailed", async () => {
	const [owner, billing, member] = [await person(), await person(), await person()];
	const orgId = randomUUID();
	const payer = `org:${orgId}`;
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Hooli', $2) RETURNING id`, [orgId, owner.id]);
	for (const [p, role] of [
		[owner, "owner"],
		[billing, "billing"],
		[member, "member"]
	] as const)
		await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3) RETURNING org_id`, [
			orgId,
			p.id,
			role
		]);
	const body = { lowBalanceCredits: 5_000 };
	expect((await call("PUT", `/billing/alerts?orgId=${orgId}`, { token: member.token, body })).status).toBe(403);
	expect((await call("PUT", `/billing/alerts?orgId=${orgId}`, { token: billing.token, body })).status).toBe(200);
	await grant(payer, 6_000);
	await spend(payer, 2_000);
	expect(await notices(payer)).toHaveLength(1);
	await eventually(
		async () => (await mailsTo(owner.email)).length > 0 && (await mailsTo(billing.email)).length > 0,
		15_000
	);
	expect((await mailsTo(owner.email))[0].text).toContain("The organisation Hooli has 4000 credits left");
	expect(await mailsTo(member.email)).toEqual([]);
});

test("credit that expires: the sweep moves it to the expired account and the crossing is noticed", async () => {
	const dan = await person();
	await grant(dan.id, 600); // promotional, with the default expiry
	await node.broker.call("payments.grant", {
		userId: dan.id,
		credits: 900,
		operator: "test",
		reason: "test",
		source: "paid",
		key: randomUUID()
	});
	expect((await spend(dan.id, 100)).lowBalance).toEqual({ noticed: false, reason: "above_threshold" });
	expect(await notices(dan.id)).toEqual([]);
	// Promotional credit is spent first (500 of it left). Its expiry passes: 1,400 -> 900 available,
	// with no settlement of dan's.
	await sql(
		`UPDATE credit_lots SET expires_at = now() - interval '1 second' WHERE user_id = $1 AND expires_at IS NOT NULL RETURNING id`,
		[dan.id]
	);
	await eventually(async () => (await notices(dan.id)).length === 1, 15_000);
	expect((await notices(dan.id))[0].details).toMatchObject({ availableCredits: "900", thresholdCredits: "1000" });
	const [expiry] = await sql<{ kind: string; n: string }>(
		`SELECT t.kind, count(*) AS n FROM ledger_transactions t WHERE t.user_id = $1 AND t.kind = 'expiry' GROUP BY t.kind`,
		[dan.id]
	);
	expect(expiry).toEqual({ kind: "expiry", n: "1" });
	await eventually(async () => (await mailsTo(dan.email)).length === 1, 15_000);
	// Swept once: later sweeps find nothing more and notice nothing more.
	await new Promise(r => setTimeout(r, 600));
	await hookDone();
	expect(await notices(dan.id)).toHaveLength(1);
});

test("a clawback that takes the balance under the threshold is noticed, once", async () => {
	const erin = await person();
	await grant(erin.id, 3_000);
	const svc = node.broker.getLocalService("payments") as unknown as {
		ledger: {
			run<T>(fn: (tx: unknown) => Promise<T>): Promise<T>;
			clawback(tx: unknown, p: Record<string, unknown>): Promise<{ taken: bigint }>;
		};
	};
	const clawback = (amount: bigint, causeId: string) =>
		svc.ledger.run(tx =>
			svc.ledger.clawback(tx, {
				kind: "refund_clawback",
				userId: erin.id,
				amount,
				to: "sys:stripe",
				preferLotId: null,
				causeType: "stripe_refund",
				causeId,
				description: "Card payment refunded"
			})
		);
	expect((await clawback(1_000n, "r1")).taken).toBe(1_000n);
	await hookDone();
	expect(await notices(erin.id)).toEqual([]);
	expect((await clawback(1_500n, "r2")).taken).toBe(1_500n); // 500 left
	await hookDone();
	expect((await notices(erin.id)).map(n => n.details.availableCredits)).toEqual(["500"]);
	await clawback(1_500n, "r2"); // the same refund again: a duplicate, nothing taken, no check
	await hookDone();
	expect(await notices(erin.id)).toHaveLength(1);
});

test("a payer's burst of settlements runs one check at a time, once more after it, and notices the crossing once", async () => {
	const fay = await person();
	await grant(fay.id, 5_000);
	const svc = node.broker.getLocalService("payments") as unknown as {
		lowBalance: { check(payerId: string): Promise<unknown> };
	};
	const check = svc.lowBalance.check.bind(svc.lowBalance);
	let calls = 0;
	let running = 0;
	let overlapped = false;
	svc.lowBalance.check = async (payerId: string) => {
		if (payerId === fay.id) {
			calls++;
			overlapped ||= running > 0;
			running++;
		}
		try {
			return await check(payerId);
		} finally {
			if (payerId === fay.id) running--;
		}
	};
	try {
		const ids = Array.from({ length: 21 }, () => randomUUID());
		await Promise.all(
			ids.map(taskId => node.broker.call("payments.reserve", { userId: fay.id, taskId, maxCost: 200 }))
		);
		// 21 x 200 = 4,200 of 5,000: the balance ends at 800, under the threshold of 1,000.
		await Promise.all(
			ids.map(taskId => node.broker.call("payments.settle", { userId: fay.id, taskId, actualCost: 200 }))
		);
		await hookDone();
	} finally {
		svc.lowBalance.check = check;
	}
	expect(overlapped).toBe(false);
	expect(calls).toBeGreaterThanOrEqual(1);
	expect(calls).toBeLessThan(21);
	expect((await notices(fay.id)).map(n => n.details.availableCredits)).toEqual(["800"]);
});

test("the checks of several payers' settlements read all their states in one statement, each its own", async () => {
	const payers = await Promise.all([1, 2, 3, 4, 5].map(() => person()));
	// Three end above the threshold of 1,000, two under it.
	const credit = [5_000, 5_000, 5_000, 1_100, 1_100];
	await Promise.all(payers.map((p, i) => grant(p.id, credit[i])));
	const taskIds = payers.map(() => randomUUID());
	await Promise.all(
		payers.map((p, i) => node.broker.call("payments.reserve", { userId: p.id, taskId: taskIds[i], maxCost: 500 }))
	);
	await Promise.all(
		payers.map((p, i) => node.broker.call("payments.settle", { userId: p.id, taskId: taskIds[i], actualCost: 500 }))
	);
	await hookDone();
	const pg = (await import("pg")).default;
	const query = pg.Client.prototype.query;
	let reads = 0;
	pg.Client.prototype.query = function (this: unknown, ...args: unknown[]) {
		const q = args[0] as string | { text?: string };
		const text = typeof q === "string" ? q : (q?.text ?? "");
		if (text.includes("LEFT JOIN billing_alerts a ON a.payer_id")) reads++;
		return (query as (...a: unknown[]) => unknown).apply(this, args);
	} as typeof query;
	let outcomes: Json[];
	try {
		outcomes = await Promise.all(
			payers.map(p => node.broker.call<Json, object>("payments.checkBalanceNotices", { payerId: p.id }))
		);
	} finally {
		pg.Client.prototype.query = query;
	}
	expect(reads).toBe(1);
	expect(outcomes.map(o => o.lowBalance)).toEqual([
		{ noticed: false, reason: "above_threshold" },
		{ noticed: false, reason: "above_threshold" },
		{ noticed: false, reason: "above_threshold" },
		{ noticed: false, reason: "still_below" },
		{ noticed: false, reason: "still_below" }
	]);
	for (const p of payers.slice(3)) expect(await notices(p.id)).toHaveLength(1);
	for (const p of payers.slice(0, 3)) expect(await notices(p.id)).toHaveLength(0);
});
