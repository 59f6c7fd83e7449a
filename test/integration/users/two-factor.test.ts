/**
 * TOTP two-factor through the real gateway and PostgreSQL, with mail in the development outbox
 * (no SMTP_URL): enrolment, backup codes, the second sign-in step, replay refused, guessing
 * throttled, step-up on the sensitive changes, turning it off, the operator's reset (REPL, audited),
 * export and deletion, and the dev outbox route itself.
 */
import { authenticator } from "otplib";
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../../src/runtime/runtime";
import { usersReplCommands } from "../../../src/users/repl";
import { stepOf, totpAt } from "../../../src/users/totp";
import { createTestDatabase, eventually, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { expectError, httpClient } from "./http";
import { signUp } from "../../support/sign-up";

jest.setTimeout(90_000);

const PASSWORD = "correct horse battery staple";
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const sql = <T extends object>(query: string, bind: unknown[] = []) =>
	runtimeOf(node.broker).sequelize.query<T>(query, { bind, type: QueryTypes.SELECT });

/** A code for `secret` of the step `offset` steps from now (the server allows one either side). */
const codeFor = (secret: string, offset = 0) =>
	totpAt(Buffer.from(authenticator.decode(secret), "hex"), Date.now() + offset * 30_000);

/**
 * The current code, after forgetting the last accepted step: for tests of what a code unlocks
 * (the replay rule has its own test, which does not do this).
 */
function freshCodes(userId: string, secret: string) {
	return async () => {
		await sql(`UPDATE user_totp SET last_step = NULL WHERE user_id = $1 RETURNING user_id`, [userId]);
		return codeFor(secret, 0);
	};
}

/** The outbox's messages to `to`, newest first, once there are at least `atLeast` (mail is sent after the answer). */
async function outbox(to: string, atLeast = 1) {
	let items: Array<{ subject: string; text: string; links: string[]; to: string }> = [];
	await eventually(async () => {
		const r = await call("GET", `/api/v1/dev/outbox?to=${encodeURIComponent(to)}`);
		expect(r.status).toBe(200);
		items = r.json.items;
		return items.length >= atLeast;
	});
	return items;
}

/** A signed-up account with its address verified through the outbox's link. */
async function verifiedUser() {
	const email = `${uniqueId("tf")}@example.com`;
	const u = await signUp(call, email, PASSWORD);
	const [mail] = await outbox(email);
	expect(mail.subject).toBe("Confirm your e-mail address");
	const token = new URL(mail.links[0]).searchParams.get("token");
	expect((await call("POST", "/api/v1/auth/email/verify", { body: { token } })).status).toBe(200);
	return { email, userId: u.userId, access: u.accessToken };
}

async function enrolled() {
	const u = await verifiedUser();
	const start = await call("POST", "/api/v1/users/me/2fa/totp", { token: u.access });
	expect(start.status).toBe(200);
	const secret = start.json.secret as string;
	const next = freshCodes(u.userId, secret);
	// Confirmed with the previous step's code, so that the current one is still unused.
	const confirm = await call("POST", "/api/v1/users/me/2fa/totp/confirm", {
		token: u.access,
		body: { code: codeFor(secret, -1) }
	});
	expect(confirm.status).toBe(200);
	return { ...u, secret, next, backupCodes: confirm.json.backupCodes as string[] };
}

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users"],
		env: { AUTH_SESSION_CHECK: "true", MFA_THROTTLE_FREE_FAILURES: "3" }
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

describe("enrolment", () => {
	test("needs a verified address", async () => {
		const email = `${uniqueId("nv")}@example.com`;
		const u = await signUp(call, email, PASSWORD);
		expectError(
			await call("POST", "/api/v1/users/me/2fa/totp", { token: u.accessToken }),
			403,
			"EMAIL_NOT_VERIFIED"
		);
	});

	test("secret + otpauth URI; a wrong code does not confirm; the right one gives 10 backup codes, stored hashed", async () => {
		const u = await verifiedUser();
		const start = await call("POST", "/api/v1/users/me/2fa/totp", { token: u.access });
		expect(start.json).toEqual({
			secret: expect.stringMatching(/^[A-Z2-7]{32}$/),
			otpauthUri: expect.stringMatching(/^otpauth:\/\/totp\//)
		});
		expect(new URL(start.json.otpauthUri).searchParams.get("secret")).toBe(start.json.secret);
		const wrong = codeFor(start.json.secret, 5);
		expectError(
			await call("POST", "/api/v1/users/me/2fa/totp/confirm", { token: u.access, body: { code: wrong } }),
			403,
			"MFA_CODE_INVALID"
		);
		expectError(
			await call("POST", "/api/v1/users/me/2fa/totp/confirm", { token: u.access, body: { code: "12ab56" } }),
			422,
			"VALIDATION_ERROR"
		);
		const ok = await call("POST", "/api/v1/users/me/2fa/totp/confirm", {
			token: u.access,
			body: { code: codeFor(start.json.secret) }
		});
		expect(ok.status).toBe(200);
		expect(ok.json.backupCodes).toHaveLength(10);
		const rows = await sql<{ code_hash: Buffer }>(`SELECT code_hash FROM user_backup_codes WHERE user_id = $1`, [
			u.userId
		]);
		expect(rows).toHaveLength(10);
		for (const c of ok.json.backupCodes as string[])
			for (const r of rows) expect(r.code_hash.toString("utf8")).not.toContain(c.replace(/-/g, ""));
		expectError(await call("POST", "/api/v1/users/me/2fa/totp", { token: u.access }), 403, "MFA_ALREADY_ENABLED");
		expect((await outbox(u.email, 2))[0].subject).toBe("Two-factor authentication changed");
	});

	test("the secret is sealed at rest (AES-256-GCM under the configured key), and still opens for the service", async () => {
		const a = await verifiedUser();
		const start = await call("POST", "/api/v1/users/me/2fa/totp", { token: a.access });
		const [row] = await sql<{ secret: string }>(`SELECT secret FROM user_totp WHERE user_id = $1`, [a.userId]);
		expect(row.secret).toMatch(/^v1\.jwt-[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/);
		expect(row.secret).not.toContain(start.json.secret);
		// Still usable through the service: the confirmation opens it.
		const confirm = await call("POST", "/api/v1/users/me/2fa/totp/confirm", {
			token: a.access,
			body: { code: codeFor(start.json.secret) }
		});
		expect(confirm.status).toBe(200);
	});
});

describe("sign-in with 2FA", () => {
	test("login answers {mfaRequired, mfaToken} and no session; /auth/login/mfa finishes; the token is single use", async () => {
		const u = await enrolled();
		const first = await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } });
		expect(first.status).toBe(200);
		expect(first.json).toEqual({
			mfaRequired: true,
			mfaToken: expect.stringMatching(/^fft_/),
			expiresIn: 300,
			methods: ["totp", "backup_code"]
		});
		expect(first.json.accessToken).toBeUndefined();
		const done = await call("POST", "/api/v1/auth/login/mfa", {
			body: { mfaToken: first.json.mfaToken, code: await u.next() }
		});
		expect(done.status).toBe(200);
		expect(done.json).toEqual(
			expect.objectContaining({
				accessToken: expect.any(String),
				refreshToken: expect.any(String),
				tokenType: "Bearer"
			})
		);
		expect((await call("GET", "/api/v1/users/me", { token: done.json.accessToken })).status).toBe(200);
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", {
				body: { mfaToken: first.json.mfaToken, code: await u.next() }
			}),
			401,
			"MFA_TOKEN_INVALID"
		);
	});

	test("a code is accepted once: the same code (and any earlier step) is refused afterwards", async () => {
		const u = await enrolled();
		const login = async () =>
			(await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } })).json
				.mfaToken as string;
		const now = codeFor(u.secret, 0);
		const t1 = await login();
		expect((await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: t1, code: now } })).status).toBe(200);
		const t2 = await login();
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: t2, code: now } }),
			403,
			"MFA_CODE_INVALID"
		);
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: t2, code: codeFor(u.secret, -1) } }),
			403,
			"MFA_CODE_INVALID"
		);
		// The replay rule is by step: the database holds the last accepted one.
		const [row] = await sql<{ last_step: string }>(`SELECT last_step FROM user_totp WHERE user_id = $1`, [
			u.userId
		]);
		expect(Number(row.last_step)).toBeGreaterThanOrEqual(stepOf(Date.now()) - 1);
		// A later step still works with the same mfaToken (two wrong tries of the five allowed).
		expect(
			(await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: t2, code: codeFor(u.secret, 1) } }))
				.status
		).toBe(200);
	});

	test("backup codes work once each", async () => {
		const u = await enrolled();
		const login = async () =>
			(await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } })).json
				.mfaToken as string;
		const code = u.backupCodes[3].toLowerCase().replace(/-/g, " ");
		expect((await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: await login(), code } })).status).toBe(
			200
		);
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: await login(), code } }),
			403,
			"MFA_CODE_INVALID"
		);
		const audit = await sql<{ details: { left: number } }>(
			`SELECT details FROM user_audit_events WHERE user_id = $1 AND action = 'user.2fa.backup_code'`,
			[u.userId]
		);
		expect(audit.map(a => a.details.left)).toEqual([9]);
	});

	test("guessing is throttled per account (429 MFA_THROTTLED), before the code is checked", async () => {
		const u = await enrolled();
		const login = async () =>
			(await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } })).json
				.mfaToken as string;
		const token = await login();
		// MFA_THROTTLE_FREE_FAILURES=3 in this suite.
		for (let i = 0; i < 3; i++)
			expectError(
				await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: token, code: "000000" } }),
				403,
				"MFA_CODE_INVALID"
			);
		const r = await call("POST", "/api/v1/auth/login/mfa", {
			body: { mfaToken: await login(), code: await u.next() }
		});
		expectError(r, 429, "MFA_THROTTLED");
		expect(Number(r.headers.get("retry-after"))).toBeGreaterThan(0);
	});

	test("an mfaToken is spent after MFA_TOKEN_MAX_ATTEMPTS wrong codes; bad input is 422", async () => {
		const u = await enrolled();
		const token = (await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } })).json
			.mfaToken;
		await sql(`UPDATE user_tokens SET attempts = 4 WHERE kind = 'mfa_login' AND user_id = $1 RETURNING user_id`, [
			u.userId
		]);
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: token, code: "000000" } }),
			403,
			"MFA_CODE_INVALID"
		);
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: token, code: await u.next() } }),
			401,
			"MFA_TOKEN_INVALID"
		);
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: "nope", code: "123456" } }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await call("POST", "/api/v1/auth/login/mfa", { body: { mfaToken: token } }),
			422,
			"VALIDATION_ERROR"
		);
	});
});

