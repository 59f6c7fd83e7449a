/**
 * Security review regressions, through the real gateway: API-key scopes on every service's routes,
 * and bad inputs that must answer a 4xx in the contract's shape instead of a 500.
 */
import { randomUUID } from "node:crypto";
import { createTestDatabase, uniqueId, type TestDatabase } from "../../support/env";
import { api, makeUser, startTasksNode, type TestNode } from "../tasks/helpers";
import { signUp } from "../../support/sign-up";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: TestNode;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTasksNode(db, []);
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

function expectError(r: { status: number; body: unknown }, status: number, code: string) {
	expect({ status: r.status, code: (r.body as { error?: { code?: string } })?.error?.code }).toEqual({
		status,
		code
	});
}

/** A registered user's session token and an API key holding only `scopes`. */
async function keyWith(scopes: string[]) {
	const reg = await signUp(node, `${uniqueId("sec")}@example.com`, "correct horse battery staple");
	const token = reg.accessToken;
	const key = await api(node, "POST", "/users/me/api-keys", token, { name: "narrow", scopes });
	expect(key.status).toBe(201);
	return { token, key: key.body.key as string, userId: reg.userId };
}

const withKey = (key: string) => ({ "X-API-Key": key });

describe("API-key scopes are enforced outside the users service", () => {
	test("a key without projects:write cannot create, change or delete projects; projects:read reads only", async () => {
		const { token, key } = await keyWith(["users:read", "projects:read"]);
		const project = await api(node, "POST", "/projects", token, { name: "mine" });
		expect(project.status).toBe(201);
		const id = project.body.id as string;

		expectError(
			await api(node, "POST", "/projects", null, { name: "by key" }, withKey(key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(
			await api(node, "PATCH", `/projects/${id}`, null, { name: "renamed" }, withKey(key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(
			await api(
				node,
				"POST",
				`/projects/${id}/versions`,
				null,
				{ baseVersion: 0, message: "m", changes: [{ op: "add", path: "a.txt", content: "x" }] },
				withKey(key)
			),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(
			await api(node, "PUT", `/projects/${id}/members/someone`, null, { role: "owner" }, withKey(key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(
			await api(node, "DELETE", `/projects/${id}`, null, undefined, withKey(key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		// Nothing changed.
		const after = await api(node, "GET", `/projects/${id}`, token);
		expect(after.body).toMatchObject({ name: "mine", status: "active", headVersion: 0 });
		expect((await api(node, "GET", `/projects/${id}/members`, token)).body.items).toHaveLength(1);

		// What the key does hold still works.
		expect((await api(node, "GET", `/projects/${id}`, null, undefined, withKey(key))).status).toBe(200);
		expect((await api(node, "GET", `/projects/${id}/files`, null, undefined, withKey(key))).status).toBe(200);
	});

	test("a key without projects:read cannot read projects", async () => {
		const { token, key } = await keyWith(["tasks:read"]);
		const id = (await api(node, "POST", "/projects", token, { name: "secret" })).body.id as string;
		expectError(await api(node, "GET", "/projects", null, undefined, withKey(key)), 403, "INSUFFICIENT_SCOPE");
		expectError(
			await api(node, "GET", `/projects/${id}`, null, undefined, withKey(key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(
			await api(node, "GET", `/projects/${id}/files`, null, undefined, withKey(key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
	});

	test("a key without billing scopes cannot read the ledger or start payments; billing:read reads only", async () => {
		const none = await keyWith(["projects:read"]);
		expectError(
			await api(node, "GET", "/billing/balance", null, undefined, withKey(none.key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(
			await api(node, "GET", "/billing/ledger", null, undefined, withKey(none.key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(await api(node, "GET", "/staking", null, undefined, withKey(none.key)), 403, "INSUFFICIENT_SCOPE");
		expectError(
			await api(node, "POST", "/billing/crypto/invoices", null, { credits: 100 }, withKey(none.key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		expectError(
			await api(node, "POST", "/billing/checkout", null, { kind: "pack", itemId: "starter" }, withKey(none.key)),
			403,
			"INSUFFICIENT_SCOPE"
		);

		const reader = await keyWith(["billing:read"]);
		expect((await api(node, "GET", "/billing/balance", null, undefined, withKey(reader.key))).status).toBe(200);
		expect((await api(node, "GET", "/billing/ledger", null, undefined, withKey(reader.key))).status).toBe(200);
		expectError(
			await api(node, "POST", "/billing/crypto/invoices", null, { credits: 100 }, withKey(reader.key)),
			403,
			"INSUFFICIENT_SCOPE"
		);
		// Sessions keep every scope of their role.
		expect((await api(node, "GET", "/billing/balance", reader.token)).status).toBe(200);
	});
});

describe("bad inputs answer 4xx, never 500", () => {
	test("GET /tasks with a cursor whose id part is not a UUID → 422", async () => {
		const u = await makeUser(node, "free", 0);
		const r = await api(node, "GET", `/tasks?cursor=${"1".repeat(13)}.${"-".repeat(36)}`, u.token);
		expectError(r, 422, "VALIDATION_ERROR");
		expect((await api(node, "GET", "/tasks", u.token)).status).toBe(200);
	});

	test("GET /admin/users with a forged cursor whose time Postgres cannot read → 422", async () => {
		const email = `${uniqueId("admin")}@example.com`;
		const reg = await signUp(node, email, "correct horse battery staple");
		await node.runtime.sequelize.query(`UPDATE users SET role = 'admin' WHERE id = $1`, {
			bind: [reg.userId]
		});
		const admin = (
			await api(node, "POST", "/auth/login", null, { email, password: "correct horse battery staple" })
		).body.accessToken as string;
		for (const at of ["1", "March 7", "2020-01-01 00:00:00+99", "2021-02-31 00:00:00+00"]) {
			const cursor = Buffer.from(JSON.stringify([at, randomUUID()])).toString("base64url");
			expectError(await api(node, "GET", `/admin/users?cursor=${cursor}`, admin), 422, "VALIDATION_ERROR");
		}
		const page = await api(node, "GET", "/admin/users?limit=1", admin);
		expect(page.status).toBe(200);
		expect(page.body.nextCursor).toEqual(expect.any(String));
		expect((await api(node, "GET", `/admin/users?limit=1&cursor=${page.body.nextCursor}`, admin)).status).toBe(200);
	});

	test("GET /billing/ledger with a cursor beyond BIGINT (or the old bare-id form) → 422", async () => {
		const u = await makeUser(node, "free", 0);
		const cursorOf = (id: string) => `c1.${Buffer.from(`[${id}]`).toString("base64url")}`;
		for (const cursor of ["9999999999999999999", "9223372036854775807", cursorOf("9999999999999999999")])
			expectError(await api(node, "GET", `/billing/ledger?cursor=${cursor}`, u.token), 422, "VALIDATION_ERROR");
		expect((await api(node, "GET", `/billing/ledger?cursor=${cursorOf("9007199254740991")}`, u.token)).status).toBe(
			200
		);
	});
});
