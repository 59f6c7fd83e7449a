/**
 * What things cost: credit packs (one-off card payments), plans (monthly subscriptions that set a
 * tier), the purchasable queue boost, FORGE's credit rate, and model prices.
 *
 * Units: credits (1 credit = 1/1000 USD) as bigint; card prices in the currency's minor unit
 * (cents), so a pack's cents = credits / 10 before any bonus.
 *
 * Model prices belong to the ai service's catalogue (`src/ai/catalog.ts`): served from there,
 * never repeated here.
 */
import {
	BPS_DENOMINATOR,
	MAX_FEE_DISCOUNT_BPS,
	MAX_PURCHASED_BOOST_MS,
	STAKE_DISCOUNTS,
	TIERS,
	TIER_ORDER,
	TierName,
	ModelGroup
} from "../domain/tiers";
import { CATALOG, tiersForGroup } from "../ai/catalog";

export interface CreditPack {
	id: string;
	name: string;
	credits: bigint;
	priceCents: number;
}

export interface Plan {
	id: TierName;
	name: string;
	tier: TierName;
	monthlyPriceCredits: bigint;
	priceCents: number;
	priceUnit: "account" | "seat";
}

export interface ModelPrice {
	id: string;
	provider: string;
	group: ModelGroup;
	/** Credits per 1,000,000 input and output tokens, before any discount (integers, as charged). */
	inputPricePer1M: number;
	outputPricePer1M: number;
	tiers: TierName[];
}

const CREDIT_PACKS: readonly CreditPack[] = Object.freeze([
	{ id: "starter", name: "Starter: 10,000 credits", credits: 10_000n, priceCents: 1_000 },
	{ id: "builder", name: "Builder: 52,500 credits (5 % bonus)", credits: 52_500n, priceCents: 5_000 },
	{ id: "studio", name: "Studio: 220,000 credits (10 % bonus)", credits: 220_000n, priceCents: 20_000 }
]);

/** Plans that Checkout sells: every tier with a positive fixed monthly price (enterprise is by contract). */
export const PLANS: readonly Plan[] = Object.freeze(
	TIER_ORDER.filter(t => (TIERS[t].monthlyPriceCredits ?? 0n) > 0n).map(t => {
		const credits = TIERS[t].monthlyPriceCredits!;
		return {
			id: t,
			name: `${t[0].toUpperCase()}${t.slice(1)} plan`,
			tier: t,
			monthlyPriceCredits: credits,
			priceCents: Number(credits / 10n),
			priceUnit: TIERS[t].priceUnit as "account" | "seat"
		};
	})
);

/** Price of a purchased queue head start, per whole second, before discount. */
const BOOST_CREDITS_PER_SECOND = 10n;

/** List price (before discount) of `boostMs` of purchased head start; partial seconds round up. */
export function boostFeeCredits(boostMs: number): bigint {
	if (!Number.isInteger(boostMs) || boostMs < 0 || boostMs > MAX_PURCHASED_BOOST_MS)
		throw new RangeError(`boostMs must be an integer in [0, ${MAX_PURCHASED_BOOST_MS}]`);
	return BigInt(Math.ceil(boostMs / 1000)) * BOOST_CREDITS_PER_SECOND;
}

/** Model prices from the ai service's catalogue (integer credits per 1,000,000 tokens) and the tiers that may use each. */
export function modelPrices(): readonly ModelPrice[] {
	return CATALOG.map(m => ({
		id: m.id,
		provider: m.provider,
		group: m.group,
		inputPricePer1M: m.inputPricePer1M,
		outputPricePer1M: m.outputPricePer1M,
		tiers: tiersForGroup(m.group)
	}));
}

/** Whole FORGE wei an invoice for `credits` asks for: rounded up, so the platform never undersells. */
export function creditsToWei(credits: bigint, creditsPerForge: number): bigint {
	if (credits <= 0n) throw new RangeError("credits must be > 0");
	const num = credits * 10n ** 18n;
	const den = BigInt(creditsPerForge);
	return (num + den - 1n) / den;
}

export function findPack(id: string) {
	return CREDIT_PACKS.find(p => p.id === id) ?? null;
}

export function findPlan(id: string) {
	return PLANS.find(p => p.id === id) ?? null;
}

/** The document served at GET /billing/prices (bigints as decimal strings). */
export function priceList(opts: { creditsPerForge: number; currency: string }) {
	return {
		unit: "1 credit = 1/1000 USD",
		currency: opts.currency,
		creditPacks: CREDIT_PACKS.map(p => ({
			id: p.id,
			name: p.name,
			credits: p.credits.toString(),
			priceCents: p.priceCents
		})),
		plans: PLANS.map(p => ({
			id: p.id,
			name: p.name,
			tier: p.tier,
			monthlyPriceCredits: p.monthlyPriceCredits.toString(),
			priceCents: p.priceCents,
			priceUnit: p.priceUnit
		})),
		forge: { creditsPerForge: opts.creditsPerForge },
		boost: { creditsPerSecond: BOOST_CREDITS_PER_SECOND.toString(), maxPurchasedMs: MAX_PURCHASED_BOOST_MS },
		models: modelPrices(),
		tiers: TIER_ORDER.map(t => {
			const d = TIERS[t];
			return {
				name: d.name,
				rank: d.rank,
				monthlyPriceCredits: d.monthlyPriceCredits == null ? null : d.monthlyPriceCredits.toString(),
				priceUnit: d.priceUnit,
				maxBoostMs: d.maxBoostMs,
				feeDiscountBps: d.feeDiscountBps,
				modelGroups: d.modelGroups,
				minStakeWei: d.minStakeWei == null ? null : d.minStakeWei.toString(),
				perUserConcurrency: d.perUserConcurrency,
				rateLimits: d.rateLimits
			};
		}),
		stakeDiscounts: STAKE_DISCOUNTS.map(s => ({ minStakeWei: s.minStakeWei.toString(), bps: s.bps })),
		maxFeeDiscountBps: MAX_FEE_DISCOUNT_BPS,
		bpsDenominator: BPS_DENOMINATOR
	};
}
