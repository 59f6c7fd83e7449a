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
import { BadRequest, Unauthorized, Unavailable, Unprocessable } from "../src/errors";
import {
	MAX_PURCHASED_BOOST_MS,
	TIERS,
	TIER_ORDER,
	TierName,
	applyDiscount,
	priorityBoostMs
} from "../src/domain/tiers";
import { Ledger, credits } from "../src/payments/ledger";
import { StripeBilling, createStripeClient } from "../src/payments/stripe-billing";
import { ForgeChain } from "../src/payments/chain";
import { CryptoPayments } from "../src/payments/crypto-payments";
import { StakeIndexer } from "../src/payments/stake-indexer";
import { stakeFacts, StakeFacts } from "../src/payments/staking";
import { boostFeeCredits, priceList } from "../src/payments/prices";
import { INTERNAL, type Ctx } from "../src/kit/service";
import { SIGNUP_GRANTED, parseSignupGranted } from "../src/users/signup-grant";
import { PAYMENTS_METRICS, registerPaymentsMetrics, stripeTypeLabel } from "../src/payments/metrics";
import type { HoldView } from "../src/payments/ledger";

interface PaymentsThis extends Service, DurableThis {
	cfg: Config;
	ledger: Ledger;
	billing: StripeBilling;
	chain: ForgeChain | null;
	crypto: CryptoPayments | null;
	stakes: StakeIndexer | null;
	timers: NodeJS.Timeout[];
	chainPass: Promise<unknown> | null;
	factsOf(userId: string, tierOverride?: TierName | null): Promise<StakeFacts>;
	adminOverrideOf(userId: string): Promise<TierName | null>;
	requireChain(): { crypto: CryptoPayments; stakes: StakeIndexer };
	chainTick(): Promise<unknown>;
	resolveOwner(address: string): Promise<string | null | undefined>;
	countHold(event: "placed" | "settled" | "released", hold: HoldView): HoldView;
	reconcileStripe(windowS?: number): Promise<{ listed: number; missed: number; processed: number }>;
}

const USER_ID = { type: "string", min: 1, max: 128, pattern: /^[A-Za-z0-9._:@-]+$/ };
const TASK_ID = { type: "string", min: 1, max: 128, pattern: /^[A-Za-z0-9._:@-]+$/ };
const CREDITS = (min: number) => ({ type: "number", integer: true, min, max: Number.MAX_SAFE_INTEGER, convert: true });

function me(ctx: Ctx<unknown>): string {
	const id = ctx.meta.user?.id;
	if (!id) throw Unauthorized();
	return id;
}

function factsView(f: StakeFacts) {
	return {
		planTier: f.planTier,
		stakeTier: f.stakeTier,
		tier: f.tier,
		feeDiscountBps: f.feeDiscountBps,
		boostMs: f.boostMs,
		totalStakeWei: f.totalStakeWei.toString(),
		effectiveStakeWei: f.effectiveStakeWei.toString(),
		nextSeasonedAt: f.nextSeasonedAt?.toISOString() ?? null
	};
}

