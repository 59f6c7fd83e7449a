/**
 * `null` is refused by every action's params wherever the schema does not say `nullable: true`
 * (src/runtime/validator.ts): checked over every action of every service, with the validator the
 * broker is configured with, so a schema added tomorrow is covered and a config that drops the
 * policy fails here.
 */
import { Validators, type ServiceSchema } from "moleculer";
import { brokerOptions } from "../../../moleculer.config";
import { loadConfig } from "../../../src/config";
import { SERVICE_MODULES } from "../../../app/services";
import { MAX_VALIDATION_ERRORS, NullRefusingValidator, withNullRefused } from "../../../src/runtime/validator";
import opsService from "../../../services/ops.service";

type Params = Record<string, unknown>;
type Checker = (p: unknown) => true | Array<{ field?: string; type?: string }>;

const validator = Validators.resolve(brokerOptions(loadConfig({})).validator as never) as unknown as {
	compile(schema: Params): Checker;
};

function actionsWithParams(): Array<{ name: string; params: Params }> {
	const schemas: ServiceSchema[] = [...Object.values(SERVICE_MODULES).map(load => load()), opsService];
	const out: Array<{ name: string; params: Params }> = [];
	// A service's actions include those of its mixins (and theirs), as Moleculer merges them.
	const actionsOf = (svc: Partial<ServiceSchema>): Array<[string, unknown]> => [
		...((svc.mixins ?? []) as Partial<ServiceSchema>[]).flatMap(actionsOf),
		...Object.entries(svc.actions ?? {})
	];
	for (const svc of schemas)
		for (const [name, action] of actionsOf(svc)) {
			const params = typeof action === "object" ? (action as { params?: Params }).params : undefined;
			if (params && typeof params === "object") out.push({ name: `${svc.name}.${name}`, params });
		}
	return out;
}

const parse = (s: string) =>
	(
		new NullRefusingValidator() as unknown as { validator: { parseShortHand(s: string): Params } }
	).validator.parseShortHand(s);

function declaresNullable(rule: unknown): boolean {
	if (typeof rule === "string") return parse(rule).nullable === true;
	if (Array.isArray(rule)) return rule.some(declaresNullable);
	return (rule as { nullable?: unknown })?.nullable === true;
}

describe("null is a value only where a schema says nullable: true", () => {
	const actions = actionsWithParams();

	test("the services declare actions with params (the walk below sees them)", () => {
		expect(actions.length).toBeGreaterThan(40);
		expect(actions.map(a => a.name)).toEqual(expect.arrayContaining(["users.adminUpdateUser", "projects.commit"]));
	});

	test("every field of every action refuses null (or takes its default) unless it declares nullable: true", () => {
		const letThrough: string[] = [];
		for (const { name, params } of actions) {
			if ((params as { $$root?: boolean }).$$root) continue;
			const check = validator.compile(params);
			for (const [field, rule] of Object.entries(params)) {
				if (field.startsWith("$$") || declaresNullable(rule)) continue;
				const value: Params = { [field]: null };
				const res = check(value);
				// A rule with a default takes the default instead of the null: the handler never sees it.
				const refused = (res !== true && res.some(e => e.field === field)) || value[field] !== null;
				if (!refused) letThrough.push(`${name}.${field}`);
			}
		}
		expect(letThrough).toEqual([]);
	});

	test("optional fields may still be left out, and declared nullable fields take null", () => {
		const check = validator.compile({
			a: { type: "string", optional: true },
			b: { type: "string", optional: true, nullable: true },
			c: "number|optional",
			d: { type: "object", optional: true, props: { e: { type: "string", optional: true } } }
		});
		expect(check({})).toBe(true);
		expect(check({ b: null, d: {} })).toBe(true);
		const fields = (v: unknown) => (check(v) as Array<{ field: string }>).map(e => e.field);
		expect(fields({ a: null })).toEqual(["a"]);
		expect(fields({ c: null })).toEqual(["c"]);
		expect(fields({ d: { e: null } })).toEqual(["d.e"]);
		expect(fields({ d: null })).toEqual(["d"]);
	});

	test("the rewrite expands shorthands, multi rules and array items", () => {
		expect(withNullRefused("string|optional", parse)).toEqual({ type: "string", optional: true, nullable: false });
		expect(withNullRefused({ type: "array", items: "string" }, parse)).toEqual({
			type: "array",
			nullable: false,
			items: { type: "string", nullable: false }
		});
		expect(withNullRefused([{ type: "number" }, { type: "string", nullable: true }], parse)).toEqual([
			{ type: "number", nullable: false },
			{ type: "string", nullable: true }
		]);
	});
});

test("a check returns at most MAX_VALIDATION_ERRORS errors (what crosses the transporter is bounded)", () => {
	const check = validator.compile({ scopes: { type: "array", items: { type: "enum", values: ["a"] } } });
	const res = check({ scopes: Array.from({ length: 5000 }, (_, i) => `x${i}`) });
	expect(Array.isArray(res) && res.length).toBe(MAX_VALIDATION_ERRORS);
	expect(check({ scopes: ["a"] })).toBe(true);
});
