/** The params of every paginated list: `limit`, and the `cursor` that src/http/cursor.ts reads (one format, one 422). */
export const PAGE_PARAMS = {
	limit: { type: "number", integer: true, min: 1, max: 100, default: 20, convert: true },
	cursor: { type: "string", optional: true, description: "nextCursor of the previous page" }
} as const;
