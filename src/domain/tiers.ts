/**
 * The platform's tier table: the single source every service reads (gateway rate limits,
 * payments pricing and fee discounts, task scheduling boosts and caps, AI model access).
 *
 * Tiers are ordered `free < pro < team < enterprise`. A user's tier is the highest of
 *   - the tier their plan pays for (`planTier`), and
 *   - the tier their *effective* $FORGE stake qualifies for (stake held at least
 *     `STAKE_MIN_HOLDING_MS`; a fresh stake counts only after the holding period, so a
 *     stake cannot be flashed in for one request and withdrawn),
 * unless an administrator override is set, which wins outright (it may also downgrade).
 *
 * Units: credits are integers (1 credit = 1/1000 USD) held as `bigint` like the ledger's
 * BIGINT; $FORGE amounts are wei (18 decimals) as `bigint`; durations are integer ms;
 * discounts are basis points (1 bps = 0.01 %).
 *
 * Scheduling: a task of a tier gets a bounded head start (`maxBoostMs`) in the queue; a user
 * may buy extra boost up to `MAX_PURCHASED_BOOST_MS`, and no task's boost ever exceeds
 * `MAX_TOTAL_BOOST_MS`. Because the head start is bounded, premium work jumps ahead of older
 * work by at most that much and no tier starves (see src/tasks/scheduling.ts).
 *
 * docs/tiers.md renders this table for humans; keep the two in step.
 */

export const TIER_ORDER = ["free", "pro", "team", "enterprise"] as const;
export type TierName = (typeof TIER_ORDER)[number];

export type ModelGroup = "small" | "large" | "reasoning";
export const MODEL_GROUPS: readonly ModelGroup[] = Object.freeze(["small", "large", "reasoning"] as const);

/** How a plan's price is counted: a flat monthly price, per seat, or negotiated per contract. */
export type PriceUnit = "account" | "seat" | "contract";

/**
 * Expected queue wait (ms) above which *new* submissions of the tier are deferred (accepted,
 * but held back before joining the queue) or refused with HTTP 429. Both thresholds grow with
 * the tier's rank, so under overload the lower tiers are shed first.
 */
export interface AdmissionThresholds {
	readonly deferAboveMs: number;
	readonly rejectAboveMs: number;
}

export interface RateLimits {
	readonly requestsPerMinute: number;
	readonly tokensPerMinute: number;
}

export interface TierDefinition {
	readonly name: TierName;
	/** 0 for free, rising by one per tier; compare tiers by rank, never by name. */
	readonly rank: number;
	/** Monthly plan price in credits; `null` when negotiated per contract. */
	readonly monthlyPriceCredits: bigint | null;
	readonly priceUnit: PriceUnit;
	/** Head start in the task queue that the tier itself grants (purchased boost comes on top). */
	readonly maxBoostMs: number;
	/** Service-level target for the p99 queue wait of this tier's tasks. */
	readonly waitTargetMs: number;
	/** Tasks one user of this tier may run at once. */
	readonly perUserConcurrency: number;
	/** Largest share (0..1] of all workers this tier may occupy at once; `null` = no cap. */
	readonly perTierConcurrency: number | null;
	readonly admission: AdmissionThresholds;
	readonly rateLimits: RateLimits;
	/** Fee discount the tier grants by itself; a stake discount may be larger (see feeDiscountBps). */
	readonly feeDiscountBps: number;
	readonly modelGroups: readonly ModelGroup[];
	/** Effective stake that qualifies for this tier without a plan; `null` = not reachable by stake. */
	readonly minStakeWei: bigint | null;
}

export type TierTable = Readonly<Record<TierName, TierDefinition>>;

export const FORGE_DECIMALS = 18;
const WEI_PER_FORGE = 10n ** BigInt(FORGE_DECIMALS);

/** Whole $FORGE to wei. */
export function forgeToWei(wholeForge: bigint | number): bigint {
	const whole = typeof wholeForge === "bigint" ? wholeForge : toSafeIntegerBigInt(wholeForge, "wholeForge");
	return whole * WEI_PER_FORGE;
}

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A stake counts towards tier and discount only once every unit of it has been held this long. */
export const STAKE_MIN_HOLDING_MS = 7 * DAY;
/** Most boost a user can buy on top of the tier's own boost. */
export const MAX_PURCHASED_BOOST_MS = 60 * SECOND;
/** Global cap on any task's head start, whatever its tier and purchase. */
export const MAX_TOTAL_BOOST_MS = 180 * SECOND;
/** No combination of tier and stake discounts exceeds this. */
export const MAX_FEE_DISCOUNT_BPS = 3_000;
export const BPS_DENOMINATOR = 10_000;

/** One property of every tier, in TIER_ORDER: `[free, pro, team, enterprise]`. */
type PerTier<K extends keyof TierDefinition> = readonly [
	TierDefinition[K],
	TierDefinition[K],
	TierDefinition[K],
	TierDefinition[K]
];

/**
 * The table itself, a row per property and a column per tier (free, pro, team, enterprise), as
 * docs/tiers.md shows it. `name` and `rank` come from TIER_ORDER.
 */
