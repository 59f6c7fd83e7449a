/**
 * Self-serve billing (issue 19 part 4) end to end: the real `stripe` SDK against the Stripe fake,
 * signed webhooks through the gateway, the inbox on the real PostgreSQL: one Customer per payer,
 * Checkout options, the Customer Portal, plan changes on the one subscription with proration,
 * cancellation at period end and resume, the past_due grace period, and `?orgId=` payers.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { startStripePlatform, type StripePlatform } from "../../support/stripe-platform";
import { bearerFor } from "../../support/env";
import { FakeEvent, StripeFake } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

let platform: StripePlatform;
let node: ForgeNode & { baseUrl: string };
let fake: StripeFake;

const GRACE_S = 3600;
const ORG = randomUUID();
const ORG_PAYER = `org:${ORG}`;
const OWNER = randomUUID();
const BILLING = randomUUID();
const MEMBER = randomUUID();
const OUTSIDER = randomUUID();

beforeAll(async () => {
	platform = await startStripePlatform(["api", "payments", "orgs"], {
		BILLING_PAST_DUE_GRACE_S: String(GRACE_S),
		STRIPE_PORTAL_RETURN_URL: "https://app.forgefluid.test/billing"
	});
	({ fake, node } = platform);
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Acme', $2)`, [ORG, OWNER]);
	for (const [u, role] of [
		[OWNER, "owner"],
		[BILLING, "billing"],
		[MEMBER, "member"]
	])
		await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3)`, [ORG, u, role]);
});
afterAll(() => platform?.close());

type Json = Record<string, any>; // response bodies are checked field by field
const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

async function http(
	method: string,
	path: string,
	opts: { user: string; body?: unknown; headers?: Record<string, string> }
) {
	const headers: Record<string, string> = {
		...opts.headers,
		authorization: `Bearer ${bearerFor(node.config, opts.user)}`
	};
	if (opts.body !== undefined) headers["content-type"] = "application/json";
	const res = await fetch(node.baseUrl + "/api/v1" + path, {
		method,
		headers,
		body: opts.body === undefined ? undefined : JSON.stringify(opts.body)
	});
	const text = await res.text();
	return { status: res.status, json: (text ? JSON.parse(text) : null) as Json };
}

async function send(event: FakeEvent) {
	const { body, signature } = fake.signed(event);
	const r = await fetch(`${node.baseUrl}/api/v1/billing/stripe/webhook`, {
		method: "POST",
		headers: { "content-type": "application/json", "stripe-signature": signature },
		body
	});
	expect(r.status).toBe(200);
	return (await r.json()) as Json;
}
const drain = () => node.broker.call("payments.processStripeInbox", {});
const q = (orgId?: string) => (orgId ? `?orgId=${orgId}` : "");
const tierOf = async (user: string, orgId?: string) =>
	(await http("GET", `/billing/subscription${q(orgId)}`, { user })).json.planTier as string;

/** Every ordering problem at once: all the events, reversed, each delivered twice, concurrently. */
async function deliverScrambled(events: FakeEvent[]) {
	const order = [...events].reverse();
	await Promise.all([...order, ...order].map(send));
	await drain();
	for (const e of events) expect((await send(e)).duplicate).toBe(true);
	await drain();
}

/** A payer on a plan: Checkout, completed, and Stripe's subscription.created delivered. */
async function subscribe(user: string, plan = "pro", orgId?: string) {
	const r = await http("POST", `/billing/checkout${q(orgId)}`, { user, body: { kind: "plan", itemId: plan } });
	expect(r.status).toBe(201);
	fake.completeSession(r.json.sessionId);
	const subId = fake.sessions.get(r.json.sessionId)!.subscription as string;
	await send(fake.subscriptionEvent(subId, { type: "customer.subscription.created" }));
	await drain();
	expect(await tierOf(user, orgId)).toBe(plan);
	return subId;
}

const subscriptionsOfCustomer = (customer: string) =>
	[...fake.subscriptions.values()].filter(s => s.customer === customer);

