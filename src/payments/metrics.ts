/**
 * The payments service's Prometheus families (names in base units, `_total` on counters only):
 * holds placed, settled and released; credits charged by settlements; Stripe inbox events by type and
 * outcome; the staking index's lag behind the chain head; reconciliation drift (events Stripe had
 * that no webhook delivered). Every counter counts what this node committed, once: idempotent
 * repeats (`duplicate: true`) are not counted again.
 */
import type { MetricRegistry } from "moleculer";
import type { HoldView } from "./ledger";

/** Stripe event types the billing code handles; any other type is counted as `other` (bounded labels). */
const STRIPE_TYPES = new Set([
	"checkout.session.completed",
	"checkout.session.async_payment_succeeded",
	"checkout.session.async_payment_failed",
	"checkout.session.expired",
	"payment_intent.succeeded",
	"payment_intent.payment_failed",
	"charge.refunded",
	"charge.dispute.created",
	"charge.dispute.updated",
	"charge.dispute.closed",
	"customer.subscription.created",
	"customer.subscription.updated",
	"customer.subscription.deleted",
	"customer.subscription.paused",
	"customer.subscription.resumed"
]);
export const stripeTypeLabel = (type: string) => (STRIPE_TYPES.has(type) ? type : "other");

export const PAYMENTS_METRICS = {
	holds: "payments.holds.total",
	settledCredits: "payments.settled.credits.total",
	stripeEvents: "payments.stripe.events.total",
	chainLag: "payments.chain.index.lag.blocks",
	chainHead: "payments.chain.head.block",
	reconcileRuns: "payments.stripe.reconcile.runs.total",
	reconcileMissed: "payments.stripe.reconcile.missed.total",
	reconcileDrift: "payments.stripe.reconcile.drift.events"
} as const;

export function registerPaymentsMetrics(m: MetricRegistry): void {
	if (m.hasMetric(PAYMENTS_METRICS.holds)) return;
	m.register({
		type: "counter",
		name: PAYMENTS_METRICS.holds,
		labelNames: ["event"],
		description: "Credit holds for tasks by what happened to them: placed, settled, released"
	});
	m.register({
		type: "counter",
		name: PAYMENTS_METRICS.settledCredits,
		description: "Credits charged by settled holds (1 credit = 1/1000 USD)"
	});
	m.register({
		type: "counter",
		name: PAYMENTS_METRICS.stripeEvents,
		labelNames: ["type", "outcome"],
		description:
			"Stripe inbox events processed, by event type and outcome (credited, duplicate, recorded, ignored, clawed_back, plan_updated, deferred, unmatched, failed)"
	});
	m.register({
		type: "gauge",
		name: PAYMENTS_METRICS.chainLag,
		description: "Blocks between the chain head and the staking index's cursor after the last chain pass"
	});
	m.register({
		type: "gauge",
		name: PAYMENTS_METRICS.chainHead,
		description: "The chain head block seen by the last chain pass"
	});
	m.register({
		type: "counter",
		name: PAYMENTS_METRICS.reconcileRuns,
		description: "Stripe reconciliation runs (events listed from Stripe compared with the inbox)"
	});
	m.register({
		type: "counter",
		name: PAYMENTS_METRICS.reconcileMissed,
		description: "Stripe events found by reconciliation that no webhook had delivered"
	});
	m.register({
		type: "gauge",
		name: PAYMENTS_METRICS.reconcileDrift,
		description: "Stripe events the last reconciliation run found missing from the inbox (0 when in step)"
	});
}

/** Counts a hold's change once: an idempotent repeat (`duplicate`) was counted the first time. */
export function countHold<H extends Pick<HoldView, "duplicate" | "charged">>(
	m: MetricRegistry,
	event: "placed" | "settled" | "released",
	hold: H
): H {
	if (hold.duplicate) return hold;
	m.increment(PAYMENTS_METRICS.holds, { event });
	if (event === "settled" && hold.charged) m.increment(PAYMENTS_METRICS.settledCredits, {}, hold.charged);
	return hold;
}

/** One Stripe reconciliation run and its drift (events that only the listing found). */
export function countReconcile(m: MetricRegistry, missed: number): void {
	m.increment(PAYMENTS_METRICS.reconcileRuns);
	if (missed) m.increment(PAYMENTS_METRICS.reconcileMissed, {}, missed);
	m.set(PAYMENTS_METRICS.reconcileDrift, missed);
}
