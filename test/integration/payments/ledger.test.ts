/**
 * The credit ledger against the real PostgreSQL (and Redis, RabbitMQ, NATS for the cluster call):
 * concurrency, idempotency of reserve/settle/release, lot order, expiry, double-entry invariants.
 */
import { ServiceBroker } from "moleculer";
import { QueryTypes } from "sequelize";
import { NATS_URL, bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { Ledger } from "../../../src/payments/ledger";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let remote: ServiceBroker;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "payments"],
		env: { TRANSPORTER: NATS_URL, RATE_LIMIT_PER_MINUTE: "100000", RATE_LIMIT_ANON_PER_MINUTE: "100000" }
	});
	// Another node of the cluster (as the tasks service would be): it calls payments over NATS.
	remote = new ServiceBroker({
		nodeID: `remote-${Date.now()}`,
		namespace: node.config.namespace,
		transporter: { type: "NATS", options: { url: NATS_URL } },
		logger: false
	});
	await remote.start();
	await remote.waitForServices(["payments"], 10_000);
});
afterAll(async () => {
	await remote?.stop();
	await node?.stop();
	await db?.drop();
});

const call = <T = any>(action: string, params: Record<string, unknown>) =>
	node.broker.call(action, params) as Promise<T>; // results are checked field by field
const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });
const grant = (userId: string, credits: number, extra: Record<string, unknown> = {}) =>
	call("payments.grant", {
		userId,
		credits,
		operator: "test-operator",
		reason: "test grant",
		source: "paid",
		...extra
	});
const balance = async (userId: string) => {
	const [row] = await sql<{ available: string | null; held: string | null }>(
		`SELECT (SELECT balance FROM ledger_accounts WHERE key = $1) AS available, (SELECT balance FROM ledger_accounts WHERE key = $2) AS held`,
		[`u:${userId}:available`, `u:${userId}:held`]
	);
	return { available: Number(row.available ?? 0), held: Number(row.held ?? 0) };
};

async function expectInvariants() {
	const [{ total }] = await sql<{ total: string | null }>(`SELECT SUM(amount) AS total FROM ledger_entries`);
	expect(Number(total ?? 0)).toBe(0);
	const drift = await sql(
		`SELECT a.key FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_key = a.key
		 WHERE a.user_id IS NOT NULL GROUP BY a.key, a.balance HAVING a.balance <> COALESCE(SUM(e.amount), 0)`
	);
	expect(drift).toEqual([]);
	const lotDrift = await sql(
		`SELECT a.user_id FROM ledger_accounts a WHERE a.kind = 'available'
		 AND a.balance <> (SELECT COALESCE(SUM(remaining), 0) FROM credit_lots l WHERE l.user_id = a.user_id)`
	);
	expect(lotDrift).toEqual([]);
	const negative = await sql(`SELECT key FROM ledger_accounts WHERE user_id IS NOT NULL AND balance < 0`);
	expect(negative).toEqual([]);
}

describe("reserve under concurrency", () => {
	test("50 parallel debits against a balance of 10 give exactly 10 successes", async () => {
		await grant("u-race", 10);
		const results = await Promise.allSettled(
			Array.from({ length: 50 }, (_, i) =>
				call("payments.reserve", { userId: "u-race", taskId: `race-${i}`, maxCost: 1 })
			)
		);
		const ok = results.filter(r => r.status === "fulfilled");
		const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
		expect(ok).toHaveLength(10);
		expect(failed).toHaveLength(40);
		for (const f of failed) {
			expect(f.reason.code).toBe(402);
			expect(f.reason.type).toBe("INSUFFICIENT_CREDITS");
		}
		expect(await balance("u-race")).toEqual({ available: 0, held: 10 });
		const [{ n }] = await sql<{ n: string }>(`SELECT COUNT(*) AS n FROM credit_holds WHERE user_id = 'u-race'`);
		expect(Number(n)).toBe(10);
		await expectInvariants();
	});

	test("a remote node reserves over the transporter; the gateway cannot reach the action", async () => {
		await grant("u-remote", 5);
		const hold = (await remote.call("payments.reserve", {
			userId: "u-remote",
			taskId: "remote-1",
			maxCost: 3
		})) as { held: number; state: string };
		expect(hold).toMatchObject({ held: 3, state: "held" });
		await expect(
			remote.call("payments.reserve", { userId: "u-remote", taskId: "remote-2", maxCost: 3 })
		).rejects.toMatchObject({
			code: 402,
			type: "INSUFFICIENT_CREDITS"
		});
		const token = bearerFor(node.config, "u-remote");
		for (const path of ["/api/v1/payments/reserve", "/api/v1/payments.reserve"]) {
			const res = await fetch(node.baseUrl + path, {
				method: "POST",
				headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
				body: JSON.stringify({ userId: "u-remote", taskId: "via-gateway", maxCost: 1 })
			});
			expect(res.status).toBe(404);
		}
	});

	test("the same task reserved twice at once holds once", async () => {
		await grant("u-idem", 100);
		const holds = await Promise.all(
			Array.from({ length: 8 }, () =>
				call("payments.reserve", { userId: "u-idem", taskId: "idem-1", maxCost: 30 })
			)
		);
		expect(holds.filter(h => !h.duplicate)).toHaveLength(1);
		for (const h of holds) expect(h).toMatchObject({ taskId: "idem-1", held: 30, state: "held" });
		expect(await balance("u-idem")).toEqual({ available: 70, held: 30 });
		await expect(
			call("payments.reserve", { userId: "u-idem", taskId: "idem-1", maxCost: 31 })
		).rejects.toMatchObject({ code: 409, type: "HOLD_MISMATCH" });
		await expect(
			call("payments.reserve", { userId: "u-other", taskId: "idem-1", maxCost: 30 })
		).rejects.toMatchObject({ code: 409, type: "HOLD_CONFLICT" });
	});
});

