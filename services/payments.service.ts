/**
 * payments: the credit ledger (holds for AI tasks), card payments through Stripe, FORGE payments and
 * staking on chain, and what stake and plan are worth (tier, fee discount, queue boost).
 * A thin shell: the rules live in src/payments/*, this file wires them to actions, routes and timers.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { durableEvents, DurableThis } from "../mixins/durable-events.mixin";
import { runtimeOf } from "../src/runtime/runtime";
import type { Config } from "../src/config";
import { BadRequest, Unavailable } from "../src/errors";
import { MAX_PURCHASED_BOOST_MS, TIER_ORDER, TierName } from "../src/domain/tiers";
import { pageOf, readCursor } from "../src/http/cursor";
import { PAGE_PARAMS } from "../src/http/list-params";
import { Ledger, credits } from "../src/payments/ledger";
import { StripeBilling, createStripeClient } from "../src/payments/stripe-billing";
import { ForgeChain } from "../src/payments/chain";
import { CryptoPayments } from "../src/payments/crypto-payments";
import { StakeIndexer } from "../src/payments/stake-indexer";
import type { StakeFacts } from "../src/payments/staking";
import { boostFeeCredits, priceList } from "../src/payments/prices";
import { INTERNAL, currentUser, type Ctx } from "../src/kit/service";
import { SIGNUP_GRANTED, parseSignupGranted } from "../src/users/signup-grant";
import { USER_DELETED, parseUserDeleted } from "../src/users/account-deletion";
import { forgetPerson } from "../src/payments/forget";
import {
	PAYMENTS_METRICS,
	countHold,
	countReconcile,
	registerPaymentsMetrics,
	stripeTypeLabel
} from "../src/payments/metrics";
import { adminOverrideVia, tierFactsOf, walletOwnerVia } from "../src/payments/facts";
import { grantCredits, postGrant, type GrantRequest } from "../src/payments/grants";
import { balanceView, boostQuote, factsView, stakingView } from "../src/payments/views";
import { isOrgPayer, payerOfRequest } from "../src/payments/payer";
import { spendCounters, type SpendCaps } from "../src/payments/spend-caps";
import { orgOfRequest } from "../src/auth/org-key";
import { capScopeOf, noticeCapReached } from "../src/payments/cap-notices";
import { PayerCaps } from "../src/payments/payer-caps";
import type { SettledUsage, UsageAttribution } from "../src/payments/usage";
import { ATTRIBUTION, SETTLED_USAGE, usageMixin, type UsageThis } from "./payments/usage.mixin";
import { topUpMixin } from "./payments/topup.mixin";
import { ORG_MEMBERS_CHANGED, SEATS_SYNC, syncSeatsOnEvent } from "../src/payments/seats";

interface PaymentsThis extends Service, DurableThis, Pick<UsageThis, "usageStore"> {
	cfg: Config;
	ledger: Ledger;
	payerCaps: PayerCaps;
	billing: StripeBilling;
	chain: ForgeChain | null;
	crypto: CryptoPayments | null;
	stakes: StakeIndexer | null;
	timers: NodeJS.Timeout[];
	chainPass: Promise<unknown> | null;
	factsOf(userId: string, tierOverride?: TierName | null): Promise<StakeFacts>;
	requireChain(): { crypto: CryptoPayments; stakes: StakeIndexer };
	chainTick(): Promise<unknown>;
	reconcileStripe(windowS?: number): Promise<{ listed: number; missed: number; processed: number }>;
	memberCountOf(orgId: string): Promise<number | null>;
	attributeAndReadCap(p: {
		userId: string;
		taskId: string;
		attribution?: UsageAttribution;
		caps?: SpendCaps;
	}): Promise<number | null>;
}

const USER_ID = { type: "string", min: 1, max: 128, pattern: /^[A-Za-z0-9._:@-]+$/ };
const TASK_ID = { type: "string", min: 1, max: 128, pattern: /^[A-Za-z0-9._:@-]+$/ };
const UUID = { type: "uuid" } as const;
const HASH32 = { type: "string", pattern: /^0x[0-9a-fA-F]{64}$/ } as const;

/** GET of one of the caller's own records by its id (someone else's is 404 like a missing one). */
function ownRecord(id: object, read: (svc: PaymentsThis, userId: string, id: string) => Promise<unknown>) {
	return {
		auth: "required" as const,
		scope: "billing:read" as const,
		params: { $$strict: "remove", id },
		handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
			return read(this, currentUser(ctx).id, ctx.params.id);
		}
	};
}
/** `?orgId=` on the billing routes: act for that organisation's payer (owner, admin, billing). */
const ORG_ID = {
	type: "uuid",
	optional: true,
	description: "act for this organisation's payer (owner, admin, billing roles)"
} as const;

