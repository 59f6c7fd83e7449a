/**
 * Card payments through Stripe Checkout: credit packs (mode payment) and plans (mode subscription).
 *
 * The webhook only verifies the signature on the raw body and stores the event in an inbox
 * (primary key = Stripe's event id, so a redelivery is a no-op), then answers. Processing happens
 * after, from the inbox, one event per database transaction (`FOR UPDATE SKIP LOCKED`, so nodes
 * share the work), retried with backoff when it fails or must wait for an earlier event.
 *
 * Business ids make it exactly-once however events arrive: a purchase credits once per checkout
 * (our own id, carried in the metadata of the session and of its payment intent, so
 * `checkout.session.completed` and `payment_intent.succeeded` of one payment, and the success
 * redirect racing them, meet on the same locked row and the same ledger cause). Refunds carry the
 * cumulative refunded amount and subscriptions converge by last-event-wins with terminal states,
 * so reordered or replayed events end in the same state. A reconciliation pass lists recent
 * events from Stripe and feeds the ones the webhook missed through the same inbox.
 */
import { randomUUID } from "node:crypto";
import Stripe from "stripe";
import { QueryTypes, Sequelize, Transaction } from "sequelize";
import { BadRequest, Conflict, NotFound, Unavailable, Unprocessable } from "../errors";
import { TIERS, TierName, isTierName } from "../domain/tiers";
import type { StripeSettings } from "./config";
import { Ledger, credits } from "./ledger";
import { refundClawback } from "./ledger-rules";
import { findPack, findPlan } from "./prices";
import type { Publisher } from "./stake-indexer";
import { orgIdOfPayer } from "./payer";
import { StripeSelfServe } from "./stripe-self-serve";
import { AutoTopUp } from "./auto-topup";
import { SEATS_SYNC, SEAT_PLAN_TIER, SeatBilling } from "./seats";
import {
	CHANGEABLE_STATUSES,
	earlierPastDueSince,
	graceEndsAt,
	nextPastDueSince,
	planTierOf
} from "./subscription-rules";

export function createStripeClient(s: StripeSettings): Stripe | null {
	if (!s.secretKey) return null;
	return new Stripe(s.secretKey, {
		maxNetworkRetries: s.maxNetworkRetries,
		timeout: 20_000,
		telemetry: false,
		...(s.apiBase ? { host: s.apiBase.host, port: s.apiBase.port, protocol: s.apiBase.protocol } : {})
	});
}

/** Stripe's idempotency key for creating a checkout: the same checkout always sends the same key. */
const checkoutIdempotencyKey = (checkoutId: string) => `ff-checkout-${checkoutId}`;

/** The durable notice published when a payer's subscription becomes `past_due` (once per episode). */
export const BILLING_PAST_DUE = "billing.past_due";
/** An organisation payer's plan tier moved: `{ orgId, planTier }` (a user's is `payments.plan.changed`). */
export const ORG_PLAN_CHANGED = "payments.org.plan.changed";

const TERMINAL_SUBSCRIPTION = new Set(["canceled", "incomplete_expired"]);
const MAX_ATTEMPTS = 25;

interface CheckoutRow {
	id: string;
	user_id: string;
	client_key: string | null;
	kind: "pack" | "plan";
	item_id: string;
	credits: string;
	plan_tier: string | null;
	amount_cents: string;
	currency: string;
	session_id: string | null;
	session_url: string | null;
	payment_intent_id: string | null;
	subscription_id: string | null;
	status: "creating" | "open" | "processing" | "paid" | "failed" | "expired";
	credit_transaction_id: string | null;
	refunded_cents: string;
	clawed_back: string;
	clawback_shortfall: string;
	created_at: Date;
}

interface InboxRow {
	id: string;
	type: string;
	stripe_created: Date;
	payload: StripeEventLike;
	attempts: number;
}

/** The parts of Stripe objects this module reads (kept loose: API versions move fields around). */
interface StripeEventLike {
	id: string;
	type: string;
	created: number;
	data: { object: Record<string, unknown> };
}

interface SessionLike {
	id: string;
	mode: string;
	payment_status: string;
	status?: string;
	amount_total?: number | null;
	/** Before discounts (promotion codes): what the checkout's price is checked against. */
	amount_subtotal?: number | null;
	currency?: string | null;
	client_reference_id?: string | null;
	payment_intent?: string | { id: string } | null;
	subscription?: string | { id: string } | null;
	metadata?: Record<string, string> | null;
}

type Outcome = "credited" | "duplicate" | "recorded" | "ignored" | "defer" | "clawed_back" | "plan_updated";

const idOf = (v: string | { id: string } | null | undefined) => (v == null ? null : typeof v === "string" ? v : v.id);

function checkoutView(r: CheckoutRow) {
	return {
		checkoutId: r.id,
		kind: r.kind,
		itemId: r.item_id,
		credits: credits(r.credits),
		planTier: r.plan_tier,
		amountCents: Number(r.amount_cents),
		currency: r.currency,
		status: r.status,
		credited: r.credit_transaction_id != null,
		url: r.session_url,
		sessionId: r.session_id,
		createdAt: new Date(r.created_at).toISOString()
	};
}

