/**
 * src/users/sign-in.ts over fakes: every branch of password sign-in through its four throttles, and
 * of password change. The fakes record what was done, so "the same work" is compared call by call.
 */
import { RateLimiterRes } from "rate-limiter-flexible";
import type { AuthUser } from "../../../src/auth/user";
import { DomainError } from "../../../src/errors";
import type { AccountMail } from "../../../src/users/mail-templates";
import { PasswordAccounts, SignInSteps, type SignInDeps } from "../../../src/users/sign-in";
import type { UserRow } from "../../../src/users/store";

const NOW = new Date("2026-12-01T12:00:00Z");

function userRow(over: Partial<UserRow> = {}): UserRow {
	return {
		id: "11111111-1111-4111-8111-111111111111",
		email: "ada@example.com",
		email_verified_at: NOW,
		password_hash: "hash:right password",
		display_name: "Ada",
		role: "user",
		tier_override: null,
		disabled_at: null,
		last_login_at: null,
		created_at: NOW,
		...over
	};
}

/** A progressive throttle: `waits` per key, and every call logged. */
function throttle(name: string, log: string[], waits: Record<string, number> = {}) {
	return {
		waits,
		async retryAfterS(key: string) {
			log.push(`${name}.retryAfterS ${key}`);
			return waits[key] ?? 0;
		},
		async recordFailure(key: string) {
			log.push(`${name}.recordFailure ${key}`);
			return 0;
		},
		async reset(key: string) {
			log.push(`${name}.reset ${key}`);
		}
	};
}

function setup(opts: { users?: UserRow[]; mfa?: boolean; known?: boolean | null; revealsTaken?: boolean } = {}) {
	const log: string[] = [];
	const mails: Array<{ to: string; mail: AccountMail }> = [];
	const users = new Map((opts.users ?? [userRow()]).map(u => [u.email!, u]));
	const ip = throttle("ip", log);
	const accountIp = throttle("accountIp", log);
	const accountWaits: Record<string, number> = {};
	const ended: string[][] = [];
	const deps: SignInDeps = {
		store: {
			async userByEmail(email) {
				log.push(`store.userByEmail ${email}`);
				return users.get(email) ?? null;
			},
			async userById(id) {
				return [...users.values()].find(u => u.id === id) ?? null;
			},
			async createPasswordUser(email, hash, displayName) {
				if (users.has(email)) return null;
				const u = userRow({
					id: "22222222-2222-4222-8222-222222222222",
					email,
					password_hash: hash,
					display_name: displayName
				});
				users.set(email, u);
				return u;
			},
			async setPasswordHash(userId, hash) {
				log.push(`store.setPasswordHash ${userId} ${hash}`);
			},
			async touchLogin(userId) {
				log.push(`store.touchLogin ${userId}`);
			},
			async audit(_tx, userId, _actor, action) {
				log.push(`store.audit ${userId} ${action}`);
			}
		},
		hasher: {
			async hash(password) {
				log.push("hasher.hash");
				return `hash:${password}`;
			},
			async verify(hash, password) {
				// The real hasher verifies a dummy when there is no hash: the call is the work.
				log.push(`hasher.verify ${hash === null ? "dummy" : "stored"}`);
				return hash !== null && hash === `hash:${password}`;
			},
			needsRehash: () => false
		},
		passwords: { minLength: 10, maxLength: 1024, argon2: { memoryCostKiB: 8, timeCost: 1, parallelism: 1 } },
		throttles: {
			ip,
			accountIp,
			account: {
				async admit(key) {
					log.push(`account.admit ${key}`);
					return accountWaits[key] ?? 0;
				},
				async reset(key) {
					log.push(`account.reset ${key}`);
				}
			},
			known: {
				async has() {
					return opts.known === undefined ? null : opts.known;
				},
				async remember(account) {
					log.push(`known.remember ${account}`);
				}
			},
			register: {
				async consume() {
					return new RateLimiterRes();
				}
			}
		},
		secondFactor: {
			enabled: async () => opts.mfa === true,
			stepUp: async () => undefined
		},
		mfaChallenge: async () => ({ mfaRequired: true, mfaToken: "fft_mfa", expiresIn: 300, methods: ["totp"] }),
		sessions: {
			async issue(user, method) {
				log.push(`sessions.issue ${user.id} ${method}`);
				return {
					accessToken: "jwt",
					tokenType: "Bearer",
					expiresIn: 900,
					refreshToken: "ffr_x",
					refreshTokenExpiresAt: NOW.toISOString(),
					sessionId: "s1"
				};
			},
			async endAllExcept(userId, reason, except) {
				log.push(`sessions.endAllExcept ${userId} ${reason} ${except}`);
				const ids = ["s2", "s3"];
				ended.push(ids);
				return ids;
			}
		},
		mail: (to, mail) => mails.push({ to, mail }),
		signedUp: async (userId, email) => {
			log.push(`signedUp ${userId} ${email}`);
		},
		signUpTaken: async email => {
			log.push(`signUpTaken ${email}`);
		},
		revealsTaken: opts.revealsTaken === true,
		now: () => NOW
	};
	return { accounts: new PasswordAccounts(deps), log, mails, ip, accountIp, accountWaits, ended };
}

