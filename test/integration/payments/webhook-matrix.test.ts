/**
 * Every Stripe webhook type the billing code acts on, replayed, reordered and duplicated (issue 19,
 * Acceptance). Each story is what Stripe sends about one payer's objects (a pack checkout, an async
 * payment, a refund, a dispute, a subscription's life, an auto top-up); it is applied once in Stripe's
 * order to one payer, then to a fresh payer per schedule: the events in another order (every order of
 * a story of up to three events, else reversed and seeded shuffles), each delivered twice at once and
 * processed before the next arrives (so the order of delivery is the order of processing); then every
 * event replayed by the operator (payments.replayStripeEvent, which applies it again) and delivered once
 * more, in the schedule's order. Both must end in the state of the ordered run, and that state is checked against what
 * the story must do: nothing credited twice, no top-up bought twice.
 *
 * The real `stripe` SDK against the Stripe fake, webhooks signed as Stripe signs them, through the
 * gateway, the inbox and the ledger on PostgreSQL.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { startStripePlatform, type StripePlatform } from "../../support/stripe-platform";
import { bearerFor } from "../../support/env";
import { apiCaller, webhookSender } from "../../support/billing-http";
import { StripeFake, TEST_CARDS, type FakeEvent } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

jest.setTimeout(120_000);

let platform: StripePlatform;
let node: ForgeNode & { baseUrl: string };
let fake: StripeFake;

type Json = Record<string, any>; // response bodies are checked field by field
const api = apiCaller(() => node.baseUrl);
const send = webhookSender(
	() => fake,
	() => node.baseUrl
);
const STARTER = 10_000; // credits of the `starter` pack (10 USD)

beforeAll(async () => {
	platform = await startStripePlatform(["api", "payments"], {
		BILLING_AUTO_TOPUP_WINDOW_S: "3600"
	});
	({ fake, node } = platform);
});
afterAll(() => platform?.close());

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });
const as = (payer: string) => bearerFor(node.config, payer);
const drain = () => node.broker.call("payments.processStripeInbox", {});

/** One pass over the inbox with every waiting event due now: one more try for an event deferred until its payment is known. */
async function pass() {
	await sql(`UPDATE stripe_events SET next_attempt_at = now() WHERE processed_at IS NULL RETURNING id`);
	await drain();
}

/** Passes until every stored event is processed; none may have been given up on as unmatched. */
async function settleInbox() {
	for (let i = 0; i < 10; i++) {
		await pass();
		const [{ n }] = await sql<{ n: number }>(
			`SELECT count(*)::int AS n FROM stripe_events WHERE processed_at IS NULL`
		);
		if (n === 0) break;
	}
	const left = await sql(
		`SELECT id, type, outcome FROM stripe_events WHERE processed_at IS NULL OR outcome = 'unmatched'`
	);
	expect(left).toEqual([]);
}

/** What the webhooks decide about a payer, without ids or times (payers of one story compare equal). */
async function stateOf(payer: string) {
	const balance = (await api("GET", "/billing/balance", { token: as(payer) })).json;
	// What each kind of transaction moved on the payer's balance (a full refund that overtakes a partial
	// one claws back in one transaction instead of two: the same credit), and how many purchases.
	const ledger = await sql<{ kind: string; moved: string }>(
		`SELECT t.kind, coalesce(sum(e.amount), 0)::text AS moved
		 FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id AND e.account_key = $2
		 WHERE t.user_id = $1 GROUP BY t.kind ORDER BY t.kind`,
		[payer, `u:${payer}:available`]
	);
	const [{ purchases }] = await sql<{ purchases: number }>(
		`SELECT count(*)::int AS purchases FROM ledger_transactions WHERE user_id = $1 AND kind = 'purchase'`,
		[payer]
	);
	const checkouts = await sql(
		`SELECT kind, origin, status, credit_transaction_id IS NOT NULL AS credited, refunded_cents::text, clawed_back::text
		 FROM stripe_checkouts WHERE user_id = $1 ORDER BY kind, origin, status`,
		[payer]
	);
	const disputes = await sql(
		`SELECT d.clawed_back::text, d.restored FROM stripe_disputes d JOIN stripe_checkouts c ON c.id = d.checkout_id
		 WHERE c.user_id = $1`,
		[payer]
	);
	const subscriptions = await sql(
		`SELECT plan_tier, status, cancel_at_period_end, past_due_since IS NOT NULL AS past_due FROM stripe_subscriptions WHERE user_id = $1`,
		[payer]
	);
	const topUp = await sql(`SELECT enabled, disabled_reason FROM auto_topups WHERE payer_id = $1`, [payer]);
	return {
		available: balance.available as number,
		held: balance.held as number,
		tier: balance.tier as string,
		planTier: balance.planTier as string,
		ledger,
		purchases,
		checkouts,
		disputes,
		subscriptions,
		topUp,
		paymentIntents: paymentIntentsOf(payer).length
	};
}
type State = Awaited<ReturnType<typeof stateOf>>;

