/**
 * Auto top-up and balance notices of the payments service, mixed into services/payments.service.ts:
 * GET/PUT/DELETE /billing/auto-topup (the caller's payer, or `?orgId=` for an organisation's owners,
 * admins and billing members), and the check that runs after every settlement. The rules are
 * src/payments/auto-topup.ts.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { INTERNAL, currentUser, type Ctx } from "../../src/kit/service";
import { payerOfRequest } from "../../src/payments/payer";
import type { AutoTopUpRequest, TriggerOutcome } from "../../src/payments/auto-topup";
import type { StripeBilling } from "../../src/payments/stripe-billing";

export interface TopUpThis extends Service {
	billing: StripeBilling;
	/** The after-settlement checks of this node still running (stopped() waits for them). */
	topUpChecks: Set<Promise<unknown>>;
	afterSettlement(payerId: string): Promise<TriggerOutcome>;
}

const ORG_ID = {
	type: "uuid",
	optional: true,
	description: "act for this organisation's payer (owner, admin, billing roles)"
} as const;

function payerOf(ctx: Ctx<{ orgId?: string }>): Promise<string> {
	return payerOfRequest(
		(orgId, userId) => ctx.call("orgs.roleOf", { orgId, userId }),
		currentUser(ctx).id,
		ctx.params.orgId
	);
}

export const topUpMixin: ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	TopUpThis
> = {
	name: "payments",
	actions: {
		autoTopUp: {
			auth: "required",
			scope: "billing:read",
			params: { $$strict: "remove", orgId: ORG_ID },
			async handler(this: TopUpThis, ctx: Ctx<{ orgId?: string }>) {
				return this.billing.autoTopUp.get(await payerOf(ctx));
			}
		},

		setAutoTopUp: {
			auth: "required",
			scope: "billing:write",
			params: {
				$$strict: true,
				thresholdCredits: {
					type: "number",
					integer: true,
					min: 0,
					max: Number.MAX_SAFE_INTEGER,
					description: "buy when a settlement leaves less available credit than this"
				},
				packId: { type: "string", min: 1, max: 64, description: "a pack id of GET /billing/prices" },
				enabled: { type: "boolean", default: true },
				orgId: ORG_ID
			},
			async handler(this: TopUpThis, ctx: Ctx<AutoTopUpRequest & { orgId?: string }>) {
				this.billing.requireConfigured();
				const { thresholdCredits, packId, enabled } = ctx.params;
				return this.billing.autoTopUp.configure(await payerOf(ctx), { thresholdCredits, packId, enabled });
			}
		},

		deleteAutoTopUp: {
			auth: "required",
			scope: "billing:write",
			params: { $$strict: true, orgId: ORG_ID },
			async handler(this: TopUpThis, ctx: Ctx<{ orgId?: string }>) {
				return this.billing.autoTopUp.remove(await payerOf(ctx));
			}
		},

		/** The after-settlement check for one payer, run on demand (operators, tests). */
		checkAutoTopUp: {
			visibility: INTERNAL,
			params: { payerId: { type: "string", min: 1, max: 128 } },
			handler(this: TopUpThis, ctx: Ctx<{ payerId: string }>) {
				return this.afterSettlement(ctx.params.payerId);
			}
		}
	},

	hooks: {
		after: {
			// The settlement's answer does not wait for Stripe: the check runs beside it.
			settle(this: TopUpThis, ctx: Ctx<{ userId: string }>, res: unknown) {
				const p = this.afterSettlement(ctx.params.userId).catch(err =>
					this.logger.warn("auto top-up check failed", { payerId: ctx.params.userId, err: String(err) })
				);
				this.topUpChecks.add(p);
				void p.finally(() => this.topUpChecks.delete(p));
				return res;
			}
		}
	},

	methods: {
		async afterSettlement(this: TopUpThis, payerId: string): Promise<TriggerOutcome> {
			if (!this.billing.configured) return { triggered: false, reason: "off" };
			return this.billing.autoTopUp.check(payerId);
		}
	},

	created(this: TopUpThis) {
		this.topUpChecks = new Set();
	},

	async stopped(this: TopUpThis) {
		await Promise.allSettled([...this.topUpChecks]);
	}
};