describe("step-up", () => {
	test("password change, API key creation and e-mail change need a fresh code", async () => {
		const u = await enrolled();
		const changes: Array<[string, string, object]> = [
			[
				"POST",
				"/api/v1/users/me/password",
				{ currentPassword: PASSWORD, newPassword: "another long passphrase" }
			],
			["POST", "/api/v1/users/me/api-keys", { name: "ci", scopes: ["projects:read"] }],
			["POST", "/api/v1/users/me/email", { email: `${uniqueId("chg")}@example.com` }]
		];
		for (const [method, path, body] of changes)
			expectError(await call(method, path, { token: u.access, body }), 403, "MFA_REQUIRED");
		// Two wrong codes (three are free in this suite); each success below clears the count.
		for (const [method, path, body] of changes.slice(0, 2))
			expectError(
				await call(method, path, { token: u.access, body: { ...body, mfaCode: "000000" } }),
				403,
				"MFA_CODE_INVALID"
			);
		const ok: number[] = [];
		for (const [method, path, body] of changes) {
			const code = await u.next();
			ok.push((await call(method, path, { token: u.access, body: { ...body, mfaCode: code } })).status);
		}
		expect(ok).toEqual([200, 201, 202]);
	});

	test("wallet linking needs a code too (refused before the SIWE proof is looked at)", async () => {
		const u = await enrolled();
		const r = await call("POST", "/api/v1/users/me/wallets", {
			token: u.access,
			body: { message: "x", signature: "0x00", nonceToken: "A".repeat(43) }
		});
		expectError(r, 403, "MFA_REQUIRED");
	});
});

