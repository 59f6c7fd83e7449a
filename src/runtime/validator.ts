/**
 * The params validator of every node: Moleculer's fastest-validator, with one policy added.
 *
 * THE RULE: `null` is a value only where a schema says `nullable: true`. An `optional` field may be
 * left out; it may not be sent as `null`.
 *
 * WHY: fastest-validator lets `null` through every `optional` rule by default, and in that mode it
 * ignores `nullable: false`. Handlers read `optional` as "absent or of this type", so a `null` reached
 * the SQL (`PATCH /admin/users/:id` with `"role": null` answered 500). Writing `nullable: false` on
 * each of the ~60 optional fields would be the same rule copied everywhere, and the next one would
 * forget it; so every schema is rewritten once, at compile time: with `considerNullAsAValue` on,
 * every rule that does not say `nullable: true` gets `nullable: false`, nested rules included.
 * A rule with a `default` and `nullable: false` replaces a `null` by its default.
 *
 * And one bound: a check returns at most MAX_VALIDATION_ERRORS errors. An array of 100,000 wrong
 * items gives 100,000 errors, each carrying the offending value, and the ValidationError crosses the
 * transporter before the gateway's error mapper caps what the client sees (src/http/errors.ts).
 */
import { Validators } from "moleculer";

type Rule = string | RuleObject | Rule[];
interface RuleObject {
	type?: string;
	nullable?: boolean;
	props?: Record<string, Rule>;
	properties?: Record<string, Rule>;
	items?: Rule;
	rules?: Rule[];
	[key: string]: unknown;
}

/** Expands a shorthand such as `"string|optional"` (fastest-validator's own parser). */
export type ShorthandParser = (shorthand: string) => RuleObject;

/** One rule with `nullable: false` wherever it does not say `nullable: true` (shorthands expanded). */
export function withNullRefused(rule: Rule, parse: ShorthandParser): Rule {
	if (typeof rule === "string") return withNullRefused(parse(rule), parse);
	if (Array.isArray(rule)) return rule.map(r => withNullRefused(r, parse));
	if (rule === null || typeof rule !== "object") return rule;
	const out: RuleObject = { ...rule };
	if (out.nullable === undefined && out.type !== "forbidden" && out.type !== "any") out.nullable = false;
	for (const key of ["props", "properties"] as const)
		if (out[key] && typeof out[key] === "object") out[key] = withNullRefusedProps(out[key]!, parse);
	if (out.items !== undefined) out.items = withNullRefused(out.items, parse);
	if (Array.isArray(out.rules)) out.rules = out.rules.map(r => withNullRefused(r, parse));
	return out;
}

/** An action's params schema (field → rule, plus `$$` options) with the policy applied to every field. */
export function withNullRefusedProps(schema: Record<string, Rule>, parse: ShorthandParser): Record<string, Rule> {
	if ((schema as { $$root?: boolean }).$$root === true) return withNullRefused(schema as RuleObject, parse) as never;
	const out: Record<string, Rule> = {};
	for (const [key, rule] of Object.entries(schema))
		out[key] = key.startsWith("$$") ? rule : withNullRefused(rule, parse);
	return out;
}

/** The validator stops counting here; the error body's `detailsTotal` is exact below it. */
export const MAX_VALIDATION_ERRORS = 1000;

type Checker = ((value: unknown, opts?: unknown) => unknown) & { async?: boolean };

function bounded(check: Checker): Checker {
	const cap = (res: unknown) =>
		Array.isArray(res) && res.length > MAX_VALIDATION_ERRORS ? res.slice(0, MAX_VALIDATION_ERRORS) : res;
	const wrapped: Checker = (value, opts) => {
		const res = check(value, opts);
		return check.async ? (res as Promise<unknown>).then(cap) : cap(res);
	};
	wrapped.async = check.async;
	return wrapped;
}

/** Moleculer's fastest-validator with the null policy; the broker's `validator` option. */
export class NullRefusingValidator extends Validators.Fastest {
	constructor(opts: ConstructorParameters<typeof Validators.Fastest>[0] = {}) {
		super({ ...opts, considerNullAsAValue: true } as ConstructorParameters<typeof Validators.Fastest>[0]);
	}

	private parseShorthand: ShorthandParser = s =>
		(
			(this as unknown as { validator: unknown }).validator as { parseShortHand(s: string): RuleObject }
		).parseShortHand(s);

	// Moleculer's params schemas are untyped records; the rewrite keeps their shape.
	// eslint-disable-next-line @typescript-eslint/no-explicit-any
	override compile(schema: Record<string, any>) {
		return bounded(super.compile(withNullRefusedProps(schema, this.parseShorthand)) as Checker) as never;
	}

	// eslint-disable-next-line @typescript-eslint/no-explicit-any
	override validate(params: Record<string, any>, schema: Record<string, any>) {
		return super.validate(params, withNullRefusedProps(schema, this.parseShorthand));
	}
}
