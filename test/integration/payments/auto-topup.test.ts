/**
 * Auto top-up (issue 19 part 4) end to end: the real `stripe` SDK against the Stripe fake's
 * off-session PaymentIntents (test cards choose success, authentication_required or a decline),
 * signed webhooks through the gateway, the inbox and ledger on the real PostgreSQL, the users
 * service's mailer (the dev outbox) for the failure notice.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { startStripePlatform, type StripePlatform } from "../../support/stripe-platform";
import { eventually, uniqueId } from "../../support/env";
import { signUp } from "../../support/sign-up";
import { apiCaller, webhookSender } from "../../support/billing-http";
import { StripeFake, TEST_CARDS } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

let platform: StripePlatform;
let node: ForgeNode & { baseUrl: string };
let fake: StripeFake;

type Json = Record<string, any>; // response bodies are checked field by field
const call = apiCaller(() => node.baseUrl);
const send = webhookSender(
	() => fake,
	() => node.baseUrl
);
const FAILED_SUBJECT = "ForgeFluid auto top-up failed and was turned off";
const STARTER = 10_000; // credits of the `starter` pack (10 USD)

beforeAll(async () => {
	platform = await startStripePlatform(["api", "users", "payments", "orgs"], {
		BILLING_AUTO_TOPUP_WINDOW_S: "3600",
		SIGNUP_GRANT_CREDITS: "0",
		CREDIT_EXPIRY_SWEEP_MS: "200"
	});
	({ fake, node } = platform);
});
afterAll(() => platform?.close());

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

const drain = () => node.broker.call("payments.processStripeInbox", {});
const check = (payerId: string) => node.broker.call<Json, { payerId: string }>("payments.checkAutoTopUp", { payerId });
const available = async (payerId: string) =>
	(await node.broker.call<{ available: number }, object>("payments.userLedger", { userId: payerId, limit: 1 }))
		.available;

async function person() {
	const email = `${uniqueId("topup")}@example.com`;
	const u = await signUp(node, email, "correct horse battery staple 42");
	return { email, id: u.userId as string, token: u.accessToken as string };
}

const mailsTo = async (email: string) => {
	const box = await call("GET", `/dev/outbox?to=${encodeURIComponent(email)}`);
	return ((box.json?.items ?? []) as Json[]).filter(m => m.subject === FAILED_SUBJECT);
};

/** One starter pack bought through Checkout, which saves `card` on the payer's Customer. */
async function buyPackSavingCard(token: string, card: string, orgId?: string) {
	const q = orgId ? `?orgId=${orgId}` : "";
	const c = await call("POST", `/billing/checkout${q}`, { token, body: { kind: "pack", itemId: "starter" } });
	expect(c.status).toBe(201);
	const session = fake.completeSession(c.json.sessionId, true, { paymentMethod: card });
	await send(fake.event("checkout.session.completed", session));
	await drain();
	return session.customer as string;
}

/** Spends credits through a hold and its settlement: the settlement runs the auto top-up check. */
async function spend(payerId: string, amount: number) {
	const taskId = randomUUID();
	await node.broker.call("payments.reserve", { userId: payerId, taskId, maxCost: amount });
	await node.broker.call("payments.settle", { userId: payerId, taskId, actualCost: amount });
}

const intentsOf = (customer: string) => [...fake.paymentIntents.values()].filter(pi => pi.customer === customer);
const eventOf = (type: string, piId: string) => fake.events.find(e => e.type === type && e.data.object.id === piId)!;

