/**
 * Organisation API keys through the real gateway, users, orgs, projects and payments services on
 * PostgreSQL and Redis (docs/orgs.md "API keys"): made by owners and admins only (never billing),
 * listed without secrets, revoked; a key acts as its creator within its organisation only (the
 * creator's personal projects and wallet, and another organisation, are out of reach); the creator's
 * role counts on every request (demoted to billing: reads only), and a removed member's keys stop
 * at once. Every answer is checked against the OpenAPI document by the suites' fetch hook.
 */
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { expectError, httpClient } from "../users/http";
import { orgPeople, type Person } from "../../support/org-people";
import { parseApiKey } from "../../../src/users/tokens";

/** The key's secret part (base64url: it may itself hold "_"). */
const secretOf = (key: string) => parseApiKey(key)!.secret;

jest.setTimeout(120_000);

const PASSWORD = "correct horse battery staple";
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const { person, newOrg, join } = orgPeople(call, { prefix: "ok", password: PASSWORD });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users", "orgs", "projects", "payments"],
		env: { AUTH_SESSION_CHECK: "true", RATE_LIMIT_PER_MINUTE: "100000" }
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function project(p: Person, name: string, orgId?: string): Promise<string> {
	const r = await call("POST", "/api/v1/projects", { token: p.token, body: orgId ? { name, orgId } : { name } });
	expect(r.status).toBe(201);
	return r.json.id;
}

const ALL = ["projects:read", "projects:write", "orgs:read", "billing:read"];
async function orgKey(p: Person, orgId: string, name = "ci", scopes = ALL) {
	const r = await call("POST", `/api/v1/orgs/${orgId}/keys`, { token: p.token, body: { name, scopes } });
	expect(r.status).toBe(201);
	return r.json as { id: string; key: string; orgId: string; createdBy: string };
}

