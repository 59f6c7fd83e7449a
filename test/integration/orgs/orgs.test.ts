/**
 * Organisations through the real gateway, users and orgs services on PostgreSQL and Redis: create,
 * roles, invitations by e-mail (the dev outbox; single use, expiry, bound to the invited and verified
 * address), isolation between organisations, removing, leaving, moving ownership, and the last owner
 * under concurrency. Every answer is checked against the OpenAPI document by the suites' fetch hook.
 */
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../../src/runtime/runtime";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { expectError, httpClient } from "../users/http";
import { orgPeople, type Person } from "../../support/org-people";

jest.setTimeout(90_000);

const PASSWORD = "correct horse battery staple";
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const { person, verifyEmail, newOrg, invite, accept, join } = orgPeople(call, { prefix: "o", password: PASSWORD });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({ db, services: ["api", "users", "orgs"], env: { AUTH_SESSION_CHECK: "true" } });
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

test("create, list, get, rename; the creator is the owner", async () => {
	const alice = await person();
	const orgId = await newOrg(alice);
	const list = await call("GET", "/api/v1/orgs", { token: alice.token });
	expect(list.json.items).toEqual([expect.objectContaining({ id: orgId, name: "Acme", role: "owner", members: 1 })]);
	const renamed = await call("PATCH", `/api/v1/orgs/${orgId}`, { token: alice.token, body: { name: "Acme Ltd" } });
	expect(renamed.status).toBe(200);
	expect(renamed.json).toMatchObject({ name: "Acme Ltd", role: "owner" });
	expectError(
		await call("POST", "/api/v1/orgs", { token: alice.token, body: { name: "" } }),
		422,
		"VALIDATION_ERROR"
	);
});

test("invitation: by e-mail, needs the invited address verified, works once, not for another address", async () => {
	const alice = await person();
	const orgId = await newOrg(alice);
	const bob = await person({ verified: false });
	const carol = await person();
	const token = await invite(orgId, alice, bob.email, "billing");
	// Not verified yet: refused, and the token is not spent by the refusal.
	expectError(await accept(bob, token), 401, "INVALID_TOKEN");
	// Someone else, verified, with bob's token: refused alike.
	expectError(await accept(carol, token), 401, "INVALID_TOKEN");
	await verifyEmail(bob);
	const ok = await accept(bob, token);
	expect(ok.status).toBe(200);
	expect(ok.json).toMatchObject({
		alreadyMember: false,
		member: { userId: bob.id, role: "billing" },
		org: { id: orgId }
	});
	expectError(await accept(bob, token), 401, "INVALID_TOKEN");
	expectError(await accept(bob, "ffi_" + "A".repeat(43)), 401, "INVALID_TOKEN");
	const members = await call("GET", `/api/v1/orgs/${orgId}/members`, { token: bob.token });
	expect(members.json.items.map((m: { userId: string; role: string }) => [m.userId, m.role]).sort()).toEqual(
		[
			[alice.id, "owner"],
			[bob.id, "billing"]
		].sort()
	);
});

test("an expired invitation is refused; owner is not an invitable role", async () => {
	const alice = await person();
	const orgId = await newOrg(alice);
	const dave = await person();
	const token = await invite(orgId, alice, dave.email);
	await runtimeOf(node.broker).sequelize.query(
		`UPDATE org_invitations SET expires_at = now() - interval '1 second' WHERE org_id = $1`,
		{ bind: [orgId], type: QueryTypes.UPDATE }
	);
	expectError(await accept(dave, token), 401, "INVALID_TOKEN");
	const asOwner = await call("POST", `/api/v1/orgs/${orgId}/invitations`, {
		token: alice.token,
		body: { email: dave.email, role: "owner" }
	});
	expectError(asOwner, 422, "VALIDATION_ERROR");
});

