import {
	earlierPastDueSince,
	graceEndsAt,
	isLive,
	nextPastDueSince,
	planTierOf
} from "../../../src/payments/subscription-rules";

const t0 = new Date("2026-12-01T00:00:00Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);
const GRACE = 3 * 86_400;

describe("planTierOf", () => {
	test("the highest live tier wins; no subscription is free", () => {
		expect(planTierOf([], t0, GRACE)).toBe("free");
		expect(
			planTierOf(
				[
					{ planTier: "pro", status: "active", pastDueSince: null },
					{ planTier: "team", status: "trialing", pastDueSince: null }
				],
				t0,
				GRACE
			)
		).toBe("team");
	});

	test("past_due counts until the grace period ends, then not", () => {
		const s = { planTier: "team", status: "past_due", pastDueSince: t0 };
		expect(planTierOf([s], at(GRACE - 1), GRACE)).toBe("team");
		expect(planTierOf([s], at(GRACE), GRACE)).toBe("free");
		expect(graceEndsAt(s, GRACE)).toEqual(at(GRACE));
		expect(planTierOf([s, { planTier: "pro", status: "active", pastDueSince: null }], at(GRACE), GRACE)).toBe(
			"pro"
		);
	});

	test("a grace of 0 drops the tier at once; unpaid, canceled, incomplete and unknown tiers never count", () => {
		expect(isLive({ planTier: "pro", status: "past_due", pastDueSince: t0 }, t0, 0)).toBe(false);
		for (const status of ["unpaid", "canceled", "incomplete", "incomplete_expired", "paused"])
			expect(planTierOf([{ planTier: "pro", status, pastDueSince: null }], t0, GRACE)).toBe("free");
		expect(planTierOf([{ planTier: "gold", status: "active", pastDueSince: null }], t0, GRACE)).toBe("free");
	});
});

describe("nextPastDueSince", () => {
	test("set by the first past-due event, kept by later ones, cleared by recovery", () => {
		expect(nextPastDueSince(null, "past_due", t0)).toEqual(t0);
		expect(nextPastDueSince(t0, "past_due", at(60))).toEqual(t0);
		expect(nextPastDueSince(t0, "active", at(60))).toBeNull();
		expect(nextPastDueSince(null, "active", at(60))).toBeNull();
	});
});

describe("earlierPastDueSince", () => {
	test("a late, older past-due event moves the grace start earlier; nothing else does", () => {
		expect(earlierPastDueSince("past_due", at(60), "past_due", t0)).toEqual(t0);
		expect(earlierPastDueSince("past_due", t0, "past_due", at(60))).toBeNull();
		expect(earlierPastDueSince("past_due", t0, "past_due", t0)).toBeNull();
		expect(earlierPastDueSince("active", null, "past_due", t0)).toBeNull();
		expect(earlierPastDueSince("past_due", at(60), "active", t0)).toBeNull();
		expect(earlierPastDueSince("past_due", null, "past_due", t0)).toBeNull();
	});
});
