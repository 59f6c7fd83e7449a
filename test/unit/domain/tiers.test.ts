import {
	MAX_FEE_DISCOUNT_BPS,
	MAX_TOTAL_BOOST_MS,
	STAKE_MIN_HOLDING_MS,
	TIERS,
	TIER_ORDER,
	type TierTable,
	allowsModelGroup,
	applyDiscount,
	boostCeilingMs,
	effectiveStake,
	feeDiscountBps,
	forgeToWei,
	isTierName,
	priorityBoostMs,
	resolveTier,
	stakeDiscountBps,
	stakeTier,
	tierConcurrencyCap,
	tierInOrg
} from "../../../src/domain/tiers";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

describe("tier table", () => {
	it("orders tiers free < pro < team < enterprise with rank equal to the index", () => {
		expect(TIER_ORDER).toEqual(["free", "pro", "team", "enterprise"]);
		TIER_ORDER.forEach((name, index) => {
			expect(TIERS[name].name).toBe(name);
			expect(TIERS[name].rank).toBe(index);
		});
	});

	it("prices plans in credits (1 credit = 1/1000 USD)", () => {
		expect(TIERS.free.monthlyPriceCredits).toBe(0n);
		expect(TIERS.pro.monthlyPriceCredits).toBe(20_000n);
		expect(TIERS.team.monthlyPriceCredits).toBe(50_000n);
		expect(TIERS.team.priceUnit).toBe("seat");
		expect(TIERS.enterprise.monthlyPriceCredits).toBeNull();
		expect(TIERS.enterprise.priceUnit).toBe("contract");
	});

	it("grants bounded boosts that grow with rank", () => {
		expect(TIER_ORDER.map(t => TIERS[t].maxBoostMs)).toEqual([0, 30_000, 60_000, 120_000]);
	});

	it("keeps every per-tier property monotone in rank", () => {
		for (let i = 1; i < TIER_ORDER.length; i++) {
			const lower = TIERS[TIER_ORDER[i - 1]];
			const higher = TIERS[TIER_ORDER[i]];
			expect(higher.admission.deferAboveMs).toBeGreaterThan(lower.admission.deferAboveMs);
			expect(higher.admission.rejectAboveMs).toBeGreaterThan(lower.admission.rejectAboveMs);
			expect(higher.waitTargetMs).toBeLessThan(lower.waitTargetMs);
			expect(higher.perUserConcurrency).toBeGreaterThan(lower.perUserConcurrency);
			expect(higher.rateLimits.requestsPerMinute).toBeGreaterThan(lower.rateLimits.requestsPerMinute);
			expect(higher.rateLimits.tokensPerMinute).toBeGreaterThan(lower.rateLimits.tokensPerMinute);
			expect(higher.feeDiscountBps).toBeGreaterThanOrEqual(lower.feeDiscountBps);
		}
		for (const name of TIER_ORDER) {
			expect(TIERS[name].admission.rejectAboveMs).toBeGreaterThan(TIERS[name].admission.deferAboveMs);
		}
	});

	it("limits model groups by tier", () => {
		expect(TIERS.free.modelGroups).toEqual(["small"]);
		expect(TIERS.pro.modelGroups).toEqual(["small", "large"]);
		expect(TIERS.team.modelGroups).toEqual(["small", "large", "reasoning"]);
		expect(TIERS.enterprise.modelGroups).toEqual(["small", "large", "reasoning"]);
		expect(allowsModelGroup("pro", "reasoning")).toBe(false);
		expect(allowsModelGroup("team", "reasoning")).toBe(true);
	});

	it("is frozen, down to nested objects", () => {
		expect(Object.isFrozen(TIERS)).toBe(true);
		expect(Object.isFrozen(TIERS.pro)).toBe(true);
		expect(Object.isFrozen(TIERS.pro.admission)).toBe(true);
		expect(Object.isFrozen(TIERS.pro.modelGroups)).toBe(true);
		expect(() => {
			(TIERS.pro as { maxBoostMs: number }).maxBoostMs = 1;
		}).toThrow(TypeError);
	});

	it("recognises tier names", () => {
		expect(isTierName("team")).toBe(true);
		expect(isTierName("gold")).toBe(false);
		expect(isTierName(undefined)).toBe(false);
	});

	it("caps a tier's share of workers, never below one worker", () => {
		expect(tierConcurrencyCap("free", 10)).toBe(5);
		expect(tierConcurrencyCap("pro", 10)).toBe(8);
		expect(tierConcurrencyCap("free", 1)).toBe(1);
		expect(tierConcurrencyCap("team", 10)).toBe(Number.POSITIVE_INFINITY);
	});
});