describe("one Stripe Customer per payer", () => {
	test("concurrent first checkouts make one Customer, and every session uses it", async () => {
		const user = "cora";
		const rs = await Promise.all(
			["starter", "builder", "studio", "starter"].map((itemId, i) =>
				http("POST", "/billing/checkout", {
					user,
					body: { kind: "pack", itemId },
					headers: { "idempotency-key": `cora-checkout-key-${i}` }
				})
			)
		);
		expect(rs.map(r => r.status)).toEqual([201, 201, 201, 201]);
		const rows = await sql<{ customer_id: string }>(
			`SELECT customer_id FROM stripe_customers WHERE payer_id = $1`,
			[user]
		);
		expect(rows).toHaveLength(1);
		const customers = [...fake.customers.values()].filter(c => (c.metadata as Json).payerId === user);
		expect(customers.map(c => c.id)).toEqual([rows[0].customer_id]);
		for (const r of rs) expect(fake.sessions.get(r.json.sessionId)!.customer).toBe(rows[0].customer_id);
		// A later checkout asks Stripe for no new Customer.
		const before = fake.requests.length;
		await http("POST", "/billing/checkout", { user, body: { kind: "pack", itemId: "starter" } });
		expect(fake.requests.slice(before).map(r => r.path)).toEqual(["/v1/checkout/sessions"]);
	});

	test("a pack saves the card for later, allows promotion codes and gets an invoice", async () => {
		const r = await http("POST", "/billing/checkout", { user: "dora", body: { kind: "pack", itemId: "starter" } });
		const body = fake.requests.filter(x => x.path === "/v1/checkout/sessions").at(-1)!.body;
		expect(body).toMatchObject({
			mode: "payment",
			allow_promotion_codes: "true",
			payment_intent_data: { setup_future_usage: "off_session", metadata: { checkoutId: r.json.checkoutId } },
			invoice_creation: { enabled: "true", invoice_data: { metadata: { checkoutId: r.json.checkoutId } } }
		});
		const plan = await http("POST", "/billing/checkout", { user: "dora", body: { kind: "plan", itemId: "pro" } });
		const planBody = fake.requests.filter(x => x.path === "/v1/checkout/sessions").at(-1)!.body;
		expect(planBody).toMatchObject({ mode: "subscription", allow_promotion_codes: "true" });
		expect(planBody.invoice_creation).toBeUndefined(); // subscriptions have their own invoices
		expect(planBody.customer).toBe(fake.sessions.get(r.json.sessionId)!.customer);
		expect(plan.status).toBe(201);
	});

	test("a promotion code: the full pack is credited once, however its events arrive", async () => {
		const r = await http("POST", "/billing/checkout", { user: "edna", body: { kind: "pack", itemId: "starter" } });
		const session = fake.completeSession(r.json.sessionId, true, { discountCents: 250 });
		expect(session).toMatchObject({ amount_subtotal: 1000, amount_total: 750 });
		expect(session.invoice).toMatch(/^in_/);
		const pi = { ...fake.paymentIntentOf(r.json.sessionId), amount: 750, amount_received: 750 };
		await deliverScrambled([
			fake.event("payment_intent.succeeded", pi),
			fake.event("checkout.session.completed", session)
		]);
		const balance = await http("GET", "/billing/balance", { user: "edna" });
		expect(balance.json.available).toBe(10_000);
		const purchases = await sql(`SELECT id FROM ledger_transactions WHERE user_id = 'edna' AND kind = 'purchase'`);
		expect(purchases).toHaveLength(1);
	});
});

describe("Customer Portal", () => {
	test("a portal session for the payer's Customer, returning to the configured URL", async () => {
		const r = await http("POST", "/billing/portal", { user: "cora" });
		expect(r.status).toBe(200);
		const [row] = await sql<{ customer_id: string }>(
			`SELECT customer_id FROM stripe_customers WHERE payer_id = 'cora'`
		);
		expect(fake.portalSessions.at(-1)).toMatchObject({
			customer: row.customer_id,
			return_url: "https://app.forgefluid.test/billing"
		});
		expect(r.json).toEqual({
			url: fake.portalSessions.at(-1)!.url,
			returnUrl: "https://app.forgefluid.test/billing"
		});
	});

	test("a payer who never paid gets a Customer for it; unknown fields are 422", async () => {
		const r = await http("POST", "/billing/portal", { user: "fern" });
		expect(r.status).toBe(200);
		expect(await sql(`SELECT 1 FROM stripe_customers WHERE payer_id = 'fern'`)).toHaveLength(1);
		const bad = await http("POST", "/billing/portal", { user: "fern", body: { returnUrl: "https://evil.test" } });
		expect(bad.status).toBe(422);
	});
});

