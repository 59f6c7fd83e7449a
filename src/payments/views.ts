/** The payments service's answers over HTTP (response schemas of the REST contract; src/http/schema.ts). */
import { Type, type Static } from "@sinclair/typebox";
import {
	Str,
	Uuid,
	DateTime,
	Address,
	Count,
	Int,
	Nullable,
	List,
	Named,
	BigIntString,
	Url,
	AnyJson
} from "../http/schema";
import { TIERS, TIER_ORDER, applyDiscount, priorityBoostMs } from "../domain/tiers";
import { credits } from "./ledger";
import { boostFeeCredits } from "./prices";
import type { StakeIndexer } from "./stake-indexer";
import type { StakeFacts } from "./staking";

const Hash32 = () => Type.String({ pattern: "^0x[0-9a-fA-F]{64}$", maxLength: 66 });
const Tier = () => Str(32);

export const Balance = Named("Balance", {
	available: Int(),
	held: Count(),
	tier: Tier(),
	planTier: Nullable(Tier()),
	feeDiscountBps: Count(),
	boostMs: Count(),
	effectiveStakeWei: BigIntString()
});

export const LedgerEntry = Named("LedgerEntry", {
	id: Type.String({ pattern: "^[0-9]+$", maxLength: 20 }),
	kind: Str(64),
	cause: Type.Object({ type: Str(64), id: Nullable(Str(256)) }),
	availableDelta: Int(),
	heldDelta: Int(),
	tier: Nullable(Tier()),
	discountBps: Nullable(Count()),
	listAmount: Nullable(Int()),
	operator: Nullable(Str(128)),
	description: Nullable(Str(2000)),
	createdAt: DateTime()
});

export const Checkout = Named("Checkout", {
	checkoutId: Uuid(),
	kind: Type.Union([Type.Literal("pack"), Type.Literal("plan")]),
	itemId: Str(64),
	credits: Count(),
	planTier: Nullable(Tier()),
	amountCents: Count(),
	currency: Str(8),
	status: Str(32),
	credited: Type.Boolean(),
	url: Nullable(Url()),
	sessionId: Nullable(Str(256)),
	createdAt: DateTime()
});

export const Subscription = Named("Subscription", {
	subscriptionId: Str(256),
	planTier: Tier(),
	status: Str(32, { description: "Stripe's status: active, trialing, past_due, unpaid" }),
	cancelAtPeriodEnd: Type.Boolean(),
	currentPeriodEnd: Nullable(DateTime()),
	pastDueSince: Nullable(DateTime()),
	graceEndsAt: Nullable(DateTime("when a past_due subscription stops giving its tier"))
});

export const SubscriptionState = Named("SubscriptionState", {
	planTier: Tier(),
	subscription: Nullable(Subscription)
});

export const SubscriptionChange = Named("SubscriptionChange", {
	subscriptionId: Str(256),
	requestedPlanTier: Tier(),
	planTier: Tier(),
	status: Str(32),
	cancelAtPeriodEnd: Type.Boolean(),
	changed: Type.Boolean()
});

export const PortalSession = Named("PortalSession", { url: Url(), returnUrl: Url() });

export const Invoice = Named("Invoice", {
	invoiceId: Hash32(),
	chainId: Count(),
	token: Address(),
	router: Address(),
	treasury: Address(),
	amountWei: BigIntString(),
	credits: Count(),
	expiresAt: DateTime(),
	createdAt: DateTime(),
	payment: Nullable(Str(32))
});

export const CryptoPayment = Named("CryptoPayment", {
	id: Uuid(),
	chainId: Count(),
	txHash: Hash32(),
	logIndex: Count(),
	invoiceId: Hash32(),
	payer: Address(),
	amountWei: BigIntString(),
	credits: Count(),
	blockNumber: Count(),
	confirmations: Nullable(Count()),
	requiredConfirmations: Count(),
	status: Str(32),
	reason: Nullable(Str(2000)),
	createdAt: DateTime(),
	updatedAt: DateTime()
});
export type CryptoPayment = Static<typeof CryptoPayment>;