// prettier-ignore
const TABLE: { readonly [K in Exclude<keyof TierDefinition, "name" | "rank">]: PerTier<K> } = {
	monthlyPriceCredits: [0n,                  20_000n,               50_000n,                 null],
	priceUnit:           ["account",           "account",             "seat",                  "contract"],
	maxBoostMs:          [0,                   30 * SECOND,           60 * SECOND,             120 * SECOND],
	waitTargetMs:        [10 * MINUTE,         2 * MINUTE,            1 * MINUTE,              30 * SECOND],
	perUserConcurrency:  [1,                   4,                     8,                       32],
	perTierConcurrency:  [0.5,                 0.8,                   null,                    null],
	admission: [
		{ deferAboveMs: 5 * MINUTE, rejectAboveMs: 20 * MINUTE },
		{ deferAboveMs: 15 * MINUTE, rejectAboveMs: 45 * MINUTE },
		{ deferAboveMs: 30 * MINUTE, rejectAboveMs: 2 * HOUR },
		{ deferAboveMs: 1 * HOUR, rejectAboveMs: 4 * HOUR }
	],
	rateLimits: [
		{ requestsPerMinute: 20, tokensPerMinute: 20_000 },
		{ requestsPerMinute: 120, tokensPerMinute: 200_000 },
		{ requestsPerMinute: 600, tokensPerMinute: 1_000_000 },
		{ requestsPerMinute: 3_000, tokensPerMinute: 5_000_000 }
	],
	feeDiscountBps:      [0,                   250,                   500,                     1_000],
	modelGroups:         [["small"],           ["small", "large"],    ["small", "large", "reasoning"], ["small", "large", "reasoning"]],
	minStakeWei:         [null,                forgeToWei(1_000),     forgeToWei(10_000),      forgeToWei(100_000)]
};

function tierAt(rank: number): TierDefinition {
	const at = <K extends keyof typeof TABLE>(k: K) => TABLE[k][rank] as TierDefinition[K];
	return Object.freeze({
		name: TIER_ORDER[rank],
		rank,
		monthlyPriceCredits: at("monthlyPriceCredits"),
		priceUnit: at("priceUnit"),
		maxBoostMs: at("maxBoostMs"),
		waitTargetMs: at("waitTargetMs"),
		perUserConcurrency: at("perUserConcurrency"),
		perTierConcurrency: at("perTierConcurrency"),
		admission: Object.freeze({ ...at("admission") }),
		rateLimits: Object.freeze({ ...at("rateLimits") }),
		feeDiscountBps: at("feeDiscountBps"),
		modelGroups: Object.freeze([...at("modelGroups")]),
		minStakeWei: at("minStakeWei")
	});
}

export const TIERS: TierTable = Object.freeze(
	Object.fromEntries(TIER_ORDER.map((name, rank) => [name, tierAt(rank)])) as Record<TierName, TierDefinition>
);

export interface StakeDiscountStep {
	readonly minStakeWei: bigint;
	readonly bps: number;
}

/** Fee discount for effective stake, ascending; the highest step reached applies. */
export const STAKE_DISCOUNTS: readonly StakeDiscountStep[] = Object.freeze([
	Object.freeze({ minStakeWei: forgeToWei(1_000), bps: 500 }),
	Object.freeze({ minStakeWei: forgeToWei(10_000), bps: 1_000 }),
	Object.freeze({ minStakeWei: forgeToWei(100_000), bps: 2_000 })
]);

export function isTierName(value: unknown): value is TierName {
	return typeof value === "string" && (TIER_ORDER as readonly string[]).includes(value);
}

/** The higher-ranked of two tiers. */
function higherTier(a: TierName, b: TierName, table: TierTable = TIERS): TierName {
	return table[b].rank > table[a].rank ? b : a;
}

/** Highest tier whose `minStakeWei` the (already effective) stake reaches; `free` otherwise. */
export function stakeTier(stakeWei: bigint, table: TierTable = TIERS): TierName {
	let best: TierName = "free";
	for (const name of TIER_ORDER) {
		const min = table[name].minStakeWei;
		if (min !== null && stakeWei >= min && table[name].rank > table[best].rank) best = name;
	}
	return best;
}

export interface StakePosition {
	readonly amountWei: bigint;
	/** Epoch ms since which this amount has been staked without interruption. */
	readonly since: number;
}

/**
 * Stake that counts at `now`: the sum of positions held at least `minHoldingMs`
 * (`now - since >= minHoldingMs`). Each deposit is its own position with its own `since`,
 * so topping up does not reset the clock of stake already seasoned. Positions that are
 * unbonding (cooldown started) must not be passed in: they no longer back the tier.
 */
export function effectiveStake(
	positions: readonly StakePosition[],
	now: number,
	minHoldingMs: number = STAKE_MIN_HOLDING_MS
): bigint {
	let total = 0n;
	for (const position of positions) {
		if (position.amountWei < 0n)
			throw new RangeError(`stake position amount must be >= 0, got ${position.amountWei}`);
		if (now - position.since >= minHoldingMs) total += position.amountWei;
	}
	return total;
}

