/**
 * The users service through the real gateway, PostgreSQL, Redis and RabbitMQ: passwords and their
 * throttling, sessions and refresh rotation, disabling, API keys, IDOR, admin, tier facts from
 * payments' durable events, and every route's bad inputs.
 */
import { randomUUID } from "node:crypto";
import argon2 from "argon2";
import { getAddress } from "viem";
import { QueryTypes } from "sequelize";
import type { ServiceSchema } from "moleculer";
import { durableEvents, type DurableThis } from "../../../mixins/durable-events.mixin";
import { runtimeOf } from "../../../src/runtime/runtime";
import { ProgressiveThrottle } from "../../../src/users/throttle";
import { usersReplCommands } from "../../../src/users/repl";
import {
	createTestDatabase,
	eventually,
	startTestNode,
	REDIS_URL,
	uniqueId,
	type TestDatabase
} from "../../support/env";
import { signUp } from "../../support/sign-up";
import type { ForgeNode } from "../../../app/node";
import { expectError, httpClient, type HttpResult } from "./http";
import { parseApiKey } from "../../../src/users/tokens";

/** The key's secret part (base64url: it may itself hold "_"). */
const secretOf = (key: string) => parseApiKey(key)!.secret;

jest.setTimeout(60_000);

const PASSWORD = "correct horse battery staple";
/** argon2id at OWASP's parameters (the library may order the parameters either way). */
const OWASP_HASH = /^\$argon2id\$v=19\$(?=[^$]*\bm=19456\b)(?=[^$]*\bt=2\b)(?=[^$]*\bp=1\b)[mtp=0-9,]+\$/;
const DAY_MS = 86_400_000;
const FORGE = (n: bigint) => (n * 10n ** 18n).toString();

/** Publishes payments' durable events the way payments does (transactional outbox). */
const paymentsFixture: ServiceSchema = {
	name: "paymentsfx",
	mixins: [durableEvents({ group: "paymentsfx" })],
	actions: {
		publish: {
			params: { topic: "string", payload: "object" },
			async handler(
				this: { publishDurable: DurableThis["publishDurable"]; broker: import("moleculer").ServiceBroker },
				ctx: import("moleculer").Context<{ topic: string; payload: object }>
			) {
				return runtimeOf(this.broker).sequelize.transaction(tx =>
					this.publishDurable(tx, ctx.params.topic, ctx.params.payload)
				);
			}
		}
	}
} as unknown as ServiceSchema;

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const sql = <T extends object>(query: string, bind: unknown[] = []) =>
	runtimeOf(node.broker).sequelize.query<T>(query, { bind, type: QueryTypes.SELECT });

async function register(email = `${uniqueId("u")}@example.com`, password = PASSWORD) {
	const u = await signUp(call, email, password);
	return { email, password, userId: u.userId, access: u.accessToken, refresh: u.refreshToken };
}

async function login(email: string, password = PASSWORD) {
	return call("POST", "/api/v1/auth/login", { body: { email, password } });
}

/** An admin (role set in the database before their first sign-in). */
async function admin() {
	const a = await register();
	await sql(`UPDATE users SET role = 'admin' WHERE id = $1 RETURNING id`, [a.userId]);
	const r = await login(a.email);
	expect(r.status).toBe(200);
	return { ...a, access: r.json.accessToken as string };
}

/** argon2 verifications so far, read from the node's own metrics (what /metrics exports). */
const verified = (against: "stored" | "dummy") =>
	(node.broker.metrics.getMetric("users.password.verifications.total")?.get({ against })?.value as
		number | undefined) ?? 0;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users"],
		extraServices: [paymentsFixture],
		env: {
			AUTH_SESSION_CHECK: "true",
			RATE_LIMIT_ANON_PER_MINUTE: "100000",
			RATE_LIMIT_PER_MINUTE: "100000",
			REGISTER_PER_IP_PER_HOUR: "100000",
			LOGIN_THROTTLE_ACCOUNT_FREE_FAILURES: "3",
			LOGIN_THROTTLE_ACCOUNT_BASE_DELAY_S: "1",
			LOGIN_THROTTLE_ACCOUNT_MAX_DELAY_S: "2",
			LOGIN_THROTTLE_IP_FREE_FAILURES: "10000",
			// A chain that does not answer: holdings must degrade, not fail.
			SIWE_RPC_URLS: "31337=http://127.0.0.1:9",
			CHAIN_RPC_TIMEOUT_MS: "500",
			FORGE_TOKEN_ADDRESS: "0x" + "11".repeat(20)
		}
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

