/** The account-wide login limiter and the known-address list in embedded mode (memory, no Redis). */
import { MemoryKeyValueStore } from "../../../src/runtime/kv";
import { AccountGuessLimiter, KnownAddresses } from "../../../src/users/throttle";
import { ConfigError, loadConfig } from "../../../src/config";

describe("AccountGuessLimiter in memory", () => {
	test("the allowance, then one attempt per doubling delay, capped; parallel attempts cannot slip past; reset clears", async () => {
		const limiter = new AccountGuessLimiter(null, "t", {
			freeFailures: 2,
			baseDelayS: 3,
			maxDelayS: 6,
			windowS: 60
		});
		expect(await limiter.admit("k")).toBe(0);
		// The 2nd attempt is the last free one and takes the gate for the first delay.
		expect(await Promise.all([limiter.admit("k"), limiter.admit("k"), limiter.admit("k")])).toEqual([0, 3, 3]);
		expect(await limiter.admit("other")).toBe(0);
		await limiter.reset("k");
		expect(await limiter.admit("k")).toBe(0);
		expect(await limiter.admit("k")).toBe(0);
		expect(await limiter.admit("k")).toBe(3);
	});

	test("the delay doubles up to the cap once each gate has passed", async () => {
		jest.useFakeTimers({ now: new Date("2026-01-01T00:00:00Z"), doNotFake: ["nextTick", "setImmediate"] });
		try {
			const limiter = new AccountGuessLimiter(null, "t", {
				freeFailures: 1,
				baseDelayS: 2,
				maxDelayS: 5,
				windowS: 3600
			});
			const waits: number[] = [];
			for (const step of [0, 2, 4, 5, 5]) {
				jest.setSystemTime(Date.now() + step * 1000 + 1);
				expect(await limiter.admit("k")).toBe(0);
				waits.push(await limiter.admit("k"));
			}
			expect(waits).toEqual([2, 4, 5, 5, 5]);
		} finally {
			jest.useRealTimers();
		}
	});
});

describe("KnownAddresses", () => {
	test("remembers an (account, address) pair for its TTL; 0 remembers nothing", async () => {
		const kv = new MemoryKeyValueStore();
		const known = new KnownAddresses(kv, "known", 60);
		expect(await known.has("ada@example.com", "1.2.3.4")).toBe(false);
		await known.remember("ada@example.com", "1.2.3.4");
		expect(await known.has("ada@example.com", "1.2.3.4")).toBe(true);
		expect(await known.has("ada@example.com", "1.2.3.5")).toBe(false);
		expect(await known.has("bob@example.com", "1.2.3.4")).toBe(false);
		expect(await known.has("ada@example.com", undefined)).toBe(false);
		const spy = jest.spyOn(kv, "set");
		const off = new KnownAddresses(kv, "off", 0);
		await off.remember("ada@example.com", "1.2.3.4");
		expect(spy).not.toHaveBeenCalled();
		expect(await off.has("ada@example.com", "1.2.3.4")).toBe(false);
	});
});

describe("configuration", () => {
	test("defaults, overrides, and bad values named", () => {
		expect(loadConfig({}).users.throttle).toEqual(
			expect.objectContaining({
				account: { freeFailures: 20, baseDelayS: 2, maxDelayS: 900, windowS: 86_400 },
				knownIpTtlS: 2_592_000
			})
		);
		const custom = loadConfig({
			LOGIN_THROTTLE_EMAIL_FREE_FAILURES: "30",
			LOGIN_THROTTLE_EMAIL_WINDOW_S: "3600",
			LOGIN_KNOWN_IP_TTL_S: "0"
		}).users.throttle;
		expect(custom.account).toEqual({ freeFailures: 30, baseDelayS: 2, maxDelayS: 900, windowS: 3600 });
		expect(custom.knownIpTtlS).toBe(0);
		let err: unknown;
		try {
			loadConfig({ LOGIN_THROTTLE_EMAIL_MAX_DELAY_S: "0", LOGIN_KNOWN_IP_TTL_S: "-1" });
		} catch (e) {
			err = e;
		}
		expect(err).toBeInstanceOf(ConfigError);
		expect((err as ConfigError).problems).toEqual([
			"LOGIN_THROTTLE_EMAIL_MAX_DELAY_S must be an integer between 1 and 86400 (got '0')",
			"LOGIN_KNOWN_IP_TTL_S must be an integer between 0 and 31536000 (got '-1')"
		]);
	});
});