describe("settle and release", () => {
	test("settle charges the actual cost, refunds the rest, and is idempotent", async () => {
		await grant("u-settle", 100);
		await call("payments.reserve", { userId: "u-settle", taskId: "s-1", maxCost: 80 });
		const settled = await Promise.all(
			Array.from({ length: 5 }, () =>
				call("payments.settle", { userId: "u-settle", taskId: "s-1", actualCost: 55 })
			)
		);
		expect(settled.filter(s => !s.duplicate)).toHaveLength(1);
		for (const s of settled) expect(s).toMatchObject({ state: "settled", held: 80, charged: 55, refunded: 25 });
		expect(await balance("u-settle")).toEqual({ available: 45, held: 0 });
		const [{ revenue }] = await sql<{ revenue: string }>(
			`SELECT SUM(e.amount) AS revenue FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
			 WHERE e.account_key = 'sys:revenue' AND t.user_id = 'u-settle'`
		);
		expect(Number(revenue)).toBe(55);
		await expect(
			call("payments.settle", { userId: "u-settle", taskId: "s-1", actualCost: 56 })
		).rejects.toMatchObject({ code: 409, type: "HOLD_ALREADY_SETTLED" });
		await expect(call("payments.release", { userId: "u-settle", taskId: "s-1" })).rejects.toMatchObject({
			code: 409,
			type: "HOLD_ALREADY_SETTLED"
		});
		await expect(
			call("payments.settle", { userId: "someone-else", taskId: "s-1", actualCost: 55 })
		).rejects.toMatchObject({ code: 404 });
		await expect(
			call("payments.settle", { userId: "u-settle", taskId: "no-such-task", actualCost: 1 })
		).rejects.toMatchObject({ code: 404 });
	});

	test("settle never charges more than the hold", async () => {
		await grant("u-cap", 50);
		await call("payments.reserve", { userId: "u-cap", taskId: "cap-1", maxCost: 20 });
		const s = await call("payments.settle", { userId: "u-cap", taskId: "cap-1", actualCost: 1_000 });
		expect(s).toMatchObject({ charged: 20, refunded: 0 });
		expect(await balance("u-cap")).toEqual({ available: 30, held: 0 });
	});

	test("release returns the whole hold once, even when raced by settle", async () => {
		await grant("u-rel", 40);
		await call("payments.reserve", { userId: "u-rel", taskId: "r-1", maxCost: 40 });
		const results = await Promise.allSettled([
			...Array.from({ length: 4 }, () => call("payments.release", { userId: "u-rel", taskId: "r-1" })),
			...Array.from({ length: 4 }, () =>
				call("payments.settle", { userId: "u-rel", taskId: "r-1", actualCost: 10 })
			)
		]);
		const firsts = results.filter(r => r.status === "fulfilled" && !(r.value as { duplicate: boolean }).duplicate);
		expect(firsts).toHaveLength(1);
		const b = await balance("u-rel");
		const winner = (firsts[0] as PromiseFulfilledResult<{ state: string }>).value.state;
		expect(b).toEqual(winner === "released" ? { available: 40, held: 0 } : { available: 30, held: 0 });
		for (const r of results)
			if (r.status === "rejected") expect([409]).toContain((r.reason as { code: number }).code);
		await expectInvariants();
	});
});

