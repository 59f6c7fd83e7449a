/**
 * Card payments end to end: the real `stripe` SDK against the local Stripe fake, webhooks through
 * the gateway's raw-body route, the inbox on the real PostgreSQL, the ledger.
 */
import { QueryTypes } from "sequelize";
import { startStripePlatform, type StripePlatform } from "../../support/stripe-platform";
import { bearerFor } from "../../support/env";
import { FakeEvent, StripeFake } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

let platform: StripePlatform;
let node: ForgeNode & { baseUrl: string };
let fake: StripeFake;

beforeAll(async () => {
	platform = await startStripePlatform(["api", "payments"]);
	({ fake, node } = platform);
});
afterAll(() => platform?.close());

type Json = Record<string, any>; // response bodies are checked field by field
const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

async function http(
	method: string,
	path: string,
	opts: { user?: string; body?: unknown; headers?: Record<string, string> } = {}
) {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.user) headers.authorization = `Bearer ${bearerFor(node.config, opts.user)}`;
	if (opts.body !== undefined) headers["content-type"] = "application/json";
	const res = await fetch(node.baseUrl + "/api/v1" + path, {
		method,
		headers,
		body: opts.body === undefined ? undefined : JSON.stringify(opts.body)
	});
	const text = await res.text();
	return { status: res.status, json: (text ? JSON.parse(text) : null) as Json, headers: res.headers };
}

function deliver(body: string, signature: string | null) {
	const headers: Record<string, string> = { "content-type": "application/json" };
	if (signature !== null) headers["stripe-signature"] = signature;
	return fetch(`${node.baseUrl}/api/v1/billing/stripe/webhook`, { method: "POST", headers, body }).then(async r => ({
		status: r.status,
		json: (await r.json()) as Json
	}));
}

const send = (event: FakeEvent) => {
	const { body, signature } = fake.signed(event);
	return deliver(body, signature);
};
const drain = () => node.broker.call("payments.processStripeInbox", {});
const available = async (user: string) => (await http("GET", "/billing/balance", { user })).json.available as number;

async function buyPack(user: string, itemId = "starter", key?: string) {
	const r = await http("POST", "/billing/checkout", {
		user,
		body: { kind: "pack", itemId },
		headers: key ? { "idempotency-key": key } : {}
	});
	expect(r.status).toBe(201);
	return r.json;
}