describe("registration and password sign-in", () => {
	test("register answers alike for a new and a taken address: same status, body, hashes; one mail each; nothing made for the taken one", async () => {
		const taken = await register();
		const fresh = `Mixed.Case+${uniqueId("x")}@Example.COM`;
		const users = node.broker.getLocalService("users") as unknown as { hasher: { hash: (p: string) => unknown } };
		const hashes = jest.spyOn(users.hasher, "hash");
		const count = async () =>
			(
				await sql<{ users: number; audits: number; tokens: number }>(
					`SELECT (SELECT count(*)::int FROM users WHERE email = $1) AS users,
					        (SELECT count(*)::int FROM user_audit_events WHERE user_id = $2) AS audits,
					        (SELECT count(*)::int FROM user_tokens WHERE user_id = $2) AS tokens`,
					[taken.email, taken.userId]
				)
			)[0];
		const before = await count();
		try {
			hashes.mockClear();
			const a = await call("POST", "/api/v1/auth/register", {
				body: { email: `  ${fresh} `, password: PASSWORD, displayName: "Ada" }
			});
			const newHashes = hashes.mock.calls.length;
			hashes.mockClear();
			const b = await call("POST", "/api/v1/auth/register", {
				body: { email: taken.email.toUpperCase(), password: "another long password" }
			});
			const takenHashes = hashes.mock.calls.length;
			expect([a.status, b.status]).toEqual([202, 202]);
			const pending = (email: string) => ({
				status: "pending",
				email,
				message: "Check your inbox; then sign in with your password"
			});
			expect(a.json).toEqual(pending(fresh.toLowerCase()));
			expect(b.json).toEqual(pending(taken.email));
			expect(Object.keys(a.json).sort()).toEqual(Object.keys(b.json).sort());
			expect(a.headers.get("location")).toBeNull();
			expect(b.headers.get("location")).toBeNull();
			expect([newHashes, takenHashes]).toEqual([1, 1]);
		} finally {
			hashes.mockRestore();
		}
		// One mail each: the verification link to the new address, a notice (no link that signs in) to the owner.
		const mails = async (to: string) =>
			(await call("GET", `/api/v1/dev/outbox?to=${encodeURIComponent(to)}`)).json.items as Array<{
				subject: string;
				text: string;
				links: string[];
			}>;
		await eventually(async () => (await mails(fresh.toLowerCase())).length === 1);
		await eventually(async () => (await mails(taken.email)).length === 2); // its own verification + the notice
		const [notice] = await mails(taken.email);
		expect(notice.subject).toBe("Someone tried to sign up with your address");
		expect(notice.text).toContain("Forgot password");
		expect(notice.links.every(l => !/token=/.test(l))).toBe(true);
		const [verify] = await mails(fresh.toLowerCase());
		expect(verify.subject).toBe("Confirm your e-mail address");
		// Nothing was made or changed for the taken address: one account, no audit event, no token.
		expect(await count()).toEqual(before);
		// The owner's password still works and the other one does not; the new account signs in.
		expect((await login(taken.email)).status).toBe(200);
		expectError(await login(taken.email, "another long password"), 401, "INVALID_CREDENTIALS");
		const r = await login(fresh);
		expect(r.status).toBe(200);
		expect(r.json.user).toEqual({
			id: expect.any(String),
			email: fresh.toLowerCase(),
			emailVerified: false,
			displayName: "Ada",
			role: "user",
			createdAt: expect.any(String)
		});
		const [row] = await sql<{ password_hash: string }>(`SELECT password_hash FROM users WHERE id = $1`, [
			r.json.user.id
		]);
		expect(row.password_hash).toMatch(OWASP_HASH);
		expect(row.password_hash).not.toContain(PASSWORD);
	});

	test("SIGNUP_REVEALS_TAKEN=true: 201 with tokens for a new address, 409 EMAIL_TAKEN for a taken one", async () => {
		const open = await startTestNode({
			db,
			services: ["api", "users"],
			env: { AUTH_SESSION_CHECK: "true", SIGNUP_REVEALS_TAKEN: "true" }
		});
		try {
			const c = httpClient(() => open.baseUrl);
			const email = `${uniqueId("open")}@example.com`;
			const r = await c("POST", "/api/v1/auth/register", { body: { email, password: PASSWORD } });
			expect(r.status).toBe(201);
			expect(r.headers.get("location")).toBe("/api/v1/users/me");
			expect(r.json).toEqual({
				accessToken: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
				tokenType: "Bearer",
				expiresIn: 900,
				refreshToken: expect.stringMatching(/^ffr_[A-Za-z0-9_-]{43}$/),
				refreshTokenExpiresAt: expect.any(String),
				sessionId: expect.stringMatching(/^[0-9a-f-]{36}$/),
				user: expect.objectContaining({ email, emailVerified: false })
			});
			expect((await c("GET", "/api/v1/users/me", { token: r.json.accessToken })).status).toBe(200);
			// signUp works against either mode.
			expect((await signUp(c, `${uniqueId("open")}@example.com`, PASSWORD)).accessToken).toEqual(
				expect.any(String)
			);
			expectError(
				await c("POST", "/api/v1/auth/register", { body: { email: email.toUpperCase(), password: PASSWORD } }),
				409,
				"EMAIL_TAKEN"
			);
		} finally {
			await open.stop();
		}
	});

	test("password length limits are enforced in code points", async () => {
		const short = await call("POST", "/api/v1/auth/register", {
			body: { email: `${uniqueId("s")}@example.com`, password: "short" }
		});
		expectError(short, 422, "VALIDATION_ERROR");
		expect(short.json.error.details).toEqual([
			{ field: "password", message: "must be at least 10 characters", type: "passwordPolicy" }
		]);
		const long = await call("POST", "/api/v1/auth/register", {
			body: { email: `${uniqueId("l")}@example.com`, password: "x".repeat(129) }
		});
		expectError(long, 422, "VALIDATION_ERROR");
		// 10 emoji are 20 UTF-16 units but 10 characters: accepted.
		const emoji = await call("POST", "/api/v1/auth/register", {
			body: { email: `${uniqueId("e")}@example.com`, password: "🔥".repeat(10) }
		});
		expect(emoji.status).toBe(202);
	});

	test("login succeeds with the right password, case-insensitively on the e-mail", async () => {
		const u = await register();
		const r = await login(u.email.toUpperCase());
		expect(r.status).toBe(200);
		expect(r.json.user.id).toBe(u.userId);
		const me = await call("GET", "/api/v1/users/me", { token: r.json.accessToken });
		expect(me.status).toBe(200);
		expect(me.json.id).toBe(u.userId);
	});

	test("unknown user and wrong password are indistinguishable: same status, same body, one argon2 verification each", async () => {
		const users = await Promise.all([1, 2, 3, 4, 5].map(() => register()));
		const wrong: HttpResult[] = [];
		const unknown: HttpResult[] = [];
		const before = { stored: verified("stored"), dummy: verified("dummy") };
		for (const u of users) {
			wrong.push(await login(u.email, "wrong password, really"));
			unknown.push(await login(`${uniqueId("nobody")}@example.com`, "wrong password, really"));
		}
		for (const r of [...wrong, ...unknown]) expectError(r, 401, "INVALID_CREDENTIALS");
		const strip = (r: HttpResult) => ({ ...r.json, requestId: "-" });
		expect(new Set([...wrong, ...unknown].map(r => JSON.stringify(strip(r)))).size).toBe(1);
		// Both paths paid for exactly one argon2id verification with the same parameters: the wrong
		// passwords against their stored hashes, the unknown users against the dummy. That, not a
		// stopwatch, is what makes their timing alike.
		expect({ stored: verified("stored") - before.stored, dummy: verified("dummy") - before.dummy }).toEqual({
			stored: 5,
			dummy: 5
		});
	});

	test("throttling engages after repeated failures (before hashing), answers 429 with Retry-After, and releases", async () => {
		const u = await register();
		for (let i = 0; i < 3; i++) expectError(await login(u.email, "not the password!"), 401, "INVALID_CREDENTIALS");
		const hashedBefore = verified("stored") + verified("dummy");
		const blocked = await login(u.email);
		expectError(blocked, 429, "LOGIN_THROTTLED");
		expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		// Refused before any hashing, even with the right password: no argon2 verification ran.
		expect(verified("stored") + verified("dummy")).toBe(hashedBefore);
		// Another account from the same IP is not affected.
		const other = await register();
		expect((await login(other.email)).status).toBe(200);
		await new Promise(r => setTimeout(r, Number(blocked.headers.get("retry-after")) * 1000 + 200));
		const released = await login(u.email);
		expect(released.status).toBe(200);
		// Success cleared the count: three more failures are needed to throttle again.
		expectError(await login(u.email, "not the password!"), 401, "INVALID_CREDENTIALS");
		expect((await login(u.email)).status).toBe(200);
	});

	test("a hash made with weaker parameters is upgraded on the next successful login", async () => {
		const u = await register();
		const weak = await argon2.hash(PASSWORD, {
			type: argon2.argon2id,
			memoryCost: 4096,
			timeCost: 1,
			parallelism: 1
		});
		await sql(`UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING id`, [u.userId, weak]);
		expect((await login(u.email)).status).toBe(200);
		const [row] = await sql<{ password_hash: string }>(`SELECT password_hash FROM users WHERE id = $1`, [u.userId]);
		expect(row.password_hash).toMatch(OWASP_HASH);
		expect((await login(u.email)).status).toBe(200);
	});

	test("changing the password needs the current one and ends the other sessions", async () => {
		const u = await register();
		const second = await login(u.email);
		const wrong = await call("POST", "/api/v1/users/me/password", {
			token: u.access,
			body: { currentPassword: "nope nope nope", newPassword: "a new long password" }
		});
		expectError(wrong, 403, "INVALID_CURRENT_PASSWORD");
		const ok = await call("POST", "/api/v1/users/me/password", {
			token: u.access,
			body: { currentPassword: PASSWORD, newPassword: "a new long password" }
		});
		expect(ok.status).toBe(200);
		expect(ok.json).toEqual({ changed: true, endedSessions: 1 });
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).status).toBe(200);
		expectError(await call("GET", "/api/v1/users/me", { token: second.json.accessToken }), 401, "INVALID_TOKEN");
		expect((await login(u.email, "a new long password")).status).toBe(200);
		expectError(await login(u.email), 401, "INVALID_CREDENTIALS");
	});
});