describe("stake", () => {
	it("converts whole FORGE to wei with 18 decimals", () => {
		expect(forgeToWei(1)).toBe(1_000_000_000_000_000_000n);
		expect(forgeToWei(1_000n)).toBe(1_000n * 10n ** 18n);
		expect(() => forgeToWei(1.5)).toThrow(RangeError);
	});

	it("maps stake to a tier at exact thresholds", () => {
		expect(stakeTier(0n)).toBe("free");
		expect(stakeTier(forgeToWei(1_000) - 1n)).toBe("free");
		expect(stakeTier(forgeToWei(1_000))).toBe("pro");
		expect(stakeTier(forgeToWei(10_000) - 1n)).toBe("pro");
		expect(stakeTier(forgeToWei(10_000))).toBe("team");
		expect(stakeTier(forgeToWei(100_000))).toBe("enterprise");
		expect(stakeTier(forgeToWei(5_000_000))).toBe("enterprise");
	});

	it("counts only positions held for the minimum holding period", () => {
		expect(STAKE_MIN_HOLDING_MS).toBe(7 * DAY);
		const positions = [
			{ amountWei: forgeToWei(600), since: NOW - 30 * DAY },
			{ amountWei: forgeToWei(400), since: NOW - 7 * DAY }, // exactly the period: counts
			{ amountWei: forgeToWei(9_000), since: NOW - 7 * DAY + 1 } // one ms short: does not
		];
		expect(effectiveStake(positions, NOW)).toBe(forgeToWei(1_000));
		expect(effectiveStake(positions, NOW + 1)).toBe(forgeToWei(10_000));
		expect(effectiveStake([], NOW)).toBe(0n);
		expect(effectiveStake(positions, NOW, 0)).toBe(forgeToWei(10_000));
	});

	it("rejects negative positions", () => {
		expect(() => effectiveStake([{ amountWei: -1n, since: 0 }], NOW)).toThrow(RangeError);
	});
});

describe("resolveTier", () => {
	const seasoned = (forge: number) => effectiveStake([{ amountWei: forgeToWei(forge), since: NOW - 8 * DAY }], NOW);
	const fresh = (forge: number) => effectiveStake([{ amountWei: forgeToWei(forge), since: NOW - DAY }], NOW);

	it("defaults to free", () => {
		expect(resolveTier({ effectiveStakeWei: 0n })).toBe("free");
	});

	it("takes the higher of plan and stake tier", () => {
		expect(resolveTier({ planTier: "pro", effectiveStakeWei: seasoned(10_000) })).toBe("team");
		expect(resolveTier({ planTier: "team", effectiveStakeWei: seasoned(1_000) })).toBe("team");
		expect(resolveTier({ planTier: null, effectiveStakeWei: seasoned(100_000) })).toBe("enterprise");
	});

	it("ignores stake still inside the holding period", () => {
		expect(resolveTier({ planTier: "pro", effectiveStakeWei: fresh(100_000) })).toBe("pro");
		expect(resolveTier({ effectiveStakeWei: fresh(1_000) })).toBe("free");
	});

	it("lets an admin override win in both directions", () => {
		expect(resolveTier({ planTier: "free", effectiveStakeWei: 0n, adminOverride: "enterprise" })).toBe(
			"enterprise"
		);
		expect(resolveTier({ planTier: "team", effectiveStakeWei: seasoned(100_000), adminOverride: "free" })).toBe(
			"free"
		);
		expect(resolveTier({ planTier: "team", effectiveStakeWei: 0n, adminOverride: null })).toBe("team");
	});
});

describe("tierInOrg", () => {
	test("work in an organisation gets the better of the member's and the organisation's tier", () => {
		expect(tierInOrg("free", "team")).toBe("team");
		expect(tierInOrg("enterprise", "pro")).toBe("enterprise");
		expect(tierInOrg("pro", "pro")).toBe("pro");
		for (const a of TIER_ORDER)
			for (const b of TIER_ORDER) {
				expect(tierInOrg(a, b)).toBe(tierInOrg(b, a));
				expect(TIERS[tierInOrg(a, b)].rank).toBe(Math.max(TIERS[a].rank, TIERS[b].rank));
			}
	});

	test("a member's admin downgrade does not lower the organisation's work", () => {
		const member = resolveTier({ planTier: "enterprise", effectiveStakeWei: 0n, adminOverride: "free" });
		expect(tierInOrg(member, "team")).toBe("team");
	});
});

