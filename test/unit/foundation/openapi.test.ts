import { buildOpenApi, fvRuleToJsonSchema } from "../../../src/http/openapi";
import { Type } from "../../../src/http/schema";

describe("fastest-validator → JSON Schema", () => {
	test("shorthand and object rules", () => {
		expect(fvRuleToJsonSchema("string|min:3|max:10")).toEqual({
			schema: { type: "string", minLength: 3, maxLength: 10 },
			optional: false
		});
		expect(fvRuleToJsonSchema({ type: "number", integer: true, min: 1, optional: true })).toEqual({
			schema: { type: "integer", minimum: 1 },
			optional: true
		});
		expect(fvRuleToJsonSchema({ type: "enum", values: ["a", "b"] }).schema).toEqual({ enum: ["a", "b"] });
		expect(fvRuleToJsonSchema({ type: "array", items: "email", max: 2 }).schema).toEqual({
			type: "array",
			items: { type: "string", format: "email" },
			maxItems: 2
		});
		expect(
			fvRuleToJsonSchema({ type: "object", strict: "remove", props: { a: "string", b: "boolean|optional" } })
				.schema
		).toEqual({
			type: "object",
			properties: { a: { type: "string" }, b: { type: "boolean" } },
			required: ["a"],
			additionalProperties: false
		});
	});
});