export const PriceList = Named("PriceList", {
	unit: Str(64),
	currency: Str(8),
	creditPacks: List(Type.Object({ id: Str(64), name: Str(200), credits: BigIntString(), priceCents: Count() }), 100),
	plans: List(
		Type.Object({
			id: Str(64),
			name: Str(200),
			tier: Tier(),
			monthlyPriceCredits: BigIntString(),
			priceCents: Count(),
			priceUnit: Str(64)
		}),
		100
	),
	forge: Type.Object({ creditsPerForge: Count() }),
	boost: Type.Object({ creditsPerSecond: BigIntString(), maxPurchasedMs: Count() }),
	models: List(AnyJson("A model's price per 1M tokens"), 1000),
	tiers: List(Type.Object({ name: Str(64), rank: Count(), monthlyPriceCredits: Nullable(BigIntString()) }), 32)
});

export const Staking = Named("Staking", {
	chainConfigured: Type.Boolean(),
	chainId: Nullable(Count()),
	holdingPeriodMs: Count(),
	wallets: List(
		Type.Object({
			positions: List(
				Type.Object({ amountWei: BigIntString(), since: DateTime(), countsFrom: DateTime() }),
				10000
			)
		}),
		100
	),
	planTier: Nullable(Tier()),
	stakeTier: Tier(),
	tier: Tier(),
	feeDiscountBps: Count(),
	boostMs: Count(),
	totalStakeWei: BigIntString(),
	effectiveStakeWei: BigIntString(),
	nextSeasonedAt: Nullable(DateTime()),
	unlocks: List(
		Type.Object({
			tier: Tier(),
			minStakeWei: BigIntString(),
			reached: Type.Boolean(),
			maxBoostMs: Count(),
			feeDiscountBps: Count()
		}),
		32
	)
});

/** A user's own monthly spend cap and the month's spend against it (GET/PUT /billing/cap). */
export const PayerCap = Named("PayerCap", {
	monthlyCapCredits: Nullable(Count("Spend cap per calendar month (UTC) on your own wallet; null = none")),
	spentCredits: Count("Held + settled this month (UTC)"),
	month: Str(10, { description: "The month counted, YYYY-MM-01 (UTC)" })
});

export const views = {
	balance: Balance,
	payerCap: PayerCap,
	setPayerCap: PayerCap,
	ledger: Type.Object({
		items: List(LedgerEntry, 100),
		nextCursor: Nullable(Type.String({ pattern: "^c1\\.[A-Za-z0-9_-]+$", maxLength: 512 }))
	}),
	prices: PriceList,
	checkout: Checkout,
	checkoutStatus: Checkout,
	portal: PortalSession,
	subscription: SubscriptionState,
	changeSubscription: SubscriptionChange,
	cancelSubscription: SubscriptionChange,
	resumeSubscription: SubscriptionChange,
	stripeWebhook: Type.Object({ received: Type.Literal(true), duplicate: Type.Boolean(), eventId: Str(256) }),
	createInvoice: Invoice,
	invoice: Invoice,
	claimCryptoPayment: CryptoPayment,
	cryptoPayment: CryptoPayment,
	staking: Staking
};

/** A user's tier facts as the API writes them (wei as decimal strings). */
export function factsView(f: StakeFacts) {
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

/** `Balance`: the ledger balance with what the plan and stake give. */
export function balanceView(b: { available: bigint; held: bigint }, f: StakeFacts) {
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

type Wallets = Awaited<ReturnType<StakeIndexer["walletsOf"]>>;

/** GET /staking: the wallets, when each position starts to count, the facts, and what each stake tier unlocks. */
export function stakingView(
	f: StakeFacts,
	wallets: Wallets,
	chain: { configured: boolean; chainId: number | null; holdingMs: number }
) {
	const holdingMs = chain.holdingMs;
	return {
		chainConfigured: chain.configured,
		chainId: chain.chainId,
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

/** payments.priorityBoost: the queue boost of the tier plus the purchased one, and the purchase's fee after discount. */
export function boostQuote(userId: string, f: StakeFacts, purchaseMs: number) {
	return {
		userId,
		tier: f.tier,
		tierBoostMs: priorityBoostMs(f.tier),
		purchasedBoostMs: purchaseMs,
		boostMs: priorityBoostMs(f.tier, purchaseMs),
		purchaseFeeCredits: credits(applyDiscount(boostFeeCredits(purchaseMs), f.feeDiscountBps)),
		feeDiscountBps: f.feeDiscountBps
	};
}