describe("turning it off", () => {
	test("DELETE /users/me/2fa/totp needs a valid code; afterwards login gives tokens at once", async () => {
		const u = await enrolled();
		expectError(
			await call("DELETE", "/api/v1/users/me/2fa/totp", { token: u.access, body: { code: "000000" } }),
			403,
			"MFA_CODE_INVALID"
		);
		expectError(
			await call("DELETE", "/api/v1/users/me/2fa/totp", { token: u.access, body: {} }),
			422,
			"VALIDATION_ERROR"
		);
		const off = await call("DELETE", "/api/v1/users/me/2fa/totp", {
			token: u.access,
			body: { code: await u.next() }
		});
		expect(off.status).toBe(200);
		const login = await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } });
		expect(login.json.accessToken).toEqual(expect.any(String));
		expectError(
			await call("DELETE", "/api/v1/users/me/2fa/totp", { token: u.access, body: { code: "123456" } }),
			403,
			"MFA_NOT_ENABLED"
		);
	});

	test("REPL users-2fa-reset <id>: an operator removes it, audited", async () => {
		const u = await enrolled();
		const cmd = usersReplCommands.find(c => c.command.startsWith("users-2fa-reset"))!;
		expect(cmd).toBeDefined();
		const lines: string[] = [];
		const log = jest
			.spyOn(console, "log")
			.mockImplementation((...a: unknown[]) => void lines.push(a.map(String).join(" ")));
		try {
			await cmd.action(node.broker, { user: u.email, options: {} });
		} finally {
			log.mockRestore();
		}
		expect(lines.join("\n")).toContain('"removed": true');
		const login = await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } });
		expect(login.json.accessToken).toEqual(expect.any(String));
		const audit = await sql<{ actor_id: string }>(
			`SELECT actor_id FROM user_audit_events WHERE user_id = $1 AND action = 'user.2fa.reset'`,
			[u.userId]
		);
		expect(audit).toEqual([{ actor_id: "operator:repl" }]);
	});
});