describe("fee discounts", () => {
	it("gives stake discounts by step", () => {
		expect(stakeDiscountBps(forgeToWei(999))).toBe(0);
		expect(stakeDiscountBps(forgeToWei(1_000))).toBe(500);
		expect(stakeDiscountBps(forgeToWei(10_000))).toBe(1_000);
		expect(stakeDiscountBps(forgeToWei(100_000))).toBe(2_000);
		expect(stakeDiscountBps(forgeToWei(10_000_000))).toBe(2_000);
	});

	it("uses the larger of tier and stake discount", () => {
		expect(feeDiscountBps("free", 0n)).toBe(0);
		expect(feeDiscountBps("pro", 0n)).toBe(250);
		expect(feeDiscountBps("pro", forgeToWei(1_000))).toBe(500);
		expect(feeDiscountBps("enterprise", forgeToWei(10_000))).toBe(1_000);
		expect(feeDiscountBps("enterprise", forgeToWei(100_000))).toBe(2_000);
	});

	it("caps the discount at MAX_FEE_DISCOUNT_BPS", () => {
		expect(MAX_FEE_DISCOUNT_BPS).toBe(3_000);
		const generous: TierTable = { ...TIERS, team: { ...TIERS.team, feeDiscountBps: 4_500 } };
		expect(feeDiscountBps("team", 0n, generous)).toBe(3_000);
		expect(feeDiscountBps("free", forgeToWei(1), TIERS, [{ minStakeWei: 1n, bps: 9_000 }])).toBe(3_000);
	});

	it("applies discounts in integer maths, rounding the charge up", () => {
		expect(applyDiscount(10_000n, 500)).toBe(9_500n);
		expect(applyDiscount(1n, 500)).toBe(1n); // 0.95 → 1: never undercharge
		expect(applyDiscount(999, 2_000)).toBe(800n); // 799.2 → 800
		expect(applyDiscount(1_001, 2_500)).toBe(751n); // 750.75 → 751
		expect(applyDiscount(0, 3_000)).toBe(0n);
		expect(applyDiscount(12_345n, 0)).toBe(12_345n);
		expect(applyDiscount(12_345n, 10_000)).toBe(0n);
		// beyond Number.MAX_SAFE_INTEGER stays exact
		expect(applyDiscount(2n ** 80n + 1n, 1)).toBe(((2n ** 80n + 1n) * 9_999n + 9_999n) / 10_000n);
	});

	it("rejects bad discount inputs", () => {
		expect(() => applyDiscount(-1n, 0)).toThrow(RangeError);
		expect(() => applyDiscount(1.5, 0)).toThrow(RangeError);
		expect(() => applyDiscount(100, -1)).toThrow(RangeError);
		expect(() => applyDiscount(100, 10_001)).toThrow(RangeError);
		expect(() => applyDiscount(100, 2.5)).toThrow(RangeError);
	});
});

describe("priority boost", () => {
	it("adds purchased boost up to its cap, under the global cap", () => {
		expect(priorityBoostMs("free")).toBe(0);
		expect(priorityBoostMs("free", 45_000)).toBe(45_000);
		expect(priorityBoostMs("free", 600_000)).toBe(60_000);
		expect(priorityBoostMs("pro", -5_000)).toBe(30_000);
		expect(priorityBoostMs("team", 60_000)).toBe(120_000);
		expect(priorityBoostMs("enterprise", 60_000)).toBe(180_000);
		expect(priorityBoostMs("enterprise", Number.POSITIVE_INFINITY)).toBe(MAX_TOTAL_BOOST_MS);
		expect(() => priorityBoostMs("pro", Number.NaN)).toThrow(RangeError);
	});

	it("never exceeds the global cap even for a generous table", () => {
		const generous: TierTable = { ...TIERS, pro: { ...TIERS.pro, maxBoostMs: 500_000 } };
		expect(priorityBoostMs("pro", 0, generous)).toBe(180_000);
		expect(boostCeilingMs("pro", generous)).toBe(180_000);
	});

	it("has per-tier ceilings", () => {
		expect(TIER_ORDER.map(t => boostCeilingMs(t))).toEqual([60_000, 90_000, 120_000, 180_000]);
	});
});