const client = { ip: "203.0.113.7", userAgent: "test" };

async function refusal(p: Promise<unknown>) {
	const err = await p.then(
		() => null,
		e => e
	);
	expect(err).toBeInstanceOf(DomainError);
	const d = err as DomainError;
	return { status: d.status, code: d.code, details: d.details };
}

/** The operations of a log, without their keys (an unknown and a known address differ only there). */
const shape = (log: string[]) => log.map(l => l.split(" ")[0]);

describe("password sign-in", () => {
	test("success: a session, the counters of this account and address reset, the address remembered", async () => {
		const s = setup();
		const r = await s.accounts.login({ email: "Ada@Example.com", password: "right password" }, client);
		expect(r).toMatchObject({ accessToken: "jwt", user: { id: userRow().id, email: "ada@example.com" } });
		expect(s.log).toEqual([
			"ip.retryAfterS 203.0.113.7",
			expect.stringMatching(/^accountIp\.retryAfterS /),
			expect.stringMatching(/^account\.admit /),
			"store.userByEmail ada@example.com",
			"hasher.verify stored",
			expect.stringMatching(/^accountIp\.reset /),
			expect.stringMatching(/^account\.reset /),
			"known.remember ada@example.com",
			`store.touchLogin ${userRow().id}`,
			`sessions.issue ${userRow().id} password`
		]);
		// The same keys that were checked are the ones reset.
		const checked = s.log[1].split(" ")[1];
		expect(s.log).toContain(`accountIp.reset ${checked}`);
		expect(s.log.filter(l => l.startsWith("account.admit"))[0].split(" ")[1]).toBe(
			s.log.filter(l => l.startsWith("account.reset"))[0].split(" ")[1]
		);
	});

	test("a known address skips the account-wide limiter and leaves its count alone", async () => {
		const s = setup({ known: true });
		await s.accounts.login({ email: "ada@example.com", password: "right password" }, client);
		expect(s.log.some(l => l.startsWith("account."))).toBe(false);
		expect(s.mails).toEqual([]);
	});

	test("an address the account never used: the verified owner is told", async () => {
		const s = setup({ known: false });
		await s.accounts.login({ email: "ada@example.com", password: "right password" }, client);
		expect(s.mails).toEqual([
			{
				to: "ada@example.com",
				mail: { kind: "newSignIn", method: "password", ip: client.ip, userAgent: "test", at: NOW.toISOString() }
			}
		]);
	});

	test("wrong password: 401, a failure counted per address and per account+address, nothing reset", async () => {
		const s = setup();
		expect(await refusal(s.accounts.login({ email: "ada@example.com", password: "wrong" }, client))).toEqual({
			status: 401,
			code: "INVALID_CREDENTIALS",
			details: undefined
		});
		expect(s.log.filter(l => /recordFailure|reset|issue|touchLogin/.test(l))).toEqual([
			expect.stringMatching(/^accountIp\.recordFailure /),
			"ip.recordFailure 203.0.113.7"
		]);
	});

	test("unknown user: the same answer and the same work as a known one with a wrong password", async () => {
		const known = setup();
		const unknown = setup();
		const a = await refusal(known.accounts.login({ email: "ada@example.com", password: "wrong" }, client));
		const b = await refusal(unknown.accounts.login({ email: "nobody@example.com", password: "wrong" }, client));
		expect(b).toEqual(a);
		expect(shape(unknown.log)).toEqual(shape(known.log));
		expect(unknown.log).toContain("hasher.verify dummy");
	});

	test("a password-less account (wallet only) verifies the dummy too and is refused alike", async () => {
		const s = setup({ users: [userRow({ password_hash: null })] });
		expect(
			await refusal(s.accounts.login({ email: "ada@example.com", password: "anything" }, client))
		).toMatchObject({ status: 401, code: "INVALID_CREDENTIALS" });
		expect(s.log).toContain("hasher.verify dummy");
	});

	test("throttled per address: 429 LOGIN_THROTTLED before the account is read or anything hashed", async () => {
		const s = setup();
		s.ip.waits["203.0.113.7"] = 30;
		expect(
			await refusal(s.accounts.login({ email: "ada@example.com", password: "right password" }, client))
		).toEqual({ status: 429, code: "LOGIN_THROTTLED", details: { retryAfter: 30 } });
		expect(s.log.some(l => /userByEmail|hasher|admit/.test(l))).toBe(false);
	});

	test("throttled per account and address: the same 429 (which limiter refused is not told)", async () => {
		const s = setup();
		const probe = setup();
		await probe.accounts.login({ email: "ada@example.com", password: "x" }, client).catch(() => undefined);
		const accountKey = probe.log[1].split(" ")[1];
		s.accountIp.waits[accountKey] = 12;
		expect(
			await refusal(s.accounts.login({ email: "ada@example.com", password: "right password" }, client))
		).toEqual({ status: 429, code: "LOGIN_THROTTLED", details: { retryAfter: 12 } });
		expect(s.log.some(l => /userByEmail|hasher/.test(l))).toBe(false);
	});

	test("throttled account-wide (guesses from many addresses): the same 429, nothing hashed", async () => {
		const s = setup();
		const probe = setup();
		await probe.accounts.login({ email: "ada@example.com", password: "x" }, client).catch(() => undefined);
		const emailKey = probe.log[2].split(" ")[1];
		s.accountWaits[emailKey] = 64;
		expect(
			await refusal(s.accounts.login({ email: "ada@example.com", password: "right password" }, client))
		).toEqual({ status: 429, code: "LOGIN_THROTTLED", details: { retryAfter: 64 } });
		expect(s.log.some(l => /userByEmail|hasher/.test(l))).toBe(false);
	});

	test("disabled account: 403 ACCOUNT_DISABLED only after the right password, and no session", async () => {
		const s = setup({ users: [userRow({ disabled_at: NOW })] });
		expect(await refusal(s.accounts.login({ email: "ada@example.com", password: "wrong" }, client))).toMatchObject({
			code: "INVALID_CREDENTIALS"
		});
		expect(
			await refusal(s.accounts.login({ email: "ada@example.com", password: "right password" }, client))
		).toMatchObject({ status: 403, code: "ACCOUNT_DISABLED" });
		expect(s.log.some(l => /sessions\.issue|touchLogin/.test(l))).toBe(false);
	});

	test("MFA required: the challenge instead of a session; the login is not recorded yet", async () => {
		const s = setup({ mfa: true });
		const r = await s.accounts.login({ email: "ada@example.com", password: "right password" }, client);
		expect(r).toEqual({ mfaRequired: true, mfaToken: "fft_mfa", expiresIn: 300, methods: ["totp"] });
		expect(s.log.some(l => /sessions\.issue|touchLogin/.test(l))).toBe(false);
		// The password was right: its counters are reset all the same.
		expect(s.log.some(l => l.startsWith("accountIp.reset"))).toBe(true);
	});
});