describe("export and deletion", () => {
	test("export holds the account's data and no secret", async () => {
		const u = await enrolled();
		const r = await call("GET", "/api/v1/users/me/export", { token: u.access });
		expect(r.status).toBe(200);
		expect(r.json).toEqual(
			expect.objectContaining({
				format: "forgefluid-account-export/1",
				user: expect.objectContaining({ id: u.userId, email: u.email, has_password: true }),
				sessions: expect.any(Array),
				apiKeys: [],
				wallets: [],
				twoFactor: { totpEnabledAt: expect.any(String) }
			})
		);
		expect(r.text).not.toContain(u.secret);
		expect(r.text).not.toContain("argon2");
	});

	test("DELETE /users/me with step-up: sessions and keys go, the e-mail is freed, the id stays as a tombstone", async () => {
		const u = await enrolled();
		const key = await call("POST", "/api/v1/users/me/api-keys", {
			token: u.access,
			body: { name: "k", scopes: ["projects:read"], mfaCode: await u.next() }
		});
		expect(key.status).toBe(201);
		expectError(await call("DELETE", "/api/v1/users/me", { token: u.access, body: {} }), 403, "MFA_REQUIRED");
		const del = await call("DELETE", "/api/v1/users/me", { token: u.access, body: { mfaCode: await u.next() } });
		expect(del.status).toBe(200);
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).status).toBe(401);
		expect((await call("GET", "/api/v1/users/me", { apiKey: key.json.key })).status).toBe(401);
		expectError(
			await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } }),
			401,
			"INVALID_CREDENTIALS"
		);
		const [row] = await sql<Record<string, unknown>>(
			`SELECT email, password_hash, display_name, deleted_at FROM users WHERE id = $1`,
			[u.userId]
		);
		expect(row).toEqual({ email: null, password_hash: null, display_name: null, deleted_at: expect.any(Date) });
		// The address is free at once: signing up with it again makes a new account.
		expect((await signUp(call, u.email, PASSWORD)).userId).not.toBe(u.userId);
	});

	test("without 2FA the password is the step-up", async () => {
		const u = await verifiedUser();
		expectError(await call("DELETE", "/api/v1/users/me", { token: u.access, body: {} }), 403, "PASSWORD_REQUIRED");
		expectError(
			await call("DELETE", "/api/v1/users/me", { token: u.access, body: { password: "wrong password!" } }),
			403,
			"INVALID_CURRENT_PASSWORD"
		);
		expect(
			(await call("DELETE", "/api/v1/users/me", { token: u.access, body: { password: PASSWORD } })).status
		).toBe(200);
	});
	test("wrong step-up passwords are throttled per account (429 STEP_UP_THROTTLED), before the password is checked", async () => {
		const u = await verifiedUser();
		const statuses: number[] = [];
		for (let i = 0; i < 6 && !statuses.includes(429); i++)
			statuses.push(
				(
					await call("DELETE", "/api/v1/users/me", {
						token: u.access,
						body: { password: `wrong password ${i}` }
					})
				).status
			);
		// MFA_THROTTLE_FREE_FAILURES=3 here: three wrong passwords are answered, then the wait starts.
		expect(statuses).toEqual([403, 403, 403, 429]);
		const right = await call("DELETE", "/api/v1/users/me", { token: u.access, body: { password: PASSWORD } });
		expectError(right, 429, "STEP_UP_THROTTLED");
		expect(Number(right.headers.get("retry-after"))).toBeGreaterThan(0);
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).status).toBe(200);
	});
});

