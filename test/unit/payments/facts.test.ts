import { tierFactsOf, type FactsSources } from "../../../src/payments/facts";

function sources(plan: "free" | "pro" | "team" | "enterprise") {
	const calls = { planOf: 0, adminOverrideOf: 0 };
	const src: FactsSources = {
		planOf: async () => {
			calls.planOf++;
			return plan;
		},
		stakes: null,
		adminOverrideOf: async () => {
			calls.adminOverrideOf++;
			return null;
		},
		minHoldingMs: 0
	};
	return { src, calls };
}

describe("tierFactsOf", () => {
	it("reads the plan and the admin override when no tier is given", async () => {
		const { src, calls } = sources("pro");
		const f = await tierFactsOf(src, "u1");
		expect(f.tier).toBe("pro");
		expect(f.planTier).toBe("pro");
		expect(calls).toEqual({ planOf: 1, adminOverrideOf: 1 });
	});

	it("with a tier given, reads neither (a reserve's facts cost no SQL round trip without a chain)", async () => {
		const { src, calls } = sources("free");
		const f = await tierFactsOf(src, "u1", "team");
		expect(f.tier).toBe("team");
		expect(f.feeDiscountBps).toBe((await tierFactsOf(sources("team").src, "u1", "team")).feeDiscountBps);
		expect(calls).toEqual({ planOf: 0, adminOverrideOf: 0 });
	});

	it("null (no override known) still reads the plan", async () => {
		const { src, calls } = sources("team");
		const f = await tierFactsOf(src, "u1", null);
		expect(f.tier).toBe("team");
		expect(calls).toEqual({ planOf: 1, adminOverrideOf: 0 });
	});
});