describe("sign-up", () => {
	const input = (email: string) => ({ email, password: "a long password" });

	test("default: a new and a taken address get the same pending answer after the same hash", async () => {
		const s = setup();
		const fresh = await s.accounts.register(input("New@Example.com"), client);
		const freshLog = [...s.log];
		s.log.length = 0;
		const taken = await s.accounts.register(input("ada@example.com"), client);
		expect(fresh).toEqual({
			created: false,
			status: "pending",
			email: "new@example.com",
			message: expect.any(String)
		});
		expect(taken).toEqual({ ...fresh, email: "ada@example.com" });
		expect(freshLog.filter(l => l === "hasher.hash")).toHaveLength(1);
		expect(s.log.filter(l => l === "hasher.hash")).toHaveLength(1);
		// The new account is told by its verification link, the owner of the taken one by a notice;
		// neither gets a session.
		expect(freshLog).toContain("signedUp 22222222-2222-4222-8222-222222222222 new@example.com");
		expect(s.log).toContain("signUpTaken ada@example.com");
		expect([...freshLog, ...s.log].some(l => l.startsWith("sessions.issue"))).toBe(false);
		expect(s.log.some(l => l.startsWith("store.audit"))).toBe(false);
	});

	test("SIGNUP_REVEALS_TAKEN: tokens for a new address, 409 EMAIL_TAKEN for a taken one (no notice)", async () => {
		const s = setup({ revealsTaken: true });
		const fresh = await s.accounts.register(input("new@example.com"), client);
		expect(fresh).toMatchObject({ created: true, accessToken: "jwt", user: { email: "new@example.com" } });
		expect(await refusal(s.accounts.register(input("ada@example.com"), client))).toMatchObject({
			status: 409,
			code: "EMAIL_TAKEN"
		});
		expect(s.log.some(l => l.startsWith("signUpTaken"))).toBe(false);
	});
});

