/**
 * The batch `ledger_apply` (migration 20261206-3600: a whole batch decided in memory and written
 * set-based) against the per-operation functions it replaced (migration 20261205-3500: one
 * subtransaction per operation, still installed; restored on a second database here). The same
 * adversarial sequences, with spend caps, go through both in the same batches (the group commit's
 * batches: the first operation alone, then up to 64 sorted by user) on two databases seeded alike,
 * and must give the same answers and leave the same balances, lots, holds, transactions and counters.
 */
import { QueryTypes, type Sequelize } from "sequelize";
import { createTestDatabase, type TestDatabase } from "../../support/env";
import { createSequelize } from "../../../src/db/sequelize";
import { migrate } from "../../../src/db/migrate";
import { Ledger, type HoldView } from "../../../src/payments/ledger";
import type { LotSource } from "../../../src/payments/ledger-rules";
import { CAP_CODES, CAP_MESSAGES, type SpendCounter } from "../../../src/payments/spend-caps";
import { PER_OPERATION_APPLY } from "../../../migrations/20261206-3600-ledger-apply-batch";
import { prng } from "../../support/fuzz";

jest.setTimeout(180_000);

interface Side {
	db: TestDatabase;
	sequelize: Sequelize;
	ledger: Ledger;
}
/** old: the per-operation functions; batch: the batch function. */
let old: Side;
let batch: Side;

async function side(perOperation: boolean): Promise<Side> {
	const db = await createTestDatabase();
	const sequelize = createSequelize(db.url, { poolMax: 6 });
	await migrate(db.url, sequelize);
	if (perOperation) await sequelize.query(PER_OPERATION_APPLY);
	// One batch in flight: batches are then the same on both sides (the first operation, then 64 at a time).
	return { db, sequelize, ledger: new Ledger(sequelize, { batchInFlight: 1, batchMax: 64 }) };
}

beforeAll(async () => {
	[old, batch] = await Promise.all([side(true), side(false)]);
});
afterAll(async () => {
	for (const s of [old, batch]) {
		await s?.sequelize.close();
		await s?.db.drop();
	}
});

const DAY = 86_400_000;

async function grant(userId: string, credits: bigint, source: LotSource, expiresAt: Date | null, causeId: string) {
	for (const s of [old, batch])
		await s.ledger.run(tx =>
			s.ledger.credit(tx, {
				kind: "grant",
				userId,
				credits,
				from: "sys:promo",
				source,
				expiresAt,
				causeType: "test",
				causeId,
				description: "seed"
			})
		);
}

/** The same lots, in the same order (so the same lot ids), on both sides; some already expired. */
async function seed(users: string[], rand: () => number) {
	const base = Date.now();
	const expiries = [-2 * DAY, -DAY, 3 * DAY, 3 * DAY, 7 * DAY + 1, 30 * DAY].map(d => new Date(base + d));
	const sources: LotSource[] = ["promo", "paid", "crypto"];
	for (const u of users) {
		const lots = 1 + Math.floor(rand() * 4);
		for (let i = 0; i < lots; i++) {
			const source = sources[Math.floor(rand() * 3)];
			await grant(
				u,
				BigInt(1 + Math.floor(rand() * 400)),
				source,
				source === "promo" ? expiries[Math.floor(rand() * expiries.length)] : null,
				`${u}-${i}`
			);
		}
	}
}

type Op =
	| {
			op: "reserve";
			userId: string;
			taskId: string;
			listMaxCost: bigint;
			listBoostFee: bigint;
			discountBps: number;
			caps: SpendCounter[];
	  }
	| { op: "settle"; userId: string; taskId: string; listActualCost: bigint }
	| { op: "release"; userId: string; taskId: string };

const counter = (scope: "member" | "key" | "payer", name: string, cap: number | null): SpendCounter => ({
	counter: name,
	cap: cap == null ? null : String(cap),
	code: CAP_CODES[scope],
	message: CAP_MESSAGES[scope]
});

/**
 * Reserves, settles and releases on a few users and tasks: clashing task ids, other users' holds,
 * duplicates, settle after release and release after settle, unknown holds, an unknown user, and
 * caps (the payer's per user, one API key shared by every user, sometimes tight).
 */
