/**
 * Response schemas of the REST contract: TypeBox builders, so one declaration is both the JSON Schema
 * the OpenAPI document publishes (and the tests validate responses against) and the TypeScript type
 * (`Static<typeof X>`) the action's answer is written against. A route declares its success body as
 * `response: X` (services/api/routes.ts); a schema given an `$id` becomes a named component.
 *
 * The builders below carry the bounds the contract promises (strings with a maximum length or a
 * format, integers with a range, arrays with a maximum size).
 */
import { Type, type TSchema, type Static, type TObject, type TProperties, type ObjectOptions } from "@sinclair/typebox";

export { Type, type Static, type TSchema };

/** A string of at most `max` characters. */
export const Str = (max = 1024, opts: { description?: string; minLength?: number; pattern?: string } = {}) =>
	Type.String({ maxLength: max, ...opts });
export const Uuid = (description?: string) =>
	Type.String({ format: "uuid", maxLength: 36, ...(description ? { description } : {}) });
export const DateTime = (description?: string) =>
	Type.String({ format: "date-time", maxLength: 40, ...(description ? { description } : {}) });
export const Url = () => Type.String({ format: "uri", maxLength: 4096 });
export const Email = () => Type.String({ format: "email", maxLength: 320 });
/** 0x-prefixed, 20-byte address. */
export const Address = () => Type.String({ pattern: "^0x[0-9a-fA-F]{40}$", maxLength: 42 });
/** A non-negative integer (credits, counts) below 2^53. */
export const Count = (description?: string) =>
	Type.Integer({
		format: "int64",
		minimum: 0,
		maximum: Number.MAX_SAFE_INTEGER,
		...(description ? { description } : {})
	});
/** A signed integer (ledger amounts). */
export const Int = (min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER) =>
	Type.Integer({ format: "int64", minimum: min, maximum: max });
export const Num = (min = -1e15, max = 1e15) => Type.Number({ minimum: min, maximum: max });
/** A decimal integer too large for JSON numbers (token amounts in wei), as a string. */
export const BigIntString = () => Type.String({ pattern: "^-?[0-9]+$", maxLength: 80 });
export const Nullable = <T extends TSchema>(s: T) => Type.Union([s, Type.Null()]);
export const List = <T extends TSchema>(s: T, max = 1000) => Type.Array(s, { maxItems: max });
export const Enum = <T extends string>(values: readonly T[]) =>
	Type.Unsafe<T>({ type: "string", enum: [...values], maxLength: Math.max(...values.map(v => v.length)) });
/** A JSON value whose shape the contract leaves open (task input/result, provider usage). */
export const AnyJson = (description?: string) => Type.Unknown(description ? { description } : {});
/** A named component (`#/components/schemas/<id>` in the document). */
export const Named = <T extends TProperties>(id: string, props: T, opts: ObjectOptions = {}): TObject<T> =>
	Type.Object(props, { $id: id, ...opts });
/** `{ items: [...], nextCursor }`: the cursor-paginated list shape. */
export const Page = <T extends TSchema>(item: T, max = 200) =>
	Type.Object({ items: List(item, max), nextCursor: Nullable(Str(512)) });

/** The error body (`{ error: { code, message, details? }, requestId }`). */
export const ErrorBody = Type.Object(
	{
		error: Type.Object({
			code: Type.String({ pattern: "^[A-Z][A-Z0-9_]*$", maxLength: 64 }),
			message: Str(2000),
			details: Type.Optional(Type.Unknown())
		}),
		requestId: Str(128)
	},
	{ $id: "Error" }
);
export type ErrorBody = Static<typeof ErrorBody>;