describe("organisation API keys", () => {
	let alice: Person; // owner of A
	let adam: Person; // admin of A
	let bill: Person; // billing of A
	let bob: Person; // owner of B
	let orgA: string;
	let orgB: string;
	let projectA: string;
	let projectB: string;
	let alicesOwn: string;

	beforeAll(async () => {
		[alice, adam, bill, bob] = await Promise.all([1, 2, 3, 4].map(() => person()));
		[orgA, orgB] = await Promise.all([newOrg(alice, "A"), newOrg(bob, "B")]);
		await join(orgA, alice, adam, "admin");
		await join(orgA, alice, bill, "billing");
		projectA = await project(alice, "A's", orgA);
		projectB = await project(bob, "B's", orgB);
		alicesOwn = await project(alice, "Alice's own");
	});

	test("owners and admins make them (shown once), list them without secrets and revoke them", async () => {
		const made = await orgKey(alice, orgA, "deploy");
		expect(made.key).toMatch(/^ff_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
		expect(made).toMatchObject({ orgId: orgA, createdBy: alice.id, name: "deploy", scopes: ALL });
		const byAdmin = await orgKey(adam, orgA, "admin's");
		const listed = await call("GET", `/api/v1/orgs/${orgA}/keys`, { token: adam.token });
		expect(listed.status).toBe(200);
		expect(listed.json.items.map((k: { id: string }) => k.id).sort()).toEqual([made.id, byAdmin.id].sort());
		expect(listed.text).not.toContain(secretOf(made.key));
		for (const k of listed.json.items) expect(k).not.toHaveProperty("key");
		// Not among the creator's personal keys.
		const personal = await call("GET", "/api/v1/users/me/api-keys", { token: alice.token });
		expect(personal.json.items.map((k: { id: string }) => k.id)).not.toContain(made.id);

		expect((await call("GET", "/api/v1/orgs/" + orgA, { apiKey: made.key })).status).toBe(200);
		const revoked = await call("DELETE", `/api/v1/orgs/${orgA}/keys/${made.id}`, { token: adam.token });
		expect(revoked.status).toBe(200);
		expect(revoked.json).toEqual({ id: made.id, orgId: orgA, revoked: true });
		expectError(await call("GET", "/api/v1/orgs/" + orgA, { apiKey: made.key }), 401, "INVALID_API_KEY");
		expectError(
			await call("DELETE", `/api/v1/orgs/${orgA}/keys/${made.id}`, { token: adam.token }),
			404,
			"NOT_FOUND"
		);
		const after = await call("GET", `/api/v1/orgs/${orgA}/keys`, { token: alice.token });
		expect(after.json.items.map((k: { id: string }) => k.id)).toEqual([byAdmin.id]);
	});

	test("a billing member cannot make keys (403), sees none of the others'; outsiders get 404; keys cannot mint keys", async () => {
		const key = await orgKey(alice, orgA);
		expectError(
			await call("POST", `/api/v1/orgs/${orgA}/keys`, { token: bill.token, body: { name: "b", scopes: ALL } }),
			403,
			"INSUFFICIENT_ROLE"
		);
		expect((await call("GET", `/api/v1/orgs/${orgA}/keys`, { token: bill.token })).json.items).toEqual([]);
		expectError(
			await call("DELETE", `/api/v1/orgs/${orgA}/keys/${key.id}`, { token: bill.token }),
			404,
			"NOT_FOUND"
		);
		for (const r of [
			await call("POST", `/api/v1/orgs/${orgA}/keys`, { token: bob.token, body: { name: "b", scopes: ALL } }),
			await call("GET", `/api/v1/orgs/${orgA}/keys`, { token: bob.token }),
			await call("DELETE", `/api/v1/orgs/${orgA}/keys/${key.id}`, { token: bob.token })
		])
			expectError(r, 404, "NOT_FOUND");
		expectError(
			await call("POST", `/api/v1/orgs/${orgA}/keys`, { apiKey: key.key, body: { name: "k", scopes: ALL } }),
			403,
			"SESSION_REQUIRED"
		);
		expectError(
			await call("POST", `/api/v1/orgs/${orgA}/keys`, {
				token: alice.token,
				body: { name: "wide", scopes: ["users:read"] }
			}),
			422,
			"VALIDATION_ERROR"
		);
		// Still usable: the refused attempts changed nothing.
		expect((await call("GET", `/api/v1/projects/${projectA}`, { apiKey: key.key })).status).toBe(200);
	});

	test("a key acts within its organisation only: not the creator's own projects or wallet, not organisation B", async () => {
		const { key } = await orgKey(alice, orgA);
		expect((await call("GET", `/api/v1/projects/${projectA}`, { apiKey: key })).json).toMatchObject({
			id: projectA,
			orgId: orgA,
			role: "owner"
		});
		expectError(await call("GET", `/api/v1/projects/${alicesOwn}`, { apiKey: key }), 404, "NOT_FOUND");
		expectError(
			await call("PATCH", `/api/v1/projects/${alicesOwn}`, { apiKey: key, body: { name: "x" } }),
			404,
			"NOT_FOUND"
		);
		expectError(await call("GET", `/api/v1/projects/${projectB}`, { apiKey: key }), 404, "NOT_FOUND");
		// The list holds the organisation's projects only; a new project is the organisation's.
		const list = await call("GET", "/api/v1/projects", { apiKey: key });
		expect(list.json.items.map((p: { id: string }) => p.id)).toEqual([projectA]);
		expectError(await call("GET", `/api/v1/projects?orgId=${orgB}`, { apiKey: key }), 404, "NOT_FOUND");
		const made = await call("POST", "/api/v1/projects", { apiKey: key, body: { name: "by key" } });
		expect(made.status).toBe(201);
		expect(made.json).toMatchObject({ orgId: orgA, ownerId: alice.id });
		expectError(
			await call("POST", "/api/v1/projects", { apiKey: key, body: { name: "elsewhere", orgId: orgB } }),
			404,
			"NOT_FOUND"
		);
		expectError(
			await call("POST", `/api/v1/projects/${alicesOwn}/transfer`, { apiKey: key, body: { orgId: orgA } }),
			403,
			"ORG_KEY_NOT_ALLOWED"
		);
		// The organisation, not another one; not the creator's account or wallet.
		expect((await call("GET", `/api/v1/orgs/${orgA}/members`, { apiKey: key })).status).toBe(200);
		expectError(await call("GET", `/api/v1/orgs/${orgB}`, { apiKey: key }), 404, "NOT_FOUND");
		expectError(await call("GET", "/api/v1/orgs", { apiKey: key }), 403, "ORG_KEY_NOT_ALLOWED");
		expectError(await call("GET", "/api/v1/users/me", { apiKey: key }), 403, "ORG_KEY_NOT_ALLOWED");
		expectError(await call("GET", "/api/v1/users/me/api-keys", { apiKey: key }), 403, "SESSION_REQUIRED");
		// Billing routes act for the organisation: its wallet, never the creator's.
		await node.broker.call("payments.grant", {
			userId: alice.id,
			credits: 77,
			reason: "the creator's own credit",
			operator: "test",
			source: "promo"
		});
		const own = await call("GET", "/api/v1/billing/balance", { token: alice.token });
		const org = await call("GET", `/api/v1/billing/balance?orgId=${orgA}`, { token: alice.token });
		expect(own.json).not.toEqual(org.json);
		const byKey = await call("GET", "/api/v1/billing/balance", { apiKey: key });
		expect(byKey.status).toBe(200);
		expect(byKey.json).toEqual(org.json);
		expectError(await call("GET", `/api/v1/billing/balance?orgId=${orgB}`, { apiKey: key }), 404, "NOT_FOUND");
		const ledger = await call("GET", "/api/v1/billing/ledger", { apiKey: key });
		expect(ledger.status).toBe(200);
		expect(ledger.json.items).toEqual([]);
		const usage = await call("GET", "/api/v1/billing/usage", { apiKey: key });
		expect(usage.status).toBe(200);
		expect(usage.json.payerId).toBe(`org:${orgA}`);
		expectError(await call("GET", `/api/v1/billing/usage?orgId=${orgB}`, { apiKey: key }), 404, "NOT_FOUND");

		// Organisation B's key, the other way round.
		const b = await orgKey(bob, orgB);
		expectError(await call("GET", `/api/v1/projects/${projectA}`, { apiKey: b.key }), 404, "NOT_FOUND");
		expectError(await call("GET", `/api/v1/orgs/${orgA}/members`, { apiKey: b.key }), 404, "NOT_FOUND");
		expect((await call("GET", `/api/v1/projects/${projectB}`, { apiKey: b.key })).status).toBe(200);
		const aKeys = await call("GET", `/api/v1/orgs/${orgA}/keys`, { token: alice.token });
		expect(aKeys.json.items.map((k: { id: string }) => k.id)).not.toContain(b.id);
	});

	test("the creator's role counts on every request: demoted to billing, the key reads but cannot change projects", async () => {
		const { key } = await orgKey(adam, orgA, "adam's");
		const rename = () => call("PATCH", `/api/v1/projects/${projectA}`, { apiKey: key, body: { name: "renamed" } });
		expect((await rename()).status).toBe(200);
		const demoted = await call("PATCH", `/api/v1/orgs/${orgA}/members/${adam.id}`, {
			token: alice.token,
			body: { role: "billing" }
		});
		expect(demoted.status).toBe(200);
		expectError(await rename(), 403, "INSUFFICIENT_ROLE");
		expect((await call("GET", `/api/v1/projects/${projectA}`, { apiKey: key })).json.role).toBe("viewer");
		expectError(
			await call("POST", "/api/v1/projects", { apiKey: key, body: { name: "no" } }),
			403,
			"INSUFFICIENT_ROLE"
		);
		expectError(
			await call("POST", `/api/v1/orgs/${orgA}/keys`, { token: adam.token, body: { name: "n", scopes: ALL } }),
			403,
			"INSUFFICIENT_ROLE"
		);
	});

	test("a removed member's keys stop at once (the next request is 401)", async () => {
		const p = await person();
		await join(orgA, alice, p, "admin");
		const { key } = await orgKey(p, orgA);
		expect((await call("GET", `/api/v1/projects/${projectA}`, { apiKey: key })).status).toBe(200);
		const removed = await call("DELETE", `/api/v1/orgs/${orgA}/members/${p.id}`, { token: alice.token });
		expect(removed.status).toBe(200);
		expectError(await call("GET", `/api/v1/projects/${projectA}`, { apiKey: key }), 401, "INVALID_API_KEY");
		expectError(await call("GET", `/api/v1/orgs/${orgA}`, { apiKey: key }), 401, "INVALID_API_KEY");
		// The creator's session is not the key: it still works for their own things.
		expect((await call("GET", "/api/v1/users/me", { token: p.token })).status).toBe(200);
	});
});
