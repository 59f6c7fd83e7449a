/**
 * Auto top-up and low-balance notices of the payments service, mixed into services/payments.service.ts:
 * GET/PUT/DELETE /billing/auto-topup and GET/PUT /billing/alerts (the caller's payer, or `?orgId=` for
 * an organisation's owners, admins and billing members), and the checks that run after every
 * settlement. The rules are src/payments/auto-topup.ts and src/payments/low-balance.ts.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { INTERNAL, currentUser, type Ctx } from "../../src/kit/service";
import { payerOfRequest } from "../../src/payments/payer";
import { orgOfRequest } from "../../src/auth/org-key";
import type { AutoTopUpRequest, TriggerOutcome } from "../../src/payments/auto-topup";
import type { StripeBilling } from "../../src/payments/stripe-billing";
import type { Ledger } from "../../src/payments/ledger";
import { LowBalanceNotices, type LowBalanceOutcome } from "../../src/payments/low-balance";
import { runtimeOf } from "../../src/runtime/runtime";
import type { DurableThis } from "../../mixins/durable-events.mixin";

export interface TopUpThis extends Service, DurableThis {
	billing: StripeBilling;
	ledger: Ledger;
	lowBalance: LowBalanceNotices;
	/** The after-settlement checks of this node still running (stopped() waits for them). */
	topUpChecks: Set<Promise<unknown>>;
	/** Per payer with a check running: whether it was asked again meanwhile, and for the full checks. */
	payerChecks: Map<string, { again: boolean; full: boolean }>;
	afterSettlement(payerId: string): Promise<{ lowBalance: LowBalanceOutcome; autoTopUp: TriggerOutcome }>;
	balanceChecksBeside(payerId: string, lowBalanceOnly?: boolean): void;
}

const ORG_ID = {
	type: "uuid",
	optional: true,
	description: "act for this organisation's payer (owner, admin, billing roles)"
} as const;

/** The payer; an organisation API key acts for its organisation (src/auth/org-key.ts; `orgKey: true`). */
function payerOf(ctx: Ctx<{ orgId?: string }>): Promise<string> {
	const user = currentUser(ctx);
	return payerOfRequest(
		(orgId, userId) => ctx.call("orgs.roleOf", { orgId, userId }),
		user.id,
		orgOfRequest(user, ctx.params.orgId)
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
			orgKey: true,
			scope: "billing:read",
			params: { $$strict: "remove", orgId: ORG_ID },
			async handler(this: TopUpThis, ctx: Ctx<{ orgId?: string }>) {
				return this.billing.autoTopUp.get(await payerOf(ctx));
			}
		},

		setAutoTopUp: {
			auth: "required",
			orgKey: true,
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
			orgKey: true,
			scope: "billing:write",
			params: { $$strict: true, orgId: ORG_ID },
			async handler(this: TopUpThis, ctx: Ctx<{ orgId?: string }>) {
				return this.billing.autoTopUp.remove(await payerOf(ctx));
			}
		},

		alerts: {
			auth: "required",
			scope: "billing:read",
			orgKey: true,
			params: { $$strict: "remove", orgId: ORG_ID },
			async handler(this: TopUpThis, ctx: Ctx<{ orgId?: string }>) {
				return this.lowBalance.get(await payerOf(ctx));
			}
		},

		setAlerts: {
			auth: "required",
			scope: "billing:write",
			orgKey: true,
			params: {
				$$strict: true,
				lowBalanceCredits: {
					type: "number",
					integer: true,
					min: 0,
					max: Number.MAX_SAFE_INTEGER,
					nullable: true,
					description: "notify when available credit crosses under this; 0 = never, null = the default"
				},
				orgId: ORG_ID
			},
			async handler(this: TopUpThis, ctx: Ctx<{ lowBalanceCredits: number | null; orgId?: string }>) {
				return this.lowBalance.configure(await payerOf(ctx), ctx.params.lowBalanceCredits);
			}
		},

		/** The auto top-up check for one payer, run on demand (operators, tests). */
		checkAutoTopUp: {
			visibility: INTERNAL,
			params: { payerId: { type: "string", min: 1, max: 128 } },
			async handler(this: TopUpThis, ctx: Ctx<{ payerId: string }>) {
				return (await this.afterSettlement(ctx.params.payerId)).autoTopUp;
			}
		},

		/** Both after-settlement checks for one payer (low balance, then auto top-up). */
		checkBalanceNotices: {
			visibility: INTERNAL,
			params: { payerId: { type: "string", min: 1, max: 128 } },
			handler(this: TopUpThis, ctx: Ctx<{ payerId: string }>) {
				return this.afterSettlement(ctx.params.payerId);
			}
		}
	},

	hooks: {
		after: {
			// The settlement's answer does not wait for the checks (or Stripe): they run beside it.
			settle(this: TopUpThis, ctx: Ctx<{ userId: string }>, res: unknown) {
				this.balanceChecksBeside(ctx.params.userId);
				return res;
			}
		}
	},

	methods: {
		/**
		 * The checks for a payer whose balance fell, run beside the caller (tracked until done). After a
		 * clawback only the notice: a refund or dispute must not make auto top-up charge the card again.
		 *
		 * One check per payer at a time on this node: asked again while one runs, it runs once more after
		 * it (the full checks if any of the asks wanted them). Each check reads the balance and the
		 * transactions since the last one it saw, so one check after the newest settlement notices what
		 * checks after each of them would have: a payer's burst of settlements costs two checks, not one
		 * per settlement.
		 */
		balanceChecksBeside(this: TopUpThis, payerId: string, lowBalanceOnly = false) {
			const running = this.payerChecks.get(payerId);
			if (running) {
				running.again = true;
				running.full ||= !lowBalanceOnly;
				return;
			}
			const state = { again: false, full: !lowBalanceOnly };
			this.payerChecks.set(payerId, state);
			const p = (async () => {
				try {
					do {
						const full = state.full;
						state.again = false;
						state.full = false;
						await (full ? this.afterSettlement(payerId) : this.lowBalance.check(payerId)).catch(err =>
							this.logger.warn("after-settlement check failed", { payerId, err: String(err) })
						);
					} while (state.again);
				} finally {
					this.payerChecks.delete(payerId);
				}
			})();
			this.topUpChecks.add(p);
			void p.finally(() => this.topUpChecks.delete(p));
		},

		async afterSettlement(this: TopUpThis, payerId: string) {
			const lowBalance = await this.lowBalance.check(payerId);
			const autoTopUp: TriggerOutcome = this.billing.configured
				? await this.billing.autoTopUp.check(payerId)
				: { triggered: false, reason: "off" };
			return { lowBalance, autoTopUp };
		}
	},

	created(this: TopUpThis) {
		this.topUpChecks = new Set();
		this.payerChecks = new Map();
	},

	// The ledger is made by the service's own created(), which runs after this mixin's.
	started(this: TopUpThis) {
		const rt = runtimeOf(this.broker);
		this.lowBalance = new LowBalanceNotices(
			rt.sequelize,
			this.ledger,
			rt.config.payments.lowBalanceCredits,
			(tx, topic, payload) => this.publishDurable(tx, topic, payload)
		);
		// A clawback (refund, dispute, reorg) or an expiry sweep lowers a balance outside a settlement.
		this.ledger.onBalanceDropped = (payerId, cause) => this.balanceChecksBeside(payerId, cause === "clawback");
	},

	async stopped(this: TopUpThis) {
		await Promise.allSettled([...this.topUpChecks]);
	}
};
