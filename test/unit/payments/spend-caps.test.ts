/** src/payments/spend-caps.ts: which counters a hold moves, which cap refuses it, the month, the give-back. */
import { CAP_CODES, capMonth, capRefusal, settledGiveBack, spendCounters } from "../../../src/payments/spend-caps";

const ORG = "org:7f9c2b1e-0000-4000-8000-000000000001";

describe("spendCounters", () => {
	test("an organisation's task moves the member's, the key's and the payer's counters, checked in that order", () => {
		const c = spendCounters({
			payerId: ORG,
			memberId: "u1",
			keyId: "k1",
			caps: { member: 10, key: 20, payer: 30 }
		});
		expect(c.map(x => [x.counter, x.cap, x.code])).toEqual([
			[`member:${ORG}:u1`, "10", "MEMBER_CAP_REACHED"],
			["key:k1", "20", "KEY_CAP_REACHED"],
			[`payer:${ORG}`, "30", "PAYER_CAP_REACHED"]
		]);
	});

	test("counters are kept without caps (a cap set mid-month counts the month's spend so far)", () => {
		const c = spendCounters({ payerId: ORG, memberId: "u1", keyId: null });
		expect(c.map(x => [x.counter, x.cap])).toEqual([
			[`member:${ORG}:u1`, null],
			[`payer:${ORG}`, null]
		]);
	});

	test("a user paying for itself has no member counter; a key still has its own", () => {
		expect(spendCounters({ payerId: "u1", memberId: "u1", keyId: "k1", caps: { member: 5 } })).toEqual([
			expect.objectContaining({ counter: "key:k1", cap: null }),
			expect.objectContaining({ counter: "payer:u1", cap: null })
		]);
	});

	test("a cap of 0 refuses everything that costs; a negative or fractional cap is a bug", () => {
		const c = spendCounters({ payerId: ORG, memberId: "u1", caps: { member: 0 } });
		expect(capRefusal(c, new Map(), 1n)?.code).toBe(CAP_CODES.member);
		expect(capRefusal(c, new Map(), 0n)).toBeNull();
		expect(() => spendCounters({ payerId: ORG, caps: { payer: -1 } })).toThrow(RangeError);
		expect(() => spendCounters({ payerId: ORG, caps: { payer: 1.5 } })).toThrow(RangeError);
	});
});

describe("capRefusal", () => {
	const c = spendCounters({ payerId: ORG, memberId: "u1", keyId: "k1", caps: { member: 100, key: 50, payer: 1000 } });
	const spent = (m: number, k: number, p: number) =>
		new Map([
			[`member:${ORG}:u1`, BigInt(m)],
			["key:k1", BigInt(k)],
			[`payer:${ORG}`, BigInt(p)]
		]);

	test("exactly reaching a cap is allowed; one credit more is refused", () => {
		expect(capRefusal(c, spent(90, 0, 0), 10n)).toBeNull();
		expect(capRefusal(c, spent(91, 0, 0), 10n)?.code).toBe("MEMBER_CAP_REACHED");
	});

	test("the first counter in order that would pass its cap names the refusal", () => {
		expect(capRefusal(c, spent(100, 50, 1000), 1n)?.code).toBe("MEMBER_CAP_REACHED");
		expect(capRefusal(c, spent(0, 50, 1000), 1n)?.code).toBe("KEY_CAP_REACHED");
		expect(capRefusal(c, spent(0, 0, 1000), 1n)?.code).toBe("PAYER_CAP_REACHED");
	});

	test("N parallel holds against a cap covering k of them: exactly k pass when applied one after another", () => {
		// The SQL serialises holds on the counter row; this is the model of that order.
		const one = spendCounters({ payerId: ORG, memberId: "u1", caps: { member: 10 * 7 } });
		const counters = new Map<string, bigint>();
		let passed = 0;
		for (let i = 0; i < 50; i++) {
			if (capRefusal(one, counters, 7n)) continue;
			for (const x of one) counters.set(x.counter, (counters.get(x.counter) ?? 0n) + 7n);
			passed++;
		}
		expect(passed).toBe(10);
	});
});

describe("months and give-backs", () => {
	test("the counters' month is the calendar month in UTC", () => {
		expect(capMonth(new Date("2026-12-31T23:59:59.999Z"))).toBe("2026-12-01");
		expect(capMonth(new Date("2027-01-01T00:00:00.000Z"))).toBe("2027-01-01");
		// 00:30 on 1 January in UTC+1 is still December in UTC.
		expect(capMonth(new Date("2027-01-01T00:30:00+01:00"))).toBe("2026-12-01");
	});

	test("a settlement gives back what it did not charge; a release (charged 0) the whole hold", () => {
		expect(settledGiveBack(100n, 40n)).toBe(60n);
		expect(settledGiveBack(100n, 100n)).toBe(0n);
		expect(settledGiveBack(100n, 0n)).toBe(100n);
		expect(() => settledGiveBack(100n, 101n)).toThrow(RangeError);
	});
});
