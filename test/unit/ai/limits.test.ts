/** Tokens per minute in memory (embedded mode): admission, refusal that counts nothing, settlement both ways. */
import { UsageLimiter } from "../../../src/ai/limits";
import { TIERS } from "../../../src/domain/tiers";

describe("UsageLimiter in memory", () => {
	test("a refused admission counts nothing; unused tokens come back in the admitting window; later attempts count fully", async () => {
		const l = new UsageLimiter(null, "unit:");
		const max = TIERS.free.rateLimits.tokensPerMinute;
		const { windowEndMs } = await l.admit("u", "free", max);
		expect(windowEndMs! - Date.now()).toBeGreaterThan(55_000); // a fresh one-minute window
		await expect(l.admit("u", "free", 10)).rejects.toMatchObject({ what: "tokens" });
		expect(await l.tokensCounted("u", "free")).toBe(max);
		await l.settle("u", "free", { counted: max, used: 700, windowEndMs, firstAttempt: true });
		expect(await l.tokensCounted("u", "free")).toBe(700);
		await l.settle("u", "free", { counted: max, used: 300, windowEndMs, firstAttempt: false });
		expect(await l.tokensCounted("u", "free")).toBe(1_000);
		// An admission from an earlier window gives nothing back now; nor one whose window is unknown.
		await l.settle("u", "free", {
			counted: 5_000,
			used: 0,
			windowEndMs: windowEndMs! - 60_000,
			firstAttempt: true
		});
		await l.settle("u", "free", { counted: 5_000, used: 0, windowEndMs: null, firstAttempt: true });
		expect(await l.tokensCounted("u", "free")).toBe(1_000);
	});
});
