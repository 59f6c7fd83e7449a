import { confirmationsOf, judgePayment, safeBlock } from "../../../src/payments/chain-rules";
import { creditsToWei, boostFeeCredits, findPack, findPlan, priceList, PLANS } from "../../../src/payments/prices";

const expected = {
	router: "0x00000000000000000000000000000000000000aa",
	token: "0x00000000000000000000000000000000000000bb",
	treasury: "0x00000000000000000000000000000000000000cc"
};
const log = {
	address: expected.router,
	logIndex: 1,
	invoiceId: "0x01",
	payer: "0x00000000000000000000000000000000000000dd",
	token: expected.token,
	amountWei: 10n,
	treasury: expected.treasury
};
const invoice = { id: "0x01", userId: "alice", amountWei: 10n, expiresAt: new Date("2030-01-01T00:00:00Z") };
const now = new Date("2029-01-01T00:00:00Z");

describe("judgePayment", () => {
	test("accepts a matching payment (addresses compared case-insensitively)", () => {
		expect(
			judgePayment(
				{ ...log, token: expected.token.toUpperCase().replace("0X", "0x") },
				invoice,
				"alice",
				expected,
				now
			)
		).toEqual({ ok: true });
	});
	test.each([
		["no invoice", log, null, "alice", "INVOICE_NOT_FOUND", 404],
		["someone else's invoice", log, invoice, "bob", "INVOICE_NOT_FOUND", 404],
		[
			"wrong token",
			{ ...log, token: "0x00000000000000000000000000000000000000ee" },
			invoice,
			"alice",
			"WRONG_TOKEN",
			422
		],
		[
			"wrong recipient",
			{ ...log, treasury: "0x00000000000000000000000000000000000000ee" },
			invoice,
			"alice",
			"WRONG_RECIPIENT",
			422
		],
		[
			"another contract",
			{ ...log, address: "0x00000000000000000000000000000000000000ee" },
			invoice,
			"alice",
			"WRONG_CONTRACT",
			422
		],
		["underpaid", { ...log, amountWei: 9n }, invoice, "alice", "AMOUNT_MISMATCH", 422],
		["overpaid", { ...log, amountWei: 11n }, invoice, "alice", "AMOUNT_MISMATCH", 422]
	])("rejects %s", (_name, l, inv, claimant, code, status) => {
		expect(judgePayment(l, inv, claimant as string, expected, now)).toMatchObject({ ok: false, code, status });
	});
	test("rejects a payment mined after the invoice expired", () => {
		expect(judgePayment(log, invoice, "alice", expected, new Date("2031-01-01T00:00:00Z"))).toMatchObject({
			ok: false,
			code: "INVOICE_EXPIRED"
		});
	});
});

describe("confirmations", () => {
	test("a just-mined block has one confirmation", () => {
		expect(confirmationsOf(100, 100)).toBe(1);
		expect(confirmationsOf(102, 100)).toBe(3);
		expect(confirmationsOf(99, 100)).toBe(0);
		expect(safeBlock(102, 3)).toBe(100);
		expect(safeBlock(1, 3)).toBe(-1);
	});
});

describe("prices", () => {
	test("invoice amounts round up to whole wei", () => {
		expect(creditsToWei(1000n, 1000)).toBe(10n ** 18n);
		expect(creditsToWei(1n, 3)).toBe(333_333_333_333_333_334n);
		expect(() => creditsToWei(0n, 1000)).toThrow(RangeError);
	});
	test("boost fees per started second, bounded by the purchasable maximum", () => {
		expect(boostFeeCredits(0)).toBe(0n);
		expect(boostFeeCredits(1)).toBe(10n);
		expect(boostFeeCredits(60_000)).toBe(600n);
		expect(() => boostFeeCredits(60_001)).toThrow(RangeError);
		expect(() => boostFeeCredits(1.5)).toThrow(RangeError);
	});
	test("plans come from the tier table; enterprise is by contract", () => {
		expect(PLANS.map(p => [p.id, p.priceCents, p.priceUnit])).toEqual([
			["pro", 2000, "account"],
			["team", 5000, "seat"]
		]);
		expect(findPlan("enterprise")).toBeNull();
		expect(findPack("starter")).toMatchObject({ credits: 10_000n, priceCents: 1000 });
	});
	test("the price list serialises every bigint", () => {
		const list = priceList({ creditsPerForge: 1000, currency: "usd" });
		expect(() => JSON.stringify(list)).not.toThrow();
		expect(list.tiers.map(t => t.name)).toEqual(["free", "pro", "team", "enterprise"]);
		expect(list.models.length).toBeGreaterThan(0);
	});
});