describe("lots, expiry and discounts", () => {
	test("promotional credit is spent first and comes back last", async () => {
		await grant("u-lots", 10, { source: "paid" });
		await grant("u-lots", 5, { source: "promo", expiresAt: new Date(Date.now() + 86_400_000).toISOString() });
		await call("payments.reserve", { userId: "u-lots", taskId: "lots-1", maxCost: 7 });
		await call("payments.settle", { userId: "u-lots", taskId: "lots-1", actualCost: 3 });
		const lots = await sql<{ source: string; remaining: string }>(
			`SELECT source, remaining FROM credit_lots WHERE user_id = 'u-lots' ORDER BY id`
		);
		expect(lots.map(l => [l.source, Number(l.remaining)])).toEqual([
			["paid", 10],
			["promo", 2]
		]);
	});

	test("expired promotional credit cannot be spent and is swept to the expired account", async () => {
		await grant("u-exp", 4, { source: "paid" });
		await grant("u-exp", 100, { source: "promo", expiresAt: new Date(Date.now() - 1000).toISOString() });
		const token = bearerFor(node.config, "u-exp");
		const res = await fetch(`${node.baseUrl}/api/v1/billing/balance`, {
			headers: { authorization: `Bearer ${token}` }
		});
		expect(res.status).toBe(200);
		expect(await res.json()).toMatchObject({ available: 4, held: 0, tier: "free", feeDiscountBps: 0 });
		await expect(call("payments.reserve", { userId: "u-exp", taskId: "exp-1", maxCost: 5 })).rejects.toMatchObject({
			code: 402,
			type: "INSUFFICIENT_CREDITS",
			data: { required: "5", available: "4" }
		});
		await call("payments.reserve", { userId: "u-exp", taskId: "exp-2", maxCost: 4 });
		expect(await balance("u-exp")).toEqual({ available: 0, held: 4 });
		const [{ expired }] = await sql<{ expired: string }>(
			`SELECT SUM(amount) AS expired FROM ledger_entries WHERE account_key = 'sys:expired'`
		);
		expect(Number(expired)).toBe(100);
		await expectInvariants();
	});

	test("a tier passed by the caller sets the discount, recorded on the ledger entries", async () => {
		await grant("u-disc", 5_000);
		const hold = await call("payments.reserve", {
			userId: "u-disc",
			taskId: "disc-1",
			maxCost: 1_000,
			tier: "pro"
		});
		expect(hold).toMatchObject({ tier: "pro", discountBps: 250, held: 975, listMaxCost: 1_000 });
		const s = await call("payments.settle", { userId: "u-disc", taskId: "disc-1", actualCost: 401 });
		expect(s).toMatchObject({ charged: 391, refunded: 584 }); // ceil(401 * 0.975) = 391
		const token = bearerFor(node.config, "u-disc");
		type Page = { items: Array<Record<string, unknown> & { kind: string }>; nextCursor: string | null };
		const page = (await (
			await fetch(`${node.baseUrl}/api/v1/billing/ledger?limit=2`, {
				headers: { authorization: `Bearer ${token}` }
			})
		).json()) as Page;
		expect(page.items.map(i => i.kind)).toEqual(["settle", "reserve"]);
		expect(page.items[0]).toMatchObject({
			tier: "pro",
			discountBps: 250,
			listAmount: 401,
			availableDelta: 584,
			heldDelta: -975
		});
		expect(page.items[1]).toMatchObject({
			tier: "pro",
			discountBps: 250,
			listAmount: 1000,
			availableDelta: -975,
			heldDelta: 975
		});
		const next = (await (
			await fetch(`${node.baseUrl}/api/v1/billing/ledger?limit=2&cursor=${page.nextCursor}`, {
				headers: { authorization: `Bearer ${token}` }
			})
		).json()) as Page;
		expect(next.items.map(i => i.kind)).toEqual(["grant"]);
		expect(next.nextCursor).toBeNull();
	});

	test("a purchased queue boost is held and charged with the discount", async () => {
		await grant("u-boost", 1_000);
		const quote = await call("payments.priorityBoost", { userId: "u-boost", purchaseMs: 15_000 });
		expect(quote).toMatchObject({
			tier: "free",
			tierBoostMs: 0,
			purchasedBoostMs: 15_000,
			boostMs: 15_000,
			purchaseFeeCredits: 150
		});
		const hold = await call("payments.reserve", {
			userId: "u-boost",
			taskId: "boost-1",
			maxCost: 100,
			boostMs: 15_000
		});
		expect(hold).toMatchObject({ held: 250, boostFee: 150, boostMs: 15_000 });
		expect(await call("payments.settle", { userId: "u-boost", taskId: "boost-1", actualCost: 10 })).toMatchObject({
			charged: 160
		});
	});

	test("the ledger is append-only and every transaction balances", async () => {
		// Sequelize warns when a commit fails; that failure is what this test provokes.
		const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
		await expect(
			sql(
				`UPDATE ledger_entries SET amount = amount + 1 WHERE id = (SELECT MIN(id) FROM ledger_entries) RETURNING id`
			)
		).rejects.toThrow(/append-only/);
		await expect(
			sql(`DELETE FROM ledger_transactions WHERE id = (SELECT MIN(id) FROM ledger_transactions) RETURNING id`)
		).rejects.toThrow(/append-only/);
		await expect(
			node.runtime.sequelize.transaction(async tx => {
				const [[t]] = (await node.runtime.sequelize.query(
					`INSERT INTO ledger_transactions (kind, cause_type, cause_id) VALUES ('test', 'test', 'unbalanced') RETURNING id`,
					{ transaction: tx }
				)) as [Array<{ id: string }>, unknown];
				await node.runtime.sequelize.query(
					`INSERT INTO ledger_entries (transaction_id, account_key, amount) VALUES ($1, 'sys:revenue', 5)`,
					{
						bind: [t.id],
						transaction: tx
					}
				);
			})
		).rejects.toThrow(/does not balance/);
		warn.mockRestore();
		await expect(
			sql(`UPDATE ledger_accounts SET balance = -1 WHERE key = 'u:u-race:available' RETURNING key`)
		).rejects.toThrow(/non_negative/);
		await expectInvariants();
	});

	test("grants are idempotent on their key and record the operator", async () => {
		const a = await grant("u-grant", 25, { key: "welcome-u-grant", source: "promo" });
		const b = await grant("u-grant", 25, { key: "welcome-u-grant", source: "promo" });
		expect(a.duplicate).toBe(false);
		expect(b).toMatchObject({ duplicate: true, transactionId: a.transactionId });
		expect(await balance("u-grant")).toEqual({ available: 25, held: 0 });
		const [t] = await sql<{ operator: string; description: string }>(
			`SELECT operator, description FROM ledger_transactions WHERE id = $1`,
			[a.transactionId]
		);
		expect(t).toEqual({ operator: "test-operator", description: "test grant" });
	});
});