test("a settlement under the threshold buys the pack off-session once; credited only by the webhook, once", async () => {
	const alice = await person();
	const customer = await buyPackSavingCard(alice.token, TEST_CARDS.success);
	expect(await available(alice.id)).toBe(STARTER);

	const put = await call("PUT", "/billing/auto-topup", {
		token: alice.token,
		body: { thresholdCredits: 5_000, packId: "starter" }
	});
	expect(put.status).toBe(200);
	expect(put.json).toMatchObject({ configured: true, enabled: true, thresholdCredits: 5_000, packId: "starter" });

	await spend(alice.id, 4_000); // 6,000 left: above the threshold
	expect((await check(alice.id)).reason).toBe("above_threshold");
	expect(intentsOf(customer)).toHaveLength(0);

	await spend(alice.id, 2_000); // 4,000 left: the settlement triggers the purchase
	await eventually(() => intentsOf(customer).length === 1);
	const [pi] = intentsOf(customer);
	expect(pi).toMatchObject({ amount: 1000, status: "succeeded", off_session: true, payment_method: "pm_card_visa" });
	expect(pi.metadata).toMatchObject({ payerId: alice.id, kind: "pack", itemId: "starter", origin: "auto_topup" });
	const post = fake.requests.find(r => r.path === "/v1/payment_intents")!;
	expect(post.idempotencyKey).toMatch(new RegExp(`^ff-topup-${alice.id}-\\d+$`));

	// Nothing is credited before the webhook; more settlements in the window buy nothing more.
	await eventually(
		async () => (await call("GET", "/billing/auto-topup", { token: alice.token })).json.lastCheckoutId
	);
	expect(await available(alice.id)).toBe(4_000);
	await spend(alice.id, 1_000);
	expect((await check(alice.id)).reason).toBe("window");
	expect(intentsOf(customer)).toHaveLength(1);

	// The webhook, duplicated and replayed, and reconciliation's listing: one credit.
	const succeeded = eventOf("payment_intent.succeeded", pi.id as string);
	for (const e of [succeeded, succeeded]) await send(e);
	await drain();
	await send(succeeded);
	await node.broker.call("payments.reconcileStripe", {});
	await drain();
	expect(await available(alice.id)).toBe(3_000 + STARTER);
	const setting = (await call("GET", "/billing/auto-topup", { token: alice.token })).json;
	const status = await call("GET", `/billing/checkout/${setting.lastCheckoutId}`, { token: alice.token });
	expect(status.json).toMatchObject({ status: "paid", credited: true, credits: STARTER, itemId: "starter" });
	const credits = await sql(
		`SELECT id FROM ledger_transactions WHERE user_id = $1 AND kind = 'purchase' AND cause_id = $2`,
		[alice.id, setting.lastCheckoutId]
	);
	expect(credits).toHaveLength(1);
});

test("two parallel triggers buy once: one PaymentIntent, one credit", async () => {
	const bob = await person();
	const customer = await buyPackSavingCard(bob.token, TEST_CARDS.success);
	await call("PUT", "/billing/auto-topup", {
		token: bob.token,
		body: { thresholdCredits: 50_000, packId: "starter" }
	});
	fake.failNext(1); // the SDK retries the PaymentIntent with the same idempotency key
	const outcomes = await Promise.all([check(bob.id), check(bob.id), check(bob.id), check(bob.id)]);
	expect(outcomes.filter(o => o.triggered)).toHaveLength(1);
	expect(outcomes.filter(o => !o.triggered).map(o => o.reason)).toEqual(["window", "window", "window"]);
	expect(intentsOf(customer)).toHaveLength(1);
	const posts = fake.requests.filter(r => r.path === "/v1/payment_intents" && r.body.customer === customer);
	expect(posts.map(r => r.status)).toEqual([500, 200]);
	expect(new Set(posts.map(r => r.idempotencyKey)).size).toBe(1);
	const pi = intentsOf(customer)[0];
	const e = eventOf("payment_intent.succeeded", pi.id as string);
	await Promise.all([send(e), send(e)]);
	await Promise.all([drain(), drain()]);
	expect(await available(bob.id)).toBe(2 * STARTER);
});