describe("plan changes on the one subscription", () => {
	test("upgrade and downgrade update the item's price with proration; the webhook moves the tier", async () => {
		const user = "gwen";
		const subId = await subscribe(user, "pro");
		const customer = fake.subscriptions.get(subId)!.customer as string;
		const itemId = (fake.subscriptions.get(subId)!.items as Json).data[0].id as string;

		const up = await http("POST", "/billing/subscription", { user, body: { plan: "team" } });
		expect(up.status).toBe(200);
		expect(up.json).toEqual({
			subscriptionId: subId,
			requestedPlanTier: "team",
			planTier: "team",
			status: "active",
			cancelAtPeriodEnd: false,
			changed: true
		});
		const update = fake.requests
			.filter(r => r.path === `/v1/subscriptions/${subId}` && r.method === "POST")
			.at(-1)!;
		expect(update.body).toMatchObject({
			proration_behavior: "create_prorations",
			items: [{ id: itemId, price_data: { unit_amount: "5000", product: "ff_plan_team" } }],
			metadata: { planTier: "team" }
		});
		expect(fake.prorations.filter(p => p.subscription === subId)).toEqual([
			{ subscription: subId, fromCents: 2000, toCents: 5000 }
		]);
		expect(await tierOf(user)).toBe("pro"); // until Stripe's event says otherwise
		await send(fake.lastEvent("customer.subscription.updated")!);
		await drain();
		expect(await tierOf(user)).toBe("team");

		// The same plan again changes nothing at Stripe.
		const before = fake.requests.filter(r => r.method === "POST").length;
		const same = await http("POST", "/billing/subscription", { user, body: { plan: "team" } });
		expect(same.json).toMatchObject({ changed: false, planTier: "team" });
		expect(fake.requests.filter(r => r.method === "POST").length).toBe(before);

		const down = await http("POST", "/billing/subscription", { user, body: { plan: "pro" } });
		expect(down.json).toMatchObject({ changed: true, planTier: "pro" });
		await send(fake.lastEvent("customer.subscription.updated")!);
		await drain();
		expect(await tierOf(user)).toBe("pro");
		expect(fake.prorations.filter(p => p.subscription === subId)).toHaveLength(2);
		expect(subscriptionsOfCustomer(customer)).toHaveLength(1);

		// A second Checkout for a plan is refused while the subscription lives.
		const again = await http("POST", "/billing/checkout", { user, body: { kind: "plan", itemId: "team" } });
		expect(again.status).toBe(409);
		expect(again.json.error.code).toBe("ALREADY_SUBSCRIBED");
		expect(subscriptionsOfCustomer(customer)).toHaveLength(1);
	});

	test("plan-change events replayed, reordered and duplicated end on the last plan", async () => {
		const user = "hana";
		const subId = await subscribe(user, "pro");
		const created = fake.events.filter(e => e.data.object.id === subId);
		await http("POST", "/billing/subscription", { user, body: { plan: "team" } });
		await http("POST", "/billing/subscription", { user, body: { plan: "pro" } });
		await http("POST", "/billing/subscription", { user, body: { plan: "team" } });
		const all = fake.events.filter(e => e.data.object.id === subId);
		expect(all.length).toBe(created.length + 3);
		await deliverScrambled(all);
		expect(await tierOf(user)).toBe("team");
		const changes = await sql<{ payload: Json }>(
			`SELECT payload FROM outbox_events WHERE topic = 'payments.plan.changed' AND payload->>'userId' = $1 ORDER BY id`,
			[user]
		);
		// The inbox applies what arrived by Stripe's order; each publication is a real change, the last is team.
		const tiers = changes.map(c => c.payload.planTier as string);
		expect(tiers.at(-1)).toBe("team");
		expect(tiers.filter((t, i) => i > 0 && tiers[i - 1] === t)).toEqual([]);
		expect(tiers.length).toBeLessThanOrEqual(all.length);
	});

	test("without a subscription: 409 NO_SUBSCRIPTION; an unknown plan: 422", async () => {
		const none = await http("POST", "/billing/subscription", { user: "ines", body: { plan: "team" } });
		expect(none.status).toBe(409);
		expect(none.json.error.code).toBe("NO_SUBSCRIPTION");
		const cancel = await http("DELETE", "/billing/subscription", { user: "ines" });
		expect(cancel.status).toBe(409);
		expect((await http("GET", "/billing/subscription", { user: "ines" })).json).toEqual({
			planTier: "free",
			subscription: null
		});
		const unknown = await http("POST", "/billing/subscription", { user: "gwen", body: { plan: "gold" } });
		expect(unknown.status).toBe(422);
		expect(unknown.json.error.details[0].field).toBe("plan");
		const missing = await http("POST", "/billing/subscription", { user: "gwen", body: {} });
		expect(missing.status).toBe(422);
	});

	test("cancel at period end keeps the tier until the subscription ends; resume takes it back", async () => {
		const user = "jade";
		const subId = await subscribe(user, "team");
		const cancel = await http("DELETE", "/billing/subscription", { user });
		expect(cancel.json).toMatchObject({ cancelAtPeriodEnd: true, changed: true, planTier: "team" });
		expect(fake.subscriptions.get(subId)!.cancel_at_period_end).toBe(true);
		await send(fake.lastEvent("customer.subscription.updated")!);
		await drain();
		let state = (await http("GET", "/billing/subscription", { user })).json;
		expect(state).toMatchObject({
			planTier: "team",
			subscription: { subscriptionId: subId, cancelAtPeriodEnd: true, status: "active" }
		});
		expect(state.subscription.currentPeriodEnd).toEqual(expect.any(String));
		expect((await http("DELETE", "/billing/subscription", { user })).json.changed).toBe(false);

		const resume = await http("POST", "/billing/subscription/resume", { user });
		expect(resume.json).toMatchObject({ cancelAtPeriodEnd: false, changed: true });
		await send(fake.lastEvent("customer.subscription.updated")!);
		await drain();
		state = (await http("GET", "/billing/subscription", { user })).json;
		expect(state.subscription.cancelAtPeriodEnd).toBe(false);

		await http("DELETE", "/billing/subscription", { user });
		const events = fake.events.filter(e => e.data.object.id === subId);
		const ended = fake.subscriptionEvent(subId, { status: "canceled", type: "customer.subscription.deleted" });
		await deliverScrambled([...events, ended]);
		expect((await http("GET", "/billing/subscription", { user })).json).toEqual({
			planTier: "free",
			subscription: null
		});
		const change = await http("POST", "/billing/subscription", { user, body: { plan: "pro" } });
		expect(change.json.error.code).toBe("NO_SUBSCRIPTION");
	});
});

