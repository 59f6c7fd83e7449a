/**
 * Regressions of the hardening review (issue 13), through the real gateway: each test failed on the
 * code before its fix. The breaker's own test is breaker.test.ts; refresh grace is in users/accounts.
 */
import net from "node:net";
import { createTestDatabase, uniqueId, type TestDatabase } from "../../support/env";
import { api, makeUser, startTasksNode, type TestNode } from "../tasks/helpers";
import { signUp } from "../../support/sign-up";

jest.setTimeout(90_000);

let db: TestDatabase;
let node: TestNode;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTasksNode(db, [], {
		RATE_LIMIT_ANON_PER_MINUTE: "100000",
		HTTP_HEADERS_TIMEOUT_MS: "1000",
		HTTP_REQUEST_TIMEOUT_MS: "3000",
		HTTP_MAX_HEADER_BYTES: "8192"
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const PASSWORD = "correct horse battery staple";

/** A registered user's session (the users service's own tokens), optionally made admin or given a tier override. */
async function registered(opts: { admin?: boolean; tierOverride?: string } = {}) {
	const email = `${uniqueId("h")}@example.com`;
	const { userId: id } = await signUp(node, email, PASSWORD);
	if (opts.admin) await node.runtime.sequelize.query(`UPDATE users SET role = 'admin' WHERE id = $1`, { bind: [id] });
	if (opts.tierOverride)
		await node.runtime.sequelize.query(`UPDATE users SET tier_override = $2 WHERE id = $1`, {
			bind: [id, opts.tierOverride]
		});
	const login = await api(node, "POST", "/auth/login", null, { email, password: PASSWORD });
	return { id, token: login.body.accessToken as string };
}

const UUID_RE = /^[0-9a-f-]{36}$/;

function expectContractError(r: { status: number; body: unknown }, status: number, code: string) {
	expect({ status: r.status, code: (r.body as { error?: { code?: string } })?.error?.code }).toEqual({
		status,
		code
	});
	expect((r.body as { requestId?: unknown }).requestId).toEqual(expect.any(String));
}

/** Writes raw bytes (optionally in timed parts) and reads the answer until the server closes. */
function rawHttp(parts: Array<string | Buffer>, gapMs = 0): Promise<{ status: number; headers: string; body: any }> {
	return new Promise((resolve, reject) => {
		const sock = net.connect(node.port, "127.0.0.1");
		const chunks: Buffer[] = [];
		sock.on("data", c => chunks.push(c));
		sock.on("error", reject);
		sock.on("close", () => {
			const text = Buffer.concat(chunks).toString("utf8");
			const [head, ...rest] = text.split("\r\n\r\n");
			const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
			const bodyText = rest.join("\r\n\r\n");
			let body: unknown = bodyText;
			try {
				body = JSON.parse(bodyText);
			} catch {
				/* not JSON: the assertions below say so */
			}
			resolve({ status, headers: head, body });
		});
		sock.on("connect", async () => {
			for (const [i, p] of parts.entries()) {
				if (i > 0 && gapMs) await new Promise(r => setTimeout(r, gapMs));
				if (!sock.destroyed) sock.write(p);
			}
		});
	});
}

describe("finding 1: a body whose Content-Encoding does not decode is the client's 400", () => {
	test.each([
		["a JSON route", "/projects", true],
		["the Stripe webhook (raw body)", "/billing/stripe/webhook", false]
	])("%s", async (_what, path, authed) => {
		const u = await makeUser(node, "free", 0);
		const res = await fetch(`${node.baseUrl}/api/v1${path}`, {
			method: "POST",
			headers: {
				...(authed ? { Authorization: `Bearer ${u.token}` } : {}),
				"Content-Type": "application/json",
				"Content-Encoding": "gzip"
			},
			body: '{"name":"not gzip"}'
		});
		const body = (await res.json()) as { requestId: string };
		expectContractError({ status: res.status, body }, 400, "MALFORMED_BODY");
		expect(res.headers.get("x-request-id")).toBe(body.requestId);
	});
});

describe("finding 2: null is not a value for optional params", () => {
	test("PATCH /admin/users/:id with role null → 422, nothing changed", async () => {
		const target = await registered();
		const admin = (await registered({ admin: true })).token;
		for (const body of [{ role: null }, { tierOverride: "team", disabled: null }]) {
			const r = await api(node, "PATCH", `/admin/users/${target.id}`, admin, body);
			expectContractError(r, 422, "VALIDATION_ERROR");
		}
		// Where the schema says nullable (clearing the override), null still works.
		expect((await api(node, "PATCH", `/admin/users/${target.id}`, admin, { tierOverride: null })).status).toBe(200);
	});
});

describe("finding 4: error bodies are bounded", () => {
	test("an API key with 100,000 wrong scopes gets a small 422 with the count", async () => {
		const u = await makeUser(node, "free", 0);
		const scopes = Array.from({ length: 100_000 }, (_, i) => `x${i}`);
		const r = await api(node, "POST", "/users/me/api-keys", u.token, { name: "k", scopes });
		expectContractError(r, 422, "VALIDATION_ERROR");
		expect(JSON.stringify(r.body).length).toBeLessThan(8 * 1024);
		expect(r.body.error.details).toHaveLength(20);
		expect(r.body.error.detailsTotal).toBeGreaterThanOrEqual(1000);
	});

	test("a commit with 50,000 bad changes gets a small 422", async () => {
		const u = await makeUser(node, "free", 0);
		const changes = Array.from({ length: 50_000 }, () => ({ op: "nope", path: 1 }));
		const r = await api(node, "POST", `/projects/${u.projectId}/versions`, u.token, {
			baseVersion: 0,
			message: "m",
			changes
		});
		expect(r.status).toBeGreaterThanOrEqual(400);
		expect(r.status).toBeLessThan(500);
		expect(JSON.stringify(r.body).length).toBeLessThan(8 * 1024);
	});
});

describe("finding 5: racing retries of one idempotent commit all get the version it made", () => {
	test("20 parallel POST /projects/:id/versions with one Idempotency-Key → 20 × 201, one version", async () => {
		const u = await makeUser(node, "free", 0);
		const key = uniqueId("idem");
		const results = await Promise.all(
			Array.from({ length: 20 }, () =>
				api(
					node,
					"POST",
					`/projects/${u.projectId}/versions`,
					u.token,
					{ baseVersion: 0, message: "once", changes: [{ op: "add", path: "a.txt", content: "x" }] },
					{ "Idempotency-Key": key }
				)
			)
		);
		expect(results.map(r => r.status)).toEqual(Array(20).fill(201));
		expect(new Set(results.map(r => r.body.number))).toEqual(new Set([1]));
		const project = await api(node, "GET", `/projects/${u.projectId}`, u.token);
		expect(project.body.headVersion).toBe(1);
	});
});

describe("finding 6: /queue/stats needs tasks:read", () => {
	test("a key scoped users:read is refused; tasks:read reads", async () => {
		const { accessToken: token } = await signUp(
			node,
			`${uniqueId("q")}@example.com`,
			"correct horse battery staple"
		);
		const narrow = await api(node, "POST", "/users/me/api-keys", token, { name: "n", scopes: ["users:read"] });
		const wide = await api(node, "POST", "/users/me/api-keys", token, { name: "w", scopes: ["tasks:read"] });
		expectContractError(
			await api(node, "GET", "/queue/stats", null, undefined, { "X-API-Key": narrow.body.key }),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expect((await api(node, "GET", "/queue/stats", null, undefined, { "X-API-Key": wide.body.key })).status).toBe(
			200
		);
	});
});

describe("finding 7: requests the HTTP parser refuses get the contract's shape and a request id", () => {
	const host = "Host: 127.0.0.1\r\n";
	test.each([
		[
			"a header block over HTTP_MAX_HEADER_BYTES",
			`GET /api/v1/ai/models HTTP/1.1\r\n${host}X-Big: ${"a".repeat(20_000)}\r\n\r\n`,
			431,
			"HEADERS_TOO_LARGE"
		],
		["an unknown method", `FROB /api/v1/ai/models HTTP/1.1\r\n${host}\r\n`, 400, "MALFORMED_REQUEST"],
		[
			"bad chunked framing",
			`POST /api/v1/projects HTTP/1.1\r\n${host}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
			400,
			"MALFORMED_REQUEST"
		],
		[
			"Content-Length with Transfer-Encoding",
			`POST /api/v1/projects HTTP/1.1\r\n${host}Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
			400,
			"MALFORMED_REQUEST"
		],
		[
			"Content-Length: abc",
			`POST /api/v1/projects HTTP/1.1\r\n${host}Content-Length: abc\r\n\r\n`,
			400,
			"MALFORMED_REQUEST"
		],
		[
			"a NUL in a header",
			`GET /api/v1/ai/models HTTP/1.1\r\n${host}X-A: a\u0000b\r\n\r\n`,
			400,
			"MALFORMED_REQUEST"
		]
	])("%s", async (_what, raw, status, code) => {
		const r = await rawHttp([raw]);
		expect(r.status).toBe(status);
		expect(r.body).toEqual({
			error: { code, message: expect.any(String) },
			requestId: expect.stringMatching(UUID_RE)
		});
		expect(r.headers).toMatch(new RegExp(`X-Request-Id: ${r.body.requestId}`, "i"));
	});

	test("headers that arrive too slowly → 408 (HTTP_HEADERS_TIMEOUT_MS)", async () => {
		const r = await rawHttp(
			[`GET /api/v1/ai/models HTTP/1.1\r\n`, `${host}`, "X-Slow: 1\r\n", "X-Slow: 2\r\n", "X-Slow: 3\r\n"],
			700
		);
		expect(r.status).toBe(408);
		expect(r.body).toEqual({
			error: { code: "REQUEST_TIMEOUT", message: expect.any(String) },
			requestId: expect.stringMatching(UUID_RE)
		});
	});

	test("a body that arrives too slowly → 408 (HTTP_REQUEST_TIMEOUT_MS)", async () => {
		const u = await makeUser(node, "free", 0);
		const head = `POST /api/v1/projects HTTP/1.1\r\n${host}Authorization: Bearer ${u.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
		const r = await rawHttp([head, '{"name":', '"sl', "o"], 1500);
		expect(r.status).toBe(408);
		expect(r.body).toMatchObject({ error: { code: "REQUEST_TIMEOUT" } });
	});

	test("a body over BODY_LIMIT → 413 in the contract's shape", async () => {
		const u = await makeUser(node, "free", 0);
		const r = await api(node, "POST", "/projects", u.token, JSON.stringify({ name: "x".repeat(2 * 1024 * 1024) }));
		expectContractError(r, 413, "PAYLOAD_TOO_LARGE");
	});
});

describe("finding 8: views and defaults agree", () => {
	test("/billing/balance names the admin override's tier, as /users/me does", async () => {
		const u = await registered({ tierOverride: "team" });
		const bal = await api(node, "GET", "/billing/balance", u.token);
		expect(bal.status).toBe(200);
		const me = await api(node, "GET", "/users/me", u.token);
		expect(me.status).toBe(200);
		expect(me.body.tier).toMatchObject({ tier: "team" });
		expect(bal.body).toMatchObject({ tier: "team", feeDiscountBps: me.body.tier.feeDiscountBps });
		expect(bal.body.feeDiscountBps).toBeGreaterThan(0);
	});

	test("HEAD on a GET route answers like GET, without a body", async () => {
		const u = await makeUser(node, "free", 0);
		for (const path of ["/api/v1/users/me", "/api/v1/ai/models", "/health/live", "/api/openapi.json"]) {
			const get = await fetch(`${node.baseUrl}${path}`, { headers: { Authorization: `Bearer ${u.token}` } });
			const head = await fetch(`${node.baseUrl}${path}`, {
				method: "HEAD",
				headers: { Authorization: `Bearer ${u.token}` }
			});
			expect({ path, status: head.status }).toEqual({ path, status: get.status });
			expect(await head.text()).toBe("");
			expect(head.headers.get("x-request-id") ?? path).toEqual(expect.any(String));
		}
		const anon = await fetch(`${node.baseUrl}/api/v1/users/me`, { method: "HEAD" });
		expect(anon.status).toBe(401);
	});
});