describe("password change", () => {
	const caller: AuthUser = { id: userRow().id, role: "user", sid: "s1", scopes: ["*"] };

	test("the right current password: the new hash, every other session ended, the counters reset", async () => {
		const s = setup();
		const r = await s.accounts.changePassword(
			caller,
			{ currentPassword: "right password", newPassword: "a much better one" },
			client
		);
		expect(r).toEqual({ changed: true, endedSessions: 2 });
		expect(s.log).toEqual(
			expect.arrayContaining([
				`store.setPasswordHash ${caller.id} hash:a much better one`,
				`sessions.endAllExcept ${caller.id} password_changed s1`,
				expect.stringMatching(/^accountIp\.reset /),
				expect.stringMatching(/^account\.reset /)
			])
		);
	});

	test("a wrong current password: 403, a failure counted, nothing changed", async () => {
		const s = setup();
		expect(
			await refusal(
				s.accounts.changePassword(caller, { currentPassword: "nope", newPassword: "a much better one" }, client)
			)
		).toMatchObject({ status: 403, code: "INVALID_CURRENT_PASSWORD" });
		expect(s.log.some(l => l.startsWith("accountIp.recordFailure"))).toBe(true);
		expect(s.log.some(l => /setPasswordHash|endAllExcept/.test(l))).toBe(false);
	});

	test("a new password against the policy: 422 on newPassword", async () => {
		const s = setup();
		const r = await refusal(
			s.accounts.changePassword(caller, { currentPassword: "right password", newPassword: "short" }, client)
		);
		expect(r).toMatchObject({ status: 422, details: [{ field: "newPassword", type: "passwordPolicy" }] });
	});
});