export interface ResolveTierInput {
	readonly planTier?: TierName | null;
	readonly effectiveStakeWei: bigint;
	readonly adminOverride?: TierName | null;
}

/** Admin override wins (even downwards); otherwise the higher of plan tier and stake tier. */
export function resolveTier(input: ResolveTierInput, table: TierTable = TIERS): TierName {
	if (input.adminOverride) return input.adminOverride;
	return higherTier(input.planTier ?? "free", stakeTier(input.effectiveStakeWei, table), table);
}

/**
 * THE RULE for work done in an organisation (issue 19; docs/orgs.md "Tier"): a task in an
 * organisation's project gets the better of the member's own tier (`resolveTier`: plan, stake, admin
 * override) and the organisation's (the plan its payer `org:<uuid>` pays for). WHY: the organisation
 * pays for its plan so that its members' work runs at that tier, and a member who pays more for
 * themselves does not lose it by working in a team's project. An admin override on the member
 * (even downwards) therefore does not lower the organisation's tier for the organisation's work.
 */
export function tierInOrg(memberTier: TierName, orgTier: TierName, table: TierTable = TIERS): TierName {
	return higherTier(memberTier, orgTier, table);
}

/** Discount earned by effective stake alone (highest step reached, 0 below the first). */
export function stakeDiscountBps(
	effectiveStakeWei: bigint,
	steps: readonly StakeDiscountStep[] = STAKE_DISCOUNTS
): number {
	let bps = 0;
	for (const step of steps) if (effectiveStakeWei >= step.minStakeWei && step.bps > bps) bps = step.bps;
	return bps;
}

/** The larger of the tier's discount and the stake discount, capped at MAX_FEE_DISCOUNT_BPS. */
export function feeDiscountBps(
	tier: TierName,
	effectiveStakeWei: bigint,
	table: TierTable = TIERS,
	steps: readonly StakeDiscountStep[] = STAKE_DISCOUNTS
): number {
	const bps = Math.max(table[tier].feeDiscountBps, stakeDiscountBps(effectiveStakeWei, steps));
	return Math.min(bps, MAX_FEE_DISCOUNT_BPS);
}

/**
 * The charge after a discount of `bps`: `ceil(credits * (10000 - bps) / 10000)`.
 * Rounding goes up (the discount is rounded down) so rounding never makes the platform
 * undercharge; a user loses at most one credit (0.001 USD) per charge to rounding, and
 * summing discounted parts never totals less than the exact discount would.
 */
export function applyDiscount(credits: bigint | number, bps: number): bigint {
	const amount = typeof credits === "bigint" ? credits : toSafeIntegerBigInt(credits, "credits");
	if (amount < 0n) throw new RangeError(`credits must be >= 0, got ${amount}`);
	if (!Number.isInteger(bps) || bps < 0 || bps > BPS_DENOMINATOR) {
		throw new RangeError(`bps must be an integer in [0, ${BPS_DENOMINATOR}], got ${bps}`);
	}
	const denominator = BigInt(BPS_DENOMINATOR);
	const numerator = amount * (denominator - BigInt(bps));
	return (numerator + denominator - 1n) / denominator;
}

/** Largest boost a task of `tier` can carry: tier boost plus the purchasable maximum, under the global cap. */
export function boostCeilingMs(tier: TierName, table: TierTable = TIERS): number {
	return Math.min(table[tier].maxBoostMs + MAX_PURCHASED_BOOST_MS, MAX_TOTAL_BOOST_MS);
}

/**
 * The head start stored on a new task: the tier's own boost plus purchased boost (clamped to
 * [0, MAX_PURCHASED_BOOST_MS]), never above MAX_TOTAL_BOOST_MS.
 */
export function priorityBoostMs(tier: TierName, purchasedBoostMs = 0, table: TierTable = TIERS): number {
	if (Number.isNaN(purchasedBoostMs)) throw new RangeError("purchasedBoostMs must be a number");
	const purchased = Math.min(Math.max(purchasedBoostMs, 0), MAX_PURCHASED_BOOST_MS);
	return Math.min(Math.floor(table[tier].maxBoostMs + purchased), MAX_TOTAL_BOOST_MS);
}

/** Whether `tier` may use models of `group`. */
export function allowsModelGroup(tier: TierName, group: ModelGroup, table: TierTable = TIERS): boolean {
	return table[tier].modelGroups.includes(group);
}

/** Workers `tier` may occupy at once out of `totalWorkers`; at least one, so a capped tier never stops. */
export function tierConcurrencyCap(tier: TierName, totalWorkers: number, table: TierTable = TIERS): number {
	const share = table[tier].perTierConcurrency;
	if (share === null) return Number.POSITIVE_INFINITY;
	return Math.max(1, Math.floor(share * totalWorkers));
}

function toSafeIntegerBigInt(value: number, name: string): bigint {
	if (!Number.isSafeInteger(value)) throw new RangeError(`${name} must be a safe integer, got ${value}`);
	return BigInt(value);
}
