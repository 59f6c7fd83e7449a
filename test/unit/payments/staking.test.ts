import { replayStakeEvents, stakeFacts, StakeEvent } from "../../../src/payments/staking";
import { forgeToWei } from "../../../src/domain/tiers";

const DAY = 86_400_000;
const T0 = Date.parse("2026-01-01T00:00:00Z");
const at = (days: number) => new Date(T0 + days * DAY);
const F = (n: number) => forgeToWei(n);
const staked = (amount: bigint, total: bigint, day: number): StakeEvent => ({
	kind: "staked",
	amountWei: amount,
	totalWei: total,
	blockTime: at(day),
	availableAt: null
});
const unstake = (amount: bigint, total: bigint, day: number, cooldownDays = 7): StakeEvent => ({
	kind: "unstake_requested",
	amountWei: amount,
	totalWei: total,
	blockTime: at(day),
	availableAt: at(day + cooldownDays)
});
const withdrawn = (amount: bigint, day: number): StakeEvent => ({
	kind: "withdrawn",
	amountWei: amount,
	totalWei: null,
	blockTime: at(day),
	availableAt: null
});

describe("replayStakeEvents", () => {
	test("each deposit is its own position with its own clock", () => {
		const s = replayStakeEvents([staked(F(600), F(600), 0), staked(F(500), F(1100), 3)]);
		expect(s.positions).toEqual([
			{ amountWei: F(600), since: at(0) },
			{ amountWei: F(500), since: at(3) }
		]);
		expect(s.activeWei).toBe(F(1100));
		expect(s.unbondingWei).toBe(0n);
	});

	test("an unstake removes the newest stake first and starts the cooldown", () => {
		const s = replayStakeEvents([
			staked(F(1000), F(1000), 0),
			staked(F(500), F(1500), 5),
			unstake(F(700), F(800), 6)
		]);
		expect(s.positions).toEqual([{ amountWei: F(800), since: at(0) }]);
		expect(s.unbondingWei).toBe(F(700));
		expect(s.unbondingAvailableAt).toEqual(at(13));
		const w = replayStakeEvents([staked(F(1000), F(1000), 0), unstake(F(700), F(300), 6), withdrawn(F(700), 14)]);
		expect(w.unbondingWei).toBe(0n);
		expect(w.unbondingAvailableAt).toBeNull();
	});

	test("the totals in the events repair a missed event", () => {
		// The second Staked (of 200) was never indexed: the next event's total reveals it, dated then.
		const s = replayStakeEvents([staked(F(100), F(100), 0), staked(F(50), F(350), 4)]);
		expect(s.positions).toEqual([
			{ amountWei: F(100), since: at(0) },
			{ amountWei: F(50), since: at(4) },
			{ amountWei: F(200), since: at(4) }
		]);
		const t = replayStakeEvents([staked(F(100), F(100), 0), staked(F(100), F(200), 1), unstake(F(10), F(50), 2)]);
		expect(t.activeWei).toBe(F(50));
	});
});

describe("stakeFacts", () => {
	const positions = [
		{ amountWei: F(1000), since: at(0) },
		{ amountWei: F(9000), since: at(5) }
	];

	test("stake counts only after the holding period", () => {
		const day3 = stakeFacts(positions, "free", at(3).getTime());
		expect(day3).toMatchObject({
			effectiveStakeWei: 0n,
			tier: "free",
			feeDiscountBps: 0,
			boostMs: 0,
			nextSeasonedAt: at(7)
		});
		const day7 = stakeFacts(positions, "free", at(7).getTime());
		expect(day7).toMatchObject({
			effectiveStakeWei: F(1000),
			stakeTier: "pro",
			tier: "pro",
			feeDiscountBps: 500,
			boostMs: 30_000,
			nextSeasonedAt: at(12)
		});
		const day12 = stakeFacts(positions, "free", at(12).getTime());
		expect(day12).toMatchObject({
			effectiveStakeWei: F(10_000),
			tier: "team",
			feeDiscountBps: 1000,
			boostMs: 60_000,
			nextSeasonedAt: null
		});
	});

	test("the plan and the stake: the higher tier, the larger discount", () => {
		expect(stakeFacts(positions, "team", at(7).getTime())).toMatchObject({
			planTier: "team",
			stakeTier: "pro",
			tier: "team",
			feeDiscountBps: 500
		});
		expect(stakeFacts([], "pro", at(0).getTime())).toMatchObject({ tier: "pro", feeDiscountBps: 250 });
	});

	test("a tier override from the users service wins", () => {
		expect(stakeFacts(positions, "team", at(12).getTime(), undefined, "free")).toMatchObject({
			tier: "free",
			feeDiscountBps: 1000
		});
	});

	test("a custom holding period", () => {
		expect(stakeFacts(positions, "free", at(0).getTime() + 2000, 1000).effectiveStakeWei).toBe(F(1000));
	});
});
