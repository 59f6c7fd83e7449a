/**
 * Edge headers on every route class: public, authenticated, token, error, docs and SSE. HSTS only
 * when PUBLIC_URL is https; Cache-Control: no-store on token and authenticated answers; RateLimit
 * fields of the policies a request spent.
 */
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";

let db: TestDatabase;
let node: Awaited<ReturnType<typeof startTestNode>>;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users", "payments", "tasks"],
		env: { PUBLIC_URL: "https://api.example.test", AUTH_SESSION_CHECK: "true" }
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const get = (path: string, init: RequestInit = {}) => fetch(`${node.baseUrl}${path}`, init);

function expectBaseline(res: Response, csp: RegExp = /^default-src 'none'; frame-ancestors 'none'/) {
	expect(res.headers.get("x-content-type-options")).toBe("nosniff");
	expect(res.headers.get("referrer-policy")).toBe("no-referrer");
	expect(res.headers.get("content-security-policy")).toMatch(csp);
	expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
	expect(res.headers.get("strict-transport-security")).toBe("max-age=31536000; includeSubDomains");
}

test("public: baseline headers, the anonymous rate-limit policy, cacheable", async () => {
	const res = await get("/api/v1/billing/prices");
	expect(res.status).toBe(200);
	expectBaseline(res);
	expect(res.headers.get("cache-control")).toBeNull();
	expect(res.headers.get("ratelimit-policy")).toMatch(/^"ip";q=\d+;w=60$/);
	expect(res.headers.get("ratelimit")).toMatch(/^"ip";r=\d+;t=\d+$/);
});

test("token and authenticated answers are never stored; the per-user policy applies", async () => {
	const reg = await get("/api/v1/auth/register", {
		method: "POST",
		headers: { "content-type": "application/json" },
		body: JSON.stringify({ email: `edge_${Date.now()}@example.com`, password: "correct horse battery staple" })
	});
	expect(reg.status).toBe(201);
	expectBaseline(reg);
	expect(reg.headers.get("cache-control")).toBe("no-store");
	const { accessToken } = (await reg.json()) as { accessToken: string };

	const me = await get("/api/v1/users/me", { headers: { authorization: `Bearer ${accessToken}` } });
	expect(me.status).toBe(200);
	expectBaseline(me);
	expect(me.headers.get("cache-control")).toBe("no-store");
	expect(me.headers.get("ratelimit-policy")).toMatch(/^"user";q=\d+;w=60$/);

	// SSE: authenticated, so no-store (no-transform keeps proxies from buffering it).
	const sse = await get(`/api/v1/tasks/00000000-0000-4000-8000-000000000000/events`, {
		headers: { authorization: `Bearer ${accessToken}` }
	});
	expect(sse.status).toBe(404); // not this user's task: the stream's error answer carries the headers too
	expectBaseline(sse);
	expect(sse.headers.get("cache-control")).toBe("no-store");
});

test("errors: a 401 and an unknown route carry the baseline", async () => {
	const unauth = await get("/api/v1/users/me");
	expect(unauth.status).toBe(401);
	expectBaseline(unauth);
	const bad = await get("/api/v1/users/me", { headers: { authorization: "Bearer not-a-token-at-all" } });
	expect(bad.status).toBe(401);
	expect(bad.headers.get("cache-control")).toBe("no-store");
	const missing = await get("/api/v1/no-such-route");
	expect(missing.status).toBe(404);
	expectBaseline(missing);
});

test("docs: the Swagger UI page may load its own files only and is never framed", async () => {
	const page = await get("/api/docs");
	expect(page.status).toBe(200);
	expectBaseline(page, /^default-src 'self'/);
	const asset = await get("/api/docs/init.js");
	expectBaseline(asset, /^default-src 'self'/);
	const doc = await get("/api/openapi.json");
	expectBaseline(doc);
});

test("a rate-limited answer says which policy ran out", async () => {
	let last: Response | undefined;
	for (let i = 0; i < 200 && last?.status !== 429; i++) last = await get("/api/v1/auth/siwe/nonce");
	expect(last?.status).toBe(429);
	expect(last!.headers.get("retry-after")).toMatch(/^\d+$/);
	expect(last!.headers.get("ratelimit")).toMatch(/r=0;t=\d+/);
});