describe("forgot-password per IP", () => {
	test("past ACCOUNT_MAIL_PER_IP_PER_HOUR the same IP gets 429, for known and unknown addresses alike", async () => {
		const ipDb = await createTestDatabase();
		const limited = await startTestNode({
			db: ipDb,
			services: ["api", "users"],
			env: { ACCOUNT_MAIL_PER_IP_PER_HOUR: "3" }
		});
		const c = httpClient(() => limited.baseUrl);
		try {
			for (let i = 0; i < 3; i++)
				expect(
					(
						await c("POST", "/api/v1/auth/password/forgot", {
							body: { email: `${uniqueId("ip")}@example.com` }
						})
					).status
				).toBe(202);
			const over = await c("POST", "/api/v1/auth/password/forgot", { body: { email: "someone@example.com" } });
			expectError(over, 429, "RATE_LIMITED");
			expect(Number(over.headers.get("retry-after"))).toBeGreaterThan(0);
		} finally {
			await limited.stop();
			await ipDb.drop();
		}
	});
});

describe("the development outbox", () => {
	test("lists what was sent (newest first), the console got it too; refused with NODE_ENV=production", async () => {
		const u = await verifiedUser();
		await call("POST", "/api/v1/auth/password/forgot", { body: { email: u.email } });
		const items = await outbox(u.email, 2);
		expect(items.map(i => i.subject)).toEqual(["Reset your ForgeFluid password", "Confirm your e-mail address"]);
		expect(items[0].links[0]).toMatch(/^http:\/\/localhost:3000\/reset-password\?token=fft_/);
		const prodDb = await createTestDatabase();
		const prod = await startTestNode({ db: prodDb, services: ["api", "users"], env: { NODE_ENV: "production" } });
		try {
			const r = await fetch(`${prod.baseUrl}/api/v1/dev/outbox`);
			expect(r.status).toBe(404);
		} finally {
			await prod.stop();
			await prodDb.drop();
		}
	});
});