test("isolation: a member of A sees nothing of B (404), a plain member changes nothing (403)", async () => {
	const alice = await person();
	const bob = await person();
	const a = await newOrg(alice, "A");
	const b = await newOrg(bob, "B");
	const mallory = await person();
	await join(a, alice, mallory);
	for (const [method, path, body] of [
		["GET", `/api/v1/orgs/${b}`, undefined],
		["GET", `/api/v1/orgs/${b}/members`, undefined],
		["PATCH", `/api/v1/orgs/${b}`, { name: "mine" }],
		["POST", `/api/v1/orgs/${b}/invitations`, { email: mallory.email }],
		["PATCH", `/api/v1/orgs/${b}/members/${bob.id}`, { role: "member" }],
		["DELETE", `/api/v1/orgs/${b}/members/${bob.id}`, undefined]
	] as const)
		expectError(await call(method, path, { token: mallory.token, body }), 404, "NOT_FOUND");
	expect(
		(await call("GET", "/api/v1/orgs", { token: mallory.token })).json.items.map((o: { id: string }) => o.id)
	).toEqual([a]);
	expectError(
		await call("PATCH", `/api/v1/orgs/${a}`, { token: mallory.token, body: { name: "x" } }),
		403,
		"INSUFFICIENT_ROLE"
	);
	expectError(
		await call("POST", `/api/v1/orgs/${a}/invitations`, { token: mallory.token, body: { email: "x@example.com" } }),
		403,
		"INSUFFICIENT_ROLE"
	);
	expectError(
		await call("PATCH", `/api/v1/orgs/${a}/members/${mallory.id}`, {
			token: mallory.token,
			body: { role: "admin" }
		}),
		403,
		"INSUFFICIENT_ROLE"
	);
	expectError(
		await call("DELETE", `/api/v1/orgs/${a}/members/${alice.id}`, { token: mallory.token }),
		403,
		"INSUFFICIENT_ROLE"
	);
});

test("roles: admins manage members but not owners; ownership moves by promotion; the last owner cannot leave", async () => {
	const alice = await person();
	const orgId = await newOrg(alice);
	const bob = await person();
	const carol = await person();
	await join(orgId, alice, bob, "admin");
	await join(orgId, bob, carol); // an admin invites
	const memberPath = (u: Person) => `/api/v1/orgs/${orgId}/members/${u.id}`;
	expectError(
		await call("PATCH", memberPath(alice), { token: bob.token, body: { role: "member" } }),
		403,
		"OWNER_REQUIRED"
	);
	expectError(
		await call("PATCH", memberPath(carol), { token: bob.token, body: { role: "owner" } }),
		403,
		"OWNER_REQUIRED"
	);
	const capped = await call("PATCH", memberPath(carol), { token: bob.token, body: { monthlyCapCredits: 500 } });
	expect(capped.json).toMatchObject({ role: "member", monthlyCapCredits: 500 });
	expectError(await call("DELETE", memberPath(alice), { token: alice.token }), 409, "LAST_OWNER");
	expectError(
		await call("PATCH", memberPath(alice), { token: alice.token, body: { role: "admin" } }),
		409,
		"LAST_OWNER"
	);
	// Transfer: alice makes bob owner, then leaves.
	expect((await call("PATCH", memberPath(bob), { token: alice.token, body: { role: "owner" } })).json.role).toBe(
		"owner"
	);
	expect((await call("DELETE", memberPath(alice), { token: alice.token })).json).toEqual({
		orgId,
		userId: alice.id,
		removed: true
	});
	expectError(await call("GET", `/api/v1/orgs/${orgId}`, { token: alice.token }), 404, "NOT_FOUND");
	// bob removes carol; carol no longer sees the organisation.
	expect((await call("DELETE", memberPath(carol), { token: bob.token })).status).toBe(200);
	expectError(await call("GET", `/api/v1/orgs/${orgId}/members`, { token: carol.token }), 404, "NOT_FOUND");
	expectError(await call("DELETE", memberPath(carol), { token: bob.token }), 404, "NOT_FOUND");
});

test("two owners leaving at once: exactly one leaves, the organisation keeps an owner", async () => {
	const alice = await person();
	const orgId = await newOrg(alice);
	const bob = await person();
	await join(orgId, alice, bob, "admin");
	await call("PATCH", `/api/v1/orgs/${orgId}/members/${bob.id}`, { token: alice.token, body: { role: "owner" } });
	const results = await Promise.all(
		[alice, bob].map(p => call("DELETE", `/api/v1/orgs/${orgId}/members/${p.id}`, { token: p.token }))
	);
	expect(results.map(r => r.status).sort()).toEqual([200, 409]);
	const [{ n }] = await runtimeOf(node.broker).sequelize.query<{ n: string }>(
		`SELECT count(*) AS n FROM org_members WHERE org_id = $1 AND role = 'owner'`,
		{ bind: [orgId], type: QueryTypes.SELECT }
	);
	expect(Number(n)).toBe(1);
});
