/**
 * OpenAPI 3.1 document generated from the gateway's route declarations and the fastest-validator
 * param schemas of the actions they call (read from Moleculer's registry, so remote services count).
 */
import type { TSchema } from "@sinclair/typebox";
import type { ErrorStatus, RouteSpec } from "./route-spec";
import { ErrorBody } from "./schema";

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

function objectSchema(params: Json): { properties: Json; required?: string[] } {
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

const ERROR_DESCRIPTIONS: Record<string, string> = {
	"400": "Bad request (malformed JSON, bad header)",
	"401": "Missing, invalid or expired credentials",
	"402": "Not enough credits",
	"403": "Signed in but not allowed",
	"404": "Not found (or not visible to the caller)",
	"408": "The request headers or body arrived too slowly",
	"409": "Conflicts with the current state",
	"413": "Request body too large",
	"415": "Body is not JSON (UTF-8)",
	"422": "Some fields are invalid",
	"429": "Rate limited; retry after Retry-After seconds",
	"431": "Request headers too large",
	"500": "Internal error (no internals are shown)",
	"503": "A dependency is down or overloaded; retry after Retry-After seconds"
};

const STRING = { type: "string" } as const;
const HEADERS = {
	"X-Request-Id": {
		description: "The request's id (echoed when the client sent a valid one)",
		schema: { ...STRING, maxLength: 128 }
	},
	RateLimit: {
		description: "Remaining quota of each policy that applies (IETF draft-ietf-httpapi-ratelimit-headers)",
		schema: { ...STRING, maxLength: 512 }
	},
	"RateLimit-Policy": {
		description: "Quota policies that apply: name, quota (q) and window in seconds (w)",
		schema: { ...STRING, maxLength: 512 }
	},
	"Access-Control-Allow-Origin": {
		description: "Present for allowed cross-origin callers (CORS_ORIGINS)",
		schema: { ...STRING, maxLength: 2048 }
	}
};
const RETRY_AFTER = {
	description: "Seconds to wait",
	schema: { type: "integer", format: "int32", minimum: 1, maximum: 86400 }
};

/**
 * Fills the bounds a request schema leaves open with the ones the gateway enforces anyway: no string,
 * array or number in a body can be larger than the body limit, none in a query string longer than a
 * URL. Integers get int64 and the safe-integer range.
 */
export function bounded(schema: unknown, maxLength: number): unknown {
	if (Array.isArray(schema)) return schema.map(s => bounded(s, maxLength));
	if (!schema || typeof schema !== "object") return schema;
	const s: Json = {};
	for (const [k, v] of Object.entries(schema as Json))
		s[k] =
			k === "properties" || k === "patternProperties"
				? Object.fromEntries(Object.entries(v as Json).map(([pk, pv]) => [pk, bounded(pv, maxLength)]))
				: typeof v === "object"
					? bounded(v, maxLength)
					: v;
	if (s.type === "string" && s.maxLength == null && s.enum == null && s.const == null) s.maxLength = maxLength;
	if (s.type === "array" && s.maxItems == null) s.maxItems = maxLength;
	if (s.type === "integer") {
		s.format ??= "int64";
		if (s.exclusiveMinimum == null) s.minimum ??= Number.MIN_SAFE_INTEGER;
		s.maximum ??= Number.MAX_SAFE_INTEGER;
	}
	return s;
}

/** Moves every schema with an `$id` into `components.schemas` and points at it (a named type for clients). */
function hoist(schema: unknown, components: Record<string, unknown>): unknown {
	if (Array.isArray(schema)) return schema.map(s => hoist(s, components));
	if (!schema || typeof schema !== "object") return schema;
	const out: Json = {};
	for (const [k, v] of Object.entries(schema as Json)) out[k] = hoist(v, components);
	if (typeof out.$id === "string") {
		const id = out.$id;
		delete out.$id;
		const known = components[id];
		if (known && JSON.stringify(known) !== JSON.stringify(out))
			throw new Error(`openapi: two different schemas are named ${id}`);
		components[id] = out;
		return { $ref: `#/components/schemas/${id}` };
	}
	return out;
}

/** The codes the gateway itself answers with, per status, for a route of this kind. */
function gatewayCodes(r: RouteSpec, hasBody: boolean): Record<string, string[]> {
	const codes: Record<string, string[]> = {
		"400": hasBody
			? ["MALFORMED_JSON", "MALFORMED_BODY", "MALFORMED_REQUEST", "BAD_REQUEST"]
			: ["MALFORMED_REQUEST", "BAD_REQUEST"],
		"408": ["REQUEST_TIMEOUT"],
		"431": ["HEADERS_TOO_LARGE"],
		"422": ["VALIDATION_ERROR"],
		"429": ["RATE_LIMITED"],
		"500": ["INTERNAL_ERROR"],
		"503": ["SERVICE_UNAVAILABLE", "UPSTREAM_TIMEOUT", "OVERLOADED"]
	};
	if (r.auth !== "none") codes["401"] = ["UNAUTHORIZED", "INVALID_TOKEN", "INVALID_API_KEY"];
	// Scopes (API keys narrower than the role), roles, per-resource rights, organisation API keys
	// outside what they may do (src/middlewares/permissions.ts).
	if (r.auth !== "none") codes["403"] = ["FORBIDDEN", "INSUFFICIENT_SCOPE", "ORG_KEY_NOT_ALLOWED"];
	if (/[:*]/.test(r.path)) codes["404"] = ["NOT_FOUND"];
	if (hasBody) {
		codes["413"] = ["PAYLOAD_TOO_LARGE"];
		codes["415"] = ["UNSUPPORTED_MEDIA_TYPE"];
	}
	return codes;
}
/** Statuses only the gateway produces: their codes are always known. */
const GATEWAY_ONLY = new Set(["401", "408", "413", "415", "431", "500"]);

function errorResponse(status: string, codes: string[] | null): Json {
	const schema = codes
		? {
				allOf: [
					{ $ref: "#/components/schemas/Error" },
					{
						type: "object",
						properties: {
							error: {
								type: "object",
								properties: { code: { type: "string", enum: [...new Set(codes)], maxLength: 64 } }
							}
						}
					}
				]
			}
		: { $ref: "#/components/schemas/Error" };
	const headers: Json = { "X-Request-Id": HEADERS["X-Request-Id"] };
	if (status.startsWith("4")) {
		headers.RateLimit = HEADERS.RateLimit;
		headers["RateLimit-Policy"] = HEADERS["RateLimit-Policy"];
	}
	if (status === "429" || status === "503") headers["Retry-After"] = RETRY_AFTER;
	headers["Access-Control-Allow-Origin"] = HEADERS["Access-Control-Allow-Origin"];
	return {
		description: ERROR_DESCRIPTIONS[status] ?? "Error",
		headers,
		content: { "application/json": { schema } }
	};
}

/** SSE: each event's `data` is JSON; the stream is documented as the list of its frames. */
function sseSchema(events: Record<string, TSchema>): Json {
	return {
		type: "array",
		maxItems: 1_000_000,
		description:
			"A text/event-stream. Each frame has `event: <name>`, `id: <version>:<seq>` and one `data:` line of JSON; the items below list the event types and their data.",
		items: {
			oneOf: Object.entries(events).map(([name, data]) => ({
				type: "object",
				title: name,
				required: ["event", "data"],
				properties: {
					event: { type: "string", const: name },
					id: { type: "string", pattern: "^[0-9]+:[0-9]+$", maxLength: 40 },
					data
				}
			}))
		}
	};
}

export function buildOpenApi(opts: {
	routes: RouteSpec[];
	actionParams: (action: string) => Json | undefined;
	basePath: string;
	version: string;
	serverUrl: string;
	/** Largest JSON body in characters (string bounds the action params leave open); default 1 MiB. */
	bodyLimitChars?: number;
	/** Routes outside basePath that document themselves (the compatible /v1: src/compat/openapi.ts). */
	extra?: { paths: Json; schemas: Record<string, unknown>; securitySchemes: Json };
}): Json {
	const bodyMax = opts.bodyLimitChars ?? 1024 * 1024;
	const QUERY_MAX = 8192;
	const components: Record<string, unknown> = {};
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
			// GET, and the params a route names in `query`: the query string. Everything else (DELETE too:
			// the gateway reads its JSON body, and a password must never ride in a URL): the body.
			if (r.method === "GET" || r.query?.includes(k)) {
				const c = fvRuleToJsonSchema(rule as FvRule);
				queryParams.push([k, bounded(c.schema, QUERY_MAX) as Json, c.optional]);
			} else bodyParams[k] = rule;
		}
		const pathParamSchema = (name: string): Json => {
			const rule = params[name];
			if (rule === undefined) return { type: "string", maxLength: QUERY_MAX };
			return bounded(fvRuleToJsonSchema(rule as FvRule).schema, QUERY_MAX) as Json;
		};
		const hasBody = r.method !== "GET" && r.method !== "DELETE";
		const known = gatewayCodes(r, hasBody);
		for (const [status, codes] of Object.entries(r.errors ?? {}))
			known[status] = [...(known[status] ?? []), ...(codes as string[])];
		const admin = !!r.permissions?.length && !r.permissions.includes("user");
		const successHeaders = {
			"X-Request-Id": HEADERS["X-Request-Id"],
			RateLimit: HEADERS.RateLimit,
			"RateLimit-Policy": HEADERS["RateLimit-Policy"],
			"Access-Control-Allow-Origin": HEADERS["Access-Control-Allow-Origin"]
		};
		const success: Json = r.stream
			? {
					description: "An event stream",
					headers: successHeaders,
					content: { "text/event-stream": { schema: sseSchema(r.events ?? {}) } }
				}
			: {
					description: "Success",
					headers: successHeaders,
					content: {
						[r.contentType ?? "application/json"]: { schema: hoist(r.response, components) },
						...Object.fromEntries(
							Object.entries(r.alsoContent ?? {}).map(([type, schema]) => [
								type,
								{ schema: hoist(schema, components) }
							])
						)
					}
				};
		const responses: Json = { [String(r.status ?? 200)]: success };
		for (const s of r.alsoStatus ?? []) responses[String(s)] = success;
		// Accept: text/event-stream answers 200 with the event stream instead.
		if (r.acceptStream) {
			const ok = responses["200"] as Json | undefined;
			responses["200"] = {
				description: ok
					? `${ok.description as string}; with Accept: text/event-stream, an event stream`
					: "An event stream (Accept: text/event-stream)",
				headers: successHeaders,
				content: {
					...((ok?.content as Json | undefined) ?? {}),
					"text/event-stream": { schema: sseSchema(r.events ?? {}) }
				}
			};
		}
		for (const status of Object.keys(known).sort())
			responses[status] = errorResponse(
				status,
				r.errors?.[Number(status) as ErrorStatus] || GATEWAY_ONLY.has(status) ? known[status] : null
			);
		const op: Json = {
			summary: r.summary,
			tags: [r.tag],
			operationId: `${r.method.toLowerCase()}${r.path.replace(/[/:{}*-]+(\w)?/g, (_, c: string) => (c ? c.toUpperCase() : ""))}`,
			parameters: [
				...pathParams.map(name => ({ name, in: "path", required: true, schema: pathParamSchema(name) })),
				...queryParams.map(([name, schema, optional]) => ({ name, in: "query", required: !optional, schema })),
				...(r.idempotent
					? [
							{
								name: "Idempotency-Key",
								in: "header",
								required: false,
								schema: { type: "string", minLength: 8, maxLength: 128, pattern: "^[\\x21-\\x7e]+$" }
							}
						]
					: [])
			],
			responses
		};
		if (r.auth === "none") op.security = [];
		else if (admin) op.security = [{ adminBearer: [] }, { adminApiKey: [] }];
		else
			op.security =
				r.auth === "required" ? [{ bearer: [] }, { apiKey: [] }] : [{}, { bearer: [] }, { apiKey: [] }];
		if (admin) op["x-admin"] = true;
		if (Object.keys(bodyParams).length && r.body !== "raw")
			op.requestBody = {
				required: r.method !== "DELETE",
				content: {
					"application/json": {
						schema: bounded({ type: "object", ...objectSchema(bodyParams) }, bodyMax)
					}
				}
			};
		if (r.body === "raw")
			op.requestBody = {
				required: true,
				content: {
					"application/json": {
						schema: { type: "object", description: "The signed payload, passed on byte for byte" }
					}
				}
			};
		if (r.permissions?.length) op.description = `Roles: ${r.permissions.join(", ")}`;
		paths[oaPath] = { ...(paths[oaPath] ?? {}), [r.method.toLowerCase()]: op };
	}
	hoist(ErrorBody, components);
	Object.assign(paths, opts.extra?.paths ?? {});
	Object.assign(components, opts.extra?.schemas ?? {});
	return {
		openapi: "3.1.0",
		info: {
			title: "ForgeFluid API",
			version: opts.version,
			description: "The ForgeFluid platform REST contract (v1).",
			license: { name: "Proprietary", identifier: "LicenseRef-ForgeFluid" }
		},
		servers: [
			{
				url: opts.serverUrl,
				description: "This deployment (production, staging or local: whichever host served the document)",
				"x-internal": false
			}
		],
		paths,
		components: {
			schemas: components,
			securitySchemes: {
				...(opts.extra?.securitySchemes ?? {}),
				bearer: {
					type: "http",
					scheme: "bearer",
					bearerFormat: "JWT",
					description:
						"A short-lived access token (JWT, HS256, signed key id in `kid`; RFC8725 best practices) from /auth/login, /auth/register, /auth/refresh or /auth/siwe/verify"
				},
				apiKey: {
					type: "apiKey",
					in: "header",
					name: "X-API-Key",
					description: "A scoped API key (`ff_<id>_<secret>`)"
				},
				adminBearer: {
					type: "http",
					scheme: "bearer",
					bearerFormat: "JWT",
					description:
						"An access token (JWT; RFC8725 best practices) of an account whose role is admin or operator (the route's Roles)"
				},
				adminApiKey: {
					type: "apiKey",
					in: "header",
					name: "X-API-Key",
					description: "An API key of an account whose role is admin or operator (the route's Roles)"
				}
			}
		}
	};
}