/** The parts of a subscription event's object this module reads. */
interface SubscriptionLike {
	id: string;
	status: string;
	metadata?: Record<string, string>;
	customer?: string | { id: string } | null;
	cancel_at_period_end?: boolean;
	current_period_end?: number | null;
	items?: { data?: Array<{ id: string; current_period_end?: number | null }> };
}

export class StripeBilling {
	/** Customers, the portal and plan changes (src/payments/stripe-self-serve.ts). */
	readonly selfServe: StripeSelfServe;
	/** Off-session purchases under a threshold (src/payments/auto-topup.ts). */
	readonly autoTopUp: AutoTopUp;
	/** The team plan's quantity following the member count (src/payments/seats.ts). */
	readonly seats: SeatBilling;
	private processing: Promise<number> | null = null;
	private again = false;
	/** Told of every inbox event once its outcome is committed (metrics); `failed` when processing threw. */
	onProcessed: (type: string, outcome: string) => void = () => undefined;

	constructor(
		private readonly sequelize: Sequelize,
		private readonly ledger: Ledger,
		private readonly stripe: Stripe | null,
		private readonly settings: StripeSettings,
		private readonly publish: Publisher,
		private readonly log: { warn(...a: unknown[]): void; info(...a: unknown[]): void; error(...a: unknown[]): void }
	) {
		this.selfServe = new StripeSelfServe(sequelize, () => this.client(), settings, log);
		this.seats = new SeatBilling(sequelize, () => (this.configured ? this.stripe : null));
		this.autoTopUp = new AutoTopUp(sequelize, ledger, () => this.client(), this.selfServe, settings, publish, log);
	}

	get configured() {
		return this.stripe != null && this.settings.webhookSecret != null;
	}

	/** 503 STRIPE_NOT_CONFIGURED unless Stripe is configured. */
	requireConfigured(): void {
		this.client();
	}

	private client(): Stripe {
		if (!this.stripe || !this.settings.webhookSecret)
			throw Unavailable(
				"Card payments are not configured on this platform (STRIPE_SECRET_KEY is not set)",
				"STRIPE_NOT_CONFIGURED"
			);
		return this.stripe;
	}

