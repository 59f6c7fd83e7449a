/**
 * Edge headers on every route class: public, authenticated, token, error, docs and SSE. HSTS only
 * when PUBLIC_URL is https; Cache-Control: no-store on token and authenticated answers; RateLimit
 * fields of the policies a request spent.
 */
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import { api, readSse } from "../tasks/helpers";
import { signUp } from "../../support/sign-up";

let db: TestDatabase;
let node: Awaited<ReturnType<typeof startTestNode>>;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users", "payments", "tasks", "projects"],
		extraServices: [fakeAiWorker({ runMs: 300, deltas: 3 })],
		env: { PUBLIC_URL: "https://api.example.test", AUTH_SESSION_CHECK: "true" }
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const get = (path: string, init: RequestInit = {}) => fetch(`${node.baseUrl}${path}`, init);

type HeaderBag = { get(name: string): string | null };
/** node:http's incoming headers read like fetch's. */
const bag = (h: Record<string, string | string[] | undefined>): HeaderBag => ({
	get: name => {
		const v = h[name.toLowerCase()];
		return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
	}
});

function expectBaseline(res: { headers: HeaderBag }, csp: RegExp = /^default-src 'none';frame-ancestors 'none'/) {
	expect(res.headers.get("x-content-type-options")).toBe("nosniff");
	expect(res.headers.get("referrer-policy")).toBe("no-referrer");
	expect(res.headers.get("x-frame-options")).toBe("DENY");
	expect(res.headers.get("content-security-policy")).toMatch(csp);
	expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
	expect(res.headers.get("strict-transport-security")).toBe("max-age=31536000; includeSubDomains");
	expect(res.headers.get("x-powered-by")).toBeNull();
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
	const account = { email: `edge_${Date.now()}@example.com`, password: "correct horse battery staple" };
	const post = (path: string) =>
		get(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(account) });
	const reg = await post("/api/v1/auth/register");
	expect(reg.status).toBe(202);
	expectBaseline(reg);
	expect(reg.headers.get("cache-control")).toBe("no-store");
	const login = await post("/api/v1/auth/login");
	expect(login.status).toBe(200);
	expectBaseline(login);
	expect(login.headers.get("cache-control")).toBe("no-store");
	const { accessToken } = (await login.json()) as { accessToken: string };

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

test("SSE: the live stream of a running task carries the baseline and is never stored", async () => {
	// A real session (this node checks sessions), a project and credits.
	const reg = await signUp(node, `sse_${Date.now()}@example.com`, "correct horse battery staple");
	const token = reg.accessToken;
	const project = await api(node, "POST", "/projects", token, { name: "edge-sse" });
	expect(project.status).toBe(201);
	await node.broker.call("payments.grant", {
		userId: reg.userId,
		credits: 100_000,
		operator: "test",
		reason: "test credits",
		key: `grant-${reg.userId}`
	});
	const submitted = await api(node, "POST", "/tasks", token, {
		projectId: project.body.id,
		kind: "chat",
		prompt: "hi"
	});
	expect(submitted.status).toBe(202);
	const sse = await readSse(node.baseUrl, `/tasks/${submitted.body.task.id}/events`, token, {
		until: ev => ev.event === "completed"
	});
	expect(sse.status).toBe(200);
	expect(sse.headers["content-type"]).toMatch(/^text\/event-stream/);
	expect(sse.events.map(e => e.event)).toContain("completed");
	expectBaseline({ headers: bag(sse.headers) });
	expect(sse.headers["cache-control"]).toMatch(/no-store/);
	expect(sse.headers["ratelimit-policy"]).toMatch(/^"user";q=\d+;w=60$/);
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
