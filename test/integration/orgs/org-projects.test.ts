/**
 * Organisation-owned projects through the real gateway, users, orgs and projects services on
 * PostgreSQL and Redis: creating one (organisation owner or admin), the role that counts for each
 * organisation role (docs/projects.md), isolation from another organisation (404), a removed member
 * losing access on the next request, and moving a user's own project in (once; 409 the second time).
 * Every answer is checked against the OpenAPI document by the suites' fetch hook.
 */
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { expectError, httpClient } from "../users/http";
import { orgPeople, type Person } from "../../support/org-people";

jest.setTimeout(120_000);

const PASSWORD = "correct horse battery staple";
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const { person, newOrg, join } = orgPeople(call, { prefix: "op", password: PASSWORD });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users", "orgs", "projects"],
		env: { AUTH_SESSION_CHECK: "true", RATE_LIMIT_PER_MINUTE: "100000" }
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

/** The newest token of a link in the dev outbox to `to` whose path matches. */

async function createProject(p: Person, name: string, orgId?: string) {
	return call("POST", "/api/v1/projects", { token: p.token, body: orgId ? { name, orgId } : { name } });
}

const get = (p: Person, id: string) => call("GET", `/api/v1/projects/${id}`, { token: p.token });
const rename = (p: Person, id: string, name: string) =>
	call("PATCH", `/api/v1/projects/${id}`, { token: p.token, body: { name } });
const commit = (p: Person, id: string, baseVersion: number, path: string) =>
	call("POST", `/api/v1/projects/${id}/versions`, {
		token: p.token,
		body: { baseVersion, message: "m", changes: [{ op: "add", path, content: "x\n" }] }
	});
const listIds = async (p: Person, query = "") => {
	const r = await call("GET", `/api/v1/projects${query}`, { token: p.token });
	expect(r.status).toBe(200);
	return r.json.items.map((i: { id: string; role: string; orgId: string | null }) => [i.id, i.role, i.orgId]);
};

describe("an organisation's project", () => {
	let alice: Person; // owner of A
	let adam: Person; // admin of A
	let mia: Person; // member of A
	let bill: Person; // billing of A
	let bob: Person; // owner of B
	let bea: Person; // member of B
	let orgA: string;
	let orgB: string;
	let projectId: string;

	beforeAll(async () => {
		[alice, adam, mia, bill, bob, bea] = await Promise.all([1, 2, 3, 4, 5, 6].map(() => person()));
		orgA = await newOrg(alice, "A");
		orgB = await newOrg(bob, "B");
		await join(orgA, alice, adam, "admin");
		await join(orgA, alice, mia, "member");
		await join(orgA, alice, bill, "billing");
		await join(orgB, bob, bea, "member");
	});

	test("an owner or admin creates it; a plain member or billing may not (403); an outsider gets 404", async () => {
		const r = await createProject(alice, "Shared", orgA);
		expect(r.status).toBe(201);
		expect(r.json).toMatchObject({ name: "Shared", orgId: orgA, ownerId: alice.id, role: "owner" });
		projectId = r.json.id;
		const byAdmin = await createProject(adam, "By admin", orgA);
		expect(byAdmin.status).toBe(201);
		expect(byAdmin.json).toMatchObject({ orgId: orgA, role: "owner" });
		expectError(await createProject(mia, "No", orgA), 403, "INSUFFICIENT_ROLE");
		expectError(await createProject(bill, "No", orgA), 403, "INSUFFICIENT_ROLE");
		expectError(await createProject(bea, "No", orgA), 404, "NOT_FOUND");
		// A user's own project still has no organisation.
		const own = await createProject(mia, "Mine");
		expect(own.status).toBe(201);
		expect(own.json.orgId).toBeNull();
	});

	test("each organisation role gets the documented project role, in the project and in lists", async () => {
		expect((await get(alice, projectId)).json).toMatchObject({ orgId: orgA, role: "owner" });
		expect((await get(adam, projectId)).json).toMatchObject({ orgId: orgA, role: "owner" });
		expect((await get(mia, projectId)).json).toMatchObject({ orgId: orgA, role: "viewer" });
		expect((await get(bill, projectId)).json).toMatchObject({ orgId: orgA, role: "viewer" });
		expect(await listIds(mia, `?orgId=${orgA}`)).toContainEqual([projectId, "viewer", orgA]);
		expect(await listIds(adam, "?scope=own")).toContainEqual([projectId, "owner", orgA]);
		expect(await listIds(mia, "?scope=shared")).toContainEqual([projectId, "viewer", orgA]);
		// A viewer cannot commit; given the editor role in the project, the member can.
		expectError(await commit(mia, projectId, 0, "a.txt"), 403, "INSUFFICIENT_ROLE");
		const set = await call("PUT", `/api/v1/projects/${projectId}/members/${mia.id}`, {
			token: adam.token, // an organisation admin manages the project's members
			body: { role: "editor" }
		});
		expect(set.status).toBe(200);
		expect((await get(mia, projectId)).json.role).toBe("editor");
		expect((await commit(mia, projectId, 0, "a.txt")).status).toBe(201);
		expectError(await rename(mia, projectId, "mine"), 403, "INSUFFICIENT_ROLE");
	});

	test("a billing member reads it but cannot change it (403), even with a project role", async () => {
		expect((await call("GET", `/api/v1/projects/${projectId}/files/a.txt`, { token: bill.token })).status).toBe(
			200
		);
		expectError(await rename(bill, projectId, "billing's"), 403, "INSUFFICIENT_ROLE");
		expectError(await commit(bill, projectId, 1, "b.txt"), 403, "INSUFFICIENT_ROLE");
		const set = await call("PUT", `/api/v1/projects/${projectId}/members/${bill.id}`, {
			token: alice.token,
			body: { role: "owner" }
		});
		expect(set.status).toBe(200);
		expect((await get(bill, projectId)).json.role).toBe("viewer");
		expectError(await rename(bill, projectId, "billing's"), 403, "INSUFFICIENT_ROLE");
		expectError(
			await call("DELETE", `/api/v1/projects/${projectId}`, { token: bill.token }),
			403,
			"INSUFFICIENT_ROLE"
		);
		expect((await get(alice, projectId)).json).toMatchObject({ name: "Shared", status: "active" });
	});

	test("another organisation's members get 404 and do not see it listed", async () => {
		for (const p of [bob, bea]) {
			expectError(await get(p, projectId), 404, "NOT_FOUND");
			expectError(await rename(p, projectId, "ours"), 404, "NOT_FOUND");
			expectError(await commit(p, projectId, 1, "c.txt"), 404, "NOT_FOUND");
			expect((await listIds(p)).map((r: unknown[]) => r[0])).not.toContain(projectId);
			expect(await listIds(p, `?orgId=${orgA}`)).toEqual([]);
		}
	});

	test("a removed member loses access on the next request, project role or not", async () => {
		expect((await get(mia, projectId)).json.role).toBe("editor");
		const removed = await call("DELETE", `/api/v1/orgs/${orgA}/members/${mia.id}`, { token: alice.token });
		expect(removed.status).toBe(200);
		expectError(await get(mia, projectId), 404, "NOT_FOUND");
		expectError(await commit(mia, projectId, 1, "d.txt"), 404, "NOT_FOUND");
		expect((await listIds(mia)).map((r: unknown[]) => r[0])).not.toContain(projectId);
		// Her own project is hers still.
		expect((await listIds(mia, "?scope=own")).length).toBe(1);
	});
});

