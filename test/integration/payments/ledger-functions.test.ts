/**
 * The ledger's hold functions (migration 20261202-3003-ledger-functions, group-committed by Ledger)
 * against the TypeScript they replaced (test/support/ledger-reference.ts): the same adversarial
 * sequences on two databases seeded alike must answer the same outcomes and leave the same
 * balances, lots, holds and ledger transactions. Then the batch's own guarantees: a refusal rolls
 * back alone, concurrent batches of two nodes on the same users neither deadlock nor double count.
 */
import { QueryTypes, type Sequelize } from "sequelize";
import { createTestDatabase, type TestDatabase } from "../../support/env";
import { createSequelize } from "../../../src/db/sequelize";
import { migrate } from "../../../src/db/migrate";
import { Ledger, type HoldView } from "../../../src/payments/ledger";
import type { LotSource } from "../../../src/payments/ledger-rules";
import { ReferenceHolds } from "../../support/ledger-reference";
import { prng } from "../../support/fuzz";

jest.setTimeout(180_000);

interface Side {
	db: TestDatabase;
	sequelize: Sequelize;
	ledger: Ledger;
}
let ref: Side;
let fn: Side;

async function side(): Promise<Side> {
	const db = await createTestDatabase();
	const sequelize = createSequelize(db.url, { poolMax: 6 });
	await migrate(db.url, sequelize);
	return { db, sequelize, ledger: new Ledger(sequelize) };
}

beforeAll(async () => {
	[ref, fn] = await Promise.all([side(), side()]);
});
afterAll(async () => {
	for (const s of [ref, fn]) {
		await s?.sequelize.close();
		await s?.db.drop();
	}
});

const DAY = 86_400_000;

/** The same lots, in the same order (so the same lot ids), on both sides. */
async function seed(users: string[], rand: () => number) {
	const base = Date.now();
	// Expiries far from now (the two sides run a moment apart), some equal to the millisecond.
	const expiries = [-2 * DAY, -DAY, 3 * DAY, 3 * DAY, 7 * DAY + 1, 30 * DAY].map(d => new Date(base + d));
	const sources: LotSource[] = ["promo", "paid", "crypto"];
	for (const u of users) {
		const lots = 1 + Math.floor(rand() * 4);
		for (let i = 0; i < lots; i++) {
			const source = sources[Math.floor(rand() * 3)];
			const expiresAt = source === "promo" ? expiries[Math.floor(rand() * expiries.length)] : null;
			const credits = BigInt(1 + Math.floor(rand() * 400));
			for (const s of [ref, fn])
				await s.ledger.run(tx =>
					s.ledger.credit(tx, {
						kind: "grant",
						userId: u,
						credits,
						from: "sys:promo",
						source,
						expiresAt,
						causeType: "test",
						causeId: `${u}-${i}`,
						description: "seed"
					})
				);
		}
	}
}

type Op =
	| { op: "reserve"; userId: string; taskId: string; listMaxCost: bigint; listBoostFee: bigint; discountBps: number }
	| { op: "settle"; userId: string; taskId: string; listActualCost: bigint }
	| { op: "release"; userId: string; taskId: string };

function randomOps(users: string[], n: number, rand: () => number): Op[] {
	const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
	const tasks = Array.from({ length: Math.ceil(n / 3) }, (_, i) => `task-${i}`);
	const owner = new Map<string, string>();
	const ops: Op[] = [];
	for (let i = 0; i < n; i++) {
		const taskId = pick(tasks);
		// Mostly the task's own user; sometimes another (a clash of ids, someone else's hold).
		const userId = owner.has(taskId) && rand() < 0.85 ? owner.get(taskId)! : pick(users);
		const r = rand();
		if (r < 0.45) {
			if (!owner.has(taskId)) owner.set(taskId, userId);
			ops.push({
				op: "reserve",
				userId,
				taskId,
				listMaxCost: pick([0n, 1n, 7n, 50n, 99n, 250n, 1_000n, BigInt(Math.floor(rand() * 600))]),
				listBoostFee: pick([0n, 0n, 0n, 3n, 40n]),
				discountBps: pick([0, 250, 1000, 3333, 10_000])
			});
		} else if (r < 0.8)
			ops.push({
				op: "settle",
				userId,
				taskId,
				listActualCost: pick([0n, 1n, 10n, 60n, 99n, 5_000n, BigInt(Math.floor(rand() * 300))])
			});
		else ops.push({ op: "release", userId, taskId });
	}
	return ops;
}

type Outcome =
	{ ok: HoldView } | { err: { name: string; code?: string; status?: number; details?: unknown; message: string } };