describe("per-IP throttling on Redis", () => {
	test("progressive delays per key, shared through Redis, cleared on reset", async () => {
		const Redis = (await import("ioredis")).default;
		const redis = new Redis(REDIS_URL);
		try {
			const prefix = `fftest:${uniqueId("thr")}`;
			const rule = { freeFailures: 2, baseDelayS: 1, maxDelayS: 4, windowS: 60 };
			const a = new ProgressiveThrottle(redis, prefix, rule);
			const b = new ProgressiveThrottle(redis, prefix, rule); // another replica
			expect(await a.recordFailure("10.0.0.1")).toBe(0);
			expect(await b.retryAfterS("10.0.0.1")).toBe(0);
			expect(await b.recordFailure("10.0.0.1")).toBe(1);
			expect(await a.retryAfterS("10.0.0.1")).toBe(1);
			expect(await a.recordFailure("10.0.0.1")).toBe(2);
			expect(await a.recordFailure("10.0.0.1")).toBe(4);
			expect(await a.recordFailure("10.0.0.1")).toBe(4); // capped: slowed down, never locked out
			expect(await b.retryAfterS("10.0.0.2")).toBe(0);
			await a.reset("10.0.0.1");
			expect(await b.retryAfterS("10.0.0.1")).toBe(0);
		} finally {
			redis.disconnect();
		}
	});
});

describe("sessions", () => {
	test("refresh rotates the token; reusing an old one revokes the whole family", async () => {
		const u = await register();
		const r1 = await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: u.refresh } });
		expect(r1.status).toBe(200);
		expect(r1.json.refreshToken).not.toBe(u.refresh);
		expect(r1.json.sessionId).toBeDefined();
		const r2 = await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: r1.json.refreshToken } });
		expect(r2.status).toBe(200);
		expect((await call("GET", "/api/v1/users/me", { token: r2.json.accessToken })).status).toBe(200);

		const replay = await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: u.refresh } });
		expectError(replay, 401, "REFRESH_TOKEN_REUSED");
		// The family is gone: its newest refresh token and its access tokens stop at once.
		expectError(
			await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: r2.json.refreshToken } }),
			401,
			"INVALID_REFRESH_TOKEN"
		);
		expectError(await call("GET", "/api/v1/users/me", { token: r2.json.accessToken }), 401, "INVALID_TOKEN");
		expectError(await call("GET", "/api/v1/users/me", { token: u.access }), 401, "INVALID_TOKEN");
		// Other sessions of the same user are untouched.
		expect((await login(u.email)).status).toBe(200);
	});

	test("parallel refreshes with one token within the grace window all get its one successor; the session lives", async () => {
		const u = await register();
		const results = await Promise.all(
			Array.from({ length: 20 }, () =>
				call("POST", "/api/v1/auth/refresh", { body: { refreshToken: u.refresh } })
			)
		);
		expect(results.map(r => r.status)).toEqual(Array(20).fill(200));
		// RFC 9700: one token, one successor. The racers are answered with the same one, not 20 live siblings.
		const tokens = new Set(results.map(r => r.json.refreshToken as string));
		expect(tokens.size).toBe(1);
		const [successor] = [...tokens];
		expect(successor).not.toBe(u.refresh);
		expect(new Set(results.map(r => r.json.sessionId)).size).toBe(1);
		for (const r of results.slice(0, 3))
			expect((await call("GET", "/api/v1/users/me", { token: r.json.accessToken })).status).toBe(200);
		const live = await sql(
			`SELECT count(*)::int AS n FROM refresh_tokens WHERE session_id = $1 AND rotated_at IS NULL`,
			[results[0].json.sessionId]
		);
		expect(live).toEqual([{ n: 1 }]);
		// The successor rotates: the family has moved on, so the first token is now a replay and ends it.
		const next = await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: successor } });
		expect(next.status).toBe(200);
		expectError(
			await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: u.refresh } }),
			401,
			"REFRESH_TOKEN_REUSED"
		);
		expectError(
			await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: next.json.refreshToken } }),
			401,
			"INVALID_REFRESH_TOKEN"
		);
	});

	test("with REFRESH_REUSE_GRACE_S=0, two parallel refreshes with one token: one rotates, the other is a replay", async () => {
		const strict = await startTestNode({
			db,
			services: ["api", "users"],
			env: { AUTH_SESSION_CHECK: "true", REFRESH_REUSE_GRACE_S: "0" }
		});
		try {
			const c = httpClient(() => strict.baseUrl);
			const reg = await signUp(c, `${uniqueId("strict")}@example.com`, PASSWORD);
			const results = await Promise.all(
				[0, 1].map(() => c("POST", "/api/v1/auth/refresh", { body: { refreshToken: reg.refreshToken } }))
			);
			expect(results.map(r => r.status).sort()).toEqual([200, 401]);
			expect(results.find(r => r.status === 401)!.json.error.code).toBe("REFRESH_TOKEN_REUSED");
		} finally {
			await strict.stop();
		}
	});

	test("logout revokes the session at once; unknown tokens answer the same", async () => {
		const u = await register();
		const out = await call("POST", "/api/v1/auth/logout", { body: { refreshToken: u.refresh } });
		expect(out.json).toEqual({ revoked: 1 });
		expectError(await call("GET", "/api/v1/users/me", { token: u.access }), 401, "INVALID_TOKEN");
		expectError(
			await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: u.refresh } }),
			401,
			"INVALID_REFRESH_TOKEN"
		);
		const unknown = await call("POST", "/api/v1/auth/logout", { body: { refreshToken: `ffr_${"A".repeat(43)}` } });
		expect({ status: unknown.status, body: unknown.json }).toEqual({ status: 200, body: { revoked: 0 } });
	});

	test("logout with a bearer token ends the current session; all: true ends every session", async () => {
		const u = await register();
		const s2 = await login(u.email);
		const s3 = await login(u.email);
		expect((await call("POST", "/api/v1/auth/logout", { token: s2.json.accessToken, body: {} })).json).toEqual({
			revoked: 1
		});
		expectError(await call("GET", "/api/v1/users/me", { token: s2.json.accessToken }), 401, "INVALID_TOKEN");
		const list = await call("GET", "/api/v1/users/me/sessions", { token: u.access });
		expect(list.json.items.map((s: { id: string }) => s.id).sort()).toEqual(
			[s3.json.sessionId, list.json.items.find((s: { current: boolean }) => s.current).id].sort()
		);
		expect((await call("POST", "/api/v1/auth/logout", { token: u.access, body: { all: true } })).json).toEqual({
			revoked: 2
		});
		expectError(await call("GET", "/api/v1/users/me", { token: s3.json.accessToken }), 401, "INVALID_TOKEN");
	});

	test("a user can end one of their sessions, but not someone else's", async () => {
		const a = await register();
		const b = await register();
		const a2 = await login(a.email);
		expectError(
			await call("DELETE", `/api/v1/users/me/sessions/${a2.json.sessionId}`, { token: b.access }),
			404,
			"NOT_FOUND"
		);
		expect((await call("GET", "/api/v1/users/me", { token: a2.json.accessToken })).status).toBe(200);
		expect(
			(await call("DELETE", `/api/v1/users/me/sessions/${a2.json.sessionId}`, { token: a.access })).status
		).toBe(200);
		expectError(await call("GET", "/api/v1/users/me", { token: a2.json.accessToken }), 401, "INVALID_TOKEN");
	});

	test("a token for a session that was never issued is refused", async () => {
		const { signAccessToken } = await import("../../../src/auth/jwt");
		const u = await register();
		const forged = signAccessToken(node.config.jwt, {
			sub: u.userId,
			role: "admin",
			sid: randomUUID(),
			scopes: ["*"]
		});
		expectError(await call("GET", "/api/v1/users/me", { token: forged }), 401, "INVALID_TOKEN");
	});
});

