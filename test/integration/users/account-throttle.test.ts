/**
 * The account-wide login limiter through two gateway+users replicas that share Redis: guesses against
 * one account spread over many client IPs (X-Forwarded-For behind TRUST_PROXY_HOPS=1) are slowed down
 * per account, unknown e-mails get exactly the same answers, the limiter releases after its delay,
 * a correct password resets it, other accounts and the owner's known IPs are unaffected.
 */
import { runtimeOf } from "../../../src/runtime/runtime";
import { AccountGuessLimiter } from "../../../src/users/throttle";
import { createTestDatabase, startTestNode, REDIS_URL, uniqueId, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { expectError, httpClient, type HttpResult } from "./http";
import { signUp } from "../../support/sign-up";

jest.setTimeout(60_000);

const PASSWORD = "correct horse battery staple";
const WRONG = "not the password!";
const THROTTLED = { code: "LOGIN_THROTTLED", message: "Too many failed sign-in attempts; try again later" };

let db: TestDatabase;
type Node = ForgeNode & { baseUrl: string };
let a: Node;
let b: Node;
const callA = httpClient(() => a.baseUrl);
const callB = httpClient(() => b.baseUrl);

let ipSeq = 0;
/** A client address no other request of this suite has used. */
const freshIp = () => {
	ipSeq++;
	return `10.77.${Math.floor(ipSeq / 250)}.${(ipSeq % 250) + 1}`;
};

/** Sign-in from `ip` through replica A or B (alternating by default). */
let turn = 0;
async function loginFrom(ip: string, email: string, password: string, via?: "a" | "b"): Promise<HttpResult> {
	const call = (via ?? (turn++ % 2 === 0 ? "a" : "b")) === "a" ? callA : callB;
	return call("POST", "/api/v1/auth/login", { body: { email, password }, headers: { "x-forwarded-for": ip } });
}

async function register(email = `${uniqueId("u")}@example.com`) {
	await signUp(callA, email, PASSWORD, { headers: { "x-forwarded-for": freshIp() } });
	return email;
}

/** What a client sees: status, body without the request id, Retry-After. */
const seen = (r: HttpResult) => ({ status: r.status, error: r.json?.error, retryAfter: r.headers.get("retry-after") });

/** Four failures (the allowance), each from a new IP. */
async function spendAllowance(email: string) {
	for (let i = 0; i < 4; i++) expectError(await loginFrom(freshIp(), email, WRONG), 401, "INVALID_CREDENTIALS");
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

beforeAll(async () => {
	db = await createTestDatabase();
	const env = {
		AUTH_SESSION_CHECK: "true",
		TRUST_PROXY_HOPS: "1",
		// Both replicas share one Redis namespace, as a deployment's replicas do.
		REDIS_PREFIX: `fftest:${uniqueId("acct")}:`,
		RATE_LIMIT_ANON_PER_MINUTE: "100000",
		RATE_LIMIT_PER_MINUTE: "100000",
		REGISTER_PER_IP_PER_HOUR: "100000",
		LOGIN_THROTTLE_EMAIL_FREE_FAILURES: "4",
		LOGIN_THROTTLE_EMAIL_BASE_DELAY_S: "1",
		LOGIN_THROTTLE_EMAIL_MAX_DELAY_S: "2",
		LOGIN_THROTTLE_EMAIL_WINDOW_S: "300"
	};
	a = await startTestNode({ db, services: ["api", "users"], env });
	b = await startTestNode({ db, services: ["api", "users"], env });
	expect(runtimeOf(a.broker).redis).not.toBeNull();
});

afterAll(async () => {
	await a?.stop();
	await b?.stop();
	await db?.drop();
});

describe("guessing one account from many IPs", () => {
	test("engages the account-wide limiter before any hashing, even for the right password, with 429 and Retry-After", async () => {
		const email = await register();
		await spendAllowance(email);
		const users = a.broker.getLocalService("users") as unknown as {
			hasher: { verify: (...args: unknown[]) => Promise<boolean> };
		};
		const verify = jest.spyOn(users.hasher, "verify");
		try {
			const blocked = await loginFrom(freshIp(), email, PASSWORD, "a");
			expectError(blocked, 429, "LOGIN_THROTTLED");
			expect(blocked.json.error).toEqual(expect.objectContaining(THROTTLED));
			expect(blocked.headers.get("retry-after")).toBe("1");
			expect(verify).not.toHaveBeenCalled();
		} finally {
			verify.mockRestore();
		}
		// The other replica refuses too: the state lives in Redis.
		expectError(await loginFrom(freshIp(), email, PASSWORD, "b"), 429, "LOGIN_THROTTLED");
	});

	test("an unknown e-mail gets exactly the same answers as an account", async () => {
		/** Allowance, two probes while held, release, a failure, a probe: one transcript per e-mail. */
		async function transcript(email: string) {
			const out = [];
			for (let i = 0; i < 4; i++) out.push(seen(await loginFrom(freshIp(), email, WRONG)));
			out.push(seen(await loginFrom(freshIp(), email, PASSWORD)));
			out.push(seen(await loginFrom(freshIp(), email, PASSWORD)));
			await sleep(1200);
			out.push(seen(await loginFrom(freshIp(), email, WRONG)));
			out.push(seen(await loginFrom(freshIp(), email, PASSWORD)));
			return out;
		}
		const invalid = {
			status: 401,
			error: expect.objectContaining({ code: "INVALID_CREDENTIALS", message: "Invalid email or password" }),
			retryAfter: null
		};
		const expected = [
			invalid,
			invalid,
			invalid,
			invalid,
			{ status: 429, error: expect.objectContaining(THROTTLED), retryAfter: "1" },
			{ status: 429, error: expect.objectContaining(THROTTLED), retryAfter: "1" },
			invalid,
			// The next delay is twice the first.
			{ status: 429, error: expect.objectContaining(THROTTLED), retryAfter: "2" }
		];
		const known = await transcript(await register());
		const unknown = await transcript(`  Nobody.${uniqueId("n")}@Example.COM `);
		expect(known).toEqual(expected);
		expect(unknown).toEqual(expected);
		expect(unknown).toEqual(known);
	});

	test("releases after its delay; the right password then signs in and resets the count", async () => {
		const email = await register();
		await spendAllowance(email);
		const blocked = await loginFrom(freshIp(), email, PASSWORD);
		expectError(blocked, 429, "LOGIN_THROTTLED");
		await sleep(Number(blocked.headers.get("retry-after")) * 1000 + 200);
		const released = await loginFrom(freshIp(), email, PASSWORD);
		expect(released.status).toBe(200);
		expect(released.json.user.email).toBe(email);
		// Reset: a whole new allowance of failures before the limiter engages again.
		await spendAllowance(email);
		expectError(await loginFrom(freshIp(), email, PASSWORD), 429, "LOGIN_THROTTLED");
	});

	test("other accounts are unaffected, from the very same IPs", async () => {
		const victim = await register();
		const bystander = await register();
		const ips = [freshIp(), freshIp(), freshIp(), freshIp()];
		for (const ip of ips) expectError(await loginFrom(ip, victim, WRONG), 401, "INVALID_CREDENTIALS");
		expectError(await loginFrom(freshIp(), victim, PASSWORD), 429, "LOGIN_THROTTLED");
		expectError(await loginFrom(ips[0], bystander, WRONG), 401, "INVALID_CREDENTIALS");
		const ok = await loginFrom(ips[1], bystander, PASSWORD);
		expect(ok.status).toBe(200);
		expect(ok.json.user.email).toBe(bystander);
		expectError(await loginFrom(freshIp(), victim, PASSWORD), 429, "LOGIN_THROTTLED");
	});

	test("the owner's known IP is not locked out by an attack elsewhere, and does not hand the attacker a new allowance", async () => {
		const email = await register();
		const home = freshIp();
		expect((await loginFrom(home, email, PASSWORD)).status).toBe(200);
		await spendAllowance(email);
		expectError(await loginFrom(freshIp(), email, PASSWORD), 429, "LOGIN_THROTTLED");
		// A typo at home is an ordinary failure, then the owner signs in.
		expectError(await loginFrom(home, email, WRONG), 401, "INVALID_CREDENTIALS");
		const owner = await loginFrom(home, email, PASSWORD);
		expect(owner.status).toBe(200);
		expectError(await loginFrom(freshIp(), email, PASSWORD), 429, "LOGIN_THROTTLED");
	});
});

describe("changing the password with a session used from many IPs", () => {
	test("guesses of the current password are limited per account, not only per IP; the right one then works", async () => {
		const email = await register();
		const session = await loginFrom(freshIp(), email, PASSWORD, "a");
		expect(session.status).toBe(200);
		const token = session.json.accessToken as string;
		const change = (ip: string, currentPassword: string, via: "a" | "b") =>
			(via === "a" ? callA : callB)("POST", "/api/v1/users/me/password", {
				token,
				body: { currentPassword, newPassword: "another long password 123" },
				headers: { "x-forwarded-for": ip }
			});
		// The allowance (4), each from a new address, alternating replicas.
		for (let i = 0; i < 4; i++)
			expectError(await change(freshIp(), WRONG, i % 2 ? "b" : "a"), 403, "INVALID_CURRENT_PASSWORD");
		// A fifth address is refused before any hashing, even with the right password.
		const blocked = await change(freshIp(), PASSWORD, "b");
		expectError(blocked, 429, "LOGIN_THROTTLED");
		expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		await sleep(Number(blocked.headers.get("retry-after")) * 1000 + 200);
		const ok = await change(freshIp(), PASSWORD, "a");
		expect(ok.status).toBe(200);
		// Signing in still works with the new password (the limiter keys of login and change differ).
		expect((await loginFrom(freshIp(), email, "another long password 123")).status).toBe(200);
	});
});

describe("the account-wide limiter on Redis", () => {
	test("parallel attempts from replicas cannot slip past it: the allowance, then one per delay", async () => {
		const Redis = (await import("ioredis")).default;
		const redis = new Redis(REDIS_URL);
		try {
			const prefix = `fftest:${uniqueId("acl")}`;
			const rule = { freeFailures: 3, baseDelayS: 5, maxDelayS: 60, windowS: 60 };
			const replicas = [
				new AccountGuessLimiter(redis, prefix, rule),
				new AccountGuessLimiter(redis, prefix, rule)
			];
			const waits = await Promise.all(Array.from({ length: 40 }, (_, i) => replicas[i % 2].admit("victim")));
			// Attempts 1-2 are free, the 3rd takes the gate for 5 s; the other 37 must wait.
			expect(waits.filter(w => w === 0)).toHaveLength(3);
			expect(waits.filter(w => w === 5)).toHaveLength(37);
			expect(await replicas[0].admit("other")).toBe(0);
			await replicas[1].reset("victim");
			expect(await replicas[0].admit("victim")).toBe(0);
		} finally {
			redis.disconnect();
		}
	});
});
