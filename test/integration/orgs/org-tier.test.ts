/**
 * The tier of work in an organisation (docs/orgs.md "Tier"), through the real gateway, tasks, users,
 * projects, orgs and payments services on PostgreSQL: a task in an organisation's project runs at the
 * better of the member's tier and the organisation's (its payer `org:<uuid>`'s plan), in the user's
 * own project at the member's; also when submitted with an organisation API key, which lists only its
 * creator's tasks paid by the organisation.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import { ALL, api, makeUser, type TestNode, type TestUser } from "../tasks/helpers";

jest.setTimeout(120_000);

let db: TestDatabase;
let node: TestNode;
const TEAM_ORG = randomUUID();
const PLAIN_ORG = randomUUID();
let free: TestUser; // member of both, no plan of their own
let enterprise: TestUser; // member of TEAM_ORG with an enterprise tier of their own
let teamProject: string;
let plainProject: string;

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: [...ALL, "orgs"],
		extraServices: [fakeAiWorker({ slots: 64, price: 100, cost: 40, leases: false })],
		env: { RATE_LIMIT_PER_MINUTE: "100000" }
	});
	[free, enterprise] = await Promise.all([makeUser(node, "free"), makeUser(node, "enterprise")]);
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Team plan', $2), ($3, 'No plan', $2)`, [
		TEAM_ORG,
		free.id,
		PLAIN_ORG
	]);
	for (const [org, u, role] of [
		[TEAM_ORG, free.id, "owner"],
		[TEAM_ORG, enterprise.id, "member"],
		[PLAIN_ORG, free.id, "owner"]
	])
		await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3)`, [org, u, role]);
	// The organisation's plan, as payments records it for its payer (a Stripe team subscription).
	await sql(`INSERT INTO user_plans (user_id, plan_tier) VALUES ($1, 'team')`, [`org:${TEAM_ORG}`]);
	for (const org of [TEAM_ORG, PLAIN_ORG])
		await node.broker.call("payments.grant", {
			userId: `org:${org}`,
			credits: 1_000_000,
			operator: "test",
			reason: "org wallet",
			source: "paid",
			key: `grant-${org}`
		});
	const [t, p] = await Promise.all([
		api(node, "POST", "/projects", free.token, { name: "team", orgId: TEAM_ORG }),
		api(node, "POST", "/projects", free.token, { name: "plain", orgId: PLAIN_ORG })
	]);
	expect([t.status, p.status]).toEqual([201, 201]);
	teamProject = (t.body as { id: string }).id;
	plainProject = (p.body as { id: string }).id;
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function tierOf(u: TestUser, projectId: string): Promise<string> {
	const r = await api(node, "POST", "/tasks", u.token, { projectId, kind: "chat", prompt: `hi ${randomUUID()}` });
	expect(r.status).toBe(202);
	const task = (r.body as { task: { id: string; tier: string } }).task;
	const [row] = await sql<{ tier: string }>(`SELECT tier FROM tasks WHERE id = $1`, [task.id]);
	expect(task.tier).toBe(row.tier);
	return row.tier;
}

test("the better of the member's and the organisation's tier in its projects; the member's own elsewhere", async () => {
	expect(await tierOf(free, teamProject)).toBe("team");
	expect(await tierOf(free, plainProject)).toBe("free");
	expect(await tierOf(free, free.projectId)).toBe("free");
	expect(await tierOf(enterprise, teamProject)).toBe("enterprise");
});

test("the organisation's plan changing changes its projects' tier on the next task", async () => {
	await sql(`UPDATE user_plans SET plan_tier = 'pro' WHERE user_id = $1`, [`org:${TEAM_ORG}`]);
	expect(await tierOf(free, teamProject)).toBe("pro");
	await sql(`UPDATE user_plans SET plan_tier = 'team' WHERE user_id = $1`, [`org:${TEAM_ORG}`]);
	expect(await tierOf(free, teamProject)).toBe("team");
});

test("an organisation API key lists its creator's tasks paid by the organisation only; a malformed orgId is 422", async () => {
	const made = await api(node, "POST", `/orgs/${TEAM_ORG}/keys`, free.token, {
		name: "ci",
		scopes: ["tasks:read", "tasks:write", "ai:use", "billing:read"]
	});
	expect(made.status).toBe(201);
	const key = (made.body as { key: string }).key;
	const byKey = (path: string, body?: unknown) =>
		api(node, body === undefined ? "GET" : "POST", path, null, body, { "x-api-key": key });
	const submitted = await byKey("/tasks", { projectId: teamProject, kind: "chat", prompt: `key ${randomUUID()}` });
	expect(submitted.status).toBe(202);
	const keyTask = (submitted.body as { task: { id: string } }).task.id;
	// Held on the organisation's wallet, not the creator's.
	expect(await sql(`SELECT payer_id FROM tasks WHERE id = $1`, [keyTask])).toEqual([{ payer_id: `org:${TEAM_ORG}` }]);
	// The creator's personal task, another organisation's task and another member's task stay out.
	const personal = await api(node, "POST", "/tasks", free.token, {
		projectId: free.projectId,
		kind: "chat",
		prompt: `own ${randomUUID()}`
	});
	const otherOrg = await api(node, "POST", "/tasks", free.token, {
		projectId: plainProject,
		kind: "chat",
		prompt: `plain ${randomUUID()}`
	});
	const otherMember = await api(node, "POST", "/tasks", enterprise.token, {
		projectId: teamProject,
		kind: "chat",
		prompt: `member ${randomUUID()}`
	});
	expect([personal.status, otherOrg.status, otherMember.status]).toEqual([202, 202, 202]);

	const listed = await byKey("/tasks?limit=100");
	expect(listed.status).toBe(200);
	const ids = (listed.body as { items: { id: string }[] }).items.map(t => t.id);
	const [inOrg] = await sql<{ n: string }>(`SELECT count(*) AS n FROM tasks WHERE user_id = $1 AND payer_id = $2`, [
		free.id,
		`org:${TEAM_ORG}`
	]);
	expect(ids).toContain(keyTask);
	expect(ids).toHaveLength(Number(inOrg.n));
	for (const other of [personal, otherOrg, otherMember])
		expect(ids).not.toContain((other.body as { task: { id: string } }).task.id);
	// The session still lists every task of its own.
	const all = await api(node, "GET", "/tasks?limit=100", free.token);
	expect((all.body as { items: { id: string }[] }).items.map(t => t.id)).toEqual(
		expect.arrayContaining([keyTask, (personal.body as { task: { id: string } }).task.id])
	);

	// A malformed orgId is a validation error for a key as for a session, not "another organisation".
	const auths: Record<string, string>[] = [{ "x-api-key": key }, { Authorization: `Bearer ${free.token}` }];
	for (const auth of auths) {
		const bad = await api(node, "GET", "/billing/balance?orgId=not-a-uuid", null, undefined, auth);
		expect(bad.status).toBe(422);
		expect((bad.body as { error: { code: string; details: { field: string }[] } }).error).toMatchObject({
			code: "VALIDATION_ERROR",
			details: [expect.objectContaining({ field: "orgId" })]
		});
	}
	const other = await api(node, "GET", `/billing/balance?orgId=${PLAIN_ORG}`, null, undefined, {
		"x-api-key": key
	});
	expect(other.status).toBe(404);
});