describe("checkout", () => {
	test("creates a Checkout Session with metadata on the session and its payment intent, under a deterministic key", async () => {
		const before = fake.requests.length;
		const c = await buyPack("alice");
		expect(c).toMatchObject({
			kind: "pack",
			itemId: "starter",
			credits: 10_000,
			amountCents: 1000,
			currency: "usd",
			status: "open",
			credited: false
		});
		expect(c.url).toMatch(/^https:\/\/checkout\.stripe\.test\//);
		// alice's first checkout makes her Stripe Customer first (stripe-self-serve.test.ts covers it).
		const [customer, ...reqs] = fake.requests.slice(before);
		expect(customer).toMatchObject({ path: "/v1/customers", idempotencyKey: "ff-customer-alice" });
		expect(reqs).toHaveLength(1);
		expect(reqs[0]).toMatchObject({
			method: "POST",
			path: "/v1/checkout/sessions",
			idempotencyKey: `ff-checkout-${c.checkoutId}`,
			status: 200
		});
		expect(reqs[0].body).toMatchObject({
			mode: "payment",
			client_reference_id: "alice",
			metadata: { checkoutId: c.checkoutId, userId: "alice", kind: "pack", itemId: "starter", credits: "10000" },
			payment_intent_data: { metadata: { checkoutId: c.checkoutId, userId: "alice" } },
			line_items: [{ quantity: "1", price_data: { currency: "usd", unit_amount: "1000" } }]
		});
		expect(reqs[0].body.success_url).toContain(c.checkoutId);
	});

	test("a failed first attempt is retried by the SDK with the same idempotency key", async () => {
		fake.failNext(1);
		const before = fake.requests.length;
		const c = await buyPack("alice", "builder");
		const reqs = fake.requests.slice(before);
		expect(reqs.map(r => r.status)).toEqual([500, 200]);
		expect(new Set(reqs.map(r => r.idempotencyKey))).toEqual(new Set([`ff-checkout-${c.checkoutId}`]));
	});

	test("a client retry with the same Idempotency-Key returns the same checkout without a new session", async () => {
		const a = await buyPack("alice", "studio", "client-key-0001");
		const before = fake.requests.length;
		const b = await buyPack("alice", "studio", "client-key-0001");
		expect(b.checkoutId).toBe(a.checkoutId);
		expect(b.sessionId).toBe(a.sessionId);
		expect(fake.requests.length).toBe(before);
		const clash = await http("POST", "/billing/checkout", {
			user: "alice",
			body: { kind: "pack", itemId: "starter" },
			headers: { "idempotency-key": "client-key-0001" }
		});
		expect(clash.status).toBe(409);
		expect(clash.json.error.code).toBe("IDEMPOTENCY_KEY_REUSED");
	});

	test("when Stripe keeps failing: 503, and a retry with the same key resumes the same checkout", async () => {
		fake.failNext(10);
		const r = await http("POST", "/billing/checkout", {
			user: "bob",
			body: { kind: "plan", itemId: "pro" },
			headers: { "idempotency-key": "client-key-0002" }
		});
		expect(r.status).toBe(503);
		expect(r.json.error.code).toBe("STRIPE_UNAVAILABLE");
		fake.failNext(0);
		const ok = await http("POST", "/billing/checkout", {
			user: "bob",
			body: { kind: "plan", itemId: "pro" },
			headers: { "idempotency-key": "client-key-0002" }
		});
		expect(ok.status).toBe(201);
		const keys = new Set(
			fake.requests.filter(q => q.body.client_reference_id === "bob").map(q => q.idempotencyKey)
		);
		expect(keys).toEqual(new Set([`ff-checkout-${ok.json.checkoutId}`]));
	});

	test("unknown items and bad kinds are 422", async () => {
		const r = await http("POST", "/billing/checkout", { user: "alice", body: { kind: "pack", itemId: "nope" } });
		expect(r.status).toBe(422);
		expect(r.json.error.details[0].field).toBe("itemId");
		const r2 = await http("POST", "/billing/checkout", {
			user: "alice",
			body: { kind: "gift", itemId: "starter" }
		});
		expect(r2.status).toBe(422);
		const r3 = await http("POST", "/billing/checkout", {
			user: "alice",
			body: { kind: "pack", itemId: "starter", extra: 1 }
		});
		expect(r3.status).toBe(422);
	});
});

describe("webhook signature", () => {
	let event: FakeEvent;
	beforeAll(() => {
		event = fake.event("customer.created", { id: "cus_1", object: "customer" });
	});

	test("a valid delivery is accepted", async () => {
		const r = await send(event);
		expect(r).toEqual({ status: 200, json: { received: true, duplicate: false, eventId: event.id } });
	});

	test("bad signature, stale timestamp, re-serialised body, missing header: 400", async () => {
		const { body, signature } = fake.signed(event);
		const wrongSecret = fake.signed(event, { secret: "whsec_someone_else" });
		const stale = fake.signed(event, { timestamp: Math.floor(Date.now() / 1000) - 3600 });
		const reserialised = JSON.stringify(JSON.parse(body));
		expect(reserialised).not.toBe(body);
		for (const [b, s] of [
			[body, wrongSecret.signature],
			[stale.body, stale.signature],
			[reserialised, signature],
			[body, "t=1,v1=deadbeef"],
			[body, null]
		] as const) {
			const r = await deliver(b, s);
			expect(r.status).toBe(400);
			expect(r.json).toEqual({
				error: { code: "INVALID_SIGNATURE", message: expect.any(String) },
				requestId: expect.any(String)
			});
		}
	});
});

describe("crediting a paid checkout", () => {
	test("the same event delivered twice and concurrently credits once", async () => {
		const c = await buyPack("carol");
		const completed = fake.event("checkout.session.completed", fake.completeSession(c.sessionId));
		const results = await Promise.all(Array.from({ length: 6 }, () => send(completed)));
		expect(results.every(r => r.status === 200)).toBe(true);
		expect(results.filter(r => !r.json.duplicate)).toHaveLength(1);
		await drain();
		expect((await send(completed)).json.duplicate).toBe(true);
		await drain();
		expect(await available("carol")).toBe(10_000);
		const [row] = await sql<{ outcome: string }>(`SELECT outcome FROM stripe_events WHERE id = $1`, [completed.id]);
		expect(row.outcome).toBe("credited");
	});

	test("session and payment-intent events of one payment, and the success redirect, credit once", async () => {
		const c = await buyPack("dave");
		const session = fake.completeSession(c.sessionId);
		const events = [
			fake.event("payment_intent.succeeded", fake.paymentIntentOf(c.sessionId)),
			fake.event("checkout.session.completed", session)
		];
		const [status] = await Promise.all([
			http("GET", `/billing/checkout/${c.checkoutId}`, { user: "dave" }),
			...events.map(send)
		]);
		expect(status.status).toBe(200);
		await Promise.all([drain(), drain()]);
		expect(await available("dave")).toBe(10_000);
		const after = await http("GET", `/billing/checkout/${c.checkoutId}`, { user: "dave" });
		expect(after.json).toMatchObject({ status: "paid", credited: true });
		const purchases = await sql(`SELECT id FROM ledger_transactions WHERE user_id = 'dave' AND kind = 'purchase'`);
		expect(purchases).toHaveLength(1);
		const outbox = await sql<{ payload: Json }>(
			`SELECT payload FROM outbox_events WHERE topic = 'payments.credits.purchased' AND payload->>'userId' = 'dave'`
		);
		expect(outbox.map(o => o.payload)).toEqual([{ userId: "dave", checkoutId: c.checkoutId, credits: "10000" }]);
	});

	test("an unpaid (async) session credits nothing until async_payment_succeeded", async () => {
		const c = await buyPack("erin");
		await send(fake.event("checkout.session.completed", fake.completeSession(c.sessionId, false)));
		await drain();
		expect(await available("erin")).toBe(0);
		expect((await http("GET", `/billing/checkout/${c.checkoutId}`, { user: "erin" })).json).toMatchObject({
			status: "processing",
			credited: false
		});
		await send(fake.event("checkout.session.async_payment_succeeded", fake.completeSession(c.sessionId, true)));
		await drain();
		expect(await available("erin")).toBe(10_000);
	});

	test("the inbox is processed by itself right after the webhook answers", async () => {
		const c = await buyPack("paula");
		await send(fake.event("checkout.session.completed", fake.completeSession(c.sessionId)));
		const deadline = Date.now() + 5000;
		while ((await available("paula")) !== 10_000 && Date.now() < deadline)
			await new Promise(r => setTimeout(r, 50));
		expect(await available("paula")).toBe(10_000);
	});

	test("someone else's checkout is 404", async () => {
		const c = await buyPack("frank");
		const r = await http("GET", `/billing/checkout/${c.checkoutId}`, { user: "mallory" });
		expect(r.status).toBe(404);
		expect(r.json.error.code).toBe("NOT_FOUND");
	});
});

describe("refunds and disputes", () => {
	async function paid(user: string) {
		const c = await buyPack(user);
		await send(fake.event("checkout.session.completed", fake.completeSession(c.sessionId)));
		await drain();
		return c;
	}

	test("a refund claws back its share; replays and older cumulative amounts do nothing more", async () => {
		const c = await paid("gina");
		const half = fake.event("charge.refunded", fake.chargeOf(c.sessionId, 500));
		await send(half);
		await drain();
		expect(await available("gina")).toBe(5_000);
		await send(fake.event("charge.refunded", fake.chargeOf(c.sessionId, 500)));
		await node.broker.call("payments.replayStripeEvent", { eventId: half.id });
		await drain();
		expect(await available("gina")).toBe(5_000);
		await send(fake.event("charge.refunded", fake.chargeOf(c.sessionId, 1000)));
		await drain();
		expect(await available("gina")).toBe(0);
	});

	test("a refund of spent credit takes what is left and records the shortfall; never below zero", async () => {
		const c = await paid("hank");
		await node.broker.call("payments.reserve", { userId: "hank", taskId: "hank-task", maxCost: 7_000 });
		await node.broker.call("payments.settle", { userId: "hank", taskId: "hank-task", actualCost: 7_000 });
		await send(fake.event("charge.refunded", fake.chargeOf(c.sessionId, 1000)));
		await drain();
		expect(await available("hank")).toBe(0);
		const [row] = await sql<{ clawed_back: string; clawback_shortfall: string }>(
			`SELECT clawed_back, clawback_shortfall FROM stripe_checkouts WHERE id = $1`,
			[c.checkoutId]
		);
		expect([Number(row.clawed_back), Number(row.clawback_shortfall)]).toEqual([10_000, 7_000]);
	});

	test("a refund that overtakes its payment waits for it", async () => {
		const c = await buyPack("ivan");
		fake.completeSession(c.sessionId);
		await send(fake.event("charge.refunded", fake.chargeOf(c.sessionId, 1000)));
		await drain();
		const [deferred] = await sql<{ outcome: string; processed_at: Date | null }>(
			`SELECT outcome, processed_at FROM stripe_events WHERE type = 'charge.refunded' ORDER BY received_at DESC LIMIT 1`
		);
		expect(deferred).toEqual({ outcome: "deferred", processed_at: null });
		await send(fake.event("checkout.session.completed", fake.completeSession(c.sessionId)));
		await drain();
		expect(await available("ivan")).toBe(10_000);
		await sql(`UPDATE stripe_events SET next_attempt_at = now() WHERE processed_at IS NULL RETURNING id`);
		await drain();
		expect(await available("ivan")).toBe(0);
	});

	test("a dispute claws back; a won dispute restores", async () => {
		const c = await paid("judy");
		const dispute = {
			id: "dp_judy",
			object: "dispute",
			payment_intent: fake.sessions.get(c.sessionId)!.payment_intent,
			amount: 1000,
			status: "needs_response"
		};
		await send(fake.event("charge.dispute.created", dispute));
		await drain();
		expect(await available("judy")).toBe(0);
		await send(fake.event("charge.dispute.closed", { ...dispute, status: "won" }));
		await send(fake.event("charge.dispute.closed", { ...dispute, status: "won" }));
		await drain();
		expect(await available("judy")).toBe(10_000);
	});
});

describe("subscriptions", () => {
	async function plan(user: string, itemId = "pro") {
		const r = await http("POST", "/billing/checkout", { user, body: { kind: "plan", itemId } });
		expect(r.status).toBe(201);
		expect(fake.sessions.get(r.json.sessionId)).toMatchObject({
			mode: "subscription",
			subscription_data_metadata: { planTier: itemId, userId: user }
		});
		return r.json;
	}
	const planEvents = (user: string) =>
		sql<{ payload: Json }>(
			`SELECT payload FROM outbox_events WHERE topic = 'payments.plan.changed' AND payload->>'userId' = $1 ORDER BY id`,
			[user]
		);

	test("an active subscription sets the plan tier, with its discount, and publishes the change", async () => {
		const c = await plan("kate");
		const t = Math.floor(Date.now() / 1000);
		await send(fake.event("checkout.session.completed", fake.completeSession(c.sessionId), t));
		await send(fake.event("customer.subscription.created", fake.subscriptionOf(c.sessionId, "active"), t));
		await drain();
		expect((await http("GET", "/billing/balance", { user: "kate" })).json).toMatchObject({
			tier: "pro",
			planTier: "pro",
			feeDiscountBps: 250,
			available: 0
		});
		expect((await planEvents("kate")).map(e => e.payload)).toEqual([{ userId: "kate", planTier: "pro" }]);
		const again = await http("POST", "/billing/checkout", { user: "kate", body: { kind: "plan", itemId: "pro" } });
		expect(again.status).toBe(409);
		expect(again.json.error.code).toBe("ALREADY_SUBSCRIBED");
		expect(await available("kate")).toBe(0); // a plan buys a tier, not credits
	});

	test("out-of-order subscription events converge on the latest state", async () => {
		const c = await plan("leo", "team");
		const t = Math.floor(Date.now() / 1000);
		const created = fake.event(
			"customer.subscription.created",
			fake.subscriptionOf(c.sessionId, "incomplete"),
			t - 30
		);
		const active = fake.event("customer.subscription.updated", fake.subscriptionOf(c.sessionId, "active"), t - 20);
		const deleted = fake.event(
			"customer.subscription.deleted",
			fake.subscriptionOf(c.sessionId, "canceled"),
			t - 10
		);
		for (const e of [deleted, active, created]) await send(e);
		await drain();
		expect((await http("GET", "/billing/balance", { user: "leo" })).json).toMatchObject({
			tier: "free",
			planTier: "free"
		});

		const c2 = await plan("mia", "team");
		const a = fake.event("customer.subscription.updated", fake.subscriptionOf(c2.sessionId, "active"), t - 5);
		const b = fake.event("customer.subscription.created", fake.subscriptionOf(c2.sessionId, "incomplete"), t - 50);
		await send(a);
		await drain();
		await send(b);
		await drain();
		expect((await http("GET", "/billing/balance", { user: "mia" })).json).toMatchObject({
			tier: "team",
			planTier: "team",
			feeDiscountBps: 500
		});
		expect((await planEvents("mia")).map(e => e.payload)).toEqual([{ userId: "mia", planTier: "team" }]);
	});
});

describe("reconciliation", () => {
	test("events the webhook never delivered are found by listing Stripe's events (across pages)", async () => {
		const c = await buyPack("nina");
		for (let i = 0; i < 120; i++) fake.event("customer.updated", { id: `cus_filler_${i}`, object: "customer" });
		const missed = fake.event("checkout.session.completed", fake.completeSession(c.sessionId));
		const before = fake.requests.filter(r => r.path === "/v1/events").length;
		const r = (await node.broker.call("payments.reconcileStripe", {})) as { listed: number; missed: number };
		expect(r.listed).toBe(fake.events.length);
		expect(r.missed).toBeGreaterThanOrEqual(121);
		expect(fake.requests.filter(q => q.path === "/v1/events").length - before).toBeGreaterThanOrEqual(2);
		expect(await available("nina")).toBe(10_000);
		const again = (await node.broker.call("payments.reconcileStripe", {})) as { missed: number };
		expect(again.missed).toBe(0);
		expect(await available("nina")).toBe(10_000);
		expect((await send(missed)).json.duplicate).toBe(true);
	});

	test("replaying an event fetched from Stripe applies it once", async () => {
		const c = await buyPack("olga");
		const e = fake.event("checkout.session.completed", fake.completeSession(c.sessionId));
		const first = (await node.broker.call("payments.replayStripeEvent", { eventId: e.id })) as Json;
		expect(first).toEqual({ eventId: e.id, outcome: "credited", fetched: true });
		const second = (await node.broker.call("payments.replayStripeEvent", { eventId: e.id })) as Json;
		expect(second).toEqual({ eventId: e.id, outcome: "duplicate", fetched: false });
		expect(await available("olga")).toBe(10_000);
	});
});
