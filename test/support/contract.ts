/**
 * Checks HTTP responses against the OpenAPI document (ajv, JSON Schema 2020-12 as OpenAPI 3.1 uses):
 * the operation of the request's route, the response of its status, the schema of its body. Used by
 * the integration and cluster suites' fetch hook (test/support/validate-responses.ts).
 */
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020";
import addFormats from "ajv-formats";
import { allRoutes } from "../../services/api/routes";
import type { RouteSpec } from "../../src/http/route-spec";
import { buildOpenApi } from "../../src/http/openapi";
import { compatOpenApi } from "../../src/compat/openapi";

type Json = Record<string, unknown>;
export const API_BASE = "/api/v1";

/** The document the gateway publishes, from the same route declarations (responses do not depend on params). */
export function contractDocument(routes: RouteSpec[] = allRoutes()): Json {
	return buildOpenApi({
		routes,
		actionParams: () => undefined,
		basePath: API_BASE,
		version: "test",
		serverUrl: "/",
		extra: compatOpenApi()
	});
}

function rewriteRefs(schema: unknown): unknown {
	if (Array.isArray(schema)) return schema.map(rewriteRefs);
	if (!schema || typeof schema !== "object") return schema;
	const out: Json = {};
	for (const [k, v] of Object.entries(schema as Json))
		out[k] =
			k === "$ref" && typeof v === "string"
				? v.replace("#/components/schemas/", "urn:ff:components#/$defs/")
				: rewriteRefs(v);
	return out;
}

function routeRegExp(path: string): RegExp {
	const body = path
		.split("/")
		.map(seg =>
			seg.startsWith(":") ? "[^/]+" : seg.startsWith("*") ? ".+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
		)
		.join("/");
	return new RegExp(`^${API_BASE}${body}/?$`, "i");
}

export interface ResponseCheck {
	method: string;
	path: string;
	status: number;
	contentType: string;
	/** The body's text (undefined for streams, which are not read). */
	text?: string;
}

export class ContractValidator {
	private ajv = new Ajv2020({ strict: false, allErrors: true });
	private compiled = new Map<string, ValidateFunction>();
	private routes: Array<{ spec: RouteSpec; re: RegExp; op: Json }>;

	constructor(routes: RouteSpec[] = allRoutes()) {
		addFormats(this.ajv);
		const doc = contractDocument(routes);
		const components = (doc.components as { schemas: Json }).schemas;
		this.ajv.addSchema({ $id: "urn:ff:components", $defs: rewriteRefs(components) });
		const paths = doc.paths as Record<string, Record<string, Json>>;
		this.routes = routes.map(spec => ({
			spec,
			re: routeRegExp(spec.path),
			op: paths[API_BASE + spec.path.replace(/[:*]([A-Za-z0-9_]+)/g, "{$1}")][spec.method.toLowerCase()]
		}));
		// Fixed segments before parameters: `/projects/:id/restore` must not be taken for `/projects/:id`.
		this.routes.sort((a, b) => b.spec.path.split(/[:*]/).length - a.spec.path.split(/[:*]/).length);
	}

	/** The route a request went to, or undefined when the document has none (test-only routes). */
	routeOf(method: string, path: string): RouteSpec | undefined {
		return this.match(method, path)?.spec;
	}

	private match(method: string, path: string) {
		const candidates = this.routes.filter(r => r.spec.method === method.toUpperCase() && r.re.test(path));
		// Prefer the most literal route: fewer parameter segments.
		candidates.sort(
			(a, b) => (a.spec.path.match(/[:*]/g)?.length ?? 0) - (b.spec.path.match(/[:*]/g)?.length ?? 0)
		);
		return candidates[0];
	}

	/** The problems with one response ([] when it matches the contract). */
	check(r: ResponseCheck): string[] {
		const route = this.match(r.method, r.path);
		if (!route) return [];
		const where = `${r.method} ${route.spec.path} → ${r.status}`;
		const responses = route.op.responses as Record<string, Json>;
		const declared = responses[String(r.status)];
		if (!declared)
			return [`${where}: status ${r.status} is not declared (declared: ${Object.keys(responses).join(", ")})`];
		const content = declared.content as Record<string, { schema?: unknown }> | undefined;
		if (!content) return r.text ? [`${where}: a body was sent where none is declared`] : [];
		const type = r.contentType.split(";")[0].trim().toLowerCase();
		const media = content[type] ?? content["*/*"];
		if (!media)
			return [`${where}: content type ${type || "(none)"} is not declared (${Object.keys(content).join(", ")})`];
		if (type !== "application/json" || r.text === undefined) return [];
		let body: unknown;
		try {
			body = JSON.parse(r.text);
		} catch {
			return [`${where}: the body is not JSON`];
		}
		const key = `${r.method} ${route.spec.path} ${r.status}`;
		let validate = this.compiled.get(key);
		if (!validate) {
			validate = this.ajv.compile(rewriteRefs(media.schema ?? {}) as Json);
			this.compiled.set(key, validate);
		}
		if (validate(body)) return [];
		return (validate.errors ?? [])
			.slice(0, 8)
			.map(e => `${where}: body${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`);
	}
}
