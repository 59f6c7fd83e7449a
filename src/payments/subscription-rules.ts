/**
 * What a payer's Stripe subscriptions are worth, as pure rules (the shell is stripe-billing.ts).
 *
 * THE RULE: a payer's plan tier is the highest tier among its live subscriptions. `active` and
 * `trialing` are live. `past_due` (a renewal failed and Stripe is retrying the card) is live for a
 * grace period counted from the first event that reported it (`BILLING_PAST_DUE_GRACE_S`), then not:
 * the tier drops while Stripe may still collect. Every other status (`unpaid`, `canceled`,
 * `incomplete`, `incomplete_expired`, `paused`) is not live.
 *
 * WHY a grace period: a card that expired or hit its limit is usually fixed within days, and the
 * people on the plan should not lose their tier at the first failed retry; but a subscription that
 * stays unpaid must not keep its tier for as long as Stripe's retry schedule runs (weeks).
 */
import { TIERS, type TierName, isTierName } from "../domain/tiers";

export interface SubscriptionFacts {
	planTier: string;
	status: string;
	pastDueSince: Date | null;
}

const LIVE = new Set(["active", "trialing"]);

/** When a `past_due` subscription stops counting (null when it is not past due). */
export function graceEndsAt(s: Pick<SubscriptionFacts, "status" | "pastDueSince">, graceS: number): Date | null {
	if (s.status !== "past_due" || !s.pastDueSince) return null;
	return new Date(s.pastDueSince.getTime() + graceS * 1000);
}

export function isLive(s: SubscriptionFacts, now: Date, graceS: number): boolean {
	if (LIVE.has(s.status)) return true;
	if (s.status !== "past_due") return false;
	const ends = graceEndsAt(s, graceS);
	return ends == null || now.getTime() < ends.getTime();
}

export function planTierOf(subs: readonly SubscriptionFacts[], now: Date, graceS: number): TierName {
	let tier: TierName = "free";
	for (const s of subs)
		if (isTierName(s.planTier) && isLive(s, now, graceS) && TIERS[s.planTier].rank > TIERS[tier].rank)
			tier = s.planTier;
	return tier;
}

/**
 * `past_due_since` after an event that says `status`: kept while the subscription stays past due
 * (retries do not restart the grace), set by the first past-due event, cleared by any other status.
 */
export function nextPastDueSince(previous: Date | null, status: string, eventAt: Date): Date | null {
	if (status !== "past_due") return null;
	return previous ?? eventAt;
}

/**
 * A past_due event older than the subscription's last event, for a subscription that is past_due now:
 * the earlier start of the grace period it gives, or null when it changes nothing (Stripe does not
 * deliver events in order, so a retry's event can arrive before the first one).
 */
export function earlierPastDueSince(
	currentStatus: string,
	since: Date | null,
	status: string,
	eventAt: Date
): Date | null {
	if (currentStatus !== "past_due" || status !== "past_due" || !since) return null;
	return eventAt.getTime() < new Date(since).getTime() ? eventAt : null;
}

/** A subscription that is still the payer's to change (not ended): plan changes and cancellation act on it. */
export const CHANGEABLE_STATUSES: ReadonlySet<string> = new Set(["active", "trialing", "past_due", "unpaid"]);
