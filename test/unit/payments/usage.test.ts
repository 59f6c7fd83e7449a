import { DomainError } from "../../../src/errors";
import {
	modelKey,
	settledUsageOf,
	usageCsv,
	usageRange,
	wantsCsv,
	type UsageReport
} from "../../../src/payments/usage";

const NOW = new Date("2026-12-02T12:00:00Z");
const DAY = 86_400_000;

function rangeError(p: { from?: string; to?: string }, maxSpanDays = 366): DomainError {
	try {
		usageRange(p, NOW, maxSpanDays);
	} catch (err) {
		return err as DomainError;
	}
	throw new Error(`no error for ${JSON.stringify(p)}`);
}

describe("usageRange", () => {
	test("defaults: to is now, from 30 days before to", () => {
		expect(usageRange({}, NOW, 366)).toEqual({ from: new Date(NOW.getTime() - 30 * DAY), to: NOW });
		const to = "2026-11-15T00:00:00Z";
		expect(usageRange({ to }, NOW, 366).from).toEqual(new Date(Date.parse(to) - 30 * DAY));
	});

	test("a bare date is midnight UTC; a date-time without a zone is UTC; an offset is honoured", () => {
		expect(usageRange({ from: "2026-11-01", to: "2026-11-02" }, NOW, 366)).toEqual({
			from: new Date("2026-11-01T00:00:00Z"),
			to: new Date("2026-11-02T00:00:00Z")
		});
		expect(usageRange({ from: "2026-11-01T10:30", to: "2026-11-01T12:00:00.5+01:00" }, NOW, 366)).toEqual({
			from: new Date("2026-11-01T10:30:00Z"),
			to: new Date("2026-11-01T11:00:00.500Z")
		});
	});

	test.each([
		["yesterday"],
		["2026-13-45"],
		["2026-02-30"],
		["2026-04-31"],
		["2026-12-01T25:00:00Z"],
		["2026-12-01T23:60Z"],
		["1701388800000"],
		["2026-12-01 00:00:00"]
	])("%j is not a date: 400 INVALID_RANGE naming the field", from => {
		const e = rangeError({ from, to: "2026-12-02" });
		expect([e.status, e.code, (e.details as { field: string }).field]).toEqual([400, "INVALID_RANGE", "from"]);
	});

	test("a leap day is a day", () => {
		expect(usageRange({ from: "2028-02-29", to: "2028-03-01" }, NOW, 366).from).toEqual(
			new Date("2028-02-29T00:00:00Z")
		);
		expect(rangeError({ from: "2026-02-29", to: "2026-03-01" }).code).toBe("INVALID_RANGE");
	});

	test("from must be before to; the span is at most maxSpanDays (inclusive)", () => {
		expect(rangeError({ from: "2026-12-01", to: "2026-12-01" }).message).toMatch(/before/);
		expect(rangeError({ from: "2026-12-02", to: "2026-12-01" }).code).toBe("INVALID_RANGE");
		expect(usageRange({ from: "2026-11-01", to: "2026-12-01" }, NOW, 30).to).toEqual(new Date("2026-12-01"));
		const e = rangeError({ from: "2026-11-01", to: "2026-12-01T00:00:00.001Z" }, 30);
		expect([e.status, e.code, e.details]).toEqual([400, "INVALID_RANGE", { maxSpanDays: 30 }]);
	});
});

describe("wantsCsv", () => {
	test.each([
		[undefined, false],
		["", false],
		["application/json", false],
		["*/*", false],
		["text/csv", true],
		["TEXT/CSV; charset=utf-8", true],
		["text/csv, application/json", true],
		["application/json, text/csv;q=0.5", false],
		["application/json;q=0.4, text/csv;q=0.5", true],
		["text/csv;q=0, application/json", false],
		["text/csv;q=0", false]
	])("Accept %j -> %s", (accept, csv) => {
		expect(wantsCsv(accept)).toBe(csv);
	});
});

describe("usageCsv", () => {
	const report = (rows: UsageReport["rows"]): UsageReport => ({
		payerId: "u",
		from: "2026-11-01T00:00:00.000Z",
		to: "2026-12-01T00:00:00.000Z",
		groupBy: "project",
		rows,
		total: { tasks: 0, credits: "0", listCredits: "0", inputTokens: null, outputTokens: null }
	});

	test("a header named after the grouping, CRLF lines, unknown values empty, RFC 4180 quoting", () => {
		const csv = usageCsv(
			report([
				{ key: "plain", tasks: 2, credits: "10", listCredits: "12", inputTokens: "5", outputTokens: "0" },
				{ key: 'a "b", c', tasks: 1, credits: "1", listCredits: "1", inputTokens: null, outputTokens: null },
				{ key: null, tasks: 1, credits: "0", listCredits: "3", inputTokens: null, outputTokens: null }
			])
		);
		expect(csv).toBe(
			"project,tasks,credits,listCredits,inputTokens,outputTokens\r\n" +
				"plain,2,10,12,5,0\r\n" +
				'"a ""b"", c",1,1,1,,\r\n' +
				",1,0,3,,\r\n"
		);
	});

	test("no rows: the header alone", () => {
		expect(usageCsv(report([]))).toBe("project,tasks,credits,listCredits,inputTokens,outputTokens\r\n");
	});
});

describe("modelKey and settledUsageOf", () => {
	test("the used model wins over the asked one; a comparison's models are joined sorted", () => {
		expect(modelKey(["gpt-4o"], "dev-echo")).toBe("gpt-4o");
		expect(modelKey(["b", "a", "b"], "x")).toBe("a+b");
		expect(modelKey([], "dev-echo")).toBe("dev-echo");
		expect(modelKey(undefined, null)).toBeNull();
	});

	test("a worker's usage report gives tokens and the models it ran on; junk gives nothing", () => {
		expect(settledUsageOf({ promptTokens: 10, completionTokens: 3, byModel: { "gpt-4o": {} } })).toEqual({
			inputTokens: 10,
			outputTokens: 3,
			models: ["gpt-4o"]
		});
		expect(settledUsageOf({ promptTokens: -1, completionTokens: 1.5, byModel: {} })).toBeUndefined();
		expect(settledUsageOf(null)).toBeUndefined();
		expect(settledUsageOf("x")).toBeUndefined();
	});
});
