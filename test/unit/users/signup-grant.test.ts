/** The welcome grant's rules: who earns it when, identity keys, defaults per mode, the event's shape. */
import { loadConfig } from "../../../src/config";
import { earnsGrant, identityKey, parseSignupGranted } from "../../../src/users/signup-grant";
import type { SignupGrantConfig } from "../../../src/users/config";

const cfg = (over: Partial<SignupGrantConfig> = {}): SignupGrantConfig => ({
	credits: 1000,
	ttlS: 3600,
	perIpPerDay: 3,
	emailOn: "verified",
	...over
});
const email = { kind: "email", email: "a@example.com" } as const;
const wallet = { kind: "wallet", address: "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01" } as const;

test("verified mode: an e-mail earns it on verification only; a wallet by its signature", () => {
	expect(earnsGrant(cfg(), email, "signup")).toBe(false);
	expect(earnsGrant(cfg(), email, "verified")).toBe(true);
	expect(earnsGrant(cfg(), wallet, "wallet")).toBe(true);
	expect(earnsGrant(cfg(), wallet, "signup")).toBe(false);
});

test("signup mode: at registration (and verification still qualifies); 0 credits: never", () => {
	expect(earnsGrant(cfg({ emailOn: "signup" }), email, "signup")).toBe(true);
	expect(earnsGrant(cfg({ emailOn: "signup" }), email, "verified")).toBe(true);
	expect(earnsGrant(cfg({ credits: 0, emailOn: "signup" }), email, "signup")).toBe(false);
	expect(earnsGrant(cfg({ credits: 0 }), wallet, "wallet")).toBe(false);
});

test("identity keys: e-mail only as a SHA-256, wallets case-insensitive", () => {
	const k = identityKey(email);
	expect(k).toMatch(/^email:[0-9a-f]{64}$/);
	expect(k).not.toContain("example");
	expect(identityKey(wallet)).toBe(`wallet:${wallet.address.toLowerCase()}`);
	expect(identityKey({ kind: "wallet", address: wallet.address.toLowerCase() })).toBe(identityKey(wallet));
});

test("defaults: on in embedded mode (at sign-up), off in cluster mode; env overrides", () => {
	const embedded = loadConfig({}).users.signupGrant;
	expect(embedded.credits).toBeGreaterThan(0);
	expect(embedded.emailOn).toBe("signup");
	const cluster = loadConfig({
		TRANSPORTER: "nats://127.0.0.1:4222",
		DATABASE_URL: "postgres://x@127.0.0.1/x",
		REDIS_URL: "redis://127.0.0.1:6379",
		AMQP_URL: "amqp://127.0.0.1",
		JWT_KEYS: "k1:0123456789abcdef0123456789abcdef",
		CORS_ORIGINS: "https://app.example"
	}).users.signupGrant;
	expect(cluster).toMatchObject({ credits: 0, emailOn: "verified" });
	expect(
		loadConfig({ SIGNUP_GRANT_CREDITS: "42", SIGNUP_GRANT_EMAIL_ON: "verified" }).users.signupGrant
	).toMatchObject({ credits: 42, emailOn: "verified" });
});

test("a malformed event is refused", () => {
	const ok = { userId: "u", credits: 5, expiresAt: new Date().toISOString(), key: "signup:email:x" };
	expect(parseSignupGranted(ok)).toEqual(ok);
	for (const bad of [
		null,
		{ ...ok, credits: 0 },
		{ ...ok, credits: 1.5 },
		{ ...ok, key: "other" },
		{ ...ok, expiresAt: "x" }
	])
		expect(() => parseSignupGranted(bad)).toThrow(/malformed/);
});