describe("the end of every sign-in (SignInSteps)", () => {
	function steps(opts: { mfa?: boolean; disabled?: boolean; codeOk?: boolean; spent?: boolean } = {}) {
		const log: string[] = [];
		const user = userRow({ disabled_at: opts.disabled ? NOW : null });
		const s = new SignInSteps({
			store: {
				userById: async id => (id === user.id ? user : null),
				touchLogin: async id => void log.push(`touchLogin ${id}`)
			},
			secondFactor: {
				enabled: async () => opts.mfa === true,
				check: async () => (opts.codeOk === false ? { ok: false } : { ok: true, via: "totp" })
			},
			tokens: {
				issueToken: async (userId, kind, ttl, extra) => {
					log.push(`issueToken ${userId} ${kind} ${ttl} ${extra?.sessionMethod}`);
					return "fft_token";
				},
				peekToken: async token =>
					token === "fft_token"
						? { user_id: user.id, email: null, session_method: "siwe", attempts: 0 }
						: null,
				failTokenAttempt: async (token, max) => void log.push(`failTokenAttempt ${token} ${max}`),
				spendToken: async () => (opts.spent ? null : { user_id: user.id, email: null, session_method: "siwe" })
			},
			sessions: {
				issue: async (u, method) => {
					log.push(`issue ${u.id} ${method}`);
					return {
						accessToken: "jwt",
						tokenType: "Bearer",
						expiresIn: 900,
						refreshToken: "ffr_x",
						refreshTokenExpiresAt: NOW.toISOString(),
						sessionId: "s1"
					};
				}
			},
			mfa: { mfaTokenTtlS: 300, mfaTokenMaxAttempts: 5 }
		});
		return { s, log, user };
	}

	test("a passkey is two factors: a session even with 2FA on", async () => {
		const t = steps({ mfa: true });
		await expect(t.s.complete(t.user.id, "passkey", client)).resolves.toMatchObject({ sessionId: "s1" });
		expect(t.log).toEqual([`touchLogin ${t.user.id}`, `issue ${t.user.id} passkey`]);
	});

	test("SSO with 2FA on: the second-step challenge, bound to the method, and no session", async () => {
		const t = steps({ mfa: true });
		await expect(t.s.complete(t.user.id, "sso", client)).resolves.toEqual({
			mfaRequired: true,
			mfaToken: "fft_token",
			expiresIn: 300,
			methods: ["totp", "backup_code"]
		});
		expect(t.log).toEqual([`issueToken ${t.user.id} mfa_login 300 sso`]);
	});

	test("a disabled account gets no session from any first factor", async () => {
		const t = steps({ disabled: true });
		expect(await refusal(t.s.complete(t.user.id, "sso", client))).toMatchObject({ code: "ACCOUNT_DISABLED" });
		expect(await refusal(t.s.finish("fft_token", "123456", client))).toMatchObject({ code: "ACCOUNT_DISABLED" });
		expect(t.log.filter(l => l.startsWith("issue "))).toEqual([]);
	});

	test("the second step: a wrong code counts an attempt; a right one gives the session of the first factor", async () => {
		const wrong = steps({ codeOk: false });
		expect(await refusal(wrong.s.finish("fft_token", "000000", client))).toMatchObject({
			status: 403,
			code: "MFA_CODE_INVALID"
		});
		expect(wrong.log).toEqual(["failTokenAttempt fft_token 5"]);
		const right = steps();
		await expect(right.s.finish("fft_token", "123456", client)).resolves.toMatchObject({
			user: { id: right.user.id }
		});
		expect(right.log).toEqual([`touchLogin ${right.user.id}`, `issue ${right.user.id} siwe`]);
	});

	test("an unknown token, or one a racing finish spent first, is refused", async () => {
		expect(await refusal(steps().s.finish("fft_other", "123456", client))).toMatchObject({ status: 401 });
		const raced = steps({ spent: true });
		expect(await refusal(raced.s.finish("fft_token", "123456", client))).toMatchObject({ status: 401 });
		expect(raced.log).toEqual([]);
	});
});