describe("past_due", () => {
	const notices = (payer: string) =>
		sql<{ payload: Json }>(
			`SELECT payload FROM outbox_events WHERE topic = 'billing.past_due' AND payload->>'payerId' = $1 ORDER BY id`,
			[payer]
		);

	test("the tier holds through the grace period, then drops; one notice; recovery restores it", async () => {
		const user = "kira";
		const subId = await subscribe(user, "team");
		const pastDue = fake.subscriptionEvent(subId, { status: "past_due" });
		const retried = fake.subscriptionEvent(subId, { status: "past_due" });
		await deliverScrambled([pastDue, retried]);
		const state = (await http("GET", "/billing/subscription", { user })).json;
		expect(state.planTier).toBe("team");
		expect(state.subscription).toMatchObject({ status: "past_due" });
		const since = new Date(pastDue.created * 1000);
		expect(state.subscription.pastDueSince).toBe(since.toISOString());
		expect(state.subscription.graceEndsAt).toBe(new Date(since.getTime() + GRACE_S * 1000).toISOString());
		// One notice, sent when the first past-due event was processed: the two are delivered
		// concurrently, so it dates the grace period from whichever the inbox took first, and its
		// grace end agrees with its own start.
		const [notice, ...moreNotices] = (await notices(user)).map(n => n.payload as Record<string, string>);
		expect(moreNotices).toEqual([]);
		const starts = [pastDue, retried].map(e => new Date(e.created * 1000).toISOString());
		expect(starts).toContain(notice.pastDueSince);
		expect(notice).toEqual({
			payerId: user,
			subscriptionId: subId,
			planTier: "team",
			pastDueSince: notice.pastDueSince,
			graceEndsAt: new Date(Date.parse(notice.pastDueSince) + GRACE_S * 1000).toISOString()
		});

		// Within the grace period the sweep changes nothing.
		expect(await node.broker.call("payments.expirePastDueGrace", {})).toEqual({ changed: 0 });
		expect(await tierOf(user)).toBe("team");
		// The grace period over (moved back in time here): the sweep drops the tier, once.
		await sql(
			`UPDATE stripe_subscriptions SET past_due_since = past_due_since - interval '${GRACE_S + 1} seconds' WHERE id = $1 RETURNING id`,
			[subId]
		);
		expect(await node.broker.call("payments.expirePastDueGrace", {})).toEqual({ changed: 1 });
		expect(await node.broker.call("payments.expirePastDueGrace", {})).toEqual({ changed: 0 });
		expect(await tierOf(user)).toBe("free");
		expect((await http("GET", "/billing/balance", { user })).json.planTier).toBe("free");

		// The card is fixed: Stripe says active again, the tier comes back; a later failure is a new notice.
		await send(fake.subscriptionEvent(subId, { status: "active" }));
		await drain();
		expect(await tierOf(user)).toBe("team");
		expect((await http("GET", "/billing/subscription", { user })).json.subscription.pastDueSince).toBeNull();
		await send(fake.subscriptionEvent(subId, { status: "past_due" }));
		await drain();
		expect(await notices(user)).toHaveLength(2);
	});
});