async function apply(s: Side, holds: Pick<Ledger, "reserve" | "settle" | "release">, op: Op): Promise<Outcome> {
	try {
		if (op.op === "reserve")
			return {
				ok: await holds.reserve({
					userId: op.userId,
					taskId: op.taskId,
					listMaxCost: op.listMaxCost,
					boostMs: op.listBoostFee ? 1000 : 0,
					listBoostFee: op.listBoostFee,
					tier: "pro",
					discountBps: op.discountBps
				})
			};
		if (op.op === "settle") return { ok: await holds.settle(op) };
		return { ok: await holds.release(op) };
	} catch (e) {
		const err = e as { name: string; code?: string; status?: number; details?: unknown; message: string };
		return {
			err: { name: err.name, code: err.code, status: err.status, details: err.details, message: err.message }
		};
	}
}

/** Everything the operations touch, without ids that are random or timestamps. */
async function state(s: Side) {
	const q = <T extends object>(sql: string) => s.sequelize.query<T>(sql, { type: QueryTypes.SELECT });
	return {
		accounts: await q(`SELECT key, balance FROM ledger_accounts ORDER BY key`),
		lots: await q(`SELECT id, user_id, remaining FROM credit_lots ORDER BY id`),
		holds: await q(
			`SELECT task_id, user_id, state, list_max_cost, boost_ms, boost_fee, amount, tier, discount_bps, allocations,
			        list_actual_cost, charged, finished_at IS NULL AS open FROM credit_holds ORDER BY task_id`
		),
		transactions: await q(
			`SELECT t.kind, t.user_id, t.cause_type, CASE WHEN t.kind = 'expiry' THEN NULL ELSE t.cause_id END AS cause_id,
			        t.available_delta, t.held_delta, t.tier, t.discount_bps, t.list_amount, t.description, t.metadata,
			        (SELECT json_agg(json_build_object('a', e.account_key, 'l', e.lot_id, 'm', e.amount) ORDER BY e.id)
			         FROM ledger_entries e WHERE e.transaction_id = t.id) AS entries
			 FROM ledger_transactions t ORDER BY t.id`
		)
	};
}

async function invariants(s: Side) {
	const q = <T extends object>(sql: string) => s.sequelize.query<T>(sql, { type: QueryTypes.SELECT });
	const [{ total }] = await q<{ total: string | null }>(`SELECT SUM(amount) AS total FROM ledger_entries`);
	expect(Number(total ?? 0)).toBe(0);
	expect(
		await q(
			`SELECT a.key FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_key = a.key
			 WHERE a.user_id IS NOT NULL GROUP BY a.key, a.balance HAVING a.balance <> COALESCE(SUM(e.amount), 0)`
		)
	).toEqual([]);
	expect(
		await q(
			`SELECT a.user_id FROM ledger_accounts a WHERE a.kind = 'available'
			 AND a.balance <> (SELECT COALESCE(SUM(remaining), 0) FROM credit_lots l WHERE l.user_id = a.user_id)`
		)
	).toEqual([]);
	expect(await q(`SELECT key FROM ledger_accounts WHERE user_id IS NOT NULL AND balance < 0`)).toEqual([]);
	// A held account holds exactly the open holds.
	expect(
		await q(
			`SELECT a.user_id FROM ledger_accounts a WHERE a.kind = 'held'
			 AND a.balance <> (SELECT COALESCE(SUM(amount), 0) FROM credit_holds h WHERE h.user_id = a.user_id AND h.state = 'held')`
		)
	).toEqual([]);
}

describe("the same adversarial sequences through the TypeScript reference and the ledger functions", () => {
	const kinds = new Map<string, number>();
	for (const seedNo of [1, 2, 3]) {
		test(`seed ${seedNo}: same outcomes, same ledger`, async () => {
			const rand = prng(seedNo * 7919);
			const users = Array.from({ length: 5 }, (_, i) => `eq${seedNo}-u${i}`);
			await seed(users, rand);
			const ops = randomOps(users, 240, rand).map(o => ({ ...o, taskId: `s${seedNo}-${o.taskId}` }));
			const reference = new ReferenceHolds(ref.ledger);
			for (const op of ops) {
				const a = await apply(ref, reference, op);
				const b = await apply(fn, fn.ledger, op);
				expect({ op, outcome: b }).toEqual({ op, outcome: a });
				const k = "ok" in a ? `${op.op} ok${a.ok.duplicate ? " (duplicate)" : ""}` : `${op.op} ${a.err.code}`;
				kinds.set(k, (kinds.get(k) ?? 0) + 1);
			}
			const [sa, sb] = await Promise.all([state(ref), state(fn)]);
			expect(sb).toEqual(sa);
			await invariants(fn);
		});
	}

	test("the sequences reached every outcome of every operation", () => {
		const required = [
			"reserve ok",
			"reserve ok (duplicate)",
			"reserve INSUFFICIENT_CREDITS",
			"reserve HOLD_MISMATCH",
			"reserve HOLD_CONFLICT",
			"settle ok",
			"settle ok (duplicate)",
			"settle NOT_FOUND",
			"settle HOLD_ALREADY_SETTLED",
			"settle HOLD_RELEASED",
			"release ok",
			"release ok (duplicate)",
			"release NOT_FOUND",
			"release HOLD_ALREADY_SETTLED"
		];
		expect(required.filter(k => !kinds.get(k))).toEqual([]);
	});

	test("expired promotional lots are swept by the reserve that sees them, and a refused reserve sweeps nothing", async () => {
		for (const s of [ref, fn])
			for (const [i, days] of [-1, 5, -3].entries())
				await s.ledger.run(tx =>
					s.ledger.credit(tx, {
						kind: "grant",
						userId: "exp-u",
						credits: 30n,
						from: "sys:promo",
						source: "promo",
						expiresAt: new Date(Date.now() + days * DAY),
						causeType: "test",
						causeId: `exp-${i}`,
						description: "seed"
					})
				);
		const reference = new ReferenceHolds(ref.ledger);
		const ops: Op[] = [
			{ op: "reserve", userId: "exp-u", taskId: "exp-t1", listMaxCost: 31n, listBoostFee: 0n, discountBps: 0 },
			{ op: "reserve", userId: "exp-u", taskId: "exp-t2", listMaxCost: 20n, listBoostFee: 0n, discountBps: 0 },
			{ op: "settle", userId: "exp-u", taskId: "exp-t2", listActualCost: 5n }
		];
		for (const op of ops) expect(await apply(fn, fn.ledger, op)).toEqual(await apply(ref, reference, op));
		const [sa, sb] = await Promise.all([state(ref), state(fn)]);
		expect(sb).toEqual(sa);
		const swept = sb.transactions.filter(t => {
			const row = t as { kind: string; user_id: string };
			return row.kind === "expiry" && row.user_id === "exp-u";
		});
		expect(swept).toHaveLength(1);
	});
});

