/**
 * The users service on its own node, the gateway on another, a third node as "another service",
 * all over the real NATS in one namespace: the gateway's per-request calls (authState,
 * verifyApiKey) and other services' calls (getTier) cross the transporter, and disabling a user
 * acts on the very next request.
 */
import { QueryTypes } from "sequelize";
import { createTestDatabase, NATS_URL, startTestNode, uniqueId, type TestDatabase } from "../support/env";
import type { ForgeNode } from "../../app/node";
import { runtimeOf } from "../../src/runtime/runtime";
import { expectError, httpClient } from "../integration/users/http";
import { signUp } from "../support/sign-up";

jest.setTimeout(120_000);

let db: TestDatabase;
let users: ForgeNode;
let gateway: ForgeNode & { baseUrl: string };
let other: ForgeNode;
const call = httpClient(() => gateway.baseUrl);

beforeAll(async () => {
	db = await createTestDatabase();
	const id = uniqueId("uc");
	const shared = {
		TRANSPORTER: NATS_URL,
		NAMESPACE: `fftest-${id}`,
		REDIS_PREFIX: `fftest:${id}:`,
		AMQP_PREFIX: `fftest.${id}`,
		AUTH_SESSION_CHECK: "true",
		RATE_LIMIT_ANON_PER_MINUTE: "100000",
		LOG_LEVEL: "error"
	};
	users = await startTestNode({ db, services: ["users"], env: { ...shared, NODE_ID: `users-${id}` } });
	gateway = await startTestNode({ db, services: ["api"], env: { ...shared, NODE_ID: `gateway-${id}` } });
	other = await startTestNode({ db, services: [], env: { ...shared, NODE_ID: `other-${id}` } });
	await Promise.all([
		gateway.broker.waitForServices(["users"], 20_000),
		other.broker.waitForServices(["users"], 20_000)
	]);
});

afterAll(async () => {
	await other?.stop();
	await gateway?.stop();
	await users?.stop();
	await db?.drop();
});

test("sign-in, session check, API keys, tier and disabling across nodes", async () => {
	expect(gateway.broker.getLocalService("users")).toBeFalsy();
	const email = `${uniqueId("c")}@example.com`;
	const reg = await signUp(call, email, "correct horse battery staple");
	const me = await call("GET", "/api/v1/users/me", { token: reg.accessToken });
	expect(me.status).toBe(200);
	expect(me.json.id).toBe(reg.userId);

	const key = await call("POST", "/api/v1/users/me/api-keys", {
		token: reg.accessToken,
		body: { name: "k", scopes: ["users:read"] }
	});
	// Used three times, so the gateway remembers it (src/auth/api-key-cache.ts: from the second lookup on).
	for (let i = 0; i < 3; i++)
		expect((await call("GET", "/api/v1/users/me", { apiKey: key.json.key })).status).toBe(200);
	// A remembered key that is revoked is refused by the next request (the key's stamp, not the event).
	const gone = await call("POST", "/api/v1/users/me/api-keys", {
		token: reg.accessToken,
		body: { name: "gone", scopes: ["users:read"] }
	});
	for (let i = 0; i < 3; i++)
		expect((await call("GET", "/api/v1/users/me", { apiKey: gone.json.key })).status).toBe(200);
	const revoked = await call("DELETE", `/api/v1/users/me/api-keys/${gone.json.id}`, { token: reg.accessToken });
	expect(revoked.status).toBe(200);
	expectError(await call("GET", "/api/v1/users/me", { apiKey: gone.json.key }), 401, "INVALID_API_KEY");

	expect(await other.broker.call("users.getTier", { userId: reg.userId })).toEqual(
		expect.objectContaining({ tier: "free" })
	);
	expect(await other.broker.call("users.authState", { userId: reg.userId, sid: reg.sessionId })).toEqual({
		role: "user"
	});

	const adminEmail = `${uniqueId("a")}@example.com`;
	await call("POST", "/api/v1/auth/register", {
		body: { email: adminEmail, password: "correct horse battery staple" }
	});
	await runtimeOf(users.broker).sequelize.query(`UPDATE users SET role = 'admin' WHERE email = $1`, {
		bind: [adminEmail],
		type: QueryTypes.UPDATE
	});
	const adm = await call("POST", "/api/v1/auth/login", {
		body: { email: adminEmail, password: "correct horse battery staple" }
	});
	const off = await call("PATCH", `/api/v1/admin/users/${reg.userId}`, {
		token: adm.json.accessToken,
		body: { disabled: true }
	});
	expect(off.status).toBe(200);
	expectError(await call("GET", "/api/v1/users/me", { token: reg.accessToken }), 401, "INVALID_TOKEN");
	expectError(await call("GET", "/api/v1/users/me", { apiKey: key.json.key }), 401, "INVALID_API_KEY");
	expect(await other.broker.call("users.authState", { userId: reg.userId, sid: reg.sessionId })).toBeNull();
});

test("the gateway cannot be made to call internal actions, even though they are reachable over the transporter", async () => {
	const r = await call("GET", "/api/v1/users/getTier");
	expectError(r, 404, "NOT_FOUND");
});
