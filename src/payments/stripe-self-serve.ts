/**
 * Self-serve billing through Stripe (issue 19 part 4): the payer's Stripe Customer, Customer Portal
 * sessions, and plan changes on the payer's one subscription.
 *
 * A payer (a user id or `org:<uuid>`, src/payments/payer.ts) has one Customer, made the first time
 * it is needed under the idempotency key `ff-customer-<payerId>` and kept in `stripe_customers`
 * (primary key = payer): two first checkouts at once send the same key and get the same Customer,
 * and the insert keeps whichever row came first.
 *
 * Plan changes update the price of the existing subscription's item with
 * `proration_behavior: "create_prorations"` and the subscription's metadata `planTier`; they never
 * open a second subscription. Cancelling sets `cancel_at_period_end`, resuming clears it. None of
 * these move the tier here: the `customer.subscription.updated|deleted` webhook that follows does
 * (stripe-billing.ts), so the tier follows what Stripe says, whoever changed it (this API or the portal).
 */
import type Stripe from "stripe";
import { QueryTypes, type Sequelize } from "sequelize";
import { Conflict, Unavailable, Unprocessable } from "../errors";
import type { StripeSettings } from "./config";
import { findPlan, type Plan } from "./prices";
import { CHANGEABLE_STATUSES, graceEndsAt } from "./subscription-rules";

interface SubscriptionRow {
	id: string;
	user_id: string;
	plan_tier: string;
	status: string;
	cancel_at_period_end: boolean;
	current_period_end: Date | null;
	past_due_since: Date | null;
	updated_at: Date;
}

/** The payer's subscription as this platform last heard of it from Stripe's webhook. */
function subscriptionView(r: SubscriptionRow, graceS: number) {
	const grace = graceEndsAt({ status: r.status, pastDueSince: r.past_due_since }, graceS);
	return {
		subscriptionId: r.id,
		planTier: r.plan_tier,
		status: r.status,
		cancelAtPeriodEnd: r.cancel_at_period_end,
		currentPeriodEnd: r.current_period_end ? new Date(r.current_period_end).toISOString() : null,
		pastDueSince: r.past_due_since ? new Date(r.past_due_since).toISOString() : null,
		graceEndsAt: grace ? grace.toISOString() : null
	};
}

export type SubscriptionView = ReturnType<typeof subscriptionView>;

/** Stripe's answer to a change: what was asked, and the subscription as Stripe now has it. */
export interface SubscriptionChange {
	subscriptionId: string;
	requestedPlanTier: string;
	planTier: string;
	status: string;
	cancelAtPeriodEnd: boolean;
	changed: boolean;
}

/** The product a plan's prices belong to: a fixed id, so every node and every change use the same one. */
export const planProductId = (plan: Pick<Plan, "id">) => `ff_plan_${plan.id}`;

type Log = { warn(...a: unknown[]): void };

export class StripeSelfServe {
	private readonly products = new Map<string, Promise<string>>();

	constructor(
		private readonly sequelize: Sequelize,
		private readonly stripe: () => Stripe,
		private readonly settings: StripeSettings,
		private readonly log: Log
	) {}

