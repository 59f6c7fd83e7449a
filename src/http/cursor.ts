/**
 * The one list cursor of the API. Every paginated list (`?limit=&cursor=`, answering `nextCursor`)
 * encodes the sort key of its last row as `c1.` + base64url(JSON array of the key's parts), so all
 * cursors look alike and a bad one gets the same 422 everywhere. The parts are typed by the list
 * (`"int"` a safe non-negative integer, `"uuid"`, `"time"` an ISO-8601 UTC instant, `"text"`); a cursor
 * whose parts do not match is "not a cursor from this list". `nextCursor` is null on the last page,
 * and a list only answers a cursor when a further row exists (lists fetch `limit + 1` rows).
 */
import { Unprocessable } from "../errors";
import { UUID_PATTERN } from "../kit/uuid";

const PREFIX = "c1.";
/** ISO-8601 UTC instants as `Date.toISOString()` writes them, to the microsecond at most. */
const INSTANT = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.\d{1,6})?Z$/;
const EARLIEST = Date.parse("0001-01-01T00:00:00Z");

/**
 * An instant on a real calendar day and clock time that PostgreSQL's timestamptz takes: no
 * 31 February, no 24:00, no year 0 (a cast of those would fail as a 500, not a 422).
 */
function isInstant(v: string): boolean {
	const m = INSTANT.exec(v);
	if (!m) return false;
	const ms = Date.parse(v);
	return ms >= EARLIEST && new Date(ms).toISOString().slice(0, 19) === m[1];
}

export type CursorPart = "int" | "uuid" | "time" | "text";
type PartValue<P extends CursorPart> = P extends "int" ? number : string;
export type CursorValues<S extends readonly CursorPart[]> = { [K in keyof S]: PartValue<S[K]> };

/** The cursor for a row whose sort key is `parts` (numbers, uuids, ISO instants or text). */
export function encodeCursor(parts: readonly (string | number | Date)[]): string {
	const json = JSON.stringify(parts.map(p => (p instanceof Date ? p.toISOString() : p)));
	return PREFIX + Buffer.from(json, "utf8").toString("base64url");
}

function partOk(kind: CursorPart, v: unknown): boolean {
	switch (kind) {
		case "int":
			return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
		case "uuid":
			return typeof v === "string" && UUID_PATTERN.test(v);
		case "time":
			return typeof v === "string" && isInstant(v);
		case "text":
			return typeof v === "string" && v.length <= 1024;
	}
}

/** The key parts of `cursor` for a list whose key has the shape `shape`, or null when it is not one. */
export function parseCursor<const S extends readonly CursorPart[]>(cursor: string, shape: S): CursorValues<S> | null {
	if (!cursor.startsWith(PREFIX) || cursor.length > 2048) return null;
	let parts: unknown;
	try {
		parts = JSON.parse(Buffer.from(cursor.slice(PREFIX.length), "base64url").toString("utf8"));
	} catch {
		return null;
	}
	if (!Array.isArray(parts) || parts.length !== shape.length) return null;
	for (let i = 0; i < shape.length; i++) if (!partOk(shape[i], parts[i])) return null;
	return parts as CursorValues<S>;
}

/**
 * The key parts of an optional `cursor` param: undefined when absent, else the parsed parts, or a 422
 * `VALIDATION_ERROR` on the `cursor` field (the same body on every list).
 */
export function readCursor<const S extends readonly CursorPart[]>(
	cursor: string | undefined,
	shape: S
): CursorValues<S> | undefined {
	if (cursor === undefined) return undefined;
	const parts = parseCursor(cursor, shape);
	if (parts === null)
		throw Unprocessable("Invalid cursor", [
			{ field: "cursor", message: "not a cursor from this list", type: "cursor" }
		]);
	return parts;
}

/**
 * One page from `rows` fetched with `limit + 1`: the first `limit` rows, and the cursor of the last of
 * them when a further row exists (never a cursor to an empty page).
 */
export function pageOf<R>(
	rows: readonly R[],
	limit: number,
	keyOf: (row: R) => readonly (string | number | Date)[]
): { items: R[]; nextCursor: string | null } {
	const items = rows.slice(0, limit);
	const more = rows.length > limit && items.length > 0;
	return { items, nextCursor: more ? encodeCursor(keyOf(items[items.length - 1])) : null };
}
