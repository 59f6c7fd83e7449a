import {
	allocate,
	holdAmount,
	refundClawback,
	settlementCharge,
	spendOrder,
	splitAllocations
} from "../../../src/payments/ledger-rules";

const lot = (id: string, remaining: bigint, priority: number, expiresAt: string | null = null) => ({
	id,
	remaining,
	priority,
	expiresAt: expiresAt ? new Date(expiresAt) : null
});

describe("spendOrder", () => {
	test("promotional before bought, soonest expiry first, never-expiring last, then oldest", () => {
		const lots = [
			lot("5", 1n, 1),
			lot("4", 1n, 0, "2030-01-01T00:00:00Z"),
			lot("3", 1n, 0, "2029-01-01T00:00:00Z"),
			lot("2", 1n, 1),
			lot("1", 1n, 0)
		];
		expect(spendOrder(lots).map(l => l.id)).toEqual(["3", "4", "1", "2", "5"]);
	});

	test("compares ids as numbers, not strings", () => {
		expect(spendOrder([lot("10", 1n, 1), lot("9", 1n, 1)]).map(l => l.id)).toEqual(["9", "10"]);
	});
});

describe("allocate", () => {
	test("takes from lots in order and reports the shortfall", () => {
		const lots = [lot("1", 5n, 0), lot("2", 0n, 0), lot("3", 10n, 1)];
		expect(allocate(lots, 7n)).toEqual({
			allocations: [
				{ lotId: "1", amount: 5n },
				{ lotId: "3", amount: 2n }
			],
			shortfall: 0n
		});
		expect(allocate(lots, 20n)).toEqual({
			allocations: [
				{ lotId: "1", amount: 5n },
				{ lotId: "3", amount: 10n }
			],
			shortfall: 5n
		});
		expect(allocate(lots, 0n)).toEqual({ allocations: [], shortfall: 0n });
		expect(() => allocate(lots, -1n)).toThrow(RangeError);
	});
});

describe("splitAllocations", () => {
	const allocs = [
		{ lotId: "promo", amount: 5n },
		{ lotId: "paid", amount: 2n }
	];
	test("the charge consumes in spend order; the tail goes back", () => {
		expect(splitAllocations(allocs, 3n)).toEqual({
			consumed: [{ lotId: "promo", amount: 3n }],
			returned: [
				{ lotId: "promo", amount: 2n },
				{ lotId: "paid", amount: 2n }
			]
		});
		expect(splitAllocations(allocs, 6n)).toEqual({
			consumed: [
				{ lotId: "promo", amount: 5n },
				{ lotId: "paid", amount: 1n }
			],
			returned: [{ lotId: "paid", amount: 1n }]
		});
		expect(splitAllocations(allocs, 0n).returned).toEqual(allocs);
		expect(splitAllocations(allocs, 7n).returned).toEqual([]);
	});
	test("refuses a charge larger than the hold", () => {
		expect(() => splitAllocations(allocs, 8n)).toThrow(RangeError);
	});
});

describe("hold and settlement amounts", () => {
	test("the hold is the discounted worst case plus the discounted boost fee", () => {
		expect(holdAmount(1000n, 250, 0n)).toEqual({ amount: 975n, boostFee: 0n });
		expect(holdAmount(1000n, 250, 150n)).toEqual({ amount: 975n + 147n, boostFee: 147n });
		expect(holdAmount(0n, 0, 0n)).toEqual({ amount: 0n, boostFee: 0n });
	});
	test("the charge rounds up, adds the boost fee and is capped at the hold", () => {
		expect(settlementCharge(975n, 401n, 250, 0n)).toBe(391n);
		expect(settlementCharge(100n, 90n, 0, 20n)).toBe(100n);
		expect(settlementCharge(100n, 0n, 0, 0n)).toBe(0n);
		expect(() => settlementCharge(100n, -1n, 0, 0n)).toThrow(RangeError);
	});
});

describe("refundClawback", () => {
	test("claws back the refunded share, rounded down, minus what was already taken", () => {
		expect(refundClawback(10_000n, 1000n, 1000n, 0n)).toBe(10_000n);
		expect(refundClawback(10_000n, 1000n, 333n, 0n)).toBe(3_330n);
		expect(refundClawback(10_000n, 1000n, 500n, 3_330n)).toBe(1_670n);
		expect(refundClawback(52_500n, 5000n, 1n, 0n)).toBe(10n);
	});
	test("replays and reordered (smaller) cumulative amounts claw back nothing more", () => {
		expect(refundClawback(10_000n, 1000n, 500n, 5_000n)).toBe(0n);
		expect(refundClawback(10_000n, 1000n, 300n, 5_000n)).toBe(0n);
	});
	test("over-refunds are capped at the purchase", () => {
		expect(refundClawback(10_000n, 1000n, 5000n, 0n)).toBe(10_000n);
	});
});
