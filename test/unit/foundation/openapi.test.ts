import { buildOpenApi, fvRuleToJsonSchema } from "../../../src/http/openapi";

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
					auth: "required",
					summary: "One",
					tag: "things"
				},
				{
					method: "POST",
					path: "/things",
					action: "things.create",
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
			{ name: "id", in: "path", required: true, schema: { type: "string" } },
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
			{ name: "Idempotency-Key", in: "header", required: false, schema: { type: "string", maxLength: 128 } }
		]);
		expect(post.security).toBeUndefined();
	});
});