describe("moving a user's own project into an organisation", () => {
	let owner: Person;
	let admin: Person;
	let member: Person;
	let outsider: Person;
	let orgId: string;

	beforeAll(async () => {
		[owner, admin, member, outsider] = await Promise.all([1, 2, 3, 4].map(() => person()));
		orgId = await newOrg(owner, "T");
		await join(orgId, owner, admin, "admin");
		await join(orgId, owner, member, "member");
	});

	const transfer = (p: Person, id: string, to = orgId) =>
		call("POST", `/api/v1/projects/${id}/transfer`, { token: p.token, body: { orgId: to } });

	test("works once; the second time answers 409 ALREADY_IN_ORG", async () => {
		const id = (await createProject(owner, "Solo")).json.id as string;
		expect((await get(admin, id)).status).toBe(404); // not the organisation's yet
		const moved = await transfer(owner, id);
		expect(moved.status).toBe(200);
		expect(moved.json).toMatchObject({ id, orgId, ownerId: owner.id, role: "owner" });
		expect((await get(admin, id)).json).toMatchObject({ orgId, role: "owner" });
		expect((await get(member, id)).json).toMatchObject({ orgId, role: "viewer" });
		expectError(await transfer(owner, id), 409, "ALREADY_IN_ORG");
		expect((await get(owner, id)).json.orgId).toBe(orgId);
	});

	test("two transfers at once: one moves it, the other gets 409", async () => {
		const id = (await createProject(admin, "Race")).json.id as string;
		const results = await Promise.all([transfer(admin, id), transfer(admin, id)]);
		expect(results.map(r => r.status).sort()).toEqual([200, 409]);
		expectError(
			results.find(r => r.status === 409)!,
			409,
			"ALREADY_IN_ORG"
		);
	});

	test("refused to a plain member (403), into an organisation one is not in (404), for another's project (404)", async () => {
		const own = (await createProject(member, "Mine")).json.id as string;
		expectError(await transfer(member, own), 403, "INSUFFICIENT_ROLE");
		const outsiders = (await createProject(outsider, "Theirs")).json.id as string;
		expectError(await transfer(outsider, outsiders), 404, "NOT_FOUND");
		// An organisation admin cannot take a project that is not theirs.
		expectError(await transfer(admin, own), 404, "NOT_FOUND");
		expect((await get(member, own)).json).toMatchObject({ orgId: null, role: "owner" });
		expect((await get(outsider, outsiders)).json.orgId).toBeNull();
	});
});