/**
 * The payer a billing request acts for (src/payments/payer.ts). An organisation API key always acts
 * for its organisation (src/auth/org-key.ts): the actions that call this declare `orgKey: true`.
 */
function payerOf(ctx: Ctx<{ orgId?: string }>): Promise<string> {
	const user = currentUser(ctx);
	return payerOfRequest(
		(orgId, userId) => ctx.call("orgs.roleOf", { orgId, userId }),
		user.id,
		orgOfRequest(user, ctx.params.orgId)
	);
}

const CAP = { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER, optional: true, nullable: true };
/** payments.reserve's `caps`: the monthly caps (credits) the caller resolved; null or absent: none. */
const SPEND_CAPS = {
	type: "object",
	optional: true,
	strict: "remove",
	props: { member: CAP, key: CAP, payer: CAP }
} as const;

const CREDITS = (min: number) => ({ type: "number", integer: true, min, max: Number.MAX_SAFE_INTEGER, convert: true });

const PaymentsService: ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	PaymentsThis
> = {
	name: "payments",
	mixins: [
		usageMixin as unknown as ServiceSchema,
		topUpMixin as unknown as ServiceSchema,
		durableEvents({
			group: "payments",
			handlers: {
				// The welcome grant (src/users/signup-grant.ts): same cause as the users service's direct
				// payments.grant call, so whichever comes second is a no-op.
				async [SIGNUP_GRANTED](this: PaymentsThis, payload, { tx }) {
					const g = parseSignupGranted(payload);
					await postGrant(this.ledger, tx, {
						userId: g.userId,
						credits: BigInt(g.credits),
						source: "promo",
						expiresAt: new Date(g.expiresAt),
						key: g.key,
						operator: "signup",
						description: "Welcome credit"
					});
				},
				// Seats (src/payments/seats.ts): the team subscription's quantity follows the member count.
				async [ORG_MEMBERS_CHANGED](this: PaymentsThis, payload, { event }) {
					await syncSeatsOnEvent(this.billing.seats, orgId => this.memberCountOf(orgId), payload, event.id);
				},
				async [SEATS_SYNC](this: PaymentsThis, payload, { event }) {
					await syncSeatsOnEvent(this.billing.seats, orgId => this.memberCountOf(orgId), payload, event.id);
				},
				// A deleted account: the ledger stays as it is; what else points at the person is blanked.
				async [USER_DELETED](this: PaymentsThis, payload, { tx }) {
					const { userId } = parseUserDeleted(payload);
					const r = await forgetPerson(runtimeOf(this.broker).sequelize, tx, userId);
					this.logger.info("deleted account pseudonymised", { userId, ...r });
				}
			}
		})
	],

	actions: {
		// ---- Public (through the gateway) -------------------------------------------------------
		balance: {
			auth: "required",
			orgKey: true,
			scope: "billing:read",
			retryPolicy: { enabled: true },
			params: { $$strict: "remove", orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ orgId?: string }>) {
				const payerId = await payerOf(ctx);
				const [b, f] = await Promise.all([this.ledger.balance(payerId), this.factsOf(payerId)]);
				return balanceView(b, f);
			}
		},

		ledger: {
			auth: "required",
			orgKey: true,
			scope: "billing:read",
			retryPolicy: { enabled: true },
			params: { $$strict: "remove", ...PAGE_PARAMS, orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ limit: number; cursor?: string; orgId?: string }>) {
				const { limit } = ctx.params;
				const before = readCursor(ctx.params.cursor, ["int"] as const)?.[0] ?? null;
				const rows = await this.ledger.entries(await payerOf(ctx), limit + 1, before);
				return pageOf(rows, limit, e => [Number(e.id)]);
			}
		},

		/** The caller's own monthly spend cap (an organisation's is PATCH /orgs/:id) and this month's spend. */
		payerCap: {
			auth: "required",
			scope: "billing:read",
			params: { $$strict: "remove" },
			async handler(this: PaymentsThis, ctx: Ctx) {
				return this.payerCaps.view(currentUser(ctx).id);
			}
		},

		setPayerCap: {
			auth: "required",
			scope: "billing:write",
			params: {
				$$strict: true,
				monthlyCapCredits: {
					type: "number",
					integer: true,
					min: 0,
					max: Number.MAX_SAFE_INTEGER,
					nullable: true,
					description: "credits per calendar month (UTC) on your own wallet; null removes the cap"
				}
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ monthlyCapCredits: number | null }>) {
				const userId = currentUser(ctx).id;
				await this.payerCaps.set(userId, ctx.params.monthlyCapCredits);
				return this.payerCaps.view(userId);
			}
		},

		prices: {
			retryPolicy: { enabled: true },
			params: { $$strict: "remove" },
			handler(this: PaymentsThis) {
				return priceList({
					creditsPerForge: this.cfg.payments.chain.creditsPerForge,
					currency: this.cfg.payments.stripe.currency
				});
			}
		},

		checkout: {
			auth: "required",
			orgKey: true,
			scope: "billing:write",
			params: {
				$$strict: true,
				kind: { type: "enum", values: ["pack", "plan"] },
				itemId: { type: "string", min: 1, max: 64 },
				orgId: ORG_ID
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ kind: "pack" | "plan"; itemId: string; orgId?: string }>) {
				const checkout = await this.billing.createCheckout(
					await payerOf(ctx),
					ctx.params.kind,
					ctx.params.itemId,
					ctx.meta.idempotencyKey ?? null
				);
				ctx.meta.$location = `/api/v1/billing/checkout/${checkout.checkoutId}`;
				return checkout;
			}
		},

		checkoutStatus: {
			auth: "required",
			orgKey: true,
			scope: "billing:read",
			params: { $$strict: "remove", id: UUID, orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string; orgId?: string }>) {
				return this.billing.checkoutStatus(await payerOf(ctx), ctx.params.id);
			}
		},

		portal: {
			auth: "required",
			orgKey: true,
			scope: "billing:write",
			params: { $$strict: true, orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ orgId?: string }>) {
				this.billing.requireConfigured();
				const { url, returnUrl } = await this.billing.selfServe.portalSession(await payerOf(ctx));
				return { url, returnUrl };
			}
		},

		subscription: {
			auth: "required",
			orgKey: true,
			scope: "billing:read",
			params: { $$strict: "remove", orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ orgId?: string }>) {
				const payerId = await payerOf(ctx);
				const [planTier, subscription] = await Promise.all([
					this.billing.planOf(payerId),
					this.billing.selfServe.subscription(payerId)
				]);
				return { planTier, subscription };
			}
		},

		changeSubscription: {
			auth: "required",
			orgKey: true,
			scope: "billing:write",
			params: { $$strict: true, plan: { type: "string", min: 1, max: 64 }, orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ plan: string; orgId?: string }>) {
				this.billing.requireConfigured();
				return this.billing.selfServe.changePlan(
					await payerOf(ctx),
					ctx.params.plan,
					ctx.meta.idempotencyKey ?? null
				);
			}
		},

		cancelSubscription: {
			auth: "required",
			orgKey: true,
			scope: "billing:write",
			params: { $$strict: true, orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ orgId?: string }>) {
				this.billing.requireConfigured();
				return this.billing.selfServe.setCancelAtPeriodEnd(
					await payerOf(ctx),
					true,
					ctx.meta.idempotencyKey ?? null
				);
			}
		},

		resumeSubscription: {
			auth: "required",
			orgKey: true,
			scope: "billing:write",
			params: { $$strict: true, orgId: ORG_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ orgId?: string }>) {
				this.billing.requireConfigured();
				return this.billing.selfServe.setCancelAtPeriodEnd(
					await payerOf(ctx),
					false,
					ctx.meta.idempotencyKey ?? null
				);
			}
		},

		stripeWebhook: {
			params: { rawBody: { type: "string", max: 1_048_576 }, signature: { type: "string", max: 4096 } },
			async handler(this: PaymentsThis, ctx: Ctx<{ rawBody: string; signature: string }>) {
				if (!ctx.params.signature) throw BadRequest("Missing Stripe-Signature header", "INVALID_SIGNATURE");
				return this.billing.receiveWebhook(ctx.params.rawBody, ctx.params.signature);
			}
		},

		createInvoice: {
			auth: "required",
			scope: "billing:write",
			params: { $$strict: true, credits: CREDITS(1) },
			async handler(this: PaymentsThis, ctx: Ctx<{ credits: number }>) {
				const invoice = await this.requireChain().crypto.createInvoice(
					currentUser(ctx).id,
					BigInt(ctx.params.credits),
					ctx.meta.idempotencyKey ?? null
				);
				ctx.meta.$location = `/api/v1/billing/crypto/invoices/${invoice.invoiceId}`;
				return invoice;
			}
		},

		invoice: ownRecord(HASH32, (svc, userId, id) => svc.requireChain().crypto.getInvoice(userId, id)),

		claimCryptoPayment: {
			auth: "required",
			scope: "billing:write",
			params: {
				$$strict: true,
				chainId: { type: "number", integer: true, positive: true, convert: true },
				txHash: { type: "string", pattern: /^0x[0-9a-fA-F]{64}$/ }
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ chainId: number; txHash: string }>) {
				const { duplicate, ...payment } = await this.requireChain().crypto.claim(
					currentUser(ctx).id,
					ctx.params.chainId,
					ctx.params.txHash
				);
				// 202 while it waits for confirmations; 200 once credited (also when claimed before).
				ctx.meta.$statusCode = payment.status === "pending" ? 202 : duplicate ? 200 : 201;
				ctx.meta.$location = `/api/v1/billing/crypto/payments/${payment.id}`;
				return payment;
			}
		},

		cryptoPayment: ownRecord(UUID, (svc, userId, id) => svc.requireChain().crypto.getPayment(userId, id)),

		staking: {
			auth: "required",
			scope: "billing:read",
			params: { $$strict: "remove" },
			async handler(this: PaymentsThis, ctx: Ctx) {
				const userId = currentUser(ctx).id;
				const [f, wallets] = await Promise.all([
					this.factsOf(userId),
					this.stakes ? this.stakes.walletsOf(userId) : Promise.resolve([])
				]);
				const pc = this.cfg.payments;
				const chain = {
					configured: this.chain != null,
					chainId: pc.chain.chainId,
					holdingMs: pc.stakeMinHoldingMs
				};
				return stakingView(f, wallets, chain);
			}
		},

		// ---- Service to service (protected: not reachable through the gateway) -------------------
		reserve: {
			visibility: INTERNAL,
			// Holds credits for a caller's AI work: a key on the caller's meta needs `ai:use` (tasks.submit and
			// ai.chat check it first). Calls without a user (the platform's own) are not narrowed.
			scope: "ai:use",
			// An organisation key's work is held on the payer its caller resolved (tasks.submit: the
			// organisation's wallet for a task in its project, src/tasks/submit.ts taskPayer).
			orgKey: true,
			// Idempotent on the task id, so a retried call holds once.
			retryPolicy: { enabled: true },
			params: {
				userId: USER_ID,
				taskId: TASK_ID,
				maxCost: CREDITS(0),
				boostMs: {
					type: "number",
					integer: true,
					min: 0,
					max: MAX_PURCHASED_BOOST_MS,
					default: 0,
					convert: true
				},
				tier: {
					type: "enum",
					values: [...TIER_ORDER],
					optional: true,
					description: "the user's tier as the users service resolved it (admin override)"
				},
				attribution: ATTRIBUTION,
				caps: SPEND_CAPS
			},
			async handler(
				this: PaymentsThis,
				ctx: Ctx<{
					userId: string;
					taskId: string;
					maxCost: number;
					boostMs: number;
					tier?: TierName;
					attribution?: UsageAttribution;
					caps?: SpendCaps;
				}>
			) {
				const p = ctx.params;
				// Who holds the task, for the usage report; written beside the facts read (a hold that is then
				// refused leaves an attribution no settlement will ever name, which no report counts). A user
				// payer's own cap is read beside them (an organisation's comes with the call).
				const [f, ownCap] = await Promise.all([
					this.factsOf(p.userId, p.tier ?? null),
					this.attributeAndReadCap(p)
				]);
				// `userId` is the payer; the member and the key of the attribution have their own counters.
				const caps = spendCounters({
					payerId: p.userId,
					memberId: p.attribution?.memberId,
					keyId: p.attribution?.keyId,
					caps: { ...p.caps, payer: p.caps?.payer ?? ownCap }
				});
				const hold = await this.ledger
					.reserve({
						userId: p.userId,
						taskId: p.taskId,
						listMaxCost: BigInt(p.maxCost),
						boostMs: p.boostMs,
						listBoostFee: boostFeeCredits(p.boostMs),
						tier: f.tier,
						discountBps: f.feeDiscountBps,
						caps
					})
					.catch(async (err: unknown) => {
						// Refused by a monthly cap: the payer hears of it once per cap and month.
						const scope = capScopeOf(err);
						if (scope)
							await noticeCapReached(
								runtimeOf(this.broker).sequelize,
								(tx, topic, payload) => this.publishDurable(tx, topic, payload),
								{ scope, details: (err as { details?: unknown }).details },
								{
									payerId: p.userId,
									memberId: p.attribution?.memberId ?? null,
									keyId: p.attribution?.keyId ?? null,
									counters: caps
								}
							).catch(e => this.logger.warn("cap notice not published", (e as Error).message));
						throw err;
					});
				return countHold(this.broker.metrics, "placed", hold);
			}
		},

		// settle and release need no scope: they finish a hold whose reserve was authorized, and run
		// without a caller (the worker's report, the sweeper).
		settle: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { userId: USER_ID, taskId: TASK_ID, actualCost: CREDITS(0), usage: SETTLED_USAGE },
			async handler(
				this: PaymentsThis,
				ctx: Ctx<{ userId: string; taskId: string; actualCost: number; usage?: SettledUsage }>
			) {
				const p = ctx.params;
				// The usage is written by the settlement's own statement (Ledger.settle).
				const hold = await this.ledger.settle({
					userId: p.userId,
					taskId: p.taskId,
					listActualCost: BigInt(p.actualCost),
					...(p.usage ? { usage: p.usage } : {})
				});
				return countHold(this.broker.metrics, "settled", hold);
			}
		},

		release: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { userId: USER_ID, taskId: TASK_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ userId: string; taskId: string }>) {
				return countHold(
					this.broker.metrics,
					"released",
					await this.ledger.release({ userId: ctx.params.userId, taskId: ctx.params.taskId })
				);
			}
		},

		grant: {
			visibility: INTERNAL,
			params: {
				userId: USER_ID,
				credits: CREDITS(1),
				operator: { type: "string", min: 1, max: 128 },
				reason: { type: "string", min: 1, max: 500 },
				source: { type: "enum", values: ["promo", "paid"], default: "promo" },
				expiresAt: { type: "date", convert: true, optional: true },
				key: {
					type: "string",
					min: 1,
					max: 128,
					optional: true,
					description: "idempotency key; a repeated key grants once"
				}
			},
			async handler(this: PaymentsThis, ctx: Ctx<GrantRequest>) {
				const opts = { promoTtlS: this.cfg.payments.promoGrantTtlS, now: Date.now() };
				return grantCredits(this.ledger, ctx.params, opts);
			}
		},

		hold: {
			visibility: INTERNAL,
			params: { taskId: TASK_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ taskId: string }>) {
				return this.ledger.holdOf(ctx.params.taskId);
			}
		},

		facts: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { userId: USER_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ userId: string }>) {
				const f = await this.factsOf(ctx.params.userId);
				const positions = this.stakes ? await this.stakes.positionsOf(ctx.params.userId) : [];
				return {
					userId: ctx.params.userId,
					...factsView(f),
					positions,
					holdingPeriodMs: this.cfg.payments.stakeMinHoldingMs
				};
			}
		},

		priorityBoost: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: {
				userId: USER_ID,
				purchaseMs: {
					type: "number",
					integer: true,
					min: 0,
					max: MAX_PURCHASED_BOOST_MS,
					default: 0,
					convert: true
				},
				tier: { type: "enum", values: [...TIER_ORDER], optional: true }
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ userId: string; purchaseMs: number; tier?: TierName }>) {
				const f = await this.factsOf(ctx.params.userId, ctx.params.tier ?? null);
				return boostQuote(ctx.params.userId, f, ctx.params.purchaseMs);
			}
		},

		/**
		 * What a payer (user id or `org:<uuid>`) may spend now: its available credits, bounded by what its
		 * own monthly spend cap (PUT /billing/cap) leaves this month when it has one. What ai reads, off
		 * the request path, to decide whether a /v1 request may start its upstream call beside its hold
		 * (src/compat/speculation.ts): a hold the cap would refuse is then foreseen like one the balance
		 * would, so it goes in the old order and costs no provider tokens.
		 */
		available: {
			visibility: INTERNAL,
			params: { payerId: USER_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ payerId: string }>) {
				const [balance, cap] = await Promise.all([
					this.ledger.balance(ctx.params.payerId),
					this.payerCaps.view(ctx.params.payerId)
				]);
				const available = credits(balance.available);
				return {
					available:
						cap.monthlyCapCredits == null
							? available
							: Math.max(0, Math.min(available, cap.monthlyCapCredits - cap.spentCredits))
				};
			}
		},

		userLedger: {
			visibility: INTERNAL,
			params: {
				userId: USER_ID,
				limit: { type: "number", integer: true, min: 1, max: 500, default: 20, convert: true }
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ userId: string; limit: number }>) {
				const [balance, entries] = await Promise.all([
					this.ledger.balance(ctx.params.userId),
					this.ledger.entries(ctx.params.userId, ctx.params.limit, null)
				]);
				return { available: credits(balance.available), held: credits(balance.held), entries };
			}
		},

		processStripeInbox: {
			visibility: INTERNAL,
			async handler(this: PaymentsThis) {
				return { processed: await this.billing.drain() };
			}
		},

		/** Drops the tier of payers past due beyond the grace period (also run on the inbox poll). */
		expirePastDueGrace: {
			visibility: INTERNAL,
			async handler(this: PaymentsThis) {
				return { changed: await this.billing.expirePastDueGrace() };
			}
		},

		reconcileStripe: {
			visibility: INTERNAL,
			params: {
				windowS: { type: "number", integer: true, min: 60, max: 30 * 86_400, optional: true, convert: true }
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ windowS?: number }>) {
				return this.reconcileStripe(ctx.params.windowS);
			}
		},

		replayStripeEvent: {
			visibility: INTERNAL,
			params: { eventId: { type: "string", min: 3, max: 255 } },
			async handler(this: PaymentsThis, ctx: Ctx<{ eventId: string }>) {
				return this.billing.replay(ctx.params.eventId);
			}
		},

		chainTick: {
			visibility: INTERNAL,
			async handler(this: PaymentsThis) {
				this.requireChain();
				return this.chainTick();
			}
		},

		reindexChain: {
			visibility: INTERNAL,
			params: { fromBlock: { type: "number", integer: true, min: 0, convert: true } },
			async handler(this: PaymentsThis, ctx: Ctx<{ fromBlock: number }>) {
				return this.requireChain().stakes.reindexFrom(ctx.params.fromBlock);
			}
		},

		refreshWalletOwner: {
			visibility: INTERNAL,
			params: { address: { type: "string", pattern: /^0x[0-9a-fA-F]{40}$/ } },
			async handler(this: PaymentsThis, ctx: Ctx<{ address: string }>) {
				await this.requireChain().stakes.refreshOwner(ctx.params.address);
				return { ok: true };
			}
		}
	},

	methods: {
		/**
		 * What a reserve writes and reads beside the hold: the attribution, and a user payer's own cap when
		 * the call brought none (an organisation's comes with the call). One statement when both are due.
		 */
		async attributeAndReadCap(
			this: PaymentsThis,
			p: { userId: string; taskId: string; attribution?: UsageAttribution; caps?: SpendCaps }
		): Promise<number | null> {
			const readCap = p.caps?.payer == null && !isOrgPayer(p.userId);
			if (p.attribution && readCap)
				return this.usageStore.attributeReadingPayerCap(p.taskId, p.userId, p.attribution);
			if (p.attribution) await this.usageStore.attribute(p.taskId, p.userId, p.attribution);
			return readCap ? this.payerCaps.capOf(p.userId) : null;
		},

		/** A user's tier facts (src/payments/facts.ts); `tierOverride` given: the caller resolved the tier already. */
		factsOf(this: PaymentsThis, userId: string, tierOverride?: TierName | null): Promise<StakeFacts> {
			const src = {
				planOf: (id: string) => this.billing.planOf(id),
				stakes: this.stakes,
				adminOverrideOf: (id: string) => adminOverrideVia((a, p) => this.broker.call(a, p), id),
				minHoldingMs: this.cfg.payments.stakeMinHoldingMs
			};
			return tierFactsOf(src, userId, tierOverride);
		},

		requireChain(this: PaymentsThis) {
			if (!this.crypto || !this.stakes)
				throw Unavailable(
					"FORGE payments are not configured on this platform (CHAIN_RPC_URL is not set)",
					"CHAIN_NOT_CONFIGURED"
				);
			return { crypto: this.crypto, stakes: this.stakes };
		},

		/** One chain pass (payments' confirmations and reorg checks, then the staking index); never two at once per node. */
		chainTick(this: PaymentsThis) {
			if (this.chainPass) return this.chainPass.then(() => this.chainTick());
			const { crypto, stakes } = this.requireChain();
			this.chainPass = (async () => {
				const payments = await crypto.watch();
				const staking = await stakes.index();
				if (staking) {
					const head = await this.chain!.head();
					this.broker.metrics.set(PAYMENTS_METRICS.chainHead, head);
					this.broker.metrics.set(PAYMENTS_METRICS.chainLag, Math.max(0, head - staking.cursor));
				}
				return { payments, staking };
			})().finally(() => {
				this.chainPass = null;
			});
			return this.chainPass;
		},

		/** An organisation's member count from the orgs service (null: no such organisation). */
		async memberCountOf(this: PaymentsThis, orgId: string): Promise<number | null> {
			const r = await this.broker.call<{ members: number } | null, { orgId: string }>("orgs.seatCount", {
				orgId
			});
			return r?.members ?? null;
		},

		/** One Stripe reconciliation run, with its drift (events that only the listing found) as metrics. */
		async reconcileStripe(this: PaymentsThis, windowS?: number) {
			const r = await this.billing.reconcile(windowS);
			countReconcile(this.broker.metrics, r.missed);
			return r;
		}
	},

	created(this: PaymentsThis) {
		const rt = runtimeOf(this.broker);
		this.cfg = rt.config;
		const pc = this.cfg.payments;
		this.ledger = new Ledger(rt.sequelize);
		this.payerCaps = new PayerCaps(rt.sequelize);
		const publish = (tx: Transaction, topic: string, payload: unknown) => this.publishDurable(tx, topic, payload);
		this.billing = new StripeBilling(
			rt.sequelize,
			this.ledger,
			createStripeClient(pc.stripe),
			pc.stripe,
			publish,
			this.logger
		);
		const c = pc.chain;
		if (c.rpcUrl && c.chainId && c.token && c.staking && c.router && c.treasury) {
			this.chain = new ForgeChain({
				...c,
				rpcUrl: c.rpcUrl,
				chainId: c.chainId,
				token: c.token,
				staking: c.staking,
				router: c.router,
				treasury: c.treasury,
				rpcTimeoutMs: rt.config.deps.chain.timeoutMs
			});
			this.crypto = new CryptoPayments(rt.sequelize, this.ledger, this.chain, this.logger);
			const owner = (a: string) =>
				walletOwnerVia(
					(act, p) => this.broker.call(act, p),
					a,
					(m, d) => this.logger.warn(m, d)
				);
			this.stakes = new StakeIndexer(rt.sequelize, this.chain, owner, publish, this.logger);
		} else {
			this.chain = null;
			this.crypto = null;
			this.stakes = null;
		}
		this.timers = [];
		this.chainPass = null;
		registerPaymentsMetrics(this.broker.metrics);
		this.billing.onProcessed = (type, outcome) =>
			this.broker.metrics.increment(PAYMENTS_METRICS.stripeEvents, { type: stripeTypeLabel(type), outcome });
	},

	started(this: PaymentsThis) {
		const pc = this.cfg.payments;
		const every = (ms: number, fn: () => Promise<unknown>, what: string) => {
			if (ms <= 0) return;
			const t = setInterval(
				() => fn().catch(err => this.logger.warn(`${what} failed`, (err as Error).message)),
				ms
			);
			t.unref();
			this.timers.push(t);
		};
		if (this.billing.configured) {
			// Events left by a crash or waiting for an earlier event are picked up by the poll.
			every(pc.stripe.inboxPollMs, async () => this.billing.kick(), "Stripe inbox");
			every(pc.stripe.inboxPollMs, () => this.billing.expirePastDueGrace(), "Stripe past-due grace");
			every(pc.stripe.reconcileIntervalMs, () => this.reconcileStripe(), "Stripe reconciliation");
		}
		if (this.chain) every(pc.chain.pollMs, () => this.chainTick(), "chain pass");
		every(pc.expirySweepMs, () => this.ledger.sweepExpired(500, pc.expirySweepLookbackS), "credit expiry sweep");
	},

	async stopped(this: PaymentsThis) {
		for (const t of this.timers) clearInterval(t);
		await this.chainPass?.catch(() => undefined);
		await this.billing.idle();
		this.chain?.close();
	}
};

export default PaymentsService as unknown as ServiceSchema;