test("webhooks of two top-ups, reordered and duplicated, credit each once", async () => {
	const carol = await person();
	const customer = await buyPackSavingCard(carol.token, TEST_CARDS.success);
	await call("PUT", "/billing/auto-topup", {
		token: carol.token,
		body: { thresholdCredits: 100_000, packId: "starter" }
	});
	expect((await check(carol.id)).triggered).toBe(true);
	// The window has passed (moved back rather than waited for).
	await sql(
		`UPDATE auto_topups SET last_triggered_at = last_triggered_at - interval '2 hours' WHERE payer_id = $1 RETURNING payer_id`,
		[carol.id]
	);
	expect((await check(carol.id)).triggered).toBe(true);
	const [first, second] = intentsOf(customer).map(pi => eventOf("payment_intent.succeeded", pi.id as string));
	expect(second).toBeDefined();
	const keys = fake.requests.filter(r => r.path === "/v1/payment_intents").map(r => r.idempotencyKey);
	expect(new Set(keys.filter(k => k!.includes(carol.id))).size).toBe(2);
	for (const e of [second, first, second, first, second]) await send(e);
	await drain();
	expect(await available(carol.id)).toBe(3 * STARTER);
});

describe.each([
	["authentication_required", TEST_CARDS.authenticationRequired],
	["card_declined", TEST_CARDS.declined]
])("a card that answers %s", (reason, card) => {
	test("turns auto top-up off with the reason, mails once, never retries", async () => {
		const dan = await person();
		const customer = await buyPackSavingCard(dan.token, card);
		await call("PUT", "/billing/auto-topup", {
			token: dan.token,
			body: { thresholdCredits: 50_000, packId: "starter" }
		});
		const outcome = await check(dan.id);
		expect(outcome).toMatchObject({ triggered: true, status: "failed", reason });
		const setting = (await call("GET", "/billing/auto-topup", { token: dan.token })).json;
		expect(setting).toMatchObject({ enabled: false, disabledReason: reason });
		expect(setting.disabledAt).toEqual(expect.any(String));

		// More settlements, even after the window, and Stripe's failure event delivered twice: nothing more.
		await sql(
			`UPDATE auto_topups SET last_triggered_at = last_triggered_at - interval '2 hours' WHERE payer_id = $1 RETURNING payer_id`,
			[dan.id]
		);
		await spend(dan.id, 100);
		expect((await check(dan.id)).reason).toBe("off");
		const [pi] = intentsOf(customer);
		const failed = eventOf("payment_intent.payment_failed", pi.id as string);
		await send(failed);
		await send(failed);
		await drain();
		expect(intentsOf(customer)).toHaveLength(1);
		expect(await available(dan.id)).toBe(STARTER - 100);
		const status = await call("GET", `/billing/checkout/${setting.lastCheckoutId}`, { token: dan.token });
		expect(status.json).toMatchObject({ status: "failed", credited: false });

		await eventually(async () => (await mailsTo(dan.email)).length > 0, 15_000);
		const mails = await mailsTo(dan.email);
		expect(mails).toHaveLength(1);
		expect(mails[0].text).toContain(`(${reason})`);
		expect(mails[0].links).toContain(`${node.config.users.mail.appUrl}/billing`);
		const notices = await sql(
			`SELECT crossing FROM billing_notices WHERE payer_id = $1 AND kind = 'auto_topup_failed'`,
			[dan.id]
		);
		expect(notices).toHaveLength(1);

		// Turning it on again clears the reason; the next window's attempt is a new PaymentIntent.
		const again = await call("PUT", "/billing/auto-topup", {
			token: dan.token,
			body: { thresholdCredits: 50_000, packId: "starter", enabled: true }
		});
		expect(again.json).toMatchObject({ enabled: true, disabledReason: null });
	});
});

test("no saved card: turned off with no_payment_method; unknown packs are 422", async () => {
	const erin = await person();
	const bad = await call("PUT", "/billing/auto-topup", {
		token: erin.token,
		body: { thresholdCredits: 1, packId: "nope" }
	});
	expect(bad.status).toBe(422);
	await call("PUT", "/billing/auto-topup", { token: erin.token, body: { thresholdCredits: 1, packId: "starter" } });
	expect(await check(erin.id)).toMatchObject({ triggered: true, status: "failed", reason: "no_payment_method" });
	expect((await call("GET", "/billing/auto-topup", { token: erin.token })).json.enabled).toBe(false);
	const del = await call("DELETE", "/billing/auto-topup", { token: erin.token });
	expect(del.json).toMatchObject({ configured: false, enabled: false });
});

