/**
 * Auto top-up (issue 19 part 4): when a settlement leaves a payer's available credit under its
 * threshold, an off-session PaymentIntent on the payer's saved card buys the chosen pack.
 *
 * THE RULE
 * - At most one purchase attempt per payer per window (`BILLING_AUTO_TOPUP_WINDOW_S`): the attempt is
 *   claimed by one conditional UPDATE of the payer's row (`last_triggered_at` older than the window),
 *   so of two parallel triggers one claims and the other sees the fresh stamp and does nothing. The
 *   claim and the purchase's checkout row commit together.
 * - Stripe's idempotency key is `ff-topup-<payer>-<window start>` (the claim's time, in microseconds:
 *   the window runs from there): the SDK's retries reach the same PaymentIntent, and two claims, being
 *   a window apart, never share a key.
 * - Credits come only from `payment_intent.succeeded` (stripe-billing.ts): the PaymentIntent's
 *   metadata names the checkout row, which credits once whatever the events' order or number.
 * - A card that needs authentication or is declined (the SDK's card error, or a later
 *   `payment_intent.payment_failed`) turns auto top-up off with the reason, and the payer is told once
 *   (the durable `billing.auto_topup.failed`, mailed by the users service; one `billing_notices` row per
 *   attempt). Nothing retries it: the payer turns it on again (PUT) after fixing the card, and the
 *   window still applies. Other failures (Stripe unreachable) leave it on; the window is the back-off.
 */
import type Stripe from "stripe";
import { randomUUID } from "node:crypto";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { Unprocessable } from "../errors";
import type { StripeSettings } from "./config";
import { credits, type Ledger } from "./ledger";
import { findPack, type CreditPack } from "./prices";
import type { Publisher } from "./stake-indexer";
import type { StripeSelfServe } from "./stripe-self-serve";
import { noticeOnce } from "./billing-notices";

/** Durable notice: an auto top-up failed and was turned off (`{ payerId, packId, reason, message, checkoutId }`). */
export const BILLING_AUTO_TOPUP_FAILED = "billing.auto_topup.failed";

/** Metadata `origin` of an auto top-up's PaymentIntent. */
export const AUTO_TOPUP_ORIGIN = "auto_topup";

interface AutoTopUpRow {
	payer_id: string;
	threshold_credits: string;
	pack_id: string;
	enabled: boolean;
	disabled_reason: string | null;
	disabled_message: string | null;
	disabled_at: Date | null;
	last_triggered_at: Date | null;
	last_checkout_id: string | null;
	updated_at: Date;
}

function settingView(r: AutoTopUpRow | null) {
	return {
		configured: r != null,
		enabled: r?.enabled ?? false,
		thresholdCredits: r ? credits(r.threshold_credits) : null,
		packId: r?.pack_id ?? null,
		disabledReason: r?.disabled_reason ?? null,
		disabledMessage: r?.disabled_message ?? null,
		disabledAt: r?.disabled_at ? new Date(r.disabled_at).toISOString() : null,
		lastTriggeredAt: r?.last_triggered_at ? new Date(r.last_triggered_at).toISOString() : null,
		lastCheckoutId: r?.last_checkout_id ?? null
	};
}

export type AutoTopUpView = ReturnType<typeof settingView>;

export interface AutoTopUpRequest {
	thresholdCredits: number;
	packId: string;
	enabled: boolean;
}

/** What one check did: nothing to do, another trigger holds the window, or an attempt and its outcome. */
export type TriggerOutcome =
	| { triggered: false; reason: "off" | "above_threshold" | "window" }
	| { triggered: true; checkoutId: string; status: "processing" | "failed" | "error"; reason?: string };

/** Card errors that turn auto top-up off (Stripe's codes for an off-session payment it will not take). */
const DISABLING = new Set(["authentication_required", "card_declined", "expired_card", "incorrect_cvc"]);

/** Stripe's idempotency key of the attempt whose window starts at `windowStartUs` (epoch microseconds). */
export const topUpIdempotencyKey = (payerId: string, windowStartUs: string) => `ff-topup-${payerId}-${windowStartUs}`;

type Log = { warn(...a: unknown[]): void; info(...a: unknown[]): void };

export class AutoTopUp {
	constructor(
		private readonly sequelize: Sequelize,
		private readonly ledger: Ledger,
		private readonly stripe: () => Stripe,
		private readonly selfServe: StripeSelfServe,
		private readonly settings: StripeSettings,
		private readonly publish: Publisher,
		private readonly log: Log
	) {}