describe("buildOpenApi", () => {
	test("path params, query params for GET, JSON body for POST, security by auth mode", () => {
		const doc = buildOpenApi({
			routes: [
				{
					method: "GET",
					path: "/things/:id",
					action: "things.get",
					response: Type.Object({ id: Type.String({ maxLength: 36 }) }, { $id: "Thing" }),
					auth: "required",
					summary: "One",
					tag: "things"
				},
				{
					method: "POST",
					path: "/things",
					action: "things.create",
					response: Type.Object({ id: Type.String({ maxLength: 36 }) }, { $id: "Thing" }),
					auth: "none",
					summary: "Create",
					tag: "things",
					status: 201,
					idempotent: true
				}
			],
			actionParams: a =>
				a === "things.get" ? { id: "string", verbose: "boolean|optional" } : { name: "string|max:5" },
			basePath: "/api/v1",
			version: "1",
			serverUrl: "/"
		}) as any; // a plain JSON document, inspected field by field
		const get = doc.paths["/api/v1/things/{id}"].get;
		expect(get.parameters).toEqual([
			// A bound the action leaves open is the one a URL has anyway.
			{ name: "id", in: "path", required: true, schema: { type: "string", maxLength: 8192 } },
			{ name: "verbose", in: "query", required: false, schema: { type: "boolean" } }
		]);
		expect(get.security).toEqual([{ bearer: [] }, { apiKey: [] }]);
		const post = doc.paths["/api/v1/things"].post;
		expect(post.requestBody.content["application/json"].schema).toEqual({
			type: "object",
			properties: { name: { type: "string", maxLength: 5 } },
			required: ["name"]
		});
		expect(post.responses["201"]).toBeDefined();
		expect(post.parameters).toEqual([
			{
				name: "Idempotency-Key",
				in: "header",
				required: false,
				schema: { type: "string", minLength: 8, maxLength: 128, pattern: "^[\\x21-\\x7e]+$" }
			}
		]);
		expect(post.security).toEqual([]);
	});

	test("a route other than GET names the params it takes in the query string (e.g. ?orgId=)", () => {
		const route = (method: "POST" | "DELETE", query?: readonly string[]) => ({
			method,
			path: "/things",
			action: "things.act",
			response: Type.Object({ ok: Type.Boolean() }),
			auth: "required" as const,
			summary: "Act",
			tag: "things",
			...(query ? { query } : {})
		});
		const doc = (routes: ReturnType<typeof route>[]) =>
			buildOpenApi({
				routes,
				actionParams: () => ({ name: "string|max:5", orgId: { type: "uuid", optional: true } }),
				basePath: "/api/v1",
				version: "1",
				serverUrl: "/"
			}) as any; // a plain JSON document, inspected field by field
		const withQuery = doc([route("POST", ["orgId"]), route("DELETE", ["orgId"])]).paths["/api/v1/things"];
		for (const op of [withQuery.post, withQuery.delete])
			expect(op.parameters).toEqual([
				{ name: "orgId", in: "query", required: false, schema: expect.objectContaining({ format: "uuid" }) }
			]);
		expect(withQuery.post.requestBody.content["application/json"].schema.properties).toEqual({
			name: { type: "string", maxLength: 5 }
		});
		// Without it, every param of a POST is a body field.
		const plain = doc([route("POST")]).paths["/api/v1/things"].post;
		expect(plain.parameters).toEqual([]);
		expect(Object.keys(plain.requestBody.content["application/json"].schema.properties)).toEqual(["name", "orgId"]);
	});

	test("success bodies from the route's schema (named ones as components), errors per status, SSE events", () => {
		const Thing = Type.Object({ id: Type.String({ maxLength: 36 }) }, { $id: "Thing" });
		const doc = buildOpenApi({
			routes: [
				{
					method: "GET",
					path: "/things/:id",
					action: "things.get",
					response: Thing,
					errors: { 409: ["THING_BUSY"] },
					auth: "required",
					summary: "One",
					tag: "things"
				},
				{
					method: "GET",
					path: "/admin/things",
					action: "things.all",
					response: Type.Object({ items: Type.Array(Thing, { maxItems: 10 }) }),
					auth: "required",
					permissions: ["admin"],
					summary: "All",
					tag: "admin"
				},
				{
					method: "GET",
					path: "/things/:id/events",
					action: "things.get",
					response: Thing,
					events: { tick: Type.Object({ n: Type.Integer({ minimum: 0, maximum: 9 }) }) },
					stream: async () => undefined,
					auth: "required",
					summary: "Events",
					tag: "things"
				}
			],
			actionParams: a => (a === "things.get" ? { id: { type: "uuid" } } : {}),
			basePath: "/api/v1",
			version: "1",
			serverUrl: "/"
		}) as any; // a plain JSON document, inspected field by field
		const get = doc.paths["/api/v1/things/{id}"].get;
		expect(get.parameters[0].schema).toEqual({ type: "string", format: "uuid", maxLength: 8192 });
		expect(get.responses["200"].content["application/json"].schema).toEqual({ $ref: "#/components/schemas/Thing" });
		expect(doc.components.schemas.Thing).toEqual({
			type: "object",
			properties: { id: { type: "string", maxLength: 36 } },
			required: ["id"]
		});
		expect(Object.keys(get.responses).sort()).toEqual([
			"200",
			"400",
			"401",
			"403",
			"404",
			"408",
			"409",
			"422",
			"429",
			"431",
			"500",
			"503"
		]);
		const codeOf = (r: any) =>
			r.content["application/json"].schema.allOf?.[1].properties.error.properties.code.enum;
		expect(codeOf(get.responses["409"])).toEqual(["THING_BUSY"]);
		expect(codeOf(get.responses["401"])).toEqual(["UNAUTHORIZED", "INVALID_TOKEN", "INVALID_API_KEY"]);
		expect(codeOf(get.responses["404"])).toBeUndefined(); // the action may have codes of its own
		expect(get.responses["429"].headers["Retry-After"]).toBeDefined();
		expect(get.responses["200"].headers.RateLimit).toBeDefined();
		const admin = doc.paths["/api/v1/admin/things"].get;
		expect(admin["x-admin"]).toBe(true);
		expect(admin.security).toEqual([{ adminBearer: [] }, { adminApiKey: [] }]);
		expect(admin.responses["403"]).toBeDefined();
		const sse = doc.paths["/api/v1/things/{id}/events"].get.responses["200"].content["text/event-stream"].schema;
		expect(sse.items.oneOf.map((e: any) => e.properties.event.const)).toEqual(["tick"]);
	});
});