describe("group commit", () => {
	test("a batch where some operations are refused commits the others, each exactly once", async () => {
		const ledger = new Ledger(fn.sequelize, { batchInFlight: 1, batchMax: 64 });
		await fn.ledger.run(tx =>
			fn.ledger.credit(tx, {
				kind: "grant",
				userId: "gc-u",
				credits: 10n,
				from: "sys:promo",
				source: "paid",
				expiresAt: null,
				causeType: "test",
				causeId: "gc",
				description: "seed"
			})
		);
		// 40 at once: the first goes alone, the other 39 wait and go as one batch.
		const results = await Promise.allSettled(
			Array.from({ length: 40 }, (_, i) =>
				ledger.reserve({
					userId: "gc-u",
					taskId: `gc-${i}`,
					listMaxCost: 1n,
					boostMs: 0,
					listBoostFee: 0n,
					tier: "pro",
					discountBps: 0
				})
			)
		);
		expect(results.filter(r => r.status === "fulfilled")).toHaveLength(10);
		const refused = results.filter(r => r.status === "rejected") as PromiseRejectedResult[];
		expect(refused).toHaveLength(30);
		for (const r of refused) expect(r.reason).toMatchObject({ status: 402, code: "INSUFFICIENT_CREDITS" });
		await invariants(fn);
	});

	test("two nodes' batches on the same users at once: no deadlock, no double count", async () => {
		const nodes = [new Ledger(fn.sequelize), new Ledger(createSequelize(fn.db.url, { poolMax: 4 }))];
		const users = Array.from({ length: 8 }, (_, i) => `gc2-u${i}`);
		for (const u of users)
			await fn.ledger.run(tx =>
				fn.ledger.credit(tx, {
					kind: "grant",
					userId: u,
					credits: 1_000n,
					from: "sys:promo",
					source: "paid",
					expiresAt: null,
					causeType: "test",
					causeId: u,
					description: "seed"
				})
			);
		try {
			// Every task reserved and settled on both nodes at once (retries after lost answers).
			await Promise.all(
				Array.from({ length: 120 }, async (_, i) => {
					const userId = users[(i * 5) % users.length];
					const taskId = `gc2-${i}`;
					const reserve = {
						userId,
						taskId,
						listMaxCost: 10n,
						boostMs: 0,
						listBoostFee: 0n,
						tier: "pro" as const,
						discountBps: 0
					};
					const holds = await Promise.all(nodes.map(n => n.reserve(reserve)));
					expect(holds.filter(h => !h.duplicate)).toHaveLength(1);
					const settled = await Promise.all(nodes.map(n => n.settle({ userId, taskId, listActualCost: 4n })));
					expect(settled.filter(h => !h.duplicate)).toHaveLength(1);
				})
			);
		} finally {
			await nodes[1].sequelize.close();
		}
		const rows = await fn.sequelize.query<{ key: string; balance: string }>(
			`SELECT key, balance FROM ledger_accounts WHERE user_id LIKE 'gc2-%' ORDER BY key`,
			{ type: QueryTypes.SELECT }
		);
		// 15 tasks per user, 4 charged each: 1,000 − 60 left, nothing held.
		for (const r of rows) expect([r.key, Number(r.balance)]).toEqual([r.key, r.key.endsWith(":held") ? 0 : 940]);
		await invariants(fn);
	});
});