const paymentIntentsOf = (payer: string) =>
	[...fake.paymentIntents.values()].filter(pi => (pi.metadata as Json | undefined)?.payerId === payer);

async function checkout(payer: string, kind: "pack" | "plan", itemId: string) {
	const r = await api("POST", "/billing/checkout", { token: as(payer), body: { kind, itemId } });
	expect(r.status).toBe(201);
	return r.json as { checkoutId: string; sessionId: string };
}

/** Stripe's event times: one second apart, in the order Stripe made them (subscriptions order by them). */
const clock = () => {
	let t = Math.floor(Date.now() / 1000) - 600;
	return () => ++t;
};

/** A pack bought through Checkout and paid, its events delivered (setup, not part of a story). */
async function paidPack(payer: string, paymentMethod: string = TEST_CARDS.success) {
	const c = await checkout(payer, "pack", "starter");
	await send(fake.event("checkout.session.completed", fake.completeSession(c.sessionId, true, { paymentMethod })));
	await settleInbox();
	return c;
}

function dispute(c: { sessionId: string }, status: string) {
	return {
		id: `dp_${c.sessionId.slice(-12)}`,
		object: "dispute",
		payment_intent: fake.sessions.get(c.sessionId)!.payment_intent,
		amount: 1000,
		status
	};
}

/** A plan's subscription as an event's object: a snapshot with `status` (and changes), the stored one untouched. */
function subscription(c: { sessionId: string }, status: string, change: Json = {}) {
	return { ...fake.subscriptionOf(c.sessionId, status, { snapshot: true }), ...change };
}

function invoice(c: { sessionId: string }, status: string) {
	const s = fake.sessions.get(c.sessionId)!;
	return {
		id: `in_${randomUUID().slice(0, 12)}`,
		object: "invoice",
		subscription: s.subscription,
		customer: s.customer,
		status
	};
}

interface Story {
	name: string;
	/** Makes the payer's objects on the fake; the events Stripe sends about them, in Stripe's order. */
	make(payer: string): Promise<FakeEvent[]>;
	/** What the story must leave, checked on the ordered run. */
	expect(s: State): void;
}

/** One starter pack paid and credited once. */
function onePackCredited(s: State) {
	expect(s.available).toBe(STARTER);
	expect(s.purchases).toBe(1);
	expect(kinds(s)).toEqual({ purchase: String(STARTER) });
	expect(s.checkouts).toEqual([expect.objectContaining({ status: "paid", credited: true })]);
}

/** The payer is on an active pro subscription, nothing past due. */
function activePro(s: State) {
	expect([s.tier, s.planTier]).toEqual(["pro", "pro"]);
	expect(s.subscriptions).toEqual([
		{ plan_tier: "pro", status: "active", cancel_at_period_end: false, past_due: false }
	]);
}

const kinds = (s: State) => Object.fromEntries(s.ledger.map(l => [l.kind, l.moved]));