	private q<T extends object>(tx: Transaction | null, sql: string, bind: unknown[]): Promise<T[]> {
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx ?? undefined });
	}

	// ---- Checkout ---------------------------------------------------------------------------

	/** A Checkout for `payerId` (a user id or `org:<uuid>`), on the payer's Stripe Customer. */
	async createCheckout(
		payerId: string,
		kind: "pack" | "plan",
		itemId: string,
		clientKey: string | null
	): Promise<ReturnType<typeof checkoutView>> {
		const stripe = this.client();
		const pack = kind === "pack" ? findPack(itemId) : null;
		const plan = kind === "plan" ? findPlan(itemId) : null;
		if (!pack && !plan)
			throw Unprocessable("Unknown item", [
				{ field: "itemId", message: `no ${kind} '${itemId}' (see GET /billing/prices)`, type: "enum" }
			]);
		if (plan) {
			// One subscription per payer: a plan change goes through it, never through a second Checkout.
			const current = await this.planOf(payerId);
			if (TIERS[current].rank >= TIERS[plan.tier].rank || (await this.selfServe.hasLiveSubscription(payerId)))
				throw Conflict(
					`There is a subscription already (${current} plan); change it with POST /billing/subscription`,
					"ALREADY_SUBSCRIBED"
				);
		}
		const credits = pack ? pack.credits : 0n;
		const amountCents = pack ? pack.priceCents : plan!.priceCents;
		const name = pack ? pack.name : plan!.name;

		let row: CheckoutRow | undefined;
		if (clientKey) {
			[row] = await this.q<CheckoutRow>(
				null,
				`SELECT * FROM stripe_checkouts WHERE user_id = $1 AND client_key = $2`,
				[payerId, clientKey]
			);
			if (row && (row.kind !== kind || row.item_id !== itemId))
				throw Conflict("This Idempotency-Key was used for another checkout", "IDEMPOTENCY_KEY_REUSED");
		}
		if (!row) {
			const inserted = await this.q<CheckoutRow>(
				null,
				`INSERT INTO stripe_checkouts (id, user_id, client_key, kind, item_id, credits, plan_tier, amount_cents, currency, status)
				 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'creating') ON CONFLICT (user_id, client_key) DO NOTHING RETURNING *`,
				[
					randomUUID(),
					payerId,
					clientKey,
					kind,
					itemId,
					credits.toString(),
					plan?.tier ?? null,
					amountCents,
					this.settings.currency
				]
			);
			if (!inserted.length) return this.createCheckout(payerId, kind, itemId, clientKey); // a concurrent request with the same key won
			row = inserted[0];
		}
		if (row.session_id) return checkoutView(row);

		const customer = await this.selfServe.ensureCustomer(payerId);
		// `userId` is the payer too (its older name, read by subscription events of earlier checkouts).
		const metadata = {
			checkoutId: row.id,
			payerId,
			userId: payerId,
			kind,
			itemId,
			...(plan ? { planTier: plan.tier } : { credits: credits.toString() })
		};
		const fill = (s: string) => s.replace("{CHECKOUT_ID}", row!.id);
		const params: Stripe.Checkout.SessionCreateParams = {
			mode: kind === "pack" ? "payment" : "subscription",
			client_reference_id: payerId,
			customer,
			allow_promotion_codes: true,
			metadata,
			line_items: [
				{
					quantity: 1,
					price_data: {
						currency: this.settings.currency,
						unit_amount: amountCents,
						product_data: { name },
						...(plan ? { recurring: { interval: "month" as const } } : {})
					}
				}
			],
			success_url: fill(this.settings.successUrl),
			cancel_url: fill(this.settings.cancelUrl),
			...(kind === "pack"
				? {
						// The card is saved on the Customer for later off-session payments; the pack gets an invoice (a receipt).
						payment_intent_data: { metadata, setup_future_usage: "off_session" as const },
						invoice_creation: { enabled: true, invoice_data: { metadata } }
					}
				: { subscription_data: { metadata } })
		};
		let session: Stripe.Checkout.Session;
		try {
			session = await stripe.checkout.sessions.create(params, { idempotencyKey: checkoutIdempotencyKey(row.id) });
		} catch (err) {
			this.log.warn(`Stripe checkout ${row.id} failed`, (err as Error).message);
			throw Unavailable(
				"The card payment provider did not answer; retry with the same Idempotency-Key",
				"STRIPE_UNAVAILABLE"
			);
		}
		const [updated] = await this.q<CheckoutRow>(
			null,
			`UPDATE stripe_checkouts SET session_id = $2, session_url = $3, payment_intent_id = COALESCE(payment_intent_id, $4),
				status = CASE WHEN status = 'creating' THEN 'open' ELSE status END, updated_at = now()
			 WHERE id = $1 RETURNING *`,
			[row.id, session.id, session.url ?? null, idOf(session.payment_intent as string | null)]
		);
		return checkoutView(updated);
	}

	/**
	 * A checkout's state for its owner. While it is not settled, asks Stripe for the session: the
	 * success redirect may arrive before the webhook, and it credits through the same path.
	 */
	async checkoutStatus(payerId: string, checkoutId: string) {
		const [row] = await this.q<CheckoutRow>(null, `SELECT * FROM stripe_checkouts WHERE id = $1 AND user_id = $2`, [
			checkoutId,
			payerId
		]);
		if (!row) throw NotFound("Checkout");
		if (!row.session_id || !["open", "processing"].includes(row.status) || !this.stripe) return checkoutView(row);
		let session: SessionLike;
		try {
			session = (await this.stripe.checkout.sessions.retrieve(row.session_id)) as unknown as SessionLike;
		} catch (err) {
			this.log.warn(`Stripe session ${row.session_id} lookup failed`, (err as Error).message);
			return checkoutView(row);
		}
		await this.ledger.run(tx => this.applySession(tx, session, `sync:${session.id}`));
		const [after] = await this.q<CheckoutRow>(null, `SELECT * FROM stripe_checkouts WHERE id = $1`, [checkoutId]);
		return checkoutView(after);
	}

	// ---- Webhook and inbox ------------------------------------------------------------------

	/** Verifies and stores one webhook delivery. Processing happens after the answer. */
	async receiveWebhook(
		rawBody: string,
		signature: string
	): Promise<{ received: true; duplicate: boolean; eventId: string }> {
		const stripe = this.client();
		let event: Stripe.Event;
		try {
			event = stripe.webhooks.constructEvent(
				rawBody,
				signature,
				this.settings.webhookSecret!,
				this.settings.webhookToleranceS
			);
		} catch (err) {
			throw BadRequest(
				`Invalid Stripe webhook: ${(err as Error).message.split(/[.\n]/)[0]}`,
				"INVALID_SIGNATURE"
			);
		}
		const inserted = await this.storeEvent(event as unknown as StripeEventLike, "webhook");
		setImmediate(() => this.kick());
		return { received: true, duplicate: !inserted, eventId: event.id };
	}

	private async storeEvent(event: StripeEventLike, source: string): Promise<boolean> {
		const rows = await this.q(
			null,
			`INSERT INTO stripe_events (id, type, stripe_created, payload, source) VALUES ($1, $2, to_timestamp($3), $4::jsonb, $5)
			 ON CONFLICT (id) DO NOTHING RETURNING id`,
			[event.id, event.type, event.created, JSON.stringify(event), source]
		);
		return rows.length > 0;
	}

	/** Asks for a processing pass soon; passes never overlap within a node. */
	kick() {
		if (this.processing) {
			this.again = true;
			return;
		}
		this.processing = this.processPending().finally(() => {
			this.processing = null;
			if (this.again) {
				this.again = false;
				this.kick();
			}
		});
		this.processing.catch(err => this.log.error("Stripe inbox pass failed", (err as Error).message));
	}

	/** Resolves when no pass is running on this node. */
	async idle(): Promise<void> {
		while (this.processing) await this.processing.catch(() => undefined);
	}

	/** Waits for the current pass (if any) and runs one more; returns how many events were processed. */
	async drain(): Promise<number> {
		await this.processing?.catch(() => undefined);
		return this.processPending();
	}

	/** Processes due inbox events, oldest first, one per transaction. */
	async processPending(max = 500): Promise<number> {
		let done = 0;
		for (; done < max; done++) {
			const processed = await this.processOne();
			if (!processed) break;
		}
		return done;
	}

	private async processOne(): Promise<boolean> {
		let claimed: InboxRow | null = null;
		// Set inside the transaction, reported once it committed (a retried transaction sets it again).
		let recorded: string | null = null;
		try {
			const processed = await this.ledger.run(async tx => {
				recorded = null;
				const [row] = await this.q<InboxRow>(
					tx,
					`SELECT id, type, stripe_created, payload, attempts FROM stripe_events
					 WHERE processed_at IS NULL AND next_attempt_at <= now()
					 ORDER BY stripe_created, received_at LIMIT 1 FOR UPDATE SKIP LOCKED`,
					[]
				);
				if (!row) return false;
				claimed = row;
				const outcome = await this.apply(tx, row.payload);
				if (outcome === "defer") {
					const attempts = row.attempts + 1;
					if (attempts >= MAX_ATTEMPTS) {
						this.log.warn(
							`Stripe event ${row.id} (${row.type}) still unmatched after ${attempts} attempts; giving up`
						);
						await this.q(
							tx,
							`UPDATE stripe_events SET processed_at = now(), outcome = 'unmatched', attempts = $2 WHERE id = $1 RETURNING id`,
							[row.id, attempts]
						);
						recorded = "unmatched";
					} else {
						await this.q(
							tx,
							`UPDATE stripe_events SET attempts = $2, next_attempt_at = now() + ($3 || ' milliseconds')::interval, outcome = 'deferred' WHERE id = $1 RETURNING id`,
							[row.id, attempts, String(Math.min(60_000, 200 * 2 ** Math.min(attempts, 10)))]
						);
						recorded = "deferred";
					}
				} else {
					await this.q(
						tx,
						`UPDATE stripe_events SET processed_at = now(), outcome = $2 WHERE id = $1 RETURNING id`,
						[row.id, outcome]
					);
					recorded = outcome;
				}
				return true;
			});
			const row = claimed as InboxRow | null;
			const seen = recorded as string | null;
			if (row && seen) this.onProcessed(row.type, seen);
			return processed;
		} catch (err) {
			const row = claimed as InboxRow | null;
			if (!row) throw err;
			this.onProcessed(row.type, "failed");
			this.log.warn(`Stripe event ${row.id} (${row.type}) failed; will retry`, (err as Error).message);
			await this.q(
				null,
				`UPDATE stripe_events SET attempts = attempts + 1, last_error = $2,
					next_attempt_at = now() + (LEAST(60000, 500 * power(2, LEAST(attempts, 10)))::text || ' milliseconds')::interval
				 WHERE id = $1 RETURNING id`,
				[row.id, String((err as Error).message).slice(0, 1000)]
			);
			return true;
		}
	}

	/** Applies one event in `tx`. Every branch is idempotent on a business id. */
	private async apply(tx: Transaction, event: StripeEventLike): Promise<Outcome> {
		const obj = event.data.object;
		switch (event.type) {
			case "checkout.session.completed":
			case "checkout.session.async_payment_succeeded":
			case "checkout.session.async_payment_failed":
			case "checkout.session.expired":
				return this.applySession(tx, obj as unknown as SessionLike, event.id, event.type);
			case "payment_intent.succeeded":
				return this.applyPaymentIntent(
					tx,
					obj as {
						id: string;
						amount_received?: number;
						currency?: string;
						metadata?: Record<string, string>;
					}
				);
			case "payment_intent.payment_failed":
				return this.autoTopUp.applyPaymentFailed(
					tx,
					obj as {
						id: string;
						metadata?: Record<string, string>;
						last_payment_error?: { code?: string; message?: string } | null;
					}
				);
			case "charge.refunded":
				return this.applyRefund(
					tx,
					obj as {
						id: string;
						payment_intent?: string | null;
						amount_refunded: number;
						metadata?: Record<string, string>;
					},
					event.id
				);
			case "charge.dispute.created":
			case "charge.dispute.updated":
			case "charge.dispute.closed":
				return this.applyDispute(
					tx,
					obj as { id: string; payment_intent?: string | null; amount: number; status: string }
				);
			case "customer.subscription.created":
			case "customer.subscription.updated":
			case "customer.subscription.deleted":
			case "customer.subscription.paused":
			case "customer.subscription.resumed":
				return this.applySubscription(tx, obj as unknown as SubscriptionLike, event);
			default:
				return "ignored";
		}
	}

	private async lockCheckout(
		tx: Transaction,
		by: { id?: string | null; sessionId?: string | null; paymentIntentId?: string | null }
	) {
		const uuid = by.id && /^[0-9a-f-]{36}$/i.test(by.id) ? by.id : null;
		const [row] = await this.q<CheckoutRow>(
			tx,
			`SELECT * FROM stripe_checkouts WHERE id = $1::uuid OR session_id = $2 OR payment_intent_id = $3 ORDER BY created_at LIMIT 1 FOR UPDATE`,
			[uuid, by.sessionId ?? null, by.paymentIntentId ?? null]
		);
		return row ?? null;
	}

	private async applySession(
		tx: Transaction,
		s: SessionLike,
		eventId: string,
		type = "checkout.session.completed"
	): Promise<Outcome> {
		const row = await this.lockCheckout(tx, { id: s.metadata?.checkoutId, sessionId: s.id });
		if (!row) return "ignored"; // not a session this platform created
		const pi = idOf(s.payment_intent);
		const sub = idOf(s.subscription);
		await this.q(
			tx,
			`UPDATE stripe_checkouts SET session_id = COALESCE(session_id, $2), payment_intent_id = COALESCE(payment_intent_id, $3),
				subscription_id = COALESCE(subscription_id, $4), updated_at = now() WHERE id = $1 RETURNING id`,
			[row.id, s.id, pi, sub]
		);
		if (type === "checkout.session.async_payment_failed" || type === "checkout.session.expired") {
			if (row.status !== "paid")
				await this.setStatus(tx, row.id, type.endsWith("expired") ? "expired" : "failed");
			return "recorded";
		}
		if (s.payment_status !== "paid") {
			// Async methods (bank debits) complete the session unpaid; async_payment_succeeded follows.
			if (row.status === "open" || row.status === "creating") await this.setStatus(tx, row.id, "processing");
			return "recorded";
		}
		// A promotion code lowers amount_total; the price before discounts is what must match.
		const priced = s.amount_subtotal ?? s.amount_total;
		if (
			priced != null &&
			(BigInt(priced) !== BigInt(row.amount_cents) || (s.currency ?? row.currency) !== row.currency)
		) {
			this.log.error(
				`Stripe session ${s.id}: priced ${priced} ${s.currency}, expected ${row.amount_cents} ${row.currency}; not credited`
			);
			return "ignored";
		}
		return this.settleCheckout(tx, row, eventId);
	}

	private async applyPaymentIntent(
		tx: Transaction,
		pi: { id: string; amount_received?: number; currency?: string; metadata?: Record<string, string> }
	): Promise<Outcome> {
		const row = await this.lockCheckout(tx, { id: pi.metadata?.checkoutId, paymentIntentId: pi.id });
		if (!row) return "ignored";
		if (row.kind !== "pack") return "ignored"; // subscription payments are tracked by subscription events
		if (
			pi.amount_received != null &&
			(BigInt(pi.amount_received) < BigInt(row.amount_cents) || (pi.currency ?? row.currency) !== row.currency)
		) {
			this.log.error(
				`Stripe payment intent ${pi.id}: received ${pi.amount_received} ${pi.currency}, expected ${row.amount_cents}; not credited`
			);
			return "ignored";
		}
		await this.q(
			tx,
			`UPDATE stripe_checkouts SET payment_intent_id = COALESCE(payment_intent_id, $2) WHERE id = $1 RETURNING id`,
			[row.id, pi.id]
		);
		return this.settleCheckout(tx, row, pi.id);
	}

	private async setStatus(tx: Transaction, id: string, status: CheckoutRow["status"]) {
		await this.q(tx, `UPDATE stripe_checkouts SET status = $2, updated_at = now() WHERE id = $1 RETURNING id`, [
			id,
			status
		]);
	}

	/** Marks a checkout paid and, for a credit pack, credits it: once per checkout, whatever reports it. */
	private async settleCheckout(tx: Transaction, row: CheckoutRow, via: string): Promise<Outcome> {
		if (row.credit_transaction_id != null) return "duplicate";
		if (row.kind !== "pack") {
			if (row.status !== "paid") await this.setStatus(tx, row.id, "paid");
			return row.status === "paid" ? "duplicate" : "recorded";
		}
		const credits = BigInt(row.credits);
		const posted = await this.ledger.credit(tx, {
			kind: "purchase",
			userId: row.user_id,
			credits,
			from: "sys:stripe",
			source: "paid",
			expiresAt: null,
			causeType: "stripe_checkout",
			causeId: row.id,
			description: `Credit pack '${row.item_id}'`,
			metadata: { via, amountCents: Number(row.amount_cents), currency: row.currency }
		});
		await this.q(
			tx,
			`UPDATE stripe_checkouts SET status = 'paid', credit_transaction_id = $2, updated_at = now() WHERE id = $1 RETURNING id`,
			[row.id, posted.id]
		);
		if (posted.duplicate) return "duplicate";
		await this.publish(tx, "payments.credits.purchased", {
			userId: row.user_id,
			checkoutId: row.id,
			credits: credits.toString()
		});
		return "credited";
	}

	private async purchaseLot(tx: Transaction, row: CheckoutRow): Promise<string | null> {
		if (!row.credit_transaction_id) return null;
		const [lot] = await this.q<{ id: string }>(tx, `SELECT id FROM credit_lots WHERE transaction_id = $1`, [
			row.credit_transaction_id
		]);
		return lot ? String(lot.id) : null;
	}

	private async applyRefund(
		tx: Transaction,
		charge: {
			id: string;
			payment_intent?: string | null;
			amount_refunded: number;
			metadata?: Record<string, string>;
		},
		eventId: string
	): Promise<Outcome> {
		const row = await this.lockCheckout(tx, {
			id: charge.metadata?.checkoutId,
			paymentIntentId: charge.payment_intent ?? null
		});
		if (!row) return charge.payment_intent ? "defer" : "ignored";
		if (row.kind !== "pack") return "ignored";
		if (row.credit_transaction_id == null) return "defer"; // the refund overtook the payment's own events
		const refunded = BigInt(Math.max(Number(row.refunded_cents), charge.amount_refunded));
		const delta = refundClawback(BigInt(row.credits), BigInt(row.amount_cents), refunded, BigInt(row.clawed_back));
		await this.q(
			tx,
			`UPDATE stripe_checkouts SET refunded_cents = $2, updated_at = now() WHERE id = $1 RETURNING id`,
			[row.id, refunded.toString()]
		);
		if (delta === 0n) return "duplicate";
		const r = await this.ledger.clawback(tx, {
			kind: "refund_clawback",
			userId: row.user_id,
			amount: delta,
			to: "sys:stripe",
			preferLotId: await this.purchaseLot(tx, row),
			causeType: "stripe_refund",
			causeId: `${row.id}:${refunded}`,
			description: "Card payment refunded",
			metadata: { chargeId: charge.id, eventId, refundedCents: refunded.toString() }
		});
		await this.q(
			tx,
			`UPDATE stripe_checkouts SET clawed_back = clawed_back + $2, clawback_shortfall = clawback_shortfall + $3 WHERE id = $1 RETURNING id`,
			[row.id, delta.toString(), r.shortfall.toString()]
		);
		return "clawed_back";
	}

	private async applyDispute(
		tx: Transaction,
		d: { id: string; payment_intent?: string | null; amount: number; status: string }
	): Promise<Outcome> {
		const row = await this.lockCheckout(tx, { paymentIntentId: d.payment_intent ?? null });
		if (!row) return d.payment_intent ? "defer" : "ignored";
		if (row.kind !== "pack") return "ignored";
		if (row.credit_transaction_id == null) return "defer";
		const [existing] = await this.q<{ status: string; clawed_back: string; restored: boolean }>(
			tx,
			`SELECT status, clawed_back, restored FROM stripe_disputes WHERE id = $1 FOR UPDATE`,
			[d.id]
		);
		if (!existing) {
			const credits = BigInt(row.credits);
			const share = (credits * BigInt(Math.min(d.amount, Number(row.amount_cents)))) / BigInt(row.amount_cents);
			const left = credits - BigInt(row.clawed_back);
			const amount = share < left ? share : left;
			const r = await this.ledger.clawback(tx, {
				kind: "dispute_clawback",
				userId: row.user_id,
				amount,
				to: "sys:stripe",
				preferLotId: await this.purchaseLot(tx, row),
				causeType: "stripe_dispute",
				causeId: d.id,
				description: "Card payment disputed",
				metadata: { disputeAmountCents: d.amount }
			});
			await this.q(
				tx,
				`INSERT INTO stripe_disputes (id, checkout_id, status, clawed_back) VALUES ($1, $2, $3, $4) RETURNING id`,
				[d.id, row.id, d.status, r.taken.toString()]
			);
			await this.q(
				tx,
				`UPDATE stripe_checkouts SET clawed_back = clawed_back + $2, clawback_shortfall = clawback_shortfall + $3 WHERE id = $1 RETURNING id`,
				[row.id, r.taken.toString(), r.shortfall.toString()]
			);
		}
		const clawed = existing ? BigInt(existing.clawed_back) : null;
		if (d.status === "won" && !(existing?.restored ?? false)) {
			const [fresh] = await this.q<{ clawed_back: string }>(
				tx,
				`SELECT clawed_back FROM stripe_disputes WHERE id = $1`,
				[d.id]
			);
			const amount = clawed ?? BigInt(fresh.clawed_back);
			if (amount > 0n)
				await this.ledger.credit(tx, {
					kind: "dispute_restore",
					userId: row.user_id,
					credits: amount,
					from: "sys:stripe",
					source: "paid",
					expiresAt: null,
					causeType: "stripe_dispute",
					causeId: d.id,
					description: "Card dispute won: credits restored"
				});
			await this.q(tx, `UPDATE stripe_disputes SET restored = true WHERE id = $1 RETURNING id`, [d.id]);
			await this.q(tx, `UPDATE stripe_checkouts SET clawed_back = clawed_back - $2 WHERE id = $1 RETURNING id`, [
				row.id,
				amount.toString()
			]);
		}
		await this.q(tx, `UPDATE stripe_disputes SET status = $2, updated_at = now() WHERE id = $1 RETURNING id`, [
			d.id,
			d.status
		]);
		return existing ? "recorded" : "clawed_back";
	}

	/**
	 * `live`: `sub` was read from Stripe just now (below), not taken from the event's payload, so it
	 * is the subscription's state whatever the order of the events of the same second.
	 */
	private async applySubscription(
		tx: Transaction,
		sub: SubscriptionLike,
		event: StripeEventLike,
		live = false
	): Promise<Outcome> {
		let payerId = sub.metadata?.payerId ?? sub.metadata?.userId ?? null;
		let planTier = sub.metadata?.planTier ?? null;
		if (!payerId || !planTier) {
			const [row] = await this.q<CheckoutRow>(
				tx,
				`SELECT * FROM stripe_checkouts WHERE subscription_id = $1 AND kind = 'plan'`,
				[sub.id]
			);
			if (!row) return "ignored";
			payerId = row.user_id;
			planTier = row.plan_tier;
		}
		if (!planTier || !isTierName(planTier)) return "ignored";
		const status = event.type === "customer.subscription.deleted" ? "canceled" : sub.status;
		const created = new Date(event.created * 1000);
		const item = sub.items?.data?.[0] ?? null;
		const periodEnd = item?.current_period_end ?? sub.current_period_end ?? null;
		const facts = {
			customerId: idOf(sub.customer ?? null),
			itemId: item?.id ?? null,
			cancelAtPeriodEnd: sub.cancel_at_period_end ?? false,
			currentPeriodEnd: periodEnd ? new Date(periodEnd * 1000) : null
		};
		const [current] = await this.q<{
			status: string;
			last_event_created: Date;
			past_due_since: Date | null;
			cancel_at_period_end: boolean;
			current_period_end: Date | null;
		}>(
			tx,
			`SELECT status, last_event_created, past_due_since, cancel_at_period_end, current_period_end
			 FROM stripe_subscriptions WHERE id = $1 FOR UPDATE`,
			[sub.id]
		);
		let pastDueSince: Date | null;
		if (current) {
			// Last event wins, except that a terminal state (canceled) is never undone by an older or equal-time event.
			const newer = created.getTime() > new Date(current.last_event_created).getTime();
			const sameTime = created.getTime() === new Date(current.last_event_created).getTime();
			if (TERMINAL_SUBSCRIPTION.has(current.status)) return "duplicate";
			// Stripe's `created` is in whole seconds: of two events of one second that say different
			// things (created as incomplete and updated to active, often), the payloads cannot tell
			// which is the later. The subscription as Stripe has it now decides (Stripe's advice for
			// out-of-order events), whichever arrives second; the same event again reads nothing.
			if (
				sameTime &&
				!live &&
				!TERMINAL_SUBSCRIPTION.has(status) &&
				(status !== current.status ||
					facts.cancelAtPeriodEnd !== current.cancel_at_period_end ||
					(facts.currentPeriodEnd?.getTime() ?? null) !==
						(current.current_period_end ? new Date(current.current_period_end).getTime() : null))
			) {
				const fresh = await this.client().subscriptions.retrieve(sub.id);
				return this.applySubscription(tx, fresh as unknown as SubscriptionLike, event, true);
			}
			if (!newer && !(sameTime && (live || TERMINAL_SUBSCRIPTION.has(status)))) {
				// An older past_due event delivered late still dates the grace period's start.
				const earlier = earlierPastDueSince(current.status, current.past_due_since, status, created);
				if (earlier)
					await this.q(tx, `UPDATE stripe_subscriptions SET past_due_since = $2 WHERE id = $1 RETURNING id`, [
						sub.id,
						earlier
					]);
				return "duplicate";
			}
			pastDueSince = nextPastDueSince(current.past_due_since, status, created);
			await this.q(
				tx,
				`UPDATE stripe_subscriptions SET status = $2, plan_tier = $3, last_event_created = $4, last_event_id = $5,
					customer_id = COALESCE($6, customer_id), item_id = COALESCE($7, item_id), cancel_at_period_end = $8,
					current_period_end = COALESCE($9, current_period_end), past_due_since = $10, updated_at = now()
				 WHERE id = $1 RETURNING id`,
				[
					sub.id,
					status,
					planTier,
					created,
					event.id,
					facts.customerId,
					facts.itemId,
					facts.cancelAtPeriodEnd,
					facts.currentPeriodEnd,
					pastDueSince
				]
			);
		} else {
			pastDueSince = nextPastDueSince(null, status, created);
			await this.q(
				tx,
				`INSERT INTO stripe_subscriptions (id, user_id, plan_tier, status, last_event_created, last_event_id,
					customer_id, item_id, cancel_at_period_end, current_period_end, past_due_since)
				 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
				[
					sub.id,
					payerId,
					planTier,
					status,
					created,
					event.id,
					facts.customerId,
					facts.itemId,
					facts.cancelAtPeriodEnd,
					facts.currentPeriodEnd,
					pastDueSince
				]
			);
		}
		if (pastDueSince && !current?.past_due_since)
			await this.noticePastDue(tx, payerId, sub.id, planTier, pastDueSince);
		// A team subscription's quantity is the organisation's member count (seats.ts): checked on each of its events.
		const seatOrg = orgIdOfPayer(payerId);
		if (seatOrg && planTier === SEAT_PLAN_TIER && CHANGEABLE_STATUSES.has(status))
			await this.publish(tx, SEATS_SYNC, { orgId: seatOrg });
		return (await this.recomputePlan(tx, payerId)) ? "plan_updated" : "recorded";
	}

	/** `billing.past_due`, once per payer, subscription and past-due episode (the `billing_notices` key). */
	private async noticePastDue(
		tx: Transaction,
		payerId: string,
		subscriptionId: string,
		planTier: string,
		since: Date
	) {
		const ends = graceEndsAt({ status: "past_due", pastDueSince: since }, this.settings.pastDueGraceS)!;
		const details = {
			payerId,
			subscriptionId,
			planTier,
			pastDueSince: since.toISOString(),
			graceEndsAt: ends.toISOString()
		};
		const fresh = await this.q(
			tx,
			`INSERT INTO billing_notices (payer_id, kind, crossing, details) VALUES ($1, 'past_due', $2, $3::jsonb)
			 ON CONFLICT DO NOTHING RETURNING payer_id`,
			[payerId, `${subscriptionId}:${since.toISOString()}`, JSON.stringify(details)]
		);
		if (fresh.length) await this.publish(tx, BILLING_PAST_DUE, details);
	}

	/**
	 * The payer's plan tier from its subscriptions (src/payments/subscription-rules.ts: past_due counts
	 * for BILLING_PAST_DUE_GRACE_S). Publishes `payments.plan.changed` when it moved.
	 */
	private async recomputePlan(tx: Transaction, payerId: string): Promise<boolean> {
		const subs = await this.q<{ plan_tier: string; status: string; past_due_since: Date | null }>(
			tx,
			`SELECT plan_tier, status, past_due_since FROM stripe_subscriptions WHERE user_id = $1`,
			[payerId]
		);
		const tier = planTierOf(
			subs.map(s => ({
				planTier: s.plan_tier,
				status: s.status,
				pastDueSince: s.past_due_since ? new Date(s.past_due_since) : null
			})),
			new Date(),
			this.settings.pastDueGraceS
		);
		const [before] = await this.q<{ plan_tier: string }>(
			tx,
			`SELECT plan_tier FROM user_plans WHERE user_id = $1 FOR UPDATE`,
			[payerId]
		);
		if ((before?.plan_tier ?? "free") === tier) return false;
		await this.q(
			tx,
			`INSERT INTO user_plans (user_id, plan_tier) VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE SET plan_tier = $2, updated_at = now() RETURNING user_id`,
			[payerId, tier]
		);
		// The users service keeps a user's plan fact; an organisation's goes out under its own topic.
		const org = orgIdOfPayer(payerId);
		if (org) await this.publish(tx, ORG_PLAN_CHANGED, { orgId: org, planTier: tier });
		else await this.publish(tx, "payments.plan.changed", { userId: payerId, planTier: tier });
		return true;
	}

	/**
	 * Drops the tier of payers whose `past_due` subscription outlived the grace period (no event
	 * marks that moment, so each node looks for it on the inbox poll). Returns how many payers changed.
	 */
	async expirePastDueGrace(): Promise<number> {
		const due = await this.q<{ user_id: string }>(
			null,
			`SELECT DISTINCT s.user_id FROM stripe_subscriptions s JOIN user_plans p ON p.user_id = s.user_id
			 WHERE s.status = 'past_due' AND s.past_due_since <= now() - ($1 || ' seconds')::interval
			   AND p.plan_tier = s.plan_tier
			 LIMIT 500`,
			[String(this.settings.pastDueGraceS)]
		);
		let changed = 0;
		for (const { user_id } of due) if (await this.ledger.run(tx => this.recomputePlan(tx, user_id))) changed++;
		return changed;
	}

	async planOf(userId: string): Promise<TierName> {
		const [row] = await this.q<{ plan_tier: string }>(null, `SELECT plan_tier FROM user_plans WHERE user_id = $1`, [
			userId
		]);
		return row && isTierName(row.plan_tier) ? row.plan_tier : "free";
	}

	// ---- Reconciliation and replay -----------------------------------------------------------

	/** Lists Stripe's recent events and feeds those the webhook missed through the inbox. */
	async reconcile(
		windowS = this.settings.reconcileWindowS
	): Promise<{ listed: number; missed: number; processed: number }> {
		const stripe = this.client();
		let listed = 0;
		let missed = 0;
		const since = Math.floor(Date.now() / 1000) - windowS;
		for await (const event of stripe.events.list({ created: { gte: since }, limit: 100 })) {
			listed++;
			if (await this.storeEvent(event as unknown as StripeEventLike, "reconcile")) missed++;
		}
		const processed = await this.drain();
		if (missed)
			this.log.warn(`Stripe reconciliation: ${missed} of ${listed} recent events had not arrived by webhook`);
		return { listed, missed, processed };
	}

	/** Processes an event again (from the inbox, or fetched from Stripe when it never arrived). */
	async replay(eventId: string): Promise<{ eventId: string; outcome: string | null; fetched: boolean }> {
		const reset = await this.q(
			null,
			`UPDATE stripe_events SET processed_at = NULL, outcome = NULL, attempts = 0, next_attempt_at = now(), last_error = NULL WHERE id = $1 RETURNING id`,
			[eventId]
		);
		let fetched = false;
		if (!reset.length) {
			const event = await this.client().events.retrieve(eventId);
			await this.storeEvent(event as unknown as StripeEventLike, "replay");
			fetched = true;
		}
		await this.drain();
		const [row] = await this.q<{ outcome: string | null }>(
			null,
			`SELECT outcome FROM stripe_events WHERE id = $1`,
			[eventId]
		);
		return { eventId, outcome: row?.outcome ?? null, fetched };
	}
}
