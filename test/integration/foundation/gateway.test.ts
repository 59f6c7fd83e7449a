/** The gateway's contract: error shape and status for every bad-input class, auth, request ids, health, docs. */
import { createApiService } from "../../../services/api.service";
import { PROBE_ROUTES, ProbeService } from "../../support/fixtures";
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let token: string;

const api = createApiService({ routes: PROBE_ROUTES });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: [],
		extraServices: [api, ProbeService],
		env: { RATE_LIMIT_ANON_PER_MINUTE: "1000", RATE_LIMIT_PER_MINUTE: "1000", BODY_LIMIT: "2kb" }
	});
	token = bearerFor(node.config, "user-1");
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function call(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) {
	const res = await fetch(node.baseUrl + path, { method, body: init.body, headers: init.headers });
	const text = await res.text();
	let json: any; // the body is checked field by field below
	try {
		json = JSON.parse(text);
	} catch {
		json = undefined;
	}
	return { status: res.status, headers: res.headers, json, text };
}

function expectErrorShape(r: { json: any; headers: Headers; text: string }, code: string) {
	expect(r.json).toEqual({
		error: expect.objectContaining({ code, message: expect.any(String) }),
		requestId: expect.any(String)
	});
	expect(r.headers.get("x-request-id")).toBe(r.json.requestId);
	expect(r.text).not.toMatch(/at .*\.(ts|js):\d+/); // no stack traces
}

const auth = () => ({ authorization: `Bearer ${token}`, "content-type": "application/json" });

