import { DomainError } from "../../../src/errors";
import { encodeCursor, pageOf, parseCursor, readCursor } from "../../../src/http/cursor";

describe("the list cursor", () => {
	const id = "0b5e7f0c-54a4-4d3e-9a43-2f1f1b0e8a11";

	it("round-trips every part kind", () => {
		const at = new Date("2026-12-02T06:30:00.123Z");
		const c = encodeCursor([at, id, 42, "a/b.ts"]);
		expect(c.startsWith("c1.")).toBe(true);
		expect(parseCursor(c, ["time", "uuid", "int", "text"] as const)).toEqual([at.toISOString(), id, 42, "a/b.ts"]);
	});

	it.each([
		["no prefix", Buffer.from(JSON.stringify([1])).toString("base64url")],
		["not base64 JSON", "c1.%%%"],
		["not an array", "c1." + Buffer.from('{"a":1}').toString("base64url")],
		["wrong arity", encodeCursor([1, 2])],
		["negative int", encodeCursor([-1])],
		["fractional int", encodeCursor([1.5])],
		["string for int", encodeCursor(["1"])],
		["huge", "c1." + "A".repeat(5000)]
	])("refuses %s", (_what, cursor) => {
		expect(parseCursor(cursor, ["int"] as const)).toBeNull();
	});

	it("refuses a cursor of another list's shape", () => {
		expect(parseCursor(encodeCursor([7]), ["time", "uuid"] as const)).toBeNull();
		for (const impossible of [
			"2026-13-45T99:99:99Z",
			"2021-02-31T00:00:00Z",
			"2026-12-02T24:00:00Z",
			"0000-01-01T00:00:00Z",
			"2026-12-02T06:30:00+01:00"
		])
			expect(parseCursor(encodeCursor([impossible, id]), ["time", "uuid"] as const)).toBeNull();
		expect(
			parseCursor(encodeCursor(["2026-12-02T06:30:00.123456Z", id]), ["time", "uuid"] as const)
		).not.toBeNull();
		expect(parseCursor(encodeCursor(["2026-12-02T06:30:00Z", "not-a-uuid"]), ["time", "uuid"] as const)).toBeNull();
	});

	it("answers one 422 on the cursor field for a bad cursor, and undefined for none", () => {
		expect(readCursor(undefined, ["int"] as const)).toBeUndefined();
		expect(readCursor(encodeCursor([3]), ["int"] as const)).toEqual([3]);
		let err: unknown;
		try {
			readCursor("garbage", ["int"] as const);
		} catch (e) {
			err = e;
		}
		expect(err).toBeInstanceOf(DomainError);
		expect(err).toMatchObject({ status: 422, code: "VALIDATION_ERROR", details: [{ field: "cursor" }] });
	});

	it("pages without a cursor to an empty page", () => {
		const rows = [5, 4, 3];
		expect(pageOf(rows, 3, r => [r])).toEqual({ items: [5, 4, 3], nextCursor: null });
		const p = pageOf(rows, 2, r => [r]);
		expect(p.items).toEqual([5, 4]);
		expect(parseCursor(p.nextCursor!, ["int"] as const)).toEqual([4]);
		expect(pageOf([], 2, (r: number) => [r])).toEqual({ items: [], nextCursor: null });
	});
});