const stories: Story[] = [
	{
		name: "a pack paid: checkout.session.completed and payment_intent.succeeded",
		async make(payer) {
			const c = await checkout(payer, "pack", "starter");
			const t = clock();
			const session = fake.completeSession(c.sessionId);
			return [
				fake.event("checkout.session.completed", session, t()),
				fake.event("payment_intent.succeeded", fake.paymentIntentOf(c.sessionId), t())
			];
		},
		expect: onePackCredited
	},
	{
		name: "an async payment that succeeds: completed unpaid, then async_payment_succeeded",
		async make(payer) {
			const c = await checkout(payer, "pack", "starter");
			const t = clock();
			return [
				fake.event("checkout.session.completed", fake.completeSession(c.sessionId, false), t()),
				fake.event("checkout.session.async_payment_succeeded", fake.completeSession(c.sessionId, true), t())
			];
		},
		expect: onePackCredited
	},
	{
		name: "an async payment that fails: completed unpaid, then async_payment_failed",
		async make(payer) {
			const c = await checkout(payer, "pack", "starter");
			const t = clock();
			const unpaid = fake.completeSession(c.sessionId, false);
			return [
				fake.event("checkout.session.completed", unpaid, t()),
				fake.event("checkout.session.async_payment_failed", unpaid, t())
			];
		},
		expect(s) {
			expect(s.available).toBe(0);
			expect(s.ledger).toEqual([]);
			expect(s.checkouts).toEqual([expect.objectContaining({ status: "failed", credited: false })]);
		}
	},
	{
		name: "an abandoned checkout: checkout.session.expired",
		async make(payer) {
			const c = await checkout(payer, "pack", "starter");
			const session = { ...fake.sessions.get(c.sessionId)!, status: "expired", payment_status: "unpaid" };
			return [fake.event("checkout.session.expired", session, clock()())];
		},
		expect(s) {
			expect(s.available).toBe(0);
			expect(s.checkouts).toEqual([expect.objectContaining({ status: "expired", credited: false })]);
		}
	},
	{
		name: "refunds: the payment, a partial charge.refunded, then the full one (cumulative amounts)",
		async make(payer) {
			const c = await checkout(payer, "pack", "starter");
			const t = clock();
			return [
				fake.event("checkout.session.completed", fake.completeSession(c.sessionId), t()),
				fake.event("charge.refunded", fake.chargeOf(c.sessionId, 400), t()),
				fake.event("charge.refunded", fake.chargeOf(c.sessionId, 1000), t())
			];
		},
		expect(s) {
			expect(s.available).toBe(0);
			expect(s.purchases).toBe(1);
			expect(kinds(s)).toEqual({ purchase: String(STARTER), refund_clawback: String(-STARTER) });
			expect(s.checkouts).toEqual([
				expect.objectContaining({ status: "paid", refunded_cents: "1000", clawed_back: String(STARTER) })
			]);
		}
	},
	{
		name: "a dispute won: charge.dispute.created, .updated, .closed (won)",
		async make(payer) {
			const c = await checkout(payer, "pack", "starter");
			const t = clock();
			const completed = fake.event("checkout.session.completed", fake.completeSession(c.sessionId), t());
			return [
				completed,
				fake.event("charge.dispute.created", dispute(c, "needs_response"), t()),
				fake.event("charge.dispute.updated", dispute(c, "under_review"), t()),
				fake.event("charge.dispute.closed", dispute(c, "won"), t())
			];
		},
		expect(s) {
			expect(s.available).toBe(STARTER);
			expect(s.purchases).toBe(1);
			expect(kinds(s)).toEqual({
				purchase: String(STARTER),
				dispute_clawback: String(-STARTER),
				dispute_restore: String(STARTER)
			});
			expect(s.disputes).toEqual([{ clawed_back: String(STARTER), restored: true }]);
		}
	},
	{
		name: "a dispute lost: charge.dispute.created, .closed (lost)",
		async make(payer) {
			const c = await checkout(payer, "pack", "starter");
			const t = clock();
			return [
				fake.event("checkout.session.completed", fake.completeSession(c.sessionId), t()),
				fake.event("charge.dispute.created", dispute(c, "needs_response"), t()),
				fake.event("charge.dispute.closed", dispute(c, "lost"), t())
			];
		},
		expect(s) {
			expect(s.available).toBe(0);
			expect(s.purchases).toBe(1);
			expect(kinds(s)).toEqual({ purchase: String(STARTER), dispute_clawback: String(-STARTER) });
			expect(s.disputes).toEqual([{ clawed_back: String(STARTER), restored: false }]);
		}
	},
	{
		name: "a subscription's life: created (incomplete), updated (active), paused, resumed",
		async make(payer) {
			const c = await checkout(payer, "plan", "pro");
			fake.completeSession(c.sessionId);
			const t = clock();
			return [
				fake.event("checkout.session.completed", fake.completeSession(c.sessionId), t()),
				fake.event("customer.subscription.created", subscription(c, "incomplete"), t()),
				fake.event("customer.subscription.updated", subscription(c, "active"), t()),
				fake.event("customer.subscription.paused", subscription(c, "paused"), t()),
				fake.event("customer.subscription.resumed", subscription(c, "active"), t())
			];
		},
		expect(s) {
			expect([s.tier, s.planTier, s.available]).toEqual(["pro", "pro", 0]);
			expect(s.subscriptions).toEqual([
				{ plan_tier: "pro", status: "active", cancel_at_period_end: false, past_due: false }
			]);
			expect(s.checkouts).toEqual([expect.objectContaining({ kind: "plan", status: "paid", credited: false })]);
		}
	},
	{
		name: "one second: created (incomplete) and updated (active) with the same created time",
		async make(payer) {
			const c = await checkout(payer, "plan", "pro");
			fake.completeSession(c.sessionId);
			// Stripe has it active now; both events carry the same second, so their payloads cannot
			// tell which came last (what Stripe has decides).
			fake.subscriptionOf(c.sessionId, "active");
			const t = clock()();
			return [
				fake.event("customer.subscription.created", subscription(c, "incomplete"), t),
				fake.event("customer.subscription.updated", subscription(c, "active"), t)
			];
		},
		expect: activePro
	},
	{
		name: "a renewal that fails and recovers: invoice.payment_failed, past_due, invoice.paid, active",
		async make(payer) {
			const c = await checkout(payer, "plan", "pro");
			fake.completeSession(c.sessionId);
			const t = clock();
			return [
				fake.event("customer.subscription.created", subscription(c, "active"), t()),
				fake.event("invoice.payment_failed", invoice(c, "open"), t()),
				fake.event("customer.subscription.updated", subscription(c, "past_due"), t()),
				fake.event("invoice.paid", invoice(c, "paid"), t()),
				fake.event("customer.subscription.updated", subscription(c, "active"), t())
			];
		},
		expect: activePro
	},
	{
		name: "a cancellation: active, cancel at period end, customer.subscription.deleted",
		async make(payer) {
			const c = await checkout(payer, "plan", "pro");
			fake.completeSession(c.sessionId);
			const t = clock();
			return [
				fake.event("customer.subscription.created", subscription(c, "active"), t()),
				fake.event(
					"customer.subscription.updated",
					subscription(c, "active", { cancel_at_period_end: true }),
					t()
				),
				fake.event(
					"customer.subscription.deleted",
					subscription(c, "canceled", { cancel_at_period_end: true }),
					t()
				)
			];
		},
		expect(s) {
			expect([s.tier, s.planTier]).toEqual(["free", "free"]);
			expect(s.subscriptions).toEqual([
				expect.objectContaining({ plan_tier: "pro", status: "canceled", past_due: false })
			]);
		}
	},
	...(
		[
			["succeeds", TEST_CARDS.success],
			["is declined", TEST_CARDS.declined],
			["needs authentication", TEST_CARDS.authenticationRequired]
		] as const
	).map(([what, card]): Story => ({
		name: `an auto top-up whose off-session payment ${what}: payment_intent.* of it`,
		async make(payer) {
			await paidPack(payer, card);
			const put = await api("PUT", "/billing/auto-topup", {
				token: as(payer),
				body: { thresholdCredits: 50_000, packId: "starter" }
			});
			expect(put.status).toBe(200);
			const r = await node.broker.call<Json, { payerId: string }>("payments.checkAutoTopUp", { payerId: payer });
			expect(r.triggered).toBe(true);
			const [pi] = paymentIntentsOf(payer);
			const events = fake.events.filter(e => e.type.startsWith("payment_intent.") && e.data.object.id === pi.id);
			expect(events.length).toBeGreaterThan(0);
			return events;
		},
		expect(s) {
			expect(s.paymentIntents).toBe(1); // bought once: no replay, order or duplicate buys again
			if (card === TEST_CARDS.success) {
				expect(s.available).toBe(2 * STARTER);
				expect(s.purchases).toBe(2);
				expect(kinds(s)).toEqual({ purchase: String(2 * STARTER) });
				expect(s.topUp).toEqual([{ enabled: true, disabled_reason: null }]);
			} else {
				expect(s.available).toBe(STARTER);
				expect(s.purchases).toBe(1);
				expect(kinds(s)).toEqual({ purchase: String(STARTER) });
				const reason = card === TEST_CARDS.declined ? "card_declined" : "authentication_required";
				expect(s.topUp).toEqual([{ enabled: false, disabled_reason: reason }]);
			}
		}
	}))
];