describe("API keys", () => {
	test("created with scopes, shown once, accepted through X-API-Key, listed without the secret, revoked", async () => {
		const u = await register();
		const created = await call("POST", "/api/v1/users/me/api-keys", {
			token: u.access,
			body: { name: "ci", scopes: ["users:read", "projects:read"] }
		});
		expect(created.status).toBe(201);
		expect(created.json).toEqual({
			id: expect.stringMatching(/^[A-Za-z0-9]{16}$/),
			name: "ci",
			scopes: ["users:read", "projects:read"],
			// Limits of the /v1 compatible endpoints (none set here).
			models: null,
			monthlyBudgetCredits: null,
			rpm: null,
			tpm: null,
			// The key's monthly spend cap on every hold (none set here).
			monthlyCapCredits: null,
			createdAt: expect.any(String),
			expiresAt: null,
			lastUsedAt: null,
			key: expect.stringMatching(/^ff_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}$/)
		});
		const key = created.json.key as string;
		const [row] = await sql<{ secret_hash: Buffer }>(`SELECT secret_hash FROM api_keys WHERE id = $1`, [
			created.json.id
		]);
		expect(row.secret_hash.toString("hex")).not.toContain(secretOf(key));

		const me = await call("GET", "/api/v1/users/me", { apiKey: key });
		expect(me.status).toBe(200);
		expect(me.json.id).toBe(u.userId);
		expect(me.json.credential).toEqual({ type: "apiKey", keyId: created.json.id });
		expect(me.json.permissions).toEqual(["users:read", "projects:read"]);

		// The last use is written beside the lookup, not before its answer: poll for it.
		let list: HttpResult = await call("GET", "/api/v1/users/me/api-keys", { token: u.access });
		await eventually(
			async () =>
				(list = await call("GET", "/api/v1/users/me/api-keys", { token: u.access })).json.items[0]
					?.lastUsedAt != null
		);
		expect(list.json.items).toHaveLength(1);
		expect(JSON.stringify(list.json)).not.toContain(secretOf(key));
		expect(list.json.items[0].lastUsedAt).not.toBeNull();

		// A key cannot manage keys, and cannot do what its scopes do not allow.
		expectError(
			await call("POST", "/api/v1/users/me/api-keys", {
				apiKey: key,
				body: { name: "x", scopes: ["users:read"] }
			}),
			403,
			"SESSION_REQUIRED"
		);
		expectError(
			await call("PATCH", "/api/v1/users/me", { apiKey: key, body: { displayName: "x" } }),
			403,
			"INSUFFICIENT_SCOPE"
		);

		expect((await call("DELETE", `/api/v1/users/me/api-keys/${created.json.id}`, { token: u.access })).status).toBe(
			200
		);
		expectError(await call("GET", "/api/v1/users/me", { apiKey: key }), 401, "INVALID_API_KEY");
	});

	test("last-used time is written at most once per interval, not on every request", async () => {
		const u = await register();
		const { json } = await call("POST", "/api/v1/users/me/api-keys", {
			token: u.access,
			body: { name: "busy", scopes: ["users:read"] }
		});
		expect((await call("GET", "/api/v1/users/me", { apiKey: json.key })).status).toBe(200);
		// The write is off the request path: wait for it.
		const lastUsed = async () =>
			(await sql<{ last_used_at: Date | null }>(`SELECT last_used_at FROM api_keys WHERE id = $1`, [json.id]))[0]
				.last_used_at;
		const deadline = Date.now() + 10_000;
		while ((await lastUsed()) === null && Date.now() < deadline) await new Promise(r => setTimeout(r, 25));
		const first = { last_used_at: await lastUsed() };
		expect(first.last_used_at).not.toBeNull();
		for (let i = 0; i < 3; i++)
			expect((await call("GET", "/api/v1/users/me", { apiKey: json.key })).status).toBe(200);
		// A write the later requests wrongly started would have landed by now.
		await new Promise(r => setTimeout(r, 300));
		expect((await lastUsed())!.getTime()).toBe(first.last_used_at!.getTime());
	});

	test("wrong secret, unknown id, malformed and expired keys are refused alike", async () => {
		const u = await register();
		const { json } = await call("POST", "/api/v1/users/me/api-keys", {
			token: u.access,
			body: { name: "k", scopes: ["users:read"], expiresInDays: 30 }
		});
		expect(Date.parse(json.expiresAt) - Date.now()).toBeGreaterThan(29 * DAY_MS);
		const [, id, secret] = (json.key as string).split(/^ff_([A-Za-z0-9]+)_/);
		for (const bad of [`ff_${id}_${"x".repeat(43)}`, `ff_${"Z".repeat(16)}_${secret}`, "ff_bad", "not-a-key"])
			expectError(await call("GET", "/api/v1/users/me", { apiKey: bad }), 401, "INVALID_API_KEY");
		await sql(`UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1 RETURNING id`, [json.id]);
		expectError(await call("GET", "/api/v1/users/me", { apiKey: json.key }), 401, "INVALID_API_KEY");
	});

	test("scopes are limited by the role; another user's key cannot be revoked", async () => {
		const a = await register();
		const b = await register();
		const adminScope = await call("POST", "/api/v1/users/me/api-keys", {
			token: a.access,
			body: { name: "k", scopes: ["admin"] }
		});
		expectError(adminScope, 422, "VALIDATION_ERROR");
		const unknownScope = await call("POST", "/api/v1/users/me/api-keys", {
			token: a.access,
			body: { name: "k", scopes: ["root"] }
		});
		expectError(unknownScope, 422, "VALIDATION_ERROR");
		const { json } = await call("POST", "/api/v1/users/me/api-keys", {
			token: a.access,
			body: { name: "k", scopes: ["users:read"] }
		});
		expectError(
			await call("DELETE", `/api/v1/users/me/api-keys/${json.id}`, { token: b.access }),
			404,
			"NOT_FOUND"
		);
		expect((await call("GET", "/api/v1/users/me", { apiKey: json.key })).status).toBe(200);
		expect((await call("GET", "/api/v1/users/me/api-keys", { token: b.access })).json.items).toEqual([]);
	});
});

