/**
 * The tier of work in an organisation (docs/orgs.md "Tier"), through the real gateway, tasks, users,
 * projects, orgs and payments services on PostgreSQL: a task in an organisation's project runs at the
 * better of the member's tier and the organisation's (its payer `org:<uuid>`'s plan), in the user's
 * own project at the member's; also when submitted with an organisation API key.
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
