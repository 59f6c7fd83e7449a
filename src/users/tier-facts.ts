/**
 * The facts payments reports (a user's active plan, their $FORGE stake positions), checked as they
 * arrive, and the tier summary computed from them with the shared tier table.
 */
import {
	STAKE_MIN_HOLDING_MS,
	TIER_ORDER,
	effectiveStake,
	feeDiscountBps,
	isTierName,
	resolveTier,
	stakeTier,
	type StakePosition,
	type TierName
} from "../domain/tiers";
import { isUuid } from "../kit/uuid";

export class InvalidEventPayload extends Error {
	override name = "InvalidEventPayload";
}

export interface PlanChanged {
	userId: string;
	planTier: TierName | null;
}

export interface StakeChanged {
	userId: string;
	positions: StakePosition[];
}

function userIdOf(payload: unknown): string {
	const userId = (payload as { userId?: unknown } | null)?.userId;
	if (!isUuid(userId)) throw new InvalidEventPayload("userId must be a UUID");
	return userId.toLowerCase();
}

/** `payments.plan.changed` `{ userId, planTier: TierName | null }`. */
export function parsePlanChanged(payload: unknown): PlanChanged {
	const userId = userIdOf(payload);
	const planTier = (payload as { planTier?: unknown }).planTier ?? null;
	if (planTier !== null && !isTierName(planTier))
		throw new InvalidEventPayload(`planTier must be one of ${TIER_ORDER.join(", ")} or null`);
	return { userId, planTier };
}

/** `payments.stake.changed` `{ userId, positions: [{ amountWei: "123", since: ISO }] }`: the whole current set. */
export function parseStakeChanged(payload: unknown): StakeChanged {
	const userId = userIdOf(payload);
	const raw = (payload as { positions?: unknown }).positions;
	if (!Array.isArray(raw) || raw.length > 10_000) throw new InvalidEventPayload("positions must be an array");
	const positions = raw.map((p: { amountWei?: unknown; since?: unknown }, i) => {
		if (typeof p?.amountWei !== "string" || !/^\d{1,78}$/.test(p.amountWei))
			throw new InvalidEventPayload(`positions[${i}].amountWei must be a decimal string of wei`);
		const since = typeof p.since === "string" ? Date.parse(p.since) : NaN;
		if (Number.isNaN(since)) throw new InvalidEventPayload(`positions[${i}].since must be an ISO date`);
		return { amountWei: BigInt(p.amountWei), since };
	});
	return { userId, positions };
}

export interface TierFacts {
	planTier: TierName | null;
	positions: StakePosition[];
	tierOverride: TierName | null;
}

export interface TierSummary {
	tier: TierName;
	planTier: TierName | null;
	stakeTier: TierName;
	adminOverride: TierName | null;
	/** All reported stake, matured or not (decimal wei). */
	stakedWei: string;
	/** Stake held at least the minimum holding period: what counts for tier and discount. */
	effectiveStakeWei: string;
	feeDiscountBps: number;
	/** When more stake will mature (and the tier may rise), if any is still maturing. */
	nextStakeMaturityAt: string | null;
}

export function summarizeTier(facts: TierFacts, nowMs: number): TierSummary {
	const effective = effectiveStake(facts.positions, nowMs);
	const tier = resolveTier({
		planTier: facts.planTier,
		effectiveStakeWei: effective,
		adminOverride: facts.tierOverride
	});
	const maturing = facts.positions.map(p => p.since + STAKE_MIN_HOLDING_MS).filter(t => t > nowMs);
	return {
		tier,
		planTier: facts.planTier,
		stakeTier: stakeTier(effective),
		adminOverride: facts.tierOverride,
		stakedWei: facts.positions.reduce((sum, p) => sum + p.amountWei, 0n).toString(),
		effectiveStakeWei: effective.toString(),
		feeDiscountBps: feeDiscountBps(tier, effective),
		nextStakeMaturityAt: maturing.length ? new Date(Math.min(...maturing)).toISOString() : null
	};
}