describe("authorization, IDOR and the gateway boundary", () => {
	test("a user reads and changes only their own profile, whatever ids the body carries", async () => {
		const a = await register();
		const b = await register();
		const r = await call("PATCH", "/api/v1/users/me", {
			token: b.access,
			body: {
				displayName: "Bob",
				id: a.userId,
				userId: a.userId,
				user: { id: a.userId, role: "admin" },
				meta: { user: { id: a.userId } }
			}
		});
		expect(r.status).toBe(200);
		expect(r.json.id).toBe(b.userId);
		expect(r.json.displayName).toBe("Bob");
		const aMe = await call("GET", `/api/v1/users/me?userId=${a.userId}`, { token: a.access });
		expect(aMe.json.displayName).toBeNull();
		const bMe = await call("GET", `/api/v1/users/me?userId=${a.userId}`, { token: b.access });
		expect(bMe.json.id).toBe(b.userId);
		expect(bMe.json.role).toBe("user");
	});

	test("internal actions are not reachable through the gateway", async () => {
		const u = await register();
		for (const path of [
			"/api/v1/users/authState",
			"/api/v1/users/verifyApiKey",
			"/api/v1/users/getTier",
			"/api/v1/users.profile",
			"/api/v1/users/revokeUserSessions",
			"/api/v1/users/exist"
		]) {
			const r = await call("GET", `${path}?userId=${u.userId}`, { token: u.access });
			expectError(r, 404, "NOT_FOUND");
		}
	});

	test("exist (for projects' members) names the ids that are accounts; unknown and malformed ids are not", async () => {
		const [a, b] = await Promise.all([register(), register()]);
		const unknown = "8b0f3d3e-6a4f-4d57-9a3e-2b1c0d9e8f7a";
		const r = await node.broker.call<{ known: string[] }, unknown>("users.exist", {
			userIds: [a.userId, unknown, "not-a-uuid", b.userId, a.userId]
		});
		expect([...r.known].sort()).toEqual([a.userId, b.userId].sort());
		await expect(node.broker.call("users.exist", { userIds: [] })).rejects.toMatchObject({ code: 422 });
	});

	test("admin routes: 401 without a user, 403 for a plain user", async () => {
		const u = await register();
		expectError(await call("GET", "/api/v1/admin/users"), 401, "UNAUTHORIZED");
		expectError(await call("GET", "/api/v1/admin/users", { token: u.access }), 403, "FORBIDDEN");
		expectError(
			await call("PATCH", `/api/v1/admin/users/${u.userId}`, { token: u.access, body: { role: "admin" } }),
			403,
			"FORBIDDEN"
		);
	});
});