	private q<T extends object>(tx: Transaction | null, sql: string, bind: unknown[]): Promise<T[]> {
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx ?? undefined });
	}

	private async row(payerId: string): Promise<AutoTopUpRow | null> {
		const [r] = await this.q<AutoTopUpRow>(null, `SELECT * FROM auto_topups WHERE payer_id = $1`, [payerId]);
		return r ?? null;
	}

	async get(payerId: string): Promise<AutoTopUpView> {
		return settingView(await this.row(payerId));
	}

	/** Sets the payer's auto top-up; turning it on clears the reason it was turned off. */
	async configure(payerId: string, req: AutoTopUpRequest): Promise<AutoTopUpView> {
		if (!findPack(req.packId))
			throw Unprocessable("Unknown credit pack", [
				{ field: "packId", message: `no pack '${req.packId}' (see GET /billing/prices)`, type: "enum" }
			]);
		const [r] = await this.q<AutoTopUpRow>(
			null,
			`INSERT INTO auto_topups (payer_id, threshold_credits, pack_id, enabled) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (payer_id) DO UPDATE SET threshold_credits = $2, pack_id = $3, enabled = $4,
				disabled_reason = CASE WHEN $4 THEN NULL ELSE auto_topups.disabled_reason END,
				disabled_message = CASE WHEN $4 THEN NULL ELSE auto_topups.disabled_message END,
				disabled_at = CASE WHEN $4 THEN NULL ELSE auto_topups.disabled_at END,
				updated_at = now()
			 RETURNING *`,
			[payerId, String(req.thresholdCredits), req.packId, req.enabled]
		);
		return settingView(r);
	}

	async remove(payerId: string): Promise<AutoTopUpView> {
		await this.q(null, `DELETE FROM auto_topups WHERE payer_id = $1 RETURNING payer_id`, [payerId]);
		return settingView(null);
	}

	/**
	 * Called after a settlement of the payer: buys its pack when the available credit is under the
	 * threshold and no attempt ran within the window.
	 */
	async check(payerId: string): Promise<TriggerOutcome> {
		const setting = await this.row(payerId);
		if (!setting?.enabled) return { triggered: false, reason: "off" };
		const pack = findPack(setting.pack_id);
		if (!pack) return { triggered: false, reason: "off" };
		const { available } = await this.ledger.balance(payerId);
		if (available >= BigInt(setting.threshold_credits)) return { triggered: false, reason: "above_threshold" };
		const checkoutId = randomUUID();
		const claimed = await this.ledger.run(async tx => {
			const [c] = await this.q<{ window_start_us: string }>(
				tx,
				`UPDATE auto_topups SET last_triggered_at = now(), last_checkout_id = $2, updated_at = now()
				 WHERE payer_id = $1 AND enabled AND pack_id = $3
				   AND (last_triggered_at IS NULL OR last_triggered_at <= now() - make_interval(secs => $4))
				 RETURNING (extract(epoch FROM last_triggered_at) * 1000000)::bigint::text AS window_start_us`,
				[payerId, checkoutId, pack.id, this.settings.autoTopUpWindowS]
			);
			if (!c) return null;
			await this.q(
				tx,
				`INSERT INTO stripe_checkouts (id, user_id, kind, item_id, credits, amount_cents, currency, status, origin)
				 VALUES ($1, $2, 'pack', $3, $4, $5, $6, 'creating', 'auto_topup') RETURNING id`,
				[checkoutId, payerId, pack.id, pack.credits.toString(), pack.priceCents, this.settings.currency]
			);
			return c.window_start_us;
		});
		if (!claimed) return { triggered: false, reason: "window" };
		return this.purchase(payerId, pack, checkoutId, claimed);
	}

	/** The card the payer's Customer pays off-session with: its default, else its newest card. */
	private async savedCard(customer: string): Promise<string | null> {
		const stripe = this.stripe();
		const c = await stripe.customers.retrieve(customer);
		const preferred = "deleted" in c ? null : c.invoice_settings?.default_payment_method;
		if (preferred) return typeof preferred === "string" ? preferred : preferred.id;
		const list = await stripe.customers.listPaymentMethods(customer, { type: "card", limit: 1 });
		return list.data[0]?.id ?? null;
	}

	private async purchase(
		payerId: string,
		pack: CreditPack,
		checkoutId: string,
		windowStartUs: string
	): Promise<TriggerOutcome> {
		const fail = (reason: string, message: string, paymentIntentId: string | null) =>
			this.ledger.run(tx => this.failAttempt(tx, payerId, checkoutId, reason, message, paymentIntentId));
		const customer = await this.selfServe.customerIdOf(payerId);
		let card: string | null;
		try {
			card = customer ? await this.savedCard(customer) : null;
		} catch (err) {
			return this.transient(checkoutId, "payment method lookup", err);
		}
		if (!customer || !card) {
			await fail("no_payment_method", "No card is saved for off-session payments; buy a pack once first", null);
			return { triggered: true, checkoutId, status: "failed", reason: "no_payment_method" };
		}
		const metadata = {
			checkoutId,
			payerId,
			userId: payerId,
			kind: "pack",
			itemId: pack.id,
			credits: pack.credits.toString(),
			origin: AUTO_TOPUP_ORIGIN
		};
		try {
			const pi = await this.stripe().paymentIntents.create(
				{
					amount: pack.priceCents,
					currency: this.settings.currency,
					customer,
					payment_method: card,
					off_session: true,
					confirm: true,
					description: `Auto top-up: credit pack '${pack.id}'`,
					metadata
				},
				{ idempotencyKey: topUpIdempotencyKey(payerId, windowStartUs) }
			);
			await this.q(
				null,
				`UPDATE stripe_checkouts SET payment_intent_id = COALESCE(payment_intent_id, $2),
					status = CASE WHEN status = 'creating' THEN 'processing' ELSE status END, updated_at = now()
				 WHERE id = $1 RETURNING id`,
				[checkoutId, pi.id]
			);
			return { triggered: true, checkoutId, status: "processing" };
		} catch (err) {
			const e = err as { type?: string; code?: string; message?: string; payment_intent?: { id?: string } };
			if (e.type === "StripeCardError") {
				const reason = e.code && DISABLING.has(e.code) ? e.code : "card_declined";
				await fail(reason, String(e.message ?? reason).split("\n")[0], e.payment_intent?.id ?? null);
				return { triggered: true, checkoutId, status: "failed", reason };
			}
			return this.transient(checkoutId, "payment intent", err);
		}
	}

	/** Stripe did not answer: the attempt failed, auto top-up stays on, the window holds the next one back. */
	private async transient(checkoutId: string, what: string, err: unknown): Promise<TriggerOutcome> {
		this.log.warn(`Auto top-up ${checkoutId}: Stripe ${what} failed`, (err as Error).message);
		await this.q(
			null,
			`UPDATE stripe_checkouts SET status = 'failed', updated_at = now() WHERE id = $1 AND status <> 'paid' RETURNING id`,
			[checkoutId]
		);
		return { triggered: true, checkoutId, status: "error" };
	}

	/**
	 * The attempt failed for a reason the payer must fix: the checkout fails (unless already paid), auto
	 * top-up turns off with the reason, and the notice goes out, once per attempt.
	 */
	async failAttempt(
		tx: Transaction,
		payerId: string,
		checkoutId: string,
		reason: string,
		message: string,
		paymentIntentId: string | null
	): Promise<boolean> {
		const [row] = await this.q<{ status: string; item_id: string }>(
			tx,
			`SELECT status, item_id FROM stripe_checkouts WHERE id = $1 AND user_id = $2 AND origin = 'auto_topup' FOR UPDATE`,
			[checkoutId, payerId]
		);
		if (!row || row.status === "paid") return false;
		await this.q(
			tx,
			`UPDATE stripe_checkouts SET status = 'failed', payment_intent_id = COALESCE(payment_intent_id, $2), updated_at = now()
			 WHERE id = $1 RETURNING id`,
			[checkoutId, paymentIntentId]
		);
		const details = { payerId, checkoutId, packId: row.item_id, reason, message: message.slice(0, 500) };
		const fresh = await noticeOnce(this.sequelize, tx, this.publish, {
			payerId,
			kind: "auto_topup_failed",
			crossing: checkoutId,
			topic: BILLING_AUTO_TOPUP_FAILED,
			details
		});
		if (!fresh) return false;
		await this.q(
			tx,
			`UPDATE auto_topups SET enabled = false, disabled_reason = $2, disabled_message = $3, disabled_at = now(), updated_at = now()
			 WHERE payer_id = $1 RETURNING payer_id`,
			[payerId, reason, details.message]
		);
		return true;
	}

	/** `payment_intent.payment_failed` of an auto top-up (a failure Stripe reports after the create call). */
	async applyPaymentFailed(
		tx: Transaction,
		pi: {
			id: string;
			metadata?: Record<string, string> | null;
			last_payment_error?: { code?: string | null; message?: string | null } | null;
		}
	): Promise<"recorded" | "ignored" | "duplicate"> {
		const m = pi.metadata ?? {};
		if (m.origin !== AUTO_TOPUP_ORIGIN || !m.checkoutId || !m.payerId) return "ignored";
		const code = pi.last_payment_error?.code ?? "card_declined";
		const reason = DISABLING.has(code) ? code : "card_declined";
		const fresh = await this.failAttempt(
			tx,
			m.payerId,
			m.checkoutId,
			reason,
			pi.last_payment_error?.message ?? reason,
			pi.id
		);
		return fresh ? "recorded" : "duplicate";
	}
}