test("an organisation's auto top-up: billing roles set it, a plain member cannot, the org's card pays", async () => {
	const [owner, billing, member] = [await person(), await person(), await person()];
	const orgId = randomUUID();
	const payer = `org:${orgId}`;
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Initech', $2) RETURNING id`, [orgId, owner.id]);
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
	const customer = await buyPackSavingCard(billing.token, TEST_CARDS.success, orgId);
	const body = { thresholdCredits: 20_000, packId: "builder" };
	expect((await call("PUT", `/billing/auto-topup?orgId=${orgId}`, { token: member.token, body })).status).toBe(403);
	expect((await call("PUT", `/billing/auto-topup?orgId=${orgId}`, { token: billing.token, body })).status).toBe(200);
	expect((await call("GET", `/billing/auto-topup?orgId=${orgId}`, { token: owner.token })).json.packId).toBe(
		"builder"
	);
	expect((await call("GET", "/billing/auto-topup", { token: owner.token })).json.configured).toBe(false);
	await spend(payer, 1_000);
	await eventually(() => intentsOf(customer).length === 1);
	const [pi] = intentsOf(customer);
	expect(pi).toMatchObject({
		amount: 5000,
		metadata: expect.objectContaining({ payerId: payer, itemId: "builder" })
	});
	await send(eventOf("payment_intent.succeeded", pi.id as string));
	await drain();
	expect(await available(payer)).toBe(STARTER - 1_000 + 52_500);
});

test("a clawback under the threshold does not buy a pack; credit expiring under it does", async () => {
	const bob = await person();
	const customer = await buyPackSavingCard(bob.token, TEST_CARDS.success);
	const put = await call("PUT", "/billing/auto-topup", {
		token: bob.token,
		body: { thresholdCredits: 5_000, packId: "starter" }
	});
	expect(put.status).toBe(200);
	const svc = node.broker.getLocalService("payments") as unknown as {
		topUpChecks: Set<Promise<unknown>>;
		ledger: {
			run<T>(fn: (tx: unknown) => Promise<T>): Promise<T>;
			clawback(tx: unknown, p: Record<string, unknown>): Promise<{ taken: bigint }>;
		};
	};
	const checksDone = async () => {
		while (svc.topUpChecks.size) await Promise.allSettled([...svc.topUpChecks]);
	};
	// A refund of most of the pack (as Stripe's charge.refunded leads to): 10,000 -> 4,000.
	await svc.ledger.run(tx =>
		svc.ledger.clawback(tx, {
			kind: "refund_clawback",
			userId: bob.id,
			amount: 6_000n,
			to: "sys:stripe",
			preferLotId: null,
			causeType: "stripe_refund",
			causeId: `refund-${bob.id}`,
			description: "Card payment refunded"
		})
	);
	await checksDone();
	expect(await available(bob.id)).toBe(4_000);
	expect(intentsOf(customer)).toHaveLength(0);

	// Promotional credit takes it over the threshold, then expires with nobody spending: 7,000 -> 4,000.
	await node.broker.call("payments.grant", { userId: bob.id, credits: 3_000, operator: "test", reason: "test" });
	expect(await available(bob.id)).toBe(7_000);
	await sql(`UPDATE credit_lots SET expires_at = now() WHERE user_id = $1 AND expires_at IS NOT NULL RETURNING id`, [
		bob.id
	]);
	await eventually(() => intentsOf(customer).length === 1, 15_000);
	expect(intentsOf(customer)[0].metadata).toMatchObject({ payerId: bob.id, origin: "auto_topup" });
	expect(await available(bob.id)).toBe(4_000);
});
