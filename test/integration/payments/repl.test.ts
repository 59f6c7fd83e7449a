/** The operator REPL commands, run against a real node (PostgreSQL, the Stripe fake). */
import { QueryTypes } from "sequelize";
import { paymentsReplCommands } from "../../../src/payments/repl";
import { createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import { startStripeFake, StripeFake } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let fake: StripeFake;

beforeAll(async () => {
	fake = await startStripeFake();
	db = await createTestDatabase();
	node = await startTestNode({ db, services: ["payments"], env: fake.env() });
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
	await fake?.stop();
});

/** Runs a command as moleculer-repl would and returns what it printed (parsed JSON). */
async function run(name: string, args: Record<string, unknown>, options: Record<string, unknown> = {}) {
	const cmd = paymentsReplCommands.find(c => c.command.split(" ")[0] === name)!;
	const out: string[] = [];
	const log = jest.spyOn(console, "log").mockImplementation((s: unknown) => void out.push(String(s)));
	try {
		await cmd.action(node.broker, { ...args, options });
	} finally {
		log.mockRestore();
	}
	return JSON.parse(out.join("\n"));
}

test("every command is declared for moleculer-repl", () => {
	expect(paymentsReplCommands.map(c => c.command.split(" ")[0])).toEqual([
		"payments-balance",
		"payments-grant",
		"billing-usage",
		"payments-stripe-replay",
		"payments-stripe-reconcile",
		"payments-chain-reindex",
		"payments-chain-tick"
	]);
	for (const c of paymentsReplCommands) expect(c.description.length).toBeGreaterThan(10);
});

test("grant records the operator; balance shows it", async () => {
	const g = await run(
		"payments-grant",
		{ userId: "zoe", credits: "1500", reason: ["goodwill", "for", "outage"] },
		{ operator: "ops-anna", paid: true, key: "outage-42" }
	);
	expect(g).toMatchObject({ duplicate: false, credits: 1500, expiresAt: null });
	expect(
		await run(
			"payments-grant",
			{ userId: "zoe", credits: "1500", reason: ["again"] },
			{ operator: "ops-anna", paid: true, key: "outage-42" }
		)
	).toMatchObject({
		duplicate: true
	});
	const b = await run("payments-balance", { userId: "zoe" }, { limit: "5" });
	expect(b).toMatchObject({ available: 1500, held: 0 });
	expect(b.entries[0]).toMatchObject({
		kind: "grant",
		operator: "ops-anna",
		description: "goodwill for outage",
		availableDelta: 1500
	});
	const promo = await run("payments-grant", { userId: "zoe", credits: "10", reason: ["welcome"] });
	expect(promo.expiresAt).toEqual(expect.any(String));
	const [row] = await node.runtime.sequelize.query<{ operator: string }>(
		`SELECT operator FROM ledger_transactions WHERE id = $1`,
		{
			bind: [promo.transactionId],
			type: QueryTypes.SELECT
		}
	);
	expect(row.operator).toMatch(/^repl:.+@.+/);
	await expect(run("payments-grant", { userId: "zoe", credits: "-5", reason: ["x"] })).rejects.toThrow(
		/positive integer/
	);
});

test("replay and reconcile reach Stripe; re-index without a chain says so", async () => {
	const e = fake.event("customer.created", { id: "cus_repl", object: "customer" });
	expect(await run("payments-stripe-replay", { eventId: e.id })).toEqual({
		eventId: e.id,
		outcome: "ignored",
		fetched: true
	});
	expect(await run("payments-stripe-reconcile", {}, { window: "3600" })).toMatchObject({ listed: 1, missed: 0 });
	await expect(run("payments-chain-reindex", { fromBlock: "0" })).rejects.toMatchObject({
		code: 503,
		type: "CHAIN_NOT_CONFIGURED"
	});
});
