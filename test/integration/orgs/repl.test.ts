/**
 * The operator REPL commands orgs-show, orgs-grant and billing-usage against a real node (the orgs
 * and payments services on PostgreSQL): the organisation found by id or name, the grant on its
 * wallet through the ledger (promotional, expiring), and the usage report of its payer.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { orgsReplCommands } from "../../../src/orgs/repl";
import { paymentsReplCommands } from "../../../src/payments/repl";
import type { ReplCommand } from "../../../src/repl/command";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const ORG = randomUUID();
const OWNER = randomUUID();
const BILLING = randomUUID();

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({ db, services: ["orgs", "payments"] });
	await sql(`INSERT INTO orgs (id, name, created_by, monthly_cap_credits) VALUES ($1, 'Repl Acme', $2, 9000)`, [
		ORG,
		OWNER
	]);
	await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, 'owner')`, [ORG, OWNER]);
	await sql(`INSERT INTO org_members (org_id, user_id, role, monthly_cap_credits) VALUES ($1, $2, 'billing', 300)`, [
		ORG,
		BILLING
	]);
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function run(list: ReplCommand[], name: string, args: Record<string, unknown>, options = {}) {
	const cmd = list.find(c => c.command.split(" ")[0] === name)!;
	const out: string[] = [];
	const log = jest.spyOn(console, "log").mockImplementation((s: unknown) => void out.push(String(s)));
	try {
		await cmd.action(node.broker, { ...args, options });
	} finally {
		log.mockRestore();
	}
	return JSON.parse(out.join("\n"));
}

test("orgs-grant credits the organisation's wallet (promotional, expiring); orgs-show shows it with members and caps", async () => {
	const g = await run(
		orgsReplCommands,
		"orgs-grant",
		{ orgId: ORG, credits: "2500", reason: ["launch"] },
		{ expiresDays: "10", operator: "ops-anna", key: "repl-launch" }
	);
	expect(g).toMatchObject({ duplicate: false, credits: 2500 });
	const [row] = await sql<{ operator: string }>(`SELECT operator FROM ledger_transactions WHERE id = $1`, [
		g.transactionId
	]);
	expect(row.operator).toBe("ops-anna");
	expect(Date.parse(g.expiresAt) - Date.now()).toBeGreaterThan(9.9 * 86_400_000);
	// The same key grants once.
	expect(
		(await run(orgsReplCommands, "orgs-grant", { orgId: ORG, credits: "2500" }, { key: "repl-launch" })).duplicate
	).toBe(true);

	for (const ref of [ORG, "repl acme"]) {
		const shown = await run(orgsReplCommands, "orgs-show", { org: ref });
		expect(shown).toMatchObject({
			id: ORG,
			name: "Repl Acme",
			payerId: `org:${ORG}`,
			monthlyCapCredits: 9000,
			balance: { available: 2500, held: 0 },
			plan: { planTier: "free", tier: "free" }
		});
		expect(shown.members).toEqual(
			expect.arrayContaining([
				{ userId: OWNER, role: "owner", monthlyCapCredits: null },
				{ userId: BILLING, role: "billing", monthlyCapCredits: 300 }
			])
		);
	}
});

test("billing-usage reports for the organisation's payer", async () => {
	const r = await run(paymentsReplCommands, "billing-usage", { payer: `org:${ORG}`, groupBy: "member" });
	expect(r).toMatchObject({ payerId: `org:${ORG}`, groupBy: "member" });
});