/** mulberry32: the same shuffles on every run. */
function shuffled<T>(items: T[], seed: number): T[] {
	let s = seed >>> 0;
	const rnd = () => {
		s = (s + 0x6d2b79f5) >>> 0;
		let t = Math.imul(s ^ (s >>> 15), s | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
	const out = [...items];
	for (let i = out.length - 1; i > 0; i--) {
		const j = Math.floor(rnd() * (i + 1));
		[out[i], out[j]] = [out[j], out[i]];
	}
	return out;
}

function permutations<T>(items: T[]): T[][] {
	if (items.length <= 1) return [items];
	return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map(p => [x, ...p]));
}

/**
 * The orders a story is tried in besides Stripe's: all of them up to three events; else reversed, the
 * newest first, the oldest last, and seeded shuffles.
 */
function ordersOf(n: number): number[][] {
	const idx = Array.from({ length: n }, (_, i) => i);
	const key = (o: number[]) => o.join(",");
	const all =
		n <= 3
			? permutations(idx)
			: [
					[...idx].reverse(),
					[n - 1, ...idx.slice(0, -1)],
					[...idx.slice(1), 0],
					...[1, 2, 3, 4, 5].map(seed => shuffled(idx, seed))
				];
	const seen = new Set([key(idx)]);
	const out = all.filter(o => !seen.has(key(o)) && seen.add(key(o)));
	return out.length ? out : [idx]; // a one-event story: duplicated and replayed in its only order
}

describe.each(stories.map(s => [s.name, s] as const))("%s", (_name, story) => {
	test("once in order, then reordered, duplicated and replayed: the same state", async () => {
		const ordered = `mx-${randomUUID()}`;
		const inOrder = await story.make(ordered);
		for (const e of inOrder) {
			await send(e);
			await settleInbox();
		}
		const want = await stateOf(ordered);
		story.expect(want);

		for (const order of ordersOf(inOrder.length)) {
			const payer = `mx-${randomUUID()}`;
			const events = await story.make(payer);
			for (const i of order) {
				await Promise.all([send(events[i]), send(events[i])]); // a redelivery racing the first
				await pass();
			}
			await settleInbox();
			expect({ order, state: await stateOf(payer) }).toEqual({ order, state: want });
			// Replayed by the operator and delivered once more, in the same order (not Stripe's, which would
			// put a reordering mistake right again).
			for (const i of order) await node.broker.call("payments.replayStripeEvent", { eventId: events[i].id });
			for (const i of order) await send(events[i]);
			await settleInbox();
			expect({ order, replayed: await stateOf(payer) }).toEqual({ order, replayed: want });
		}
	});
});
