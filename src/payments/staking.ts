/**
 * Stake positions from staking events, and what a stake is worth (tier, discount, queue boost).
 *
 * A wallet's positions are a pure function of its ordered events, so the indexer can always
 * rebuild them (after a reorg, a re-index, or a restart) instead of patching state:
 *   - `Staked` adds a position dated by its block: each deposit has its own holding clock;
 *   - `UnstakeRequested` removes stake newest first (the seasoned stake the user kept keeps its
 *     clock) and puts it in cooldown, where it no longer counts;
 *   - `Withdrawn` empties the cooldown bucket.
 * Both `Staked` and `UnstakeRequested` carry the wallet's total active stake after the call; the
 * positions are trimmed or topped up to it, so a missed event cannot leave a wrong total (an
 * unexplained top-up is dated at the event that revealed it: it has to season like a deposit).
 */
import {
	MAX_FEE_DISCOUNT_BPS,
	STAKE_MIN_HOLDING_MS,
	TierName,
	effectiveStake,
	feeDiscountBps,
	priorityBoostMs,
	resolveTier,
	stakeTier
} from "../domain/tiers";

export type StakeEventKind = "staked" | "unstake_requested" | "withdrawn";

export interface StakeEvent {
	kind: StakeEventKind;
	amountWei: bigint;
	/** The wallet's active stake after the event (Staked, UnstakeRequested). */
	totalWei: bigint | null;
	blockTime: Date;
	/** When the pending unstake can be withdrawn (UnstakeRequested). */
	availableAt: Date | null;
}

export interface Position {
	amountWei: bigint;
	since: Date;
}

export interface WalletStake {
	positions: Position[];
	activeWei: bigint;
	unbondingWei: bigint;
	unbondingAvailableAt: Date | null;
}

const sum = (ps: readonly Position[]) => ps.reduce((s, p) => s + p.amountWei, 0n);

/** Removes `amount` from the newest positions first. */
function trimNewestFirst(positions: Position[], amount: bigint): Position[] {
	const out = positions.map(p => ({ ...p }));
	let left = amount;
	for (let i = out.length - 1; i >= 0 && left > 0n; i--) {
		const take = out[i].amountWei < left ? out[i].amountWei : left;
		out[i].amountWei -= take;
		left -= take;
	}
	return out.filter(p => p.amountWei > 0n);
}

function matchTotal(positions: Position[], total: bigint | null, at: Date): Position[] {
	if (total == null) return positions;
	const have = sum(positions);
	if (have > total) return trimNewestFirst(positions, have - total);
	if (have < total) return [...positions, { amountWei: total - have, since: at }];
	return positions;
}

/** Replays a wallet's events (in chain order) into its positions and cooldown bucket. */
export function replayStakeEvents(events: readonly StakeEvent[]): WalletStake {
	let positions: Position[] = [];
	let unbondingWei = 0n;
	let unbondingAvailableAt: Date | null = null;
	for (const e of events) {
		if (e.kind === "staked") {
			positions = matchTotal(
				[...positions, { amountWei: e.amountWei, since: e.blockTime }],
				e.totalWei,
				e.blockTime
			);
		} else if (e.kind === "unstake_requested") {
			positions = matchTotal(trimNewestFirst(positions, e.amountWei), e.totalWei, e.blockTime);
			unbondingWei += e.amountWei;
			unbondingAvailableAt = e.availableAt;
		} else {
			unbondingWei = unbondingWei > e.amountWei ? unbondingWei - e.amountWei : 0n;
			if (unbondingWei === 0n) unbondingAvailableAt = null;
		}
	}
	return { positions, activeWei: sum(positions), unbondingWei, unbondingAvailableAt };
}

export interface StakeFacts {
	totalStakeWei: bigint;
	effectiveStakeWei: bigint;
	stakeTier: TierName;
	planTier: TierName;
	tier: TierName;
	feeDiscountBps: number;
	boostMs: number;
	/** When more of the current stake starts to count (the next position to season), if any. */
	nextSeasonedAt: Date | null;
}

/**
 * What a user's plan and stake give them now. The tier is the higher of plan and effective stake
 * (an administrator override lives in the users service, which may pass the tier it resolved).
 */
export function stakeFacts(
	positions: readonly Position[],
	planTier: TierName,
	now: number,
	minHoldingMs: number = STAKE_MIN_HOLDING_MS,
	tierOverride?: TierName | null
): StakeFacts {
	const plain = positions.map(p => ({ amountWei: p.amountWei, since: p.since.getTime() }));
	const effective = effectiveStake(plain, now, minHoldingMs);
	const tier = resolveTier({ planTier, effectiveStakeWei: effective, adminOverride: tierOverride ?? null });
	const pending = plain.filter(p => now - p.since < minHoldingMs).map(p => p.since + minHoldingMs);
	return {
		totalStakeWei: sum(positions),
		effectiveStakeWei: effective,
		stakeTier: stakeTier(effective),
		planTier,
		tier,
		feeDiscountBps: Math.min(feeDiscountBps(tier, effective), MAX_FEE_DISCOUNT_BPS),
		boostMs: priorityBoostMs(tier),
		nextSeasonedAt: pending.length ? new Date(Math.min(...pending)) : null
	};
}