describe("clawbacks", () => {
	test("a clawback never counts expired promotional credit as recovered: it goes to the expired account, the rest is shortfall", async () => {
		const ledger = new Ledger(node.runtime.sequelize);
		await grant("u-claw", 1_000, { source: "paid", key: "claw-paid" });
		await call("payments.reserve", { userId: "u-claw", taskId: "claw-1", maxCost: 600 });
		await call("payments.settle", { userId: "u-claw", taskId: "claw-1", actualCost: 600 });
		// Granted after the spend and already expired: worth nothing, but not swept yet (no reserve since).
		await grant("u-claw", 500, { source: "promo", expiresAt: new Date(Date.now() - 1000).toISOString() });
		const [paidLot] = await sql<{ id: string }>(
			`SELECT id FROM credit_lots WHERE user_id = 'u-claw' AND source = 'paid'`
		);

		const r = await ledger.run(tx =>
			ledger.clawback(tx, {
				kind: "refund_clawback",
				userId: "u-claw",
				amount: 1_000n,
				to: "sys:stripe",
				preferLotId: String(paidLot.id),
				causeType: "test_refund",
				causeId: "claw-refund-1",
				description: "test refund"
			})
		);
		expect(r).toEqual({ taken: 400n, shortfall: 600n, duplicate: false });
		const byAccount = await sql<{ account_key: string; total: string }>(
			`SELECT e.account_key, SUM(e.amount) AS total FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
			 WHERE t.user_id = 'u-claw' AND e.account_key IN ('sys:expired', 'sys:stripe') GROUP BY e.account_key ORDER BY e.account_key`
		);
		expect(byAccount.map(a => [a.account_key, Number(a.total)])).toEqual([
			["sys:expired", 500],
			["sys:stripe", 400]
		]);
		expect(await balance("u-claw")).toEqual({ available: 0, held: 0 });
		await expectInvariants();
	});
});