describe("administration", () => {
	test("list and search with a capped limit and cursor pagination", async () => {
		const adm = await admin();
		const tag = uniqueId("page").toLowerCase();
		const mine = [];
		for (let i = 0; i < 5; i++) mine.push(await register(`${tag}.${i}@example.com`));
		const seen: string[] = [];
		let cursor: string | null = null;
		do {
			const q = `/api/v1/admin/users?q=${tag}&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
			const page: HttpResult = await call("GET", q, { token: adm.access });
			expect(page.status).toBe(200);
			expect(page.json.items.length).toBeLessThanOrEqual(2);
			seen.push(...page.json.items.map((u: { id: string }) => u.id));
			cursor = page.json.nextCursor;
		} while (cursor);
		expect(seen).toEqual(mine.map(u => u.userId).reverse()); // newest first, each once
		expectError(
			await call("GET", "/api/v1/admin/users?limit=1000", { token: adm.access }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await call("GET", "/api/v1/admin/users?cursor=garbage", { token: adm.access }),
			422,
			"VALIDATION_ERROR"
		);
		const byId = await call("GET", `/api/v1/admin/users?q=${mine[2].userId}`, { token: adm.access });
		expect(byId.json.items.map((u: { id: string }) => u.id)).toEqual([mine[2].userId]);
		const one = await call("GET", `/api/v1/admin/users/${mine[2].userId}`, { token: adm.access });
		expect(one.json).toEqual(
			expect.objectContaining({
				id: mine[2].userId,
				email: mine[2].email,
				disabled: false,
				tier: expect.objectContaining({ tier: "free" })
			})
		);
		expect(one.json.sessions).toHaveLength(1);
	});

	test("pages keep microsecond order: rows of one millisecond, and ties on the same instant, each once", async () => {
		const adm = await admin();
		const tag = uniqueId("tie").toLowerCase();
		// Newest first by (created_at, id): two rows on one microsecond, three more within one millisecond.
		const at = [
			"2030-01-01 00:00:00.124+00",
			"2030-01-01 00:00:00.123999+00",
			"2030-01-01 00:00:00.123457+00",
			"2030-01-01 00:00:00.123456+00",
			"2030-01-01 00:00:00.123456+00",
			"2030-01-01 00:00:00.123+00"
		];
		const rows = at.map((createdAt, i) => ({ id: randomUUID(), email: `${tag}.${i}@example.com`, createdAt }));
		for (const r of rows)
			await sql(`INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3::timestamptz) RETURNING id`, [
				r.id,
				r.email,
				r.createdAt
			]);
		const expected = [...rows]
			.sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1))
			.map(r => r.id);
		const seen: string[] = [];
		let cursor: string | null = null;
		do {
			const q = `/api/v1/admin/users?q=${tag}&limit=1${cursor ? `&cursor=${cursor}` : ""}`;
			const page: HttpResult = await call("GET", q, { token: adm.access });
			expect(page.status).toBe(200);
			seen.push(...page.json.items.map((u: { id: string }) => u.id));
			cursor = page.json.nextCursor;
		} while (cursor && seen.length <= rows.length);
		expect(seen).toEqual(expected);
		// A cursor of the right shape on a day the calendar lacks: the list's 422, never a failed cast.
		const impossible = `c1.${Buffer.from(JSON.stringify(["2021-02-31T00:00:00.000000Z", randomUUID()])).toString("base64url")}`;
		const bad = await call("GET", `/api/v1/admin/users?cursor=${impossible}`, { token: adm.access });
		expectError(bad, 422, "VALIDATION_ERROR");
		expect(bad.json.error.details).toEqual([
			{ field: "cursor", message: "not a cursor from this list", type: "cursor" }
		]);
	});

	test("disabling a user stops their access tokens, refresh tokens and API keys at once; enabling restores keys", async () => {
		const adm = await admin();
		const u = await register();
		const { json: key } = await call("POST", "/api/v1/users/me/api-keys", {
			token: u.access,
			body: { name: "k", scopes: ["users:read"] }
		});
		// Warm the gateway's cached session state, so the test shows the cache is dropped, not just empty.
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).status).toBe(200);
		const off = await call("PATCH", `/api/v1/admin/users/${u.userId}`, {
			token: adm.access,
			body: { disabled: true }
		});
		expect(off.status).toBe(200);
		expect(off.json).toEqual(
			expect.objectContaining({ id: u.userId, disabled: true, disabledAt: expect.any(String) })
		);
		expectError(await call("GET", "/api/v1/users/me", { token: u.access }), 401, "INVALID_TOKEN");
		expectError(await call("GET", "/api/v1/users/me", { apiKey: key.key }), 401, "INVALID_API_KEY");
		expectError(
			await call("POST", "/api/v1/auth/refresh", { body: { refreshToken: u.refresh } }),
			401,
			"INVALID_REFRESH_TOKEN"
		);
		expectError(await login(u.email), 403, "ACCOUNT_DISABLED");

		expect(
			(await call("PATCH", `/api/v1/admin/users/${u.userId}`, { token: adm.access, body: { disabled: false } }))
				.json.disabled
		).toBe(false);
		expect((await call("GET", "/api/v1/users/me", { apiKey: key.key })).status).toBe(200);
		expectError(await call("GET", "/api/v1/users/me", { token: u.access }), 401, "INVALID_TOKEN"); // sessions stay ended
		expect((await login(u.email)).status).toBe(200);
	});

	test("a role change applies to the next request without signing in again", async () => {
		const adm = await admin();
		const u = await register();
		expectError(await call("GET", "/api/v1/admin/users", { token: u.access }), 403, "FORBIDDEN");
		expect(
			(await call("PATCH", `/api/v1/admin/users/${u.userId}`, { token: adm.access, body: { role: "operator" } }))
				.json.role
		).toBe("operator");
		expect((await call("GET", "/api/v1/admin/users", { token: u.access })).status).toBe(200);
		// Operators may look but not change.
		expectError(
			await call("PATCH", `/api/v1/admin/users/${adm.userId}`, { token: u.access, body: { disabled: true } }),
			403,
			"FORBIDDEN"
		);
	});

	test("tier override wins and is visible at once through the cached getTier; admins cannot demote themselves", async () => {
		const adm = await admin();
		const u = await register();
		expect(((await node.broker.call("users.getTier", { userId: u.userId })) as { tier: string }).tier).toBe("free");
		const r = await call("PATCH", `/api/v1/admin/users/${u.userId}`, {
			token: adm.access,
			body: { tierOverride: "enterprise" }
		});
		expect(r.json.tierOverride).toBe("enterprise");
		expect(await node.broker.call("users.getTier", { userId: u.userId })).toEqual(
			expect.objectContaining({ tier: "enterprise", adminOverride: "enterprise", feeDiscountBps: 1000 })
		);
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).json.tier.tier).toBe("enterprise");
		await call("PATCH", `/api/v1/admin/users/${u.userId}`, { token: adm.access, body: { tierOverride: null } });
		expect(((await node.broker.call("users.getTier", { userId: u.userId })) as { tier: string }).tier).toBe("free");

		expectError(
			await call("PATCH", `/api/v1/admin/users/${adm.userId}`, { token: adm.access, body: { role: "user" } }),
			409,
			"SELF_CHANGE_FORBIDDEN"
		);
		expectError(
			await call("PATCH", `/api/v1/admin/users/${adm.userId}`, { token: adm.access, body: { disabled: true } }),
			409,
			"SELF_CHANGE_FORBIDDEN"
		);
		expectError(
			await call("PATCH", `/api/v1/admin/users/${adm.userId.toUpperCase()}`, {
				token: adm.access,
				body: { disabled: true }
			}),
			409,
			"SELF_CHANGE_FORBIDDEN"
		);
		expectError(
			await call("PATCH", `/api/v1/admin/users/${randomUUID()}`, { token: adm.access, body: { role: "user" } }),
			404,
			"NOT_FOUND"
		);
		expectError(
			await call("PATCH", `/api/v1/admin/users/${u.userId}`, { token: adm.access, body: {} }),
			422,
			"VALIDATION_ERROR"
		);
		const audit = await sql<{ action: string; actor_id: string }>(
			`SELECT action, actor_id FROM user_audit_events WHERE user_id = $1 AND action = 'admin.update'`,
			[u.userId]
		);
		expect(audit).toEqual([
			{ action: "admin.update", actor_id: adm.userId },
			{ action: "admin.update", actor_id: adm.userId }
		]);
	});
});

describe("tier facts from payments (durable events)", () => {
	const waitFor = async <T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> => {
		const until = Date.now() + ms;
		for (;;) {
			const v = await fn();
			if (ok(v) || Date.now() > until) return v;
			await new Promise(r => setTimeout(r, 50));
		}
	};
	const tierOf = (userId: string) =>
		node.broker.call("users.getTier", { userId }) as Promise<{
			tier: string;
			planTier: string | null;
			stakedWei: string;
			effectiveStakeWei: string;
		}>;

	test("plan and stake facts set the tier (stake counts once matured); the cache follows", async () => {
		const u = await register();
		expect((await tierOf(u.userId)).tier).toBe("free"); // cached now
		await node.broker.call("paymentsfx.publish", {
			topic: "payments.plan.changed",
			payload: { userId: u.userId, planTier: "pro" }
		});
		expect(
			(
				await waitFor(
					() => tierOf(u.userId),
					t => t.tier === "pro"
				)
			).planTier
		).toBe("pro");

		const matured = new Date(Date.now() - 8 * DAY_MS).toISOString();
		const fresh = new Date(Date.now() - DAY_MS).toISOString();
		await node.broker.call("paymentsfx.publish", {
			topic: "payments.stake.changed",
			payload: {
				userId: u.userId,
				positions: [
					{ amountWei: FORGE(10_000n), since: matured },
					{ amountWei: FORGE(90_000n), since: fresh }
				]
			}
		});
		const t = await waitFor(
			() => tierOf(u.userId),
			x => x.tier === "team"
		);
		expect(t).toEqual(
			expect.objectContaining({
				tier: "team",
				stakedWei: FORGE(100_000n),
				effectiveStakeWei: FORGE(10_000n),
				feeDiscountBps: 1000
			})
		);
		const me = await call("GET", "/api/v1/users/me", { token: u.access });
		expect(me.json.forge.stake).toEqual({
			stakedWei: FORGE(100_000n),
			effectiveStakeWei: FORGE(10_000n),
			nextMaturityAt: expect.any(String)
		});

		await node.broker.call("paymentsfx.publish", {
			topic: "payments.stake.changed",
			payload: { userId: u.userId, positions: [] }
		});
		await node.broker.call("paymentsfx.publish", {
			topic: "payments.plan.changed",
			payload: { userId: u.userId, planTier: null }
		});
		expect(
			(
				await waitFor(
					() => tierOf(u.userId),
					x => x.tier === "free" && x.stakedWei === "0"
				)
			).tier
		).toBe("free");
	});

	test("an event older than the stored fact is ignored; a redelivered event is applied once", async () => {
		const u = await register();
		const seq = runtimeOf(node.broker).sequelize;
		const insert = (eventId: string, topic: string, payload: unknown, createdAt: string) =>
			seq.query(
				`INSERT INTO outbox_events (event_id, topic, payload, created_at) VALUES ($1, $2, $3::jsonb, $4)`,
				{
					bind: [eventId, topic, JSON.stringify(payload), createdAt]
				}
			);
		await insert(
			randomUUID(),
			"payments.plan.changed",
			{ userId: u.userId, planTier: "team" },
			new Date().toISOString()
		);
		runtimeOf(node.broker).relay.kick();
		await waitFor(
			() => tierOf(u.userId),
			t => t.tier === "team"
		);
		await insert(
			randomUUID(),
			"payments.plan.changed",
			{ userId: u.userId, planTier: "pro" },
			new Date(Date.now() - 60_000).toISOString()
		);
		runtimeOf(node.broker).relay.kick();
		await waitFor(
			() => sql<{ n: string }>(`SELECT count(*) AS n FROM outbox_events WHERE published_at IS NULL`),
			rows => rows[0].n === "0"
		);
		await new Promise(r => setTimeout(r, 300));
		expect((await tierOf(u.userId)).tier).toBe("team");
		const inbox = await sql<{ n: string }>(`SELECT count(*) AS n FROM inbox_events WHERE consumer = 'users'`);
		expect(Number(inbox[0].n)).toBeGreaterThanOrEqual(2);
	});
});

describe("$FORGE holdings without a reachable chain", () => {
	test("an unreachable RPC shows each wallet's balance as null with the reason; the profile still answers", async () => {
		const u = await register();
		const address = "0x" + "ab".repeat(20);
		await sql(
			`INSERT INTO user_wallets (address, user_id, chain_id, kind) VALUES ($1, $2, 31337, 'eoa') RETURNING address`,
			[address, u.userId]
		);
		await node.broker.cacher!.clean();
		const me = await call("GET", "/api/v1/users/me", { token: u.access });
		expect(me.status).toBe(200);
		expect(me.json.forge.holdingsUnavailableReason).toBeNull();
		expect(me.json.forge.holdings).toEqual({
			totalWei: null,
			refreshed: false,
			wallets: [
				{
					address: getAddress(address),
					balanceWei: null,
					fetchedAt: null,
					error: expect.stringMatching(/^chain not reachable/)
				}
			]
		});
	});

	test("with no chain configured, holdings are null with a reason", async () => {
		const plain = await startTestNode({ db, services: ["api", "users"], env: { AUTH_SESSION_CHECK: "true" } });
		try {
			const r = await signUp(plain, `${uniqueId("n")}@example.com`, PASSWORD);
			const me = await httpClient(() => plain.baseUrl)("GET", "/api/v1/users/me", { token: r.accessToken });
			expect(me.status).toBe(200);
			expect(me.json.forge).toEqual(
				expect.objectContaining({
					holdings: null,
					holdingsUnavailableReason: expect.stringContaining("CHAIN_NOT_CONFIGURED")
				})
			);
		} finally {
			await plain.stop();
		}
	});
});

describe("bad inputs give 4xx in the contract's shape", () => {
	const cases: Array<[string, string, unknown, number, string?]> = [
		["POST", "/api/v1/auth/register", {}, 422],
		["POST", "/api/v1/auth/register", { email: 42, password: true }, 422],
		["POST", "/api/v1/auth/register", { email: "not-an-email", password: PASSWORD }, 422],
		["POST", "/api/v1/auth/register", { email: `${"a".repeat(300)}@example.com`, password: PASSWORD }, 422],
		["POST", "/api/v1/auth/register", { email: "ok@example.com", password: "x".repeat(5000) }, 422],
		["POST", "/api/v1/auth/login", {}, 422],
		["POST", "/api/v1/auth/login", { email: ["a"], password: {} }, 422],
		["POST", "/api/v1/auth/login", { email: "a@example.com", password: "y".repeat(2000) }, 422],
		["POST", "/api/v1/auth/refresh", {}, 422],
		["POST", "/api/v1/auth/refresh", { refreshToken: "ffr_short" }, 422],
		["POST", "/api/v1/auth/refresh", { refreshToken: 123 }, 422],
		["POST", "/api/v1/auth/logout", { refreshToken: "nope" }, 422],
		["POST", "/api/v1/auth/logout", {}, 422],
		["POST", "/api/v1/auth/siwe/verify", {}, 422],
		[
			"POST",
			"/api/v1/auth/siwe/verify",
			{ message: "hello", signature: "0x1234", nonceToken: "x".repeat(43) },
			422,
			"SIWE_INVALID_MESSAGE"
		],
		[
			"POST",
			"/api/v1/auth/siwe/verify",
			{ message: "m".repeat(5000), signature: "0x12", nonceToken: "x".repeat(43) },
			422
		],
		["POST", "/api/v1/auth/siwe/verify", { message: "hello", signature: "zz", nonceToken: "x".repeat(43) }, 422],
		["POST", "/api/v1/auth/siwe/verify", { message: "hello", signature: "0x123", nonceToken: "x".repeat(43) }, 422],
		[
			"POST",
			"/api/v1/auth/siwe/verify",
			{ message: "hello", signature: "0x" + "ab".repeat(20_000), nonceToken: "x".repeat(43) },
			422
		],
		[
			"POST",
			"/api/v1/auth/siwe/verify",
			{ message: "m".repeat(2_000_000), signature: "0x12", nonceToken: "x".repeat(43) },
			413
		]
	];
	test.each(cases.map(([method, path, body, status, code], i) => ({ i, method, path, body, status, code })))(
		"#$i $method $path → $status",
		async ({ method, path, body, status, code }) => {
			const r = await call(method, path, { body });
			expectError(r, status, code ?? (status === 413 ? "PAYLOAD_TOO_LARGE" : "VALIDATION_ERROR"));
		}
	);

	test("authenticated routes refuse bad ids, addresses, scopes and names", async () => {
		const u = await register();
		const adm = await admin();
		const bad: Array<[string, string, unknown, string]> = [
			["PATCH", "/api/v1/users/me", { displayName: "x".repeat(81) }, u.access],
			["PATCH", "/api/v1/users/me", { displayName: 5 }, u.access],
			["POST", "/api/v1/users/me/password", {}, u.access],
			["DELETE", "/api/v1/users/me/sessions/not-a-uuid", undefined, u.access],
			["DELETE", "/api/v1/users/me/wallets/0x1234", undefined, u.access],
			["DELETE", "/api/v1/users/me/wallets/0xZZ00000000000000000000000000000000000000", undefined, u.access],
			["DELETE", "/api/v1/users/me/api-keys/bad-id!", undefined, u.access],
			["POST", "/api/v1/users/me/wallets", { message: 1, signature: "0x00", nonceToken: "x" }, u.access],
			["POST", "/api/v1/users/me/api-keys", { name: "", scopes: ["users:read"] }, u.access],
			["POST", "/api/v1/users/me/api-keys", { name: "k", scopes: [] }, u.access],
			["POST", "/api/v1/users/me/api-keys", { name: "k", scopes: "users:read" }, u.access],
			["POST", "/api/v1/users/me/api-keys", { name: "k", scopes: ["users:read"], expiresInDays: 0 }, u.access],
			["POST", "/api/v1/users/me/api-keys", { name: "n".repeat(65), scopes: ["users:read"] }, u.access],
			["GET", "/api/v1/users/me?refresh=maybe", undefined, u.access],
			["GET", "/api/v1/admin/users?limit=0", undefined, adm.access],
			["GET", "/api/v1/admin/users?role=root", undefined, adm.access],
			["GET", "/api/v1/admin/users/not-a-uuid", undefined, adm.access],
			["PATCH", `/api/v1/admin/users/${u.userId}`, { role: "superuser" }, adm.access],
			["PATCH", `/api/v1/admin/users/${u.userId}`, { tierOverride: "platinum" }, adm.access],
			["PATCH", `/api/v1/admin/users/${u.userId}`, { disabled: "yes" }, adm.access]
		];
		for (const [method, path, body, token] of bad) {
			const r = await call(method, path, { body, token });
			expect({ method, path, status: r.status }).toEqual({ method, path, status: 422 });
			expectError(r, 422, "VALIDATION_ERROR");
		}
	});

	test("malformed JSON and wrong content type", async () => {
		expectError(
			await call("POST", "/api/v1/auth/login", {
				body: '{"email":',
				headers: { "content-type": "application/json" }
			}),
			400,
			"MALFORMED_JSON"
		);
		expectError(
			await call("POST", "/api/v1/auth/login", {
				body: "email=a",
				headers: { "content-type": "application/x-www-form-urlencoded" }
			}),
			415,
			"UNSUPPORTED_MEDIA_TYPE"
		);
	});
});

describe("operator REPL commands", () => {
	test("find a user, show their tier and sessions, revoke their sessions", async () => {
		const u = await register(`${uniqueId("repl").toLowerCase()}@example.com`);
		const out: string[] = [];
		const log = jest
			.spyOn(console, "log")
			.mockImplementation((...a: unknown[]) => void out.push(a.map(String).join(" ")));
		const run = async (name: string, args: Record<string, unknown>) => {
			const cmd = usersReplCommands.find(c => c.command.split(" ")[0] === name)!;
			out.length = 0;
			await cmd.action(node.broker, { options: {}, ...args });
			return out.join("\n");
		};
		try {
			expect(await run("users-find", { query: u.email })).toContain(u.userId);
			expect(await run("users-tier", { user: u.email })).toContain('"tier": "free"');
			expect(await run("users-sessions", { user: u.userId })).toContain('"method": "password"');
			expect(await run("users-revoke-sessions", { user: u.email })).toContain('"revoked": 1');
			expect(await run("users-find", { query: "nobody-at-all@example.com" })).toContain("no user");
		} finally {
			log.mockRestore();
		}
		expectError(await call("GET", "/api/v1/users/me", { token: u.access }), 401, "INVALID_TOKEN");
	});
});