const PaymentsService: ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	PaymentsThis
> = {
	name: "payments",
	mixins: [
		durableEvents({
			group: "payments",
			handlers: {
				// The welcome grant (src/users/signup-grant.ts): same cause as the users service's direct
				// payments.grant call, so whichever comes second is a no-op.
				async [SIGNUP_GRANTED](this: PaymentsThis, payload, { tx }) {
					const g = parseSignupGranted(payload);
					await this.ledger.credit(tx, {
						kind: "grant",
						userId: g.userId,
						credits: BigInt(g.credits),
						from: "sys:promo",
						source: "promo",
						expiresAt: new Date(g.expiresAt),
						causeType: "grant",
						causeId: g.key,
						operator: "signup",
						description: "Welcome credit"
					});
				}
			}
		})
	],

	actions: {
		// ---- Public (through the gateway) -------------------------------------------------------
		balance: {
			auth: "required",
			scope: "billing:read",
			retryPolicy: { enabled: true },
			params: { $$strict: "remove" },
			async handler(this: PaymentsThis, ctx: Ctx) {
				const userId = me(ctx);
				const [b, f] = await Promise.all([this.ledger.balance(userId), this.factsOf(userId)]);
				return {
					available: credits(b.available),
					held: credits(b.held),
					tier: f.tier,
					planTier: f.planTier,
					feeDiscountBps: f.feeDiscountBps,
					boostMs: f.boostMs,
					effectiveStakeWei: f.effectiveStakeWei.toString()
				};
			}
		},

		ledger: {
			auth: "required",
			scope: "billing:read",
			retryPolicy: { enabled: true },
			params: {
				$$strict: "remove",
				limit: { type: "number", integer: true, min: 1, max: 100, default: 20, convert: true },
				cursor: {
					type: "string",
					optional: true,
					pattern: /^[0-9]{1,19}$/,
					description: "nextCursor of the previous page"
				}
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ limit: number; cursor?: string }>) {
				const before = ctx.params.cursor ? BigInt(ctx.params.cursor) : null;
				// 19 digits can exceed BIGINT, which Postgres would refuse with an error (a 500).
				if (before !== null && before > 9_223_372_036_854_775_807n)
					throw Unprocessable("Some fields are invalid", [
						{ field: "cursor", message: "is not a cursor from this list", type: "cursor" }
					]);
				const page = await this.ledger.entries(me(ctx), ctx.params.limit, before);
				return { items: page.items, nextCursor: page.nextBefore?.toString() ?? null };
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
			scope: "billing:write",
			params: {
				$$strict: true,
				kind: { type: "enum", values: ["pack", "plan"] },
				itemId: { type: "string", min: 1, max: 64 }
			},
			async handler(this: PaymentsThis, ctx: Ctx<{ kind: "pack" | "plan"; itemId: string }>) {
				const checkout = await this.billing.createCheckout(
					me(ctx),
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
			scope: "billing:read",
			params: { $$strict: "remove", id: { type: "uuid" } },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
				return this.billing.checkoutStatus(me(ctx), ctx.params.id);
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
					me(ctx),
					BigInt(ctx.params.credits),
					ctx.meta.idempotencyKey ?? null
				);
				ctx.meta.$location = `/api/v1/billing/crypto/invoices/${invoice.invoiceId}`;
				return invoice;
			}
		},

		invoice: {
			auth: "required",
			scope: "billing:read",
			params: { $$strict: "remove", id: { type: "string", pattern: /^0x[0-9a-fA-F]{64}$/ } },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
				return this.requireChain().crypto.getInvoice(me(ctx), ctx.params.id);
			}
		},

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
					me(ctx),
					ctx.params.chainId,
					ctx.params.txHash
				);
				// 202 while it waits for confirmations; 200 once credited (also when claimed before).
				ctx.meta.$statusCode = payment.status === "pending" ? 202 : duplicate ? 200 : 201;
				ctx.meta.$location = `/api/v1/billing/crypto/payments/${payment.id}`;
				return payment;
			}
		},

		cryptoPayment: {
			auth: "required",
			scope: "billing:read",
			params: { $$strict: "remove", id: { type: "uuid" } },
			async handler(this: PaymentsThis, ctx: Ctx<{ id: string }>) {
				return this.requireChain().crypto.getPayment(me(ctx), ctx.params.id);
			}
		},

		staking: {
			auth: "required",
			scope: "billing:read",
			params: { $$strict: "remove" },
			async handler(this: PaymentsThis, ctx: Ctx) {
				const userId = me(ctx);
				const holdingMs = this.cfg.payments.stakeMinHoldingMs;
				const [f, wallets] = await Promise.all([
					this.factsOf(userId),
					this.stakes ? this.stakes.walletsOf(userId) : Promise.resolve([])
				]);
				return {
					chainConfigured: this.chain != null,
					chainId: this.cfg.payments.chain.chainId,
					holdingPeriodMs: holdingMs,
					wallets: wallets.map(w => ({
						...w,
						positions: w.positions.map(p => ({
							amountWei: p.amountWei,
							since: p.since,
							countsFrom: new Date(new Date(p.since).getTime() + holdingMs).toISOString()
						}))
					})),
					...factsView(f),
					unlocks: TIER_ORDER.filter(t => TIERS[t].minStakeWei != null).map(t => ({
						tier: t,
						minStakeWei: TIERS[t].minStakeWei!.toString(),
						reached: f.effectiveStakeWei >= TIERS[t].minStakeWei!,
						maxBoostMs: TIERS[t].maxBoostMs,
						feeDiscountBps: TIERS[t].feeDiscountBps
					}))
				};
			}
		},

		// ---- Service to service (protected: not reachable through the gateway) -------------------
		reserve: {
			visibility: INTERNAL,
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
				}
			},
			async handler(
				this: PaymentsThis,
				ctx: Ctx<{ userId: string; taskId: string; maxCost: number; boostMs: number; tier?: TierName }>
			) {
				const p = ctx.params;
				const f = await this.factsOf(p.userId, p.tier ?? null);
				return this.countHold(
					"placed",
					await this.ledger.reserve({
						userId: p.userId,
						taskId: p.taskId,
						listMaxCost: BigInt(p.maxCost),
						boostMs: p.boostMs,
						listBoostFee: boostFeeCredits(p.boostMs),
						tier: f.tier,
						discountBps: f.feeDiscountBps
					})
				);
			}
		},

		settle: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { userId: USER_ID, taskId: TASK_ID, actualCost: CREDITS(0) },
			async handler(this: PaymentsThis, ctx: Ctx<{ userId: string; taskId: string; actualCost: number }>) {
				return this.countHold(
					"settled",
					await this.ledger.settle({
						userId: ctx.params.userId,
						taskId: ctx.params.taskId,
						listActualCost: BigInt(ctx.params.actualCost)
					})
				);
			}
		},

		release: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { userId: USER_ID, taskId: TASK_ID },
			async handler(this: PaymentsThis, ctx: Ctx<{ userId: string; taskId: string }>) {
				return this.countHold(
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
			async handler(
				this: PaymentsThis,
				ctx: Ctx<{
					userId: string;
					credits: number;
					operator: string;
					reason: string;
					source: "promo" | "paid";
					expiresAt?: Date;
					key?: string;
				}>
			) {
				const p = ctx.params;
				const ttl = this.cfg.payments.promoGrantTtlS;
				const expiresAt =
					p.expiresAt ?? (p.source === "promo" && ttl > 0 ? new Date(Date.now() + ttl * 1000) : null);
				const posted = await this.ledger.run(tx =>
					this.ledger.credit(tx, {
						kind: "grant",
						userId: p.userId,
						credits: BigInt(p.credits),
						from: "sys:promo",
						source: p.source,
						expiresAt,
						causeType: "grant",
						causeId: p.key ?? `${p.operator}:${Date.now()}:${Math.random().toString(36).slice(2)}`,
						operator: p.operator,
						description: p.reason
					})
				);
				return {
					transactionId: posted.id,
					duplicate: posted.duplicate,
					credits: p.credits,
					expiresAt: expiresAt?.toISOString() ?? null
				};
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
				const listFee = boostFeeCredits(ctx.params.purchaseMs);
				const fee = credits(applyDiscount(listFee, f.feeDiscountBps));
				return {
					userId: ctx.params.userId,
					tier: f.tier,
					tierBoostMs: priorityBoostMs(f.tier),
					purchasedBoostMs: ctx.params.purchaseMs,
					boostMs: priorityBoostMs(f.tier, ctx.params.purchaseMs),
					purchaseFeeCredits: fee,
					feeDiscountBps: f.feeDiscountBps
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
				const [balance, page] = await Promise.all([
					this.ledger.balance(ctx.params.userId),
					this.ledger.entries(ctx.params.userId, ctx.params.limit, null)
				]);
				return { available: credits(balance.available), held: credits(balance.held), entries: page.items };
			}
		},

		processStripeInbox: {
			visibility: INTERNAL,
			async handler(this: PaymentsThis) {
				return { processed: await this.billing.drain() };
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
		 * A user's tier facts. `tierOverride` given: the caller resolved the tier already (tasks passes the
		 * users service's answer). Not given: the admin override is read from the users service (cached),
		 * so /billing/balance names the same tier as /users/me.
		 */
		async factsOf(this: PaymentsThis, userId: string, tierOverride?: TierName | null): Promise<StakeFacts> {
			const [plan, positions, now, override] = await Promise.all([
				this.billing.planOf(userId),
				this.stakes ? this.stakes.positionsOf(userId) : Promise.resolve([]),
				this.stakes ? this.stakes.now() : Promise.resolve(Date.now()),
				tierOverride !== undefined ? tierOverride : this.adminOverrideOf(userId)
			]);
			return stakeFacts(
				positions.map(p => ({ amountWei: BigInt(p.amountWei), since: new Date(p.since) })),
				plan,
				now,
				this.cfg.payments.stakeMinHoldingMs,
				override
			);
		},

		async adminOverrideOf(this: PaymentsThis, userId: string): Promise<TierName | null> {
			try {
				const t = (await this.broker.call("users.getTier", { userId })) as { adminOverride?: TierName | null };
				return t?.adminOverride ?? null;
			} catch (err) {
				// No such user there (accounts of another deployment, or not a UUID): no override to honour.
				const e = err as { code?: unknown; name?: string };
				if (e.code === 404 || e.code === 422 || e.name === "ServiceNotFoundError") return null;
				throw err;
			}
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

		/** Counts a hold's change once: an idempotent repeat (`duplicate`) was counted the first time. */
		countHold(this: PaymentsThis, event: "placed" | "settled" | "released", hold: HoldView): HoldView {
			if (!hold.duplicate) {
				this.broker.metrics.increment(PAYMENTS_METRICS.holds, { event });
				if (event === "settled" && hold.charged)
					this.broker.metrics.increment(PAYMENTS_METRICS.settledCredits, {}, hold.charged);
			}
			return hold;
		},

		/** One Stripe reconciliation run, with its drift (events that only the listing found) as metrics. */
		async reconcileStripe(this: PaymentsThis, windowS?: number) {
			const r = await this.billing.reconcile(windowS);
			const m = this.broker.metrics;
			m.increment(PAYMENTS_METRICS.reconcileRuns);
			if (r.missed) m.increment(PAYMENTS_METRICS.reconcileMissed, {}, r.missed);
			m.set(PAYMENTS_METRICS.reconcileDrift, r.missed);
			return r;
		},

		/** users.walletOwner; when users cannot answer (down), the owner stays as it was and is asked again later. */
		async resolveOwner(this: PaymentsThis, address: string): Promise<string | null | undefined> {
			try {
				const r = (await this.broker.call("users.walletOwner", { address })) as
					string | { userId?: string | null; id?: string | null } | null;
				if (r == null) return null;
				if (typeof r === "string") return r;
				return r.userId ?? r.id ?? null;
			} catch (err) {
				const name = (err as Error).name;
				if (name !== "ServiceNotFoundError" && name !== "ServiceNotAvailableError")
					this.logger.warn("users.walletOwner failed", (err as Error).message);
				return undefined;
			}
		}
	},

	created(this: PaymentsThis) {
		const rt = runtimeOf(this.broker);
		this.cfg = rt.config;
		const pc = this.cfg.payments;
		this.ledger = new Ledger(rt.sequelize);
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
			this.stakes = new StakeIndexer(rt.sequelize, this.chain, a => this.resolveOwner(a), publish, this.logger);
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
			every(pc.stripe.reconcileIntervalMs, () => this.reconcileStripe(), "Stripe reconciliation");
		}
		if (this.chain) every(pc.chain.pollMs, () => this.chainTick(), "chain pass");
	},

	async stopped(this: PaymentsThis) {
		for (const t of this.timers) clearInterval(t);
		await this.chainPass?.catch(() => undefined);
		await this.billing.idle();
		this.chain?.close();
	}
};

export default PaymentsService as unknown as ServiceSchema;