function randomOps(prefix: string, users: string[], n: number, rand: () => number): Op[] {
	const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
	const tasks = Array.from({ length: Math.ceil(n / 3) }, (_, i) => `${prefix}-task-${i}`);
	const owner = new Map<string, string>();
	const payerCap = new Map(users.map(u => [u, pick([null, 150, 400, 2_000])]));
	const ops: Op[] = [];
	for (let i = 0; i < n; i++) {
		const taskId = pick(tasks);
		const userId =
			owner.has(taskId) && rand() < 0.85 ? owner.get(taskId)! : rand() < 0.03 ? `${prefix}-nobody` : pick(users);
		const r = rand();
		if (r < 0.45) {
			if (!owner.has(taskId)) owner.set(taskId, userId);
			const caps = [
				...(rand() < 0.5 ? [counter("key", `key:${prefix}-k`, pick([null, 300, 900]))] : []),
				counter("payer", `payer:${userId}`, payerCap.get(userId) ?? null)
			];
			ops.push({
				op: "reserve",
				userId,
				taskId,
				listMaxCost: pick([0n, 1n, 7n, 50n, 99n, 250n, 1_000n, BigInt(Math.floor(rand() * 600))]),
				listBoostFee: pick([0n, 0n, 0n, 3n, 40n]),
				discountBps: pick([0, 250, 1000, 3333, 10_000]),
				caps
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

async function apply(ledger: Ledger, op: Op): Promise<Outcome> {
	try {
		if (op.op === "reserve")
			return {
				ok: await ledger.reserve({
					userId: op.userId,
					taskId: op.taskId,
					listMaxCost: op.listMaxCost,
					boostMs: op.listBoostFee ? 1000 : 0,
					listBoostFee: op.listBoostFee,
					tier: "pro",
					discountBps: op.discountBps,
					caps: op.caps
				})
			};
		if (op.op === "settle") return { ok: await ledger.settle(op) };
		return { ok: await ledger.release(op) };
	} catch (e) {
		const err = e as { name: string; code?: string; status?: number; details?: unknown; message: string };
		return {
			err: { name: err.name, code: err.code, status: err.status, details: err.details, message: err.message }
		};
	}
}

/** Every operation submitted at once: the group commit batches them alike on both sides. */
const applyAll = (s: Side, ops: Op[]) => Promise.all(ops.map(op => apply(s.ledger, op)));

/** Everything the operations touch, without random ids and timestamps. */
async function state(s: Side) {
	const q = <T extends object>(sql: string) => s.sequelize.query<T>(sql, { type: QueryTypes.SELECT });
	return {
		accounts: await q(`SELECT key, balance FROM ledger_accounts ORDER BY key`),
		lots: await q(`SELECT id, user_id, remaining FROM credit_lots ORDER BY id`),
		holds: await q(
			`SELECT task_id, user_id, state, list_max_cost, boost_ms, boost_fee, amount, tier, discount_bps, allocations,
			        list_actual_cost, charged, finished_at IS NULL AS open, counters, counted_month FROM credit_holds ORDER BY task_id`
		),
		transactions: await q(
			`SELECT t.kind, t.user_id, t.cause_type, CASE WHEN t.kind = 'expiry' THEN NULL ELSE t.cause_id END AS cause_id,
			        t.available_delta, t.held_delta, t.tier, t.discount_bps, t.list_amount, t.operator, t.description, t.metadata,
			        (SELECT json_agg(json_build_object('a', e.account_key, 'l', e.lot_id, 'm', e.amount) ORDER BY e.id)
			         FROM ledger_entries e WHERE e.transaction_id = t.id) AS entries
			 FROM ledger_transactions t ORDER BY t.id`
		),
		counters: await q(`SELECT counter, month, spent FROM spend_counters ORDER BY counter, month`)
	};
}

async function invariants(s: Side) {
	const q = <T extends object>(sql: string) => s.sequelize.query<T>(sql, { type: QueryTypes.SELECT });
	const [{ total }] = await q<{ total: string | null }>(`SELECT SUM(amount) AS total FROM ledger_entries`);
	expect(Number(total ?? 0)).toBe(0);
	expect(
		await q(
			`SELECT t.id FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
			 GROUP BY t.id HAVING SUM(e.amount) <> 0`
		)
	).toEqual([]);
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
	expect(
		await q(
			`SELECT a.user_id FROM ledger_accounts a WHERE a.kind = 'held'
			 AND a.balance <> (SELECT COALESCE(SUM(amount), 0) FROM credit_holds h WHERE h.user_id = a.user_id AND h.state = 'held')`
		)
	).toEqual([]);
	// A counter is the month's held + settled spend of the holds that counted it.
	expect(
		await q(
			`SELECT c.counter FROM spend_counters c
			 WHERE c.spent <> (SELECT COALESCE(SUM(CASE h.state WHEN 'held' THEN h.amount WHEN 'settled' THEN h.charged ELSE 0 END), 0)
			                   FROM credit_holds h WHERE c.counter = ANY (h.counters) AND h.counted_month = c.month)`
		)
	).toEqual([]);
}

const outcomeKind = (op: Op, o: Outcome) =>
	"ok" in o ? `${op.op} ok${o.ok.duplicate ? " (duplicate)" : ""}` : `${op.op} ${o.err.code}`;

describe("the batch ledger_apply against the per-operation functions, on the same batches", () => {
	const kinds = new Map<string, number>();
	for (const seedNo of [11, 12, 13, 14]) {
		test(`seed ${seedNo}: same answers, same ledger`, async () => {
			const rand = prng(seedNo * 104_729);
			const users = Array.from({ length: 6 }, (_, i) => `b${seedNo}-u${i}`);
			await seed(users, rand);
			// Several rounds, each submitted at once (one alone, then batches of up to 64).
			for (let round = 0; round < 4; round++) {
				const ops = randomOps(`b${seedNo}r${round}`, users, 150, rand);
				const a = await applyAll(old, ops);
				const b = await applyAll(batch, ops);
				ops.forEach((op, i) => {
					expect({ i, op, outcome: b[i] }).toEqual({ i, op, outcome: a[i] });
					const k = outcomeKind(op, a[i]);
					kinds.set(k, (kinds.get(k) ?? 0) + 1);
				});
			}
			const [sa, sb] = await Promise.all([state(old), state(batch)]);
			expect(sb).toEqual(sa);
			await invariants(batch);
		});
	}

	test("the sequences reached every outcome of every operation, caps included", () => {
		const required = [
			"reserve ok",
			"reserve ok (duplicate)",
			"reserve INSUFFICIENT_CREDITS",
			"reserve HOLD_MISMATCH",
			"reserve HOLD_CONFLICT",
			"reserve PAYER_CAP_REACHED",
			"reserve KEY_CAP_REACHED",
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
});

describe("adversarial batches", () => {
	const reserve = (userId: string, taskId: string, listMaxCost: bigint, caps: SpendCounter[] = []): Op => ({
		op: "reserve",
		userId,
		taskId,
		listMaxCost,
		listBoostFee: 0n,
		discountBps: 0,
		caps
	});

	/** Runs `ops` submitted at once on both sides; both must agree. Returns the batch side's answers. */
	async function both(ops: Op[]): Promise<Outcome[]> {
		const a = await applyAll(old, ops);
		const b = await applyAll(batch, ops);
		expect(b).toEqual(a);
		return b;
	}

	test("concurrent holds on one user: 50 reserves of 1 against 10 credits give exactly 10 holds", async () => {
		await grant("adv-hot", 10n, "paid", null, "adv-hot");
		const out = await both(Array.from({ length: 50 }, (_, i) => reserve("adv-hot", `adv-hot-${i}`, 1n)));
		expect(out.filter(o => "ok" in o)).toHaveLength(10);
		expect(out.filter(o => "err" in o && o.err.code === "INSUFFICIENT_CREDITS")).toHaveLength(40);
		await invariants(batch);
	});

	test("a cap exactly reached: the hold that reaches it passes, the next is refused, a settlement makes room", async () => {
		await grant("adv-cap", 1_000n, "paid", null, "adv-cap");
		const cap = (n: number) => [counter("payer", "payer:adv-cap", n)];
		// 60 + 40 = the cap of 100 exactly (both pass); 1 more is refused with what was spent.
		const first = await both([
			{ op: "release", userId: "adv-cap", taskId: "adv-cap-none" },
			reserve("adv-cap", "adv-cap-1", 60n, cap(100)),
			reserve("adv-cap", "adv-cap-2", 40n, cap(100)),
			reserve("adv-cap", "adv-cap-3", 1n, cap(100))
		]);
		expect(first.slice(1, 3).every(o => "ok" in o)).toBe(true);
		expect(first[3]).toMatchObject({
			err: { code: "PAYER_CAP_REACHED", status: 402, details: { capCredits: "100", spentCredits: "100" } }
		});
		// Settling 60 for 25 gives 35 back to the month; in the same batch a hold of 35 then fits, 36 not.
		const second = await both([
			{ op: "release", userId: "adv-cap", taskId: "adv-cap-none" },
			{ op: "settle", userId: "adv-cap", taskId: "adv-cap-1", listActualCost: 25n },
			reserve("adv-cap", "adv-cap-4", 36n, cap(100)),
			reserve("adv-cap", "adv-cap-5", 35n, cap(100))
		]);
		expect(second[2]).toMatchObject({ err: { code: "PAYER_CAP_REACHED", details: { spentCredits: "65" } } });
		expect(second[3]).toMatchObject({ ok: { held: 35 } });
		const [sa, sb] = await Promise.all([state(old), state(batch)]);
		expect(sb).toEqual(sa);
		await invariants(batch);
	});

	test("duplicate settle, release after settle, settle after release, in one batch", async () => {
		await grant("adv-dup", 500n, "paid", null, "adv-dup");
		const out = await both([
			{ op: "release", userId: "adv-dup", taskId: "adv-dup-none" },
			reserve("adv-dup", "adv-dup-1", 100n),
			reserve("adv-dup", "adv-dup-2", 100n),
			{ op: "settle", userId: "adv-dup", taskId: "adv-dup-1", listActualCost: 30n },
			{ op: "settle", userId: "adv-dup", taskId: "adv-dup-1", listActualCost: 30n },
			{ op: "settle", userId: "adv-dup", taskId: "adv-dup-1", listActualCost: 31n },
			{ op: "release", userId: "adv-dup", taskId: "adv-dup-1" },
			{ op: "release", userId: "adv-dup", taskId: "adv-dup-2" },
			{ op: "release", userId: "adv-dup", taskId: "adv-dup-2" },
			{ op: "settle", userId: "adv-dup", taskId: "adv-dup-2", listActualCost: 5n },
			reserve("adv-dup", "adv-dup-1", 100n),
			reserve("adv-dup", "adv-dup-1", 101n)
		]);
		expect(out.slice(1).map(o => ("ok" in o ? (o.ok.duplicate ? "dup" : "ok") : o.err.code))).toEqual([
			"ok",
			"ok",
			"ok",
			"dup",
			"HOLD_ALREADY_SETTLED",
			"HOLD_ALREADY_SETTLED",
			"ok",
			"dup",
			"HOLD_RELEASED",
			"dup",
			"HOLD_MISMATCH"
		]);
		const [sa, sb] = await Promise.all([state(old), state(batch)]);
		expect(sb).toEqual(sa);
		await invariants(batch);
	});

	test("expired lots: a refused reserve sweeps nothing, the next reserve of the batch sweeps once", async () => {
		for (const [i, days] of [-1, 5, -3].entries())
			await grant("adv-exp", 30n, "promo", new Date(Date.now() + days * DAY), `adv-exp-${i}`);
		const out = await both([
			{ op: "release", userId: "adv-exp", taskId: "adv-exp-none" },
			reserve("adv-exp", "adv-exp-1", 31n),
			reserve("adv-exp", "adv-exp-2", 20n),
			reserve("adv-exp", "adv-exp-3", 10n),
			{ op: "release", userId: "adv-exp", taskId: "adv-exp-2" },
			reserve("adv-exp", "adv-exp-4", 20n)
		]);
		expect(out[1]).toMatchObject({ err: { code: "INSUFFICIENT_CREDITS", details: { available: "30" } } });
		expect(out.slice(2).every(o => "ok" in o)).toBe(true);
		const s = await state(batch);
		expect(
			s.transactions.filter(t => {
				const row = t as { kind: string; user_id: string };
				return row.kind === "expiry" && row.user_id === "adv-exp";
			})
		).toHaveLength(1);
		expect(s).toEqual(await state(old));
		await invariants(batch);
	});

	test("a user with no account: only a hold of nothing passes, and creates the accounts", async () => {
		const out = await both([
			{ op: "release", userId: "adv-new", taskId: "adv-new-none" },
			reserve("adv-new", "adv-new-1", 5n),
			reserve("adv-new", "adv-new-2", 0n),
			{ op: "settle", userId: "adv-new", taskId: "adv-new-2", listActualCost: 0n }
		]);
		expect(out.slice(1).map(o => ("ok" in o ? "ok" : o.err.code))).toEqual(["INSUFFICIENT_CREDITS", "ok", "ok"]);
		expect(await state(batch)).toEqual(await state(old));
	});
});

describe("the double-entry check, once per statement", () => {
	test("an unbalanced transaction is refused, a balanced one written in one statement passes", async () => {
		const q = (sql: string) => batch.sequelize.query(sql);
		await q(
			`INSERT INTO ledger_transactions (kind, cause_type, cause_id) VALUES ('test', 'test', 'stmt-ok'), ('test', 'test', 'stmt-bad')`
		);
		await q(
			`INSERT INTO ledger_entries (transaction_id, account_key, amount)
			 SELECT id, acc, amt FROM ledger_transactions, (VALUES ('sys:revenue', 5), ('sys:promo', -5)) AS v(acc, amt)
			 WHERE cause_id = 'stmt-ok'`
		);
		await expect(
			q(
				`INSERT INTO ledger_entries (transaction_id, account_key, amount)
				 SELECT id, 'sys:revenue', 5 FROM ledger_transactions WHERE cause_id = 'stmt-bad'`
			)
		).rejects.toThrow(/does not balance/);
		// Appending to a balanced transaction unbalances it: refused too.
		await expect(
			q(
				`INSERT INTO ledger_entries (transaction_id, account_key, amount)
				 SELECT id, 'sys:revenue', 1 FROM ledger_transactions WHERE cause_id = 'stmt-ok'`
			)
		).rejects.toThrow(/does not balance/);
	});
});