describe("gateway error contract", () => {
	test("400 malformed JSON", async () => {
		const r = await call("POST", "/api/v1/probe/echo", { body: '{"name": "x",', headers: auth() });
		expect(r.status).toBe(400);
		expectErrorShape(r as any, "MALFORMED_JSON");
	});

	test("404 unknown route and unknown method", async () => {
		const r = await call("GET", "/api/v1/does-not-exist");
		expect(r.status).toBe(404);
		expectErrorShape(r as any, "NOT_FOUND");
		const r2 = await call("DELETE", "/api/v1/probe/echo", { headers: { authorization: `Bearer ${token}` } });
		expect(r2.status).toBe(404);
	});

	test("413 oversized body", async () => {
		const r = await call("POST", "/api/v1/probe/echo", {
			body: JSON.stringify({ name: "x".repeat(5000), count: 1 }),
			headers: auth()
		});
		expect(r.status).toBe(413);
		expectErrorShape(r as any, "PAYLOAD_TOO_LARGE");
	});

	test("415 wrong content type, and non-UTF-8 charset", async () => {
		const r = await call("POST", "/api/v1/probe/echo", {
			body: "name=x",
			headers: { ...auth(), "content-type": "application/x-www-form-urlencoded" }
		});
		expect(r.status).toBe(415);
		expectErrorShape(r as any, "UNSUPPORTED_MEDIA_TYPE");
		const r2 = await call("POST", "/api/v1/probe/echo", {
			body: "{}",
			headers: { ...auth(), "content-type": "application/json; charset=latin1" }
		});
		expect(r2.status).toBe(415);
	});

	test("422 names each bad field and never echoes values", async () => {
		const r = await call("POST", "/api/v1/probe/echo", {
			body: JSON.stringify({ name: "", count: "lots", tags: [1] }),
			headers: auth()
		});
		expect(r.status).toBe(422);
		expectErrorShape(r as any, "VALIDATION_ERROR");
		const fields = r.json.error.details.map((d: { field: string }) => d.field).sort();
		expect(fields).toEqual(expect.arrayContaining(["count", "name", "tags[0]"]));
		expect(JSON.stringify(r.json)).not.toContain("lots");
	});

	test("401 without or with a bad token; 403 for the wrong role", async () => {
		const r = await call("POST", "/api/v1/probe/echo", {
			body: "{}",
			headers: { "content-type": "application/json" }
		});
		expect(r.status).toBe(401);
		expectErrorShape(r as any, "UNAUTHORIZED");
		const forged = token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");
		const r2 = await call("GET", "/api/v1/probe/whoami", { headers: { authorization: `Bearer ${forged}` } });
		expect(r2.status).toBe(401);
		expectErrorShape(r2 as any, "INVALID_TOKEN");
		const r3 = await call("GET", "/api/v1/probe/admin", { headers: { authorization: `Bearer ${token}` } });
		expect(r3.status).toBe(403);
		expectErrorShape(r3 as any, "FORBIDDEN");
		const admin = bearerFor(node.config, "admin-1", "admin");
		const r4 = await call("GET", "/api/v1/probe/admin", { headers: { authorization: `Bearer ${admin}` } });
		expect(r4.status).toBe(200);
	});

	test("a token signed by an older configured key still verifies (rotation)", async () => {
		const old = bearerFor({ ...node.config, jwt: { ...node.config.jwt, activeKid: "k0" } }, "user-rot");
		const r = await call("GET", "/api/v1/probe/whoami", { headers: { authorization: `Bearer ${old}` } });
		expect(r.status).toBe(200);
		expect(r.json.user).toBe("user-rot");
	});

	test("clients cannot set ctx.meta.user or reach internal actions", async () => {
		const r = await call("POST", "/api/v1/probe/echo", {
			body: JSON.stringify({ name: "a", count: 1, user: { id: "admin" }, meta: { user: { id: "admin" } } }),
			headers: auth()
		});
		expect(r.status).toBe(200);
		expect(r.json.user).toBe("user-1");
		const r2 = await call("GET", "/api/v1/probe/internalOnly", { headers: auth() });
		expect(r2.status).toBe(404);
		const r3 = await call("GET", "/api/v1/~node/actions");
		expect(r3.status).toBe(404);
	});

	test("500 is generic and leaks nothing", async () => {
		const r = await call("GET", "/api/v1/probe/fail");
		expect(r.status).toBe(500);
		expectErrorShape(r as any, "INTERNAL_ERROR");
		expect(r.text).not.toContain("internal detail");
	});

	test("503 when the service behind a route is down", async () => {
		const r = await call("GET", "/api/v1/probe/missing");
		expect(r.status).toBe(503);
		expectErrorShape(r as any, "SERVICE_UNAVAILABLE");
		expect(r.headers.get("retry-after")).toBeTruthy();
	});

	test("X-Request-Id: echoed when well-formed, replaced when not", async () => {
		const r = await call("GET", "/api/v1/probe/whoami", { headers: { "x-request-id": "client-req-12345" } });
		expect(r.headers.get("x-request-id")).toBe("client-req-12345");
		const r2 = await call("GET", "/api/v1/probe/whoami", { headers: { "x-request-id": "bad id with spaces" } });
		expect(r2.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
	});

	test("success status and Idempotency-Key pass-through; a malformed key is 422", async () => {
		const r = await call("POST", "/api/v1/probe/created", {
			body: '{"title":"t"}',
			headers: { "content-type": "application/json", "idempotency-key": "key-12345678" }
		});
		expect(r.status).toBe(201);
		expect(r.json).toEqual({ title: "t", idempotencyKey: "key-12345678" });
		const r2 = await call("POST", "/api/v1/probe/created", {
			body: '{"title":"t"}',
			headers: { "content-type": "application/json", "idempotency-key": "short" }
		});
		expect(r2.status).toBe(422);
		expectErrorShape(r2 as any, "VALIDATION_ERROR");
	});

	test("CORS preflight", async () => {
		const res = await fetch(node.baseUrl + "/api/v1/probe/echo", {
			method: "OPTIONS",
			headers: {
				origin: "https://app.example",
				"access-control-request-method": "POST",
				"access-control-request-headers": "authorization,content-type"
			}
		});
		expect(res.status).toBe(204);
		expect(res.headers.get("access-control-allow-origin")).toBe("*");
		expect(res.headers.get("access-control-allow-methods")).toContain("POST");
	});
});

describe("operations routes", () => {
	test("health live and ready report each dependency", async () => {
		const live = await call("GET", "/health/live");
		expect(live.status).toBe(200);
		const ready = await call("GET", "/health/ready");
		expect(ready.status).toBe(200);
		const names = ready.json.dependencies.map((d: { name: string }) => d.name).sort();
		expect(names).toEqual(expect.arrayContaining(["redis"]));
		expect(ready.json.dependencies.every((d: { ok: boolean }) => d.ok)).toBe(true);
	});

	test("metrics in Prometheus text format", async () => {
		await call("GET", "/api/v1/probe/whoami");
		const r = await call("GET", "/metrics");
		expect(r.status).toBe(200);
		expect(r.headers.get("content-type")).toContain("text/plain");
		expect(r.text).toMatch(/moleculer_request_total\{.*action="probe.whoami"/);
	});

	test("OpenAPI document lists the routes with their param schemas", async () => {
		const r = await call("GET", "/api/openapi.json");
		expect(r.status).toBe(200);
		expect(r.json.openapi).toBe("3.1.0");
		const echo = r.json.paths["/api/v1/probe/echo"].post;
		expect(echo.requestBody.content["application/json"].schema.properties.name).toEqual({
			type: "string",
			minLength: 1,
			maxLength: 20
		});
		expect(echo.requestBody.content["application/json"].schema.required).toEqual(["name", "count"]);
		expect(echo.security).toBeDefined();
		expect(r.json.paths["/api/v1/probe/whoami"].get).toBeDefined();
	});

	test("Swagger UI page and its assets are served locally", async () => {
		const page = await call("GET", "/api/docs");
		expect(page.status).toBe(200);
		expect(page.text).toContain("/api/docs/swagger-ui-bundle.js");
		expect(page.text).not.toMatch(/https?:\/\/(?!localhost)/);
		const js = await fetch(node.baseUrl + "/api/docs/swagger-ui-bundle.js");
		expect(js.status).toBe(200);
		expect((await js.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
		const traversal = await call("GET", "/api/docs/..%2Fpackage.json");
		expect(traversal.status).toBe(404);
	});
});

describe("rate limiting across gateway replicas (Redis)", () => {
	let db2: TestDatabase;
	let a: ForgeNode & { baseUrl: string };
	let b: ForgeNode & { baseUrl: string };
	beforeAll(async () => {
		db2 = await createTestDatabase();
		const shared = {
			REDIS_PREFIX: `fftest:rl:${Date.now()}:${Math.random().toString(36).slice(2)}:`,
			RATE_LIMIT_ANON_PER_MINUTE: "6"
		};
		a = await startTestNode({
			db: db2,
			services: [],
			extraServices: [createApiService({ routes: PROBE_ROUTES }), ProbeService],
			env: shared
		});
		b = await startTestNode({
			db: db2,
			services: [],
			extraServices: [createApiService({ routes: PROBE_ROUTES }), ProbeService],
			env: shared
		});
	});
	afterAll(async () => {
		await a?.stop();
		await b?.stop();
		await db2?.drop();
	});

	test("the limit holds for the sum of both replicas, with Retry-After", async () => {
		const statuses: number[] = [];
		let limited: Response | null = null;
		for (let i = 0; i < 10; i++) {
			const res = await fetch((i % 2 ? a : b).baseUrl + "/api/v1/probe/whoami");
			statuses.push(res.status);
			if (res.status === 429 && !limited) limited = res;
			else await res.arrayBuffer();
		}
		expect(statuses.filter(s => s === 200)).toHaveLength(6);
		expect(statuses.filter(s => s === 429)).toHaveLength(4);
		expect(Number(limited!.headers.get("retry-after"))).toBeGreaterThan(0);
		const body = (await limited!.json()) as { error: { code: string }; requestId: string };
		expect(body.error.code).toBe("RATE_LIMITED");
		expect(limited!.headers.get("x-request-id")).toBe(body.requestId);
	});
});

describe("failed credentials and proxies", () => {
	let db3: TestDatabase;
	let g: ForgeNode & { baseUrl: string };
	beforeAll(async () => {
		db3 = await createTestDatabase();
		g = await startTestNode({
			db: db3,
			services: [],
			extraServices: [createApiService({ routes: PROBE_ROUTES }), ProbeService],
			env: { RATE_LIMIT_ANON_PER_MINUTE: "3", TRUST_PROXY_HOPS: "1" }
		});
	});
	afterAll(async () => {
		await g?.stop();
		await db3?.drop();
	});
	const from = (ip: string, headers: Record<string, string> = {}) => ({
		headers: { "x-forwarded-for": ip, ...headers }
	});

	test("bad tokens spend the caller's anonymous budget; then even API keys are refused before any lookup", async () => {
		const statuses: number[] = [];
		for (let i = 0; i < 4; i++)
			statuses.push(
				(
					await fetch(
						g.baseUrl + "/api/v1/probe/whoami",
						from("10.0.0.1", { authorization: "Bearer not-a-valid-token-at-all" })
					)
				).status
			);
		expect(statuses).toEqual([401, 401, 401, 429]);
		// No users service runs here: a key that reached the lookup would answer 503, not 429.
		const key = await fetch(
			g.baseUrl + "/api/v1/probe/whoami",
			from("10.0.0.1", { "x-api-key": "ff_abc_0123456789abcdef0123" })
		);
		expect(key.status).toBe(429);
		expect(Number(key.headers.get("retry-after"))).toBeGreaterThan(0);
	});

	test("with one trusted proxy the client is the last X-Forwarded-For hop; spoofed hops to its left change nothing", async () => {
		const a = [];
		for (let i = 0; i < 3; i++) a.push((await fetch(g.baseUrl + "/api/v1/probe/whoami", from("10.0.0.2"))).status);
		expect(a).toEqual([200, 200, 200]);
		expect((await fetch(g.baseUrl + "/api/v1/probe/whoami", from("6.6.6.6, 10.0.0.2"))).status).toBe(429);
		expect((await fetch(g.baseUrl + "/api/v1/probe/whoami", from("10.0.0.3"))).status).toBe(200);
	});
});
