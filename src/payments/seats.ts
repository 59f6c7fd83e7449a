/**
 * Seats (issue 19 part 3): the team plan is priced per seat, so the quantity of an organisation's
 * team subscription item follows its member count.
 *
 * THE RULE
 * - Quantity = the organisation's member count (owners, admins, billing members and members alike),
 *   at least 1. A member joining beyond the paid seats raises the quantity, and leaving or being
 *   removed lowers it, each with `proration_behavior: "create_prorations"`: Stripe charges (or
 *   credits) the rest of the period on the next invoice. Nobody is refused for lack of seats.
 * - Only a team subscription that has not ended (`active`, `trialing`, `past_due`, `unpaid`) follows
 *   the count; an organisation without one pays no seats (its members are bounded by
 *   `ORG_MAX_MEMBERS` only).
 * - Driven by durable events, so a change made while Stripe is down is applied when it answers:
 *   `orgs.members.changed { orgId }` (the orgs service, after an accept, a removal or a leave) and
 *   `payments.seats.sync { orgId }` (a team subscription's event, so a new subscription starts at the
 *   count). Each reads the count at that moment from the orgs service and sets it, so reordered or
 *   repeated events converge on the current count; a quantity that is already right calls no update.
 */
import type Stripe from "stripe";
import { QueryTypes, type Sequelize } from "sequelize";
import { orgPayerId } from "./payer";
import { CHANGEABLE_STATUSES } from "./subscription-rules";
import { isUuid } from "../kit/uuid";

/** Published by the orgs service after its member count may have changed: `{ orgId }`. */
export const ORG_MEMBERS_CHANGED = "orgs.members.changed";
/** Published by payments when an organisation's team subscription changed: `{ orgId }`. */
export const SEATS_SYNC = "payments.seats.sync";
/** The plan tier whose subscription is priced per seat. */
export const SEAT_PLAN_TIER = "team";

export interface SeatSync {
	orgId: string;
	subscriptionId: string | null;
	members: number;
	fromQuantity: number | null;
	quantity: number | null;
	changed: boolean;
}

export class SeatBilling {
	constructor(
		private readonly sequelize: Sequelize,
		private readonly stripe: () => Stripe | null
	) {}

	/** The organisation's team subscription that has not ended, newest first. */
	private async teamSubscription(orgId: string): Promise<string | null> {
		const [row] = await this.sequelize.query<{ id: string }>(
			`SELECT id FROM stripe_subscriptions WHERE user_id = $1 AND plan_tier = $2 AND status = ANY($3::text[])
			 ORDER BY last_event_created DESC LIMIT 1`,
			{ bind: [orgPayerId(orgId), SEAT_PLAN_TIER, [...CHANGEABLE_STATUSES]], type: QueryTypes.SELECT }
		);
		return row?.id ?? null;
	}

	/**
	 * Sets the team subscription's quantity to `members` (prorated). `key` (the durable event's id)
	 * makes Stripe's idempotency key, so a redelivered event updates once.
	 */
	async sync(orgId: string, members: number, key: string): Promise<SeatSync> {
		const none = { orgId, members, fromQuantity: null, quantity: null, changed: false };
		const stripe = this.stripe();
		if (!stripe) return { ...none, subscriptionId: null };
		const id = await this.teamSubscription(orgId);
		if (!id) return { ...none, subscriptionId: null };
		const sub = await stripe.subscriptions.retrieve(id);
		const item = sub.items.data[0];
		const want = Math.max(1, members);
		const have = item?.quantity ?? 1;
		if (!item || have === want || sub.status === "canceled")
			return { ...none, subscriptionId: id, fromQuantity: have, quantity: have };
		await stripe.subscriptions.update(
			id,
			{ items: [{ id: item.id, quantity: want }], proration_behavior: "create_prorations" },
			{ idempotencyKey: `ff-seats-${id}-${key}` }
		);
		return { orgId, subscriptionId: id, members, fromQuantity: have, quantity: want, changed: true };
	}
}

/** A seat event's payload: `{ orgId }` (a uuid); anything else is refused (the event dead-letters). */
export function parseSeatEvent(payload: unknown): { orgId: string } {
	const orgId = (payload as { orgId?: unknown } | null)?.orgId;
	if (!isUuid(orgId)) throw new Error("seat event: orgId must be a uuid");
	return { orgId };
}

/** Handles `orgs.members.changed` and `payments.seats.sync`: the current count, then the quantity. */
export async function syncSeatsOnEvent(
	seats: SeatBilling,
	memberCountOf: (orgId: string) => Promise<number | null>,
	payload: unknown,
	eventId: string
): Promise<SeatSync | null> {
	const { orgId } = parseSeatEvent(payload);
	const members = await memberCountOf(orgId);
	if (members == null) return null; // the organisation is gone
	return seats.sync(orgId, members, eventId);
}
