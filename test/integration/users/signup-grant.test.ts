/**
 * The welcome grant (SIGNUP_GRANT_*): promotional credit with an expiry, once per proven e-mail
 * address or wallet and per account, its own per-IP limit, credited by payments through the durable event and
 * the direct call on one ledger cause (so exactly once). Two nodes: `signup` mode (embedded's
 * default) and `verified` mode (a cluster's), on real PostgreSQL and Redis.
 */
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../../src/runtime/runtime";
import { SIGNUP_GRANTED } from "../../../src/users/signup-grant";
import { writeOutboxEvent } from "../../../src/events/outbox";
import { createTestDatabase, eventually, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { httpClient } from "./http";
import { signUp } from "../../support/sign-up";
import { siweClient } from "../../support/siwe";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

jest.setTimeout(90_000);

const PASSWORD = "correct horse battery staple";
type Node = ForgeNode & { baseUrl: string };
let db: TestDatabase;
let signupNode: Node;
let verifiedNode: Node;
const atSignup = httpClient(() => signupNode.baseUrl);
const atVerified = httpClient(() => verifiedNode.baseUrl);
const SIWE = { domain: "localhost:3000", uri: "http://localhost:3000", chainId: 31337 };
const walletAtSignup = siweClient(atSignup, SIWE);
const walletAtVerified = siweClient(atVerified, SIWE);
let ipSeq = 0;
const freshIp = () => `198.51.100.${++ipSeq}`;

beforeAll(async () => {
	db = await createTestDatabase();
	const common = {
		AUTH_SESSION_CHECK: "true",
		TRUST_PROXY_HOPS: "1",
		SIGNUP_GRANT_CREDITS: "2500",
		SIGNUP_GRANT_TTL_S: "86400",
		SIGNUP_GRANT_PER_IP_PER_DAY: "2",
		// Plain keys sign in with SIWE without a chain RPC; the messages name this origin.
		SIWE_DOMAIN: "localhost:3000",
		SIWE_URI: "http://localhost:3000"
	};
	signupNode = await startTestNode({
		db,
		services: ["api", "users", "payments"],
		env: { ...common, SIGNUP_GRANT_EMAIL_ON: "signup" }
	});
	verifiedNode = await startTestNode({
		db,
		services: ["api", "users", "payments"],
		env: { ...common, SIGNUP_GRANT_EMAIL_ON: "verified" }
	});
});
afterAll(async () => {
	await signupNode?.stop();
	await verifiedNode?.stop();
	await db?.drop();
});

async function register(call: ReturnType<typeof httpClient>, ip: string, email = `${uniqueId("g")}@example.com`) {
	const u = await signUp(call, email, PASSWORD, { headers: { "x-forwarded-for": ip } });
	return { email, userId: u.userId, token: u.accessToken };
}

const balance = async (call: ReturnType<typeof httpClient>, token: string) =>
	(await call("GET", "/api/v1/billing/balance", { token })).json.available as number;

async function grantsOf(userId: string) {
	return runtimeOf(signupNode.broker).sequelize.query<{ kind: string; available_delta: string }>(
		`SELECT kind, available_delta FROM ledger_transactions WHERE user_id = $1 AND cause_id LIKE 'signup:%'`,
		{ bind: [userId], type: QueryTypes.SELECT }
	);
}

test("signup mode: the credit is there in the register answer's next request, as one promotional lot with an expiry", async () => {
	const u = await register(atSignup, freshIp());
	expect(await balance(atSignup, u.token)).toBe(2500);
	const [lot] = await runtimeOf(signupNode.broker).sequelize.query<{ source: string; expires_at: Date }>(
		`SELECT source, expires_at FROM credit_lots WHERE user_id = $1`,
		{ bind: [u.userId], type: QueryTypes.SELECT }
	);
	expect(lot.source).toBe("promo");
	const ttl = new Date(lot.expires_at).getTime() - Date.now();
	expect(ttl).toBeGreaterThan(86_400_000 - 120_000);
	expect(ttl).toBeLessThanOrEqual(86_400_000);
	// The durable event is delivered too (both nodes consume it): still one ledger transaction.
	await new Promise(r => setTimeout(r, 500));
	expect(await grantsOf(u.userId)).toHaveLength(1);
	expect(await balance(atSignup, u.token)).toBe(2500);
});

test("the same address cannot farm it: a deleted account re-created with it gets nothing", async () => {
	const ip = freshIp();
	const u = await register(atSignup, ip);
	expect(await balance(atSignup, u.token)).toBe(2500);
	const del = await atSignup("DELETE", "/api/v1/users/me", { token: u.token, body: { password: PASSWORD } });
	expect(del.status).toBe(200);
	const again = await register(atSignup, freshIp(), u.email);
	expect(again.userId).not.toBe(u.userId);
	expect(await balance(atSignup, again.token)).toBe(0);
	// The kept row no longer holds the deleted person's IP.
	const [row] = await runtimeOf(signupNode.broker).sequelize.query<{ ip: string | null }>(
		`SELECT ip FROM signup_grants WHERE user_id = $1`,
		{ bind: [u.userId], type: QueryTypes.SELECT }
	);
	expect(row.ip).toBeNull();
});

test("its own per-IP limit: two grants a day from one address, then accounts are created without credit", async () => {
	const ip = freshIp();
	const results: number[] = [];
	for (let i = 0; i < 4; i++) {
		const u = await register(atSignup, ip);
		results.push(await balance(atSignup, u.token));
	}
	expect(results).toEqual([2500, 2500, 0, 0]);
	// Another address is not affected.
	const other = await register(atSignup, freshIp());
	expect(await balance(atSignup, other.token)).toBe(2500);
});

test("verified mode: nothing at sign-up, the grant when the link is followed, once", async () => {
	const ip = freshIp();
	const u = await register(atVerified, ip);
	expect(await balance(atVerified, u.token)).toBe(0);
	let link = "";
	await eventually(async () => {
		const box = await atVerified("GET", `/api/v1/dev/outbox?to=${encodeURIComponent(u.email)}`);
		const text = JSON.stringify(box.json);
		const m = /verify-email\?token=(fft_[A-Za-z0-9_-]+)/.exec(text);
		if (m) link = m[1];
		return !!m;
	}, 15_000);
	const v = await atVerified("POST", "/api/v1/auth/email/verify", {
		body: { token: link },
		headers: { "x-forwarded-for": ip }
	});
	expect(v.status).toBe(200);
	expect(await balance(atVerified, u.token)).toBe(2500);
	expect(await grantsOf(u.userId)).toHaveLength(1);
});

test("a replayed or duplicated grant event credits once", async () => {
	const u = await register(atSignup, freshIp());
	expect(await balance(atSignup, u.token)).toBe(2500);
	const [row] = await runtimeOf(signupNode.broker).sequelize.query<{ identity: string; expires_at: Date }>(
		`SELECT identity, expires_at FROM signup_grants WHERE user_id = $1`,
		{ bind: [u.userId], type: QueryTypes.SELECT }
	);
	const payload = {
		userId: u.userId,
		credits: 2500,
		expiresAt: new Date(row.expires_at).toISOString(),
		key: `signup:${row.identity}`
	};
	const rt = runtimeOf(signupNode.broker);
	// New event ids (not redeliveries): only the ledger cause can stop them.
	for (let i = 0; i < 3; i++)
		await rt.sequelize.transaction(tx => writeOutboxEvent(rt.sequelize, tx, SIGNUP_GRANTED, payload, {}));
	rt.relay.kick();
	await new Promise(r => setTimeout(r, 1000));
	expect(await grantsOf(u.userId)).toHaveLength(1);
	expect(await balance(atSignup, u.token)).toBe(2500);
});

test("a wallet earns it once: at its first sign-in, not again for another account that proves it; once per account", async () => {
	// A new wallet signs in: the account it creates has the grant.
	const w = privateKeyToAccount(generatePrivateKey());
	const ip = freshIp();
	const first = await walletAtSignup.signIn(w, {}, { "x-forwarded-for": ip });
	expect([first.status, first.json.created]).toEqual([200, true]);
	expect(await balance(atSignup, first.json.accessToken)).toBe(2500);
	// Signing in again, and linking a second wallet to the same account: nothing more.
	await walletAtSignup.signIn(w, {}, { "x-forwarded-for": ip });
	const second = privateKeyToAccount(generatePrivateKey());
	const linked = await atSignup("POST", "/api/v1/users/me/wallets", {
		token: first.json.accessToken,
		body: await walletAtSignup.proof(second),
		headers: { "x-forwarded-for": freshIp() }
	});
	expect(linked.status).toBe(201);
	expect(await balance(atSignup, first.json.accessToken)).toBe(2500);
	expect(await grantsOf(first.json.user.id)).toHaveLength(1);

	// Verified mode: an account whose address is not verified gets it for a wallet it links; the wallet,
	// unlinked and linked by another account, earns nothing there.
	const farm = privateKeyToAccount(generatePrivateKey());
	const y = await register(atVerified, freshIp());
	expect(await balance(atVerified, y.token)).toBe(0);
	const linkTo = async (token: string) =>
		atVerified("POST", "/api/v1/users/me/wallets", {
			token,
			body: await walletAtVerified.proof(farm),
			headers: { "x-forwarded-for": freshIp() }
		});
	expect((await linkTo(y.token)).status).toBe(201);
	expect(await balance(atVerified, y.token)).toBe(2500);
	const unlinked = await atVerified("DELETE", `/api/v1/users/me/wallets/${farm.address}`, { token: y.token });
	expect(unlinked.status).toBe(200);
	const z = await register(atVerified, freshIp());
	const again = await linkTo(z.token);
	expect([again.status, again.json.alreadyLinked]).toEqual([201, false]);
	expect(await balance(atVerified, z.token)).toBe(0);
	expect(await grantsOf(z.userId)).toEqual([]);
	expect(await grantsOf(y.userId)).toHaveLength(1);
});

test("off: SIGNUP_GRANT_CREDITS=0 grants nothing", async () => {
	const off = await startTestNode({
		db,
		services: ["api", "users", "payments"],
		env: { AUTH_SESSION_CHECK: "true", SIGNUP_GRANT_CREDITS: "0", SIGNUP_GRANT_EMAIL_ON: "signup" }
	});
	try {
		const u = await register(
			httpClient(() => off.baseUrl),
			freshIp()
		);
		expect(
			await balance(
				httpClient(() => off.baseUrl),
				u.token
			)
		).toBe(0);
		expect(await grantsOf(u.userId)).toHaveLength(0);
	} finally {
		await off.stop();
	}
});