	private q<T extends object>(sql: string, bind: unknown[]): Promise<T[]> {
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT });
	}

	/** Stripe did not answer (or refused in a way the caller cannot fix): 503, retry later. */
	private unavailable(what: string, err: unknown): never {
		this.log.warn(`Stripe ${what} failed`, (err as Error).message);
		throw Unavailable("The card payment provider did not answer; retry", "STRIPE_UNAVAILABLE");
	}

	// ---- Customers ---------------------------------------------------------------------------

	async customerIdOf(payerId: string): Promise<string | null> {
		const [row] = await this.q<{ customer_id: string }>(
			`SELECT customer_id FROM stripe_customers WHERE payer_id = $1`,
			[payerId]
		);
		return row?.customer_id ?? null;
	}

	/** The payer's Customer, made on first use. */
	async ensureCustomer(payerId: string): Promise<string> {
		const known = await this.customerIdOf(payerId);
		if (known) return known;
		let customer: Stripe.Customer;
		try {
			customer = await this.stripe().customers.create(
				{ metadata: { payerId } },
				{ idempotencyKey: `ff-customer-${payerId}` }
			);
		} catch (err) {
			this.unavailable("customer creation", err);
		}
		await this.q(
			`INSERT INTO stripe_customers (payer_id, customer_id) VALUES ($1, $2) ON CONFLICT (payer_id) DO NOTHING RETURNING payer_id`,
			[payerId, customer.id]
		);
		return (await this.customerIdOf(payerId))!;
	}

	// ---- Customer Portal ---------------------------------------------------------------------

	/** A Customer Portal session (payment methods, invoices, cancellation) for the payer. */
	async portalSession(payerId: string): Promise<{ url: string; customerId: string; returnUrl: string }> {
		const customer = await this.ensureCustomer(payerId);
		try {
			const s = await this.stripe().billingPortal.sessions.create({
				customer,
				return_url: this.settings.portalReturnUrl
			});
			return { url: s.url, customerId: customer, returnUrl: this.settings.portalReturnUrl };
		} catch (err) {
			this.unavailable("portal session", err);
		}
	}

	// ---- The payer's subscription ------------------------------------------------------------

	/** The payer's current subscription: the newest one not ended, or null. */
	private async liveRow(payerId: string): Promise<SubscriptionRow | null> {
		const [row] = await this.q<SubscriptionRow>(
			`SELECT id, user_id, plan_tier, status, cancel_at_period_end, current_period_end, past_due_since, updated_at
			 FROM stripe_subscriptions WHERE user_id = $1 AND status = ANY($2::text[])
			 ORDER BY last_event_created DESC LIMIT 1`,
			[payerId, [...CHANGEABLE_STATUSES]]
		);
		return row ?? null;
	}

	async subscription(payerId: string): Promise<SubscriptionView | null> {
		const row = await this.liveRow(payerId);
		return row ? subscriptionView(row, this.settings.pastDueGraceS) : null;
	}

	/** Whether the payer has a subscription a Checkout must not duplicate. */
	async hasLiveSubscription(payerId: string): Promise<boolean> {
		return (await this.liveRow(payerId)) != null;
	}

	private async requireRow(payerId: string): Promise<SubscriptionRow> {
		const row = await this.liveRow(payerId);
		if (!row)
			throw Conflict(
				"There is no subscription to change; subscribe with POST /billing/checkout { kind: 'plan' }",
				"NO_SUBSCRIPTION"
			);
		return row;
	}

	private async retrieve(id: string): Promise<Stripe.Subscription> {
		try {
			return await this.stripe().subscriptions.retrieve(id);
		} catch (err) {
			this.unavailable("subscription lookup", err);
		}
	}

	private async update(
		id: string,
		params: Stripe.SubscriptionUpdateParams,
		idempotencyKey: string | null
	): Promise<Stripe.Subscription> {
		try {
			return await this.stripe().subscriptions.update(
				id,
				params,
				idempotencyKey ? { idempotencyKey } : undefined
			);
		} catch (err) {
			const e = err as { type?: string; statusCode?: number };
			if (e.type === "StripeInvalidRequestError" && e.statusCode === 400)
				throw Conflict(
					`Stripe refused the change: ${(err as Error).message.split("\n")[0]}`,
					"SUBSCRIPTION_NOT_CHANGEABLE"
				);
			this.unavailable("subscription update", err);
		}
	}

	/** The plan's product (created once, with our id; a node that loses the race reads the winner's). */
	private planProduct(plan: Plan): Promise<string> {
		const id = planProductId(plan);
		let p = this.products.get(id);
		if (!p) {
			p = (async () => {
				const stripe = this.stripe();
				try {
					await stripe.products.retrieve(id);
					return id;
				} catch (err) {
					if ((err as { statusCode?: number }).statusCode !== 404) throw err;
				}
				try {
					await stripe.products.create({ id, name: plan.name, metadata: { planTier: plan.tier } });
				} catch (err) {
					if ((err as { code?: string }).code !== "resource_already_exists") throw err;
				}
				return id;
			})();
			p.catch(() => this.products.delete(id));
			this.products.set(id, p);
		}
		return p;
	}

	private changeView(sub: Stripe.Subscription, requested: string, changed: boolean): SubscriptionChange {
		return {
			subscriptionId: sub.id,
			requestedPlanTier: requested,
			planTier: sub.metadata?.planTier ?? requested,
			status: sub.status,
			cancelAtPeriodEnd: sub.cancel_at_period_end,
			changed
		};
	}

	/**
	 * Moves the payer's subscription to `planId`: the item's price is replaced (same quantity), the
	 * difference prorated by Stripe, a pending cancellation cleared. Asking for the plan it already
	 * has changes nothing.
	 */
	async changePlan(payerId: string, planId: string, clientKey: string | null): Promise<SubscriptionChange> {
		const plan = findPlan(planId);
		if (!plan)
			throw Unprocessable("Unknown plan", [
				{ field: "plan", message: `no plan '${planId}' (see GET /billing/prices)`, type: "enum" }
			]);
		const row = await this.requireRow(payerId);
		const sub = await this.retrieve(row.id);
		const item = sub.items.data[0];
		if (!item) throw Conflict("The subscription has no item to change", "SUBSCRIPTION_NOT_CHANGEABLE");
		const current = item.price;
		if (
			sub.metadata?.planTier === plan.tier &&
			current.unit_amount === plan.priceCents &&
			current.currency === this.settings.currency &&
			!sub.cancel_at_period_end
		)
			return this.changeView(sub, plan.tier, false);
		let product: string;
		try {
			product = await this.planProduct(plan);
		} catch (err) {
			this.unavailable("plan product", err);
		}
		const updated = await this.update(
			row.id,
			{
				items: [
					{
						id: item.id,
						price_data: {
							currency: this.settings.currency,
							product,
							unit_amount: plan.priceCents,
							recurring: { interval: "month" }
						}
					}
				],
				proration_behavior: "create_prorations",
				cancel_at_period_end: false,
				metadata: { planTier: plan.tier, itemId: plan.id }
			},
			clientKey ? `ff-sub-${row.id}-plan-${clientKey}` : null
		);
		return this.changeView(updated, plan.tier, true);
	}

	/** Cancels at the end of the paid period (`cancel: true`) or takes that back (`false`). */
	async setCancelAtPeriodEnd(
		payerId: string,
		cancel: boolean,
		clientKey: string | null
	): Promise<SubscriptionChange> {
		const row = await this.requireRow(payerId);
		const sub = await this.retrieve(row.id);
		const tier = sub.metadata?.planTier ?? row.plan_tier;
		if (sub.cancel_at_period_end === cancel) return this.changeView(sub, tier, false);
		const updated = await this.update(
			row.id,
			{ cancel_at_period_end: cancel },
			clientKey ? `ff-sub-${row.id}-${cancel ? "cancel" : "resume"}-${clientKey}` : null
		);
		return this.changeView(updated, tier, true);
	}
}