describe("?orgId= payers", () => {
	test("owners and billing members act for the organisation's Customer and subscription", async () => {
		const c = await http("POST", `/billing/checkout?orgId=${ORG}`, {
			user: BILLING,
			body: { kind: "pack", itemId: "starter" }
		});
		expect(c.status).toBe(201);
		expect(fake.sessions.get(c.json.sessionId)).toMatchObject({
			client_reference_id: ORG_PAYER,
			metadata: { payerId: ORG_PAYER }
		});
		await send(fake.event("checkout.session.completed", fake.completeSession(c.json.sessionId)));
		await drain();
		const wallet = (await node.broker.call("payments.userLedger", { userId: ORG_PAYER })) as Json;
		expect(wallet.available).toBe(10_000);
		const status = await http("GET", `/billing/checkout/${c.json.checkoutId}?orgId=${ORG}`, { user: OWNER });
		expect(status.json).toMatchObject({ status: "paid", credited: true });
		// The organisation's checkout is not the member's own.
		expect((await http("GET", `/billing/checkout/${c.json.checkoutId}`, { user: BILLING })).status).toBe(404);

		const subId = await subscribe(OWNER, "team", ORG);
		expect(await tierOf(OWNER)).toBe("free"); // the owner's own plan is untouched
		const change = await http("POST", `/billing/subscription?orgId=${ORG}`, {
			user: BILLING,
			body: { plan: "pro" }
		});
		expect(change.json).toMatchObject({ subscriptionId: subId, changed: true });
		const portal = await http("POST", `/billing/portal?orgId=${ORG}`, { user: OWNER });
		const [row] = await sql<{ customer_id: string }>(
			`SELECT customer_id FROM stripe_customers WHERE payer_id = $1`,
			[ORG_PAYER]
		);
		expect(portal.status).toBe(200);
		expect(fake.portalSessions.at(-1)!.customer).toBe(row.customer_id);
		expect(fake.subscriptions.get(subId)!.customer).toBe(row.customer_id);
	});

	test("a plain member is 403 INSUFFICIENT_ROLE, an outsider 404, on every billing route", async () => {
		const routes: Array<[string, string, unknown?]> = [
			["POST", "/billing/checkout", { kind: "pack", itemId: "starter" }],
			["POST", "/billing/portal"],
			["GET", "/billing/subscription"],
			["POST", "/billing/subscription", { plan: "team" }],
			["DELETE", "/billing/subscription"],
			["POST", "/billing/subscription/resume"]
		];
		for (const [method, path, body] of routes) {
			const member = await http(method, `${path}?orgId=${ORG}`, { user: MEMBER, body });
			expect([path, member.status, member.json.error.code]).toEqual([path, 403, "INSUFFICIENT_ROLE"]);
			const outsider = await http(method, `${path}?orgId=${ORG}`, { user: OUTSIDER, body });
			expect([path, outsider.status]).toEqual([path, 404]);
		}
		const bad = await http("GET", "/billing/subscription?orgId=not-a-uuid", { user: OWNER });
		expect(bad.status).toBe(422);
	});
});
