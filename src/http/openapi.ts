/**
 * OpenAPI 3.1 document generated from the gateway's route declarations and the fastest-validator
 * param schemas of the actions they call (read from Moleculer's registry, so remote services count).
 */
import type { RouteSpec } from "./route-spec";

type Json = Record<string, unknown>;
type FvRule = string | Json | Json[];

/** Converts one fastest-validator rule to a JSON Schema (the common subset). */
export function fvRuleToJsonSchema(rule: FvRule): { schema: Json; optional: boolean } {
	if (Array.isArray(rule)) {
		const parts = rule.map(r => fvRuleToJsonSchema(r));
		return { schema: { anyOf: parts.map(p => p.schema) }, optional: parts.every(p => p.optional) };
	}
	let r: Json;
	if (typeof rule === "string") {
		const [type, ...mods] = rule.split("|");
		r = { type };
		for (const m of mods) {
			const [k, v] = m.split(":");
			r[k] =
				v === undefined ? true : v === "true" ? true : v === "false" ? false : isNaN(Number(v)) ? v : Number(v);
		}
	} else r = rule;
	const optional = r.optional === true || r.default !== undefined;
	const s: Json = {};
	if (typeof r.description === "string") s.description = r.description;
	if (r.default !== undefined && typeof r.default !== "function") s.default = r.default;
	switch (r.type) {
		case "string":
			s.type = "string";
			if (r.min != null) s.minLength = r.min;
			if (r.max != null) s.maxLength = r.max;
			if (r.length != null) s.minLength = s.maxLength = r.length;
			if (r.pattern) s.pattern = String(r.pattern instanceof RegExp ? r.pattern.source : r.pattern);
			if (Array.isArray(r.enum)) s.enum = r.enum;
			if (r.numeric) s.pattern = "^[0-9]+$";
			if (r.hex) s.pattern = "^[0-9a-fA-F]*$";
			break;
		case "email":
			Object.assign(s, { type: "string", format: "email" }, r.max != null ? { maxLength: r.max } : {});
			break;
		case "uuid":
			Object.assign(s, { type: "string", format: "uuid" });
			break;
		case "url":
			Object.assign(s, { type: "string", format: "uri" });
			break;
		case "date":
			Object.assign(s, { type: "string", format: "date-time" });
			break;
		case "number":
			s.type = r.integer ? "integer" : "number";
			if (r.min != null) s.minimum = r.min;
			if (r.max != null) s.maximum = r.max;
			if (r.positive) s.exclusiveMinimum = 0;
			break;
		case "boolean":
			s.type = "boolean";
			break;
		case "enum":
			s.enum = r.values;
			break;
		case "equal":
			s.const = r.value;
			break;
		case "array": {
			s.type = "array";
			if (r.items) s.items = fvRuleToJsonSchema(r.items as FvRule).schema;
			if (r.min != null) s.minItems = r.min;
			if (r.max != null) s.maxItems = r.max;
			break;
		}
		case "object": {
			s.type = "object";
			if (r.props) Object.assign(s, objectSchema(r.props as Json));
			if (r.strict === "remove" || r.strict === true) s.additionalProperties = false;
			break;
		}
		case "record":
			s.type = "object";
			if (r.value) s.additionalProperties = fvRuleToJsonSchema(r.value as FvRule).schema;
			break;
		case "multi":
			if (Array.isArray(r.rules)) s.anyOf = (r.rules as FvRule[]).map(x => fvRuleToJsonSchema(x).schema);
			break;
		default:
			break; // "any", "custom", ...: no constraint
	}
	return { schema: s, optional };
}

export function objectSchema(params: Json): { properties: Json; required?: string[] } {
	const properties: Json = {};
	const required: string[] = [];
	for (const [key, rule] of Object.entries(params)) {
		if (key.startsWith("$$")) continue;
		const { schema, optional } = fvRuleToJsonSchema(rule as FvRule);
		properties[key] = schema;
		if (!optional) required.push(key);
	}
	return required.length ? { properties, required } : { properties };
}

const ERROR_SCHEMA = {
	type: "object",
	required: ["error", "requestId"],
	properties: {
		error: {
			type: "object",
			required: ["code", "message"],
			properties: { code: { type: "string" }, message: { type: "string" }, details: {} }
		},
		requestId: { type: "string" }
	}
};

export function buildOpenApi(opts: {
	routes: RouteSpec[];
	actionParams: (action: string) => Json | undefined;
	basePath: string;
	version: string;
	serverUrl: string;
}): Json {
	const paths: Record<string, Json> = {};
	for (const r of opts.routes) {
		// `:name` parameters and path-to-regexp 8 wildcards (`*name`, which match across slashes).
		const oaPath = (opts.basePath + r.path).replace(/[:*]([A-Za-z0-9_]+)(\*)?/g, "{$1}");
		const pathParams = [...r.path.matchAll(/[:*]([A-Za-z0-9_]+)/g)].map(m => m[1]);
		const params = opts.actionParams(r.action) ?? {};
		const bodyParams: Json = {};
		const queryParams: Array<[string, Json, boolean]> = [];
		for (const [k, rule] of Object.entries(params)) {
			if (k.startsWith("$$") || pathParams.includes(k)) continue;
			if (r.method === "GET" || r.method === "DELETE") {
				const c = fvRuleToJsonSchema(rule as FvRule);
				queryParams.push([k, c.schema, c.optional]);
			} else bodyParams[k] = rule;
		}
		const op: Json = {
			summary: r.summary,
			tags: [r.tag],
			operationId: `${r.method.toLowerCase()}${r.path.replace(/[/:{}-]+(\w)?/g, (_, c: string) => (c ? c.toUpperCase() : ""))}`,
			parameters: [
				...pathParams.map(name => ({ name, in: "path", required: true, schema: { type: "string" } })),
				...queryParams.map(([name, schema, optional]) => ({ name, in: "query", required: !optional, schema })),
				...(r.idempotent
					? [
							{
								name: "Idempotency-Key",
								in: "header",
								required: false,
								schema: { type: "string", maxLength: 128 }
							}
						]
					: [])
			],
			responses: {
				[String(r.status ?? 200)]: {
					description: "Success",
					...(r.stream ? { content: { "text/event-stream": {} } } : {})
				},
				"4XX": {
					description: "Client error",
					content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
				},
				"503": {
					description: "A dependency is down",
					content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } }
				}
			}
		};
		if (r.auth !== "none")
			op.security =
				r.auth === "required" ? [{ bearer: [] }, { apiKey: [] }] : [{}, { bearer: [] }, { apiKey: [] }];
		if (Object.keys(bodyParams).length && r.body !== "raw")
			op.requestBody = {
				required: true,
				content: { "application/json": { schema: { type: "object", ...objectSchema(bodyParams) } } }
			};
		if (r.body === "raw")
			op.requestBody = { required: true, content: { "application/json": { schema: { type: "object" } } } };
		if (r.permissions?.length) op.description = `Roles: ${r.permissions.join(", ")}`;
		paths[oaPath] = { ...(paths[oaPath] ?? {}), [r.method.toLowerCase()]: op };
	}
	return {
		openapi: "3.1.0",
		info: {
			title: "ForgeFluid API",
			version: opts.version,
			description: "The ForgeFluid platform REST contract (v1)."
		},
		servers: [{ url: opts.serverUrl }],
		paths,
		components: {
			schemas: { Error: ERROR_SCHEMA },
			securitySchemes: {
				bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" },
				apiKey: { type: "apiKey", in: "header", name: "X-API-Key" }
			}
		}
	};
}
