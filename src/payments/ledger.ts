/**
 * The credit ledger in PostgreSQL: double-entry (every transaction's entries sum to zero, checked
 * by a deferred trigger), append-only (triggers refuse UPDATE/DELETE), one transaction per cause
 * (UNIQUE (kind, cause_type, cause_id): a replayed cause is a no-op).
 *
 * Concurrency: every operation that takes credit from a user first locks that user's `available`
 * account row (`SELECT … FOR UPDATE`), so operations of one user run one after the other while
 * different users never wait for each other. Balances then move by conditional updates
 * (`… WHERE balance + delta >= 0`), and `CHECK` constraints on accounts and lots are the last
 * guard: nothing can go below zero even if a code path forgot the lock.
 *
 * User accounts keep a stored balance; system accounts (revenue, stripe, token treasury, promo,
 * expired) do not: their balance is the sum of their entries, so no global row is a hot spot.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes, Sequelize, Transaction } from "sequelize";
import { Conflict, NotFound, PaymentRequired } from "../errors";
import type { TierName } from "../domain/tiers";
import { LOT_PRIORITY, LotSource, allocate, holdAmount, spendOrder } from "./ledger-rules";
import { GroupCommit } from "./group-commit";
import { CAP_CODES, type SpendCounter } from "./spend-caps";
import { settledUsageRow, settledUsageUpdate, type SettledUsage, type SettledUsageRow } from "./usage";

export type SystemAccount = "sys:revenue" | "sys:stripe" | "sys:token_treasury" | "sys:promo" | "sys:expired";
export const availableKey = (userId: string) => `u:${userId}:available`;
export const heldKey = (userId: string) => `u:${userId}:held`;

export interface EntryInput {
	account: string;
	amount: bigint;
	lotId?: string;
	/** Creates a spendable lot of `amount` (a positive entry on the user's available account). */
	newLot?: { source: LotSource; expiresAt: Date | null };
}

export interface PostInput {
	kind: string;
	userId: string | null;
	causeType: string;
	causeId: string;
	entries: EntryInput[];
	tier?: TierName | null;
	discountBps?: number | null;
	listAmount?: bigint | null;
	operator?: string | null;
	description?: string;
	metadata?: Record<string, unknown>;
}

export interface Posted {
	id: string;
	duplicate: boolean;
	lotIds: string[];
}

export interface HoldView {
	taskId: string;
	userId: string;
	state: "held" | "settled" | "released";
	/** Credits held: the discounted worst case plus the boost fee. */
	held: number;
	listMaxCost: number;
	boostMs: number;
	boostFee: number;
	tier: TierName;
	discountBps: number;
	charged: number | null;
	refunded: number | null;
	listActualCost: number | null;
	duplicate: boolean;
}

/** Credits leave the service as JSON integers (the contract's money type); far below 2^53 in practice. */
export function credits(v: bigint | string | number): number {
	const n = Number(v);
	if (!Number.isSafeInteger(n)) throw new RangeError(`credit amount ${v} is not a safe integer`);
	return n;
}

interface HoldRow {
	task_id: string;
	user_id: string;
	state: HoldView["state"];
	list_max_cost: string;
	boost_ms: number;
	boost_fee: string;
	amount: string;
	tier: TierName;
	discount_bps: number;
	allocations: Array<{ lotId: string; amount: string }>;
	list_actual_cost: string | null;
	charged: string | null;
}

interface LotRow {
	id: string;
	remaining: string;
	priority: number;
	expires_at: Date | null;
	expired: boolean;
}

export class InsufficientBalance extends Error {
	constructor(readonly account: string) {
		super(`account ${account} would go below zero`);
	}
}

const RETRYABLE_PG = new Set(["40P01", "40001"]);

function pgCode(err: unknown): string | undefined {
	const e = err as { parent?: { code?: string }; original?: { code?: string }; code?: string };
	return e?.parent?.code ?? e?.original?.code ?? (typeof e?.code === "string" ? e.code : undefined);
}

const toLots = (rows: LotRow[]) =>
	rows.map(r => ({
		id: String(r.id),
		remaining: BigInt(r.remaining),
		priority: r.priority,
		expiresAt: r.expires_at ? new Date(r.expires_at) : null,
		// Decided by the database's clock, the same one expireLots uses.
		expired: r.expired
	}));

function holdView(row: HoldRow, duplicate: boolean): HoldView {
	const held = BigInt(row.amount);
	const charged = row.charged == null ? null : BigInt(row.charged);
	return {
		taskId: row.task_id,
		userId: row.user_id,
		state: row.state,
		held: credits(held),
		listMaxCost: credits(row.list_max_cost),
		boostMs: row.boost_ms,
		boostFee: credits(row.boost_fee),
		tier: row.tier,
		discountBps: row.discount_bps,
		charged: charged == null ? null : credits(charged),
		refunded:
			row.state === "settled" && charged != null
				? credits(held - charged)
				: row.state === "released"
					? credits(held)
					: null,
		listActualCost: row.list_actual_cost == null ? null : credits(row.list_actual_cost),
		duplicate
	};
}

/** One operation of `ledger_apply` (bigints as decimal strings). */
type HoldOp =
	| {
			op: "reserve";
			userId: string;
			taskId: string;
			listMaxCost: string;
			boostMs: number;
			boostFee: string;
			amount: string;
			tier: TierName;
			discountBps: number;
			/** The spend counters the hold moves, in the order they are checked (src/payments/spend-caps.ts). */
			caps: SpendCounter[];
	  }
	| {
			op: "settle";
			userId: string;
			taskId: string;
			listActualCost: string;
			/** Not for ledger_apply: the task's usage, written by the same statement (applyOnce). */
			usage?: SettledUsageRow;
	  }
	| { op: "release"; userId: string; taskId: string };

/** One answer of `ledger_apply`. */
type HoldAnswer =
	| { hold: HoldRow; duplicate: boolean }
	| { error: "INTERNAL"; sqlstate: string; message: string }
	| { error: string; message: string; details: Record<string, string> | null };

/** A deadlock or serialization failure inside one operation of a batch (rolled back alone). */
const retryableAnswer = (a: HoldAnswer) => "sqlstate" in a && RETRYABLE_PG.has(a.sqlstate);

const CAP_REFUSALS: ReadonlySet<string> = new Set(Object.values(CAP_CODES));

/** The refusals of the ledger functions as the errors the TypeScript ledger threw. */
function settledAnswer(a: HoldAnswer): PromiseSettledResult<HoldView> {
	if ("hold" in a) return { status: "fulfilled", value: holdView(a.hold, a.duplicate) };
	const reason =
		"sqlstate" in a
			? new Error(`ledger: ${a.message} (SQLSTATE ${a.sqlstate})`)
			: a.error === "NOT_FOUND"
				? NotFound("Hold")
				: a.error === "INSUFFICIENT_CREDITS" || CAP_REFUSALS.has(a.error)
					? PaymentRequired(a.message, a.details ?? undefined, a.error)
					: Conflict(a.message, a.error, a.details ?? undefined);
	return { status: "rejected", reason };
}

export interface LedgerOptions {
	/** Most hold operations in one `ledger_apply` statement. */
	batchMax?: number;
	/** Most `ledger_apply` statements in flight; what arrives meanwhile waits for the next batch. */
	batchInFlight?: number;
	/**
	 * An operation of a user with a batch in flight waits for it rather than going in another batch
	 * (GroupCommit's `keyOf`; default true). False: the order of arrival alone (the bench's baseline).
	 */
	batchByUser?: boolean;
}

export interface Balance {
	available: bigint;
	held: bigint;
	expiredPending: bigint;
}

/** The columns `balanceColumns` selects. */
export interface BalanceColumns {
	balance_available: string | null;
	balance_held: string | null;
	balance_expired: string | null;
}

/**
 * A user's balance as select-list columns (both accounts and the expired lots not yet swept), for a
 * statement that reads it beside something else; `userParam` is the bind parameter of the user id.
 * Read back with `balanceOf`.
 */
export function balanceColumns(userParam: string): string {
	// The keys as availableKey and heldKey spell them.
	return `(SELECT balance FROM ledger_accounts WHERE key = 'u:' || ${userParam}::text || ':available') AS balance_available,
	        (SELECT balance FROM ledger_accounts WHERE key = 'u:' || ${userParam}::text || ':held') AS balance_held,
	        (SELECT SUM(remaining) FROM credit_lots WHERE user_id = ${userParam}::text AND remaining > 0 AND expires_at <= now()) AS balance_expired`;
}

/** Available (unexpired lots), held, and the expired credit not yet swept, from `balanceColumns`. */
export function balanceOf(row: Partial<BalanceColumns> | undefined): Balance {
	const expiredPending = BigInt(row?.balance_expired ?? 0);
	return {
		available: BigInt(row?.balance_available ?? 0) - expiredPending,
		held: BigInt(row?.balance_held ?? 0),
		expiredPending
	};
}

export class Ledger {
	private readonly knownUsers = new Set<string>();
	private readonly holds: GroupCommit<HoldOp, HoldView>;
	/**
	 * Called after the commit of a transaction that took credit from a user outside a settlement
	 * (a clawback, an expiry sweep), with the user (payer) id and the cause. The payments service runs
	 * the low-balance check from it (and, for an expiry, auto top-up), as it does after every settlement.
	 */
	onBalanceDropped: ((userId: string, cause: "clawback" | "expiry") => void) | null = null;

	constructor(
		readonly sequelize: Sequelize,
		opts: LedgerOptions = {}
	) {
		this.holds = new GroupCommit({
			maxBatch: opts.batchMax ?? 64,
			maxInFlight: opts.batchInFlight ?? 2,
			run: ops => this.applyHolds(ops),
			keyOf: (opts.batchByUser ?? true) ? op => op.userId : undefined
		});
	}

	/** Runs `fn` in a transaction, retried on deadlock or serialization failure (both roll back cleanly). */
	async run<T>(fn: (tx: Transaction) => Promise<T>, attempts = 4): Promise<T> {
		for (let i = 1; ; i++) {
			try {
				return await this.sequelize.transaction(fn);
			} catch (err) {
				if (i >= attempts || !RETRYABLE_PG.has(pgCode(err) ?? "")) throw err;
				await new Promise(r => setTimeout(r, 5 * i + Math.random() * 10));
			}
		}
	}

	private q<T extends object>(tx: Transaction | null, sql: string, bind: unknown[]): Promise<T[]> {
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx ?? undefined });
	}

	async ensureUser(tx: Transaction, userId: string): Promise<void> {
		if (this.knownUsers.has(userId)) return;
		await this.q(
			tx,
			`INSERT INTO ledger_accounts (key, user_id, kind, allow_negative) VALUES ($1, $3, 'available', false), ($2, $3, 'held', false)
			 ON CONFLICT (key) DO NOTHING RETURNING key`,
			[availableKey(userId), heldKey(userId), userId]
		);
		// Only after the insert committed may other calls skip it.
		tx.afterCommit(() => {
			this.knownUsers.add(userId);
		});
	}

	/** The per-user mutex: every operation that takes credit from the user holds it until commit. */
	async lockUser(tx: Transaction, userId: string): Promise<void> {
		await this.ensureUser(tx, userId);
		await this.q(tx, `SELECT key FROM ledger_accounts WHERE key = $1 FOR UPDATE`, [availableKey(userId)]);
	}

	/**
	 * Writes one balanced transaction. A cause already posted under the same kind is a no-op that
	 * returns the existing transaction (`duplicate: true`); nothing else is touched then.
	 */
	async post(tx: Transaction, p: PostInput): Promise<Posted> {
		const entries = p.entries.filter(e => e.amount !== 0n);
		const sum = entries.reduce((s, e) => s + e.amount, 0n);
		if (sum !== 0n) throw new Error(`unbalanced ledger transaction ${p.kind}/${p.causeId}: sum ${sum}`);
		const avail = p.userId ? availableKey(p.userId) : null;
		const held = p.userId ? heldKey(p.userId) : null;
		const availableDelta = entries.filter(e => e.account === avail).reduce((s, e) => s + e.amount, 0n);
		const heldDelta = entries.filter(e => e.account === held).reduce((s, e) => s + e.amount, 0n);
		const inserted = await this.q<{ id: string }>(
			tx,
			`INSERT INTO ledger_transactions (kind, user_id, cause_type, cause_id, available_delta, held_delta, tier, discount_bps,
				list_amount, operator, description, metadata)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
			 ON CONFLICT (kind, cause_type, cause_id) DO NOTHING RETURNING id`,
			[
				p.kind,
				p.userId,
				p.causeType,
				p.causeId,
				availableDelta.toString(),
				heldDelta.toString(),
				p.tier ?? null,
				p.discountBps ?? null,
				p.listAmount == null ? null : p.listAmount.toString(),
				p.operator ?? null,
				p.description ?? "",
				JSON.stringify(p.metadata ?? {})
			]
		);
		if (!inserted.length) {
			const [existing] = await this.q<{ id: string }>(
				tx,
				`SELECT id FROM ledger_transactions WHERE kind = $1 AND cause_type = $2 AND cause_id = $3`,
				[p.kind, p.causeType, p.causeId]
			);
			return { id: String(existing.id), duplicate: true, lotIds: [] };
		}
		const txId = String(inserted[0].id);

		// Stored balances move first, conditionally: a user account never goes below zero.
		const deltas = new Map<string, bigint>();
		for (const e of entries)
			if (e.account.startsWith("u:")) deltas.set(e.account, (deltas.get(e.account) ?? 0n) + e.amount);
		for (const [key, delta] of deltas) {
			if (delta === 0n) continue;
			const ok = await this.q(
				tx,
				`UPDATE ledger_accounts SET balance = balance + $2 WHERE key = $1 AND balance + $2 >= 0 RETURNING key`,
				[key, delta.toString()]
			);
			if (!ok.length) throw new InsufficientBalance(key);
		}

		const lotIds: string[] = [];
		const rows: string[] = [];
		const bind: unknown[] = [txId];
		for (const e of entries) {
			let lotId = e.lotId ?? null;
			if (e.newLot) {
				if (!p.userId || e.account !== avail || e.amount <= 0n)
					throw new Error("a new lot is a positive entry on the user's available account");
				const [lot] = await this.q<{ id: string }>(
					tx,
					`INSERT INTO credit_lots (user_id, source, priority, original, remaining, expires_at, transaction_id)
					 VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING id`,
					[
						p.userId,
						e.newLot.source,
						LOT_PRIORITY[e.newLot.source],
						e.amount.toString(),
						e.newLot.expiresAt,
						txId
					]
				);
				lotId = String(lot.id);
				lotIds.push(lotId);
			} else if (lotId) {
				const ok = await this.q(
					tx,
					`UPDATE credit_lots SET remaining = remaining + $2 WHERE id = $1 AND remaining + $2 BETWEEN 0 AND original RETURNING id`,
					[lotId, e.amount.toString()]
				);
				if (!ok.length) throw new InsufficientBalance(`lot ${lotId}`);
			}
			bind.push(e.account, lotId, e.amount.toString());
			const n = bind.length;
			rows.push(`($1, $${n - 2}, $${n - 1}::bigint, $${n}::bigint)`);
		}
		if (rows.length)
			await this.sequelize.query(
				`INSERT INTO ledger_entries (transaction_id, account_key, lot_id, amount) VALUES ${rows.join(", ")}`,
				{
					bind,
					transaction: tx
				}
			);
		return { id: txId, duplicate: false, lotIds };
	}

	/** Moves the remainder of the user's expired lots to the expired account (under the user lock). */
	async expireLots(tx: Transaction, userId: string): Promise<bigint> {
		const lots = await this.q<{ id: string; remaining: string }>(
			tx,
			`SELECT id, remaining FROM credit_lots WHERE user_id = $1 AND remaining > 0 AND expires_at <= now() ORDER BY id FOR UPDATE`,
			[userId]
		);
		if (!lots.length) return 0n;
		this.droppedAfterCommit(tx, userId, "expiry");
		const total = lots.reduce((s, l) => s + BigInt(l.remaining), 0n);
		await this.post(tx, {
			kind: "expiry",
			userId,
			causeType: "credit_lot_expiry",
			causeId: randomUUID(),
			description: "Promotional credit expired",
			metadata: { lots: lots.map(l => l.id) },
			entries: [
				...lots.map(l => ({
					account: availableKey(userId),
					amount: -BigInt(l.remaining),
					lotId: String(l.id)
				})),
				{ account: "sys:expired", amount: total }
			]
		});
		return total;
	}

	private async spendableLots(
		tx: Transaction,
		userId: string,
		includeExpired: boolean
	): Promise<ReturnType<typeof toLots>> {
		const rows = await this.q<LotRow>(
			tx,
			`SELECT id, remaining, priority, expires_at, COALESCE(expires_at <= now(), false) AS expired FROM credit_lots
			 WHERE user_id = $1 AND remaining > 0 ${includeExpired ? "" : "AND (expires_at IS NULL OR expires_at > now())"}
			 ORDER BY priority, expires_at NULLS LAST, id FOR UPDATE`,
			[userId]
		);
		return toLots(rows);
	}

	/**
	 * Holds the worst case of a task on the payer `userId` (one `ledger_reserve_capped` in a
	 * group-committed `ledger_apply`; the rules are in migrations 20261202-3003-ledger-functions and
	 * 20261205-3500-spend-caps). `caps`: the spend counters the hold moves, each refusing it (402 with
	 * its code) when it would pass its cap. Idempotent on the task id.
	 */
	async reserve(p: {
		userId: string;
		taskId: string;
		listMaxCost: bigint;
		boostMs: number;
		listBoostFee: bigint;
		tier: TierName;
		discountBps: number;
		caps?: SpendCounter[];
	}): Promise<HoldView> {
		const { amount, boostFee } = holdAmount(p.listMaxCost, p.discountBps, p.listBoostFee);
		return this.holds.submit({
			op: "reserve",
			userId: p.userId,
			taskId: p.taskId,
			listMaxCost: p.listMaxCost.toString(),
			boostMs: p.boostMs,
			boostFee: boostFee.toString(),
			amount: amount.toString(),
			tier: p.tier,
			discountBps: p.discountBps,
			caps: p.caps ?? []
		});
	}

	/**
	 * Charges a held task its actual cost (capped at the hold) and returns the rest. Idempotent on the cost.
	 * `usage`: what the task used, added to its usage attribution (src/payments/usage.ts) by the
	 * settlement's own statement, whatever the settlement answers (as the separate update did).
	 */
	async settle(p: {
		userId: string;
		taskId: string;
		listActualCost: bigint;
		usage?: SettledUsage;
	}): Promise<HoldView> {
		if (p.listActualCost < 0n) throw new RangeError(`actual cost must be >= 0, got ${p.listActualCost}`);
		return this.holds.submit({
			op: "settle",
			userId: p.userId,
			taskId: p.taskId,
			listActualCost: p.listActualCost.toString(),
			...(p.usage ? { usage: settledUsageRow(p.taskId, p.usage) } : {})
		});
	}

	/** Returns a held task's whole hold. Idempotent. */
	async release(p: { userId: string; taskId: string }): Promise<HoldView> {
		return this.holds.submit({ op: "release", userId: p.userId, taskId: p.taskId });
	}

	/**
	 * One statement for a batch of hold operations. Sorted by user (stable, so one user's operations
	 * keep their order): every batch takes user locks in the same order, so batches do not deadlock
	 * each other. A batch that fails as a whole (connection lost, commit refused) is retried one
	 * operation at a time: every operation is idempotent, so one that did commit answers its duplicate.
	 */
	private async applyHolds(ops: HoldOp[]): Promise<Array<PromiseSettledResult<HoldView>>> {
		const order = ops
			.map((op, i) => ({ op, i }))
			.sort((a, b) => (a.op.userId < b.op.userId ? -1 : a.op.userId > b.op.userId ? 1 : a.i - b.i));
		let answers: HoldAnswer[];
		try {
			answers = await this.applyOnce(order.map(o => o.op));
		} catch (err) {
			if (ops.length === 1) return [{ status: "rejected", reason: err }];
			return Promise.all(ops.map(op => this.applyAlone(op)));
		}
		const out: Array<PromiseSettledResult<HoldView>> = new Array(ops.length);
		await Promise.all(
			order.map(async ({ op, i }, k) => {
				const a = answers[k];
				out[i] = retryableAnswer(a) ? await this.applyAlone(op) : settledAnswer(a);
			})
		);
		return out;
	}

	/**
	 * One `ledger_apply` statement. The settlements' usage goes in a data-modifying CTE of the same
	 * statement (one round trip; it commits or rolls back with the batch, and a batch retried one
	 * operation at a time writes each again, idempotently).
	 */
	private async applyOnce(ops: HoldOp[]): Promise<HoldAnswer[]> {
		const usage: SettledUsageRow[] = [];
		const plain = ops.map(o => {
			if (o.op !== "settle" || !o.usage) return o;
			const { usage: u, ...op } = o;
			usage.push(u);
			return op;
		});
		const [row] = await this.sequelize.query<{ r: HoldAnswer[] }>(
			usage.length
				? `WITH usage AS (${settledUsageUpdate("$2")}) SELECT ledger_apply($1::jsonb) AS r`
				: `SELECT ledger_apply($1::jsonb) AS r`,
			{
				bind: usage.length ? [JSON.stringify(plain), JSON.stringify(usage)] : [JSON.stringify(plain)],
				type: QueryTypes.SELECT
			}
		);
		if (!Array.isArray(row?.r) || row.r.length !== ops.length)
			throw new Error("ledger_apply answered a different number of outcomes");
		return row.r;
	}

	/** One operation in its own statement, retried on deadlock or serialization failure. */
	private async applyAlone(op: HoldOp, attempts = 4): Promise<PromiseSettledResult<HoldView>> {
		for (let i = 1; ; i++) {
			let a: HoldAnswer;
			try {
				[a] = await this.applyOnce([op]);
			} catch (err) {
				if (i >= attempts || !RETRYABLE_PG.has(pgCode(err) ?? "")) return { status: "rejected", reason: err };
				await new Promise(r => setTimeout(r, 5 * i + Math.random() * 10));
				continue;
			}
			if (i < attempts && retryableAnswer(a)) {
				await new Promise(r => setTimeout(r, 5 * i + Math.random() * 10));
				continue;
			}
			return settledAnswer(a);
		}
	}

	/**
	 * Credits a user from a system account, as a new lot. Idempotent on (kind, cause). Runs in the
	 * caller's transaction (the cause's own state changes commit with it).
	 */
	async credit(
		tx: Transaction,
		p: {
			kind: string;
			userId: string;
			credits: bigint;
			from: SystemAccount;
			source: LotSource;
			expiresAt: Date | null;
			causeType: string;
			causeId: string;
			operator?: string | null;
			description: string;
			metadata?: Record<string, unknown>;
		}
	): Promise<Posted> {
		if (p.credits <= 0n) throw new RangeError("credits must be > 0");
		await this.ensureUser(tx, p.userId);
		return this.post(tx, {
			kind: p.kind,
			userId: p.userId,
			causeType: p.causeType,
			causeId: p.causeId,
			operator: p.operator,
			description: p.description,
			metadata: p.metadata,
			entries: [
				{ account: p.from, amount: -p.credits },
				{
					account: availableKey(p.userId),
					amount: p.credits,
					newLot: { source: p.source, expiresAt: p.expiresAt }
				}
			]
		});
	}

	/**
	 * Takes back up to `amount` credits (refund, chargeback, reorg) into the account they came from,
	 * from `preferLotId` first and then in spend order. Never below zero: what the user already spent
	 * is the shortfall, recorded on the transaction. Idempotent on (kind, cause).
	 */
	async clawback(
		tx: Transaction,
		p: {
			kind: string;
			userId: string;
			amount: bigint;
			to: SystemAccount;
			preferLotId: string | null;
			causeType: string;
			causeId: string;
			description: string;
			metadata?: Record<string, unknown>;
		}
	): Promise<{ taken: bigint; shortfall: bigint; duplicate: boolean }> {
		await this.lockUser(tx, p.userId);
		// Expired credit is worth nothing: swept to the expired account, never counted as recovered.
		await this.expireLots(tx, p.userId);
		const lots = spendOrder(await this.spendableLots(tx, p.userId, false));
		const preferred = lots.filter(l => l.id === p.preferLotId);
		const { allocations, shortfall } = allocate(
			[...preferred, ...lots.filter(l => l.id !== p.preferLotId)],
			p.amount
		);
		const taken = p.amount - shortfall;
		const posted = await this.post(tx, {
			kind: p.kind,
			userId: p.userId,
			causeType: p.causeType,
			causeId: p.causeId,
			description: p.description,
			metadata: {
				...p.metadata,
				requested: p.amount.toString(),
				taken: taken.toString(),
				shortfall: shortfall.toString()
			},
			entries: [
				...allocations.map(a => ({ account: availableKey(p.userId), amount: -a.amount, lotId: a.lotId })),
				{ account: p.to, amount: taken }
			]
		});
		if (posted.duplicate) return { taken: 0n, shortfall: 0n, duplicate: true };
		if (taken > 0n) this.droppedAfterCommit(tx, p.userId, "clawback");
		return { taken, shortfall, duplicate: false };
	}

	private droppedAfterCommit(tx: Transaction, userId: string, cause: "clawback" | "expiry") {
		tx.afterCommit(() => this.onBalanceDropped?.(userId, cause));
	}

	/**
	 * The expiry sweep: for up to `limit` users holding credit past its expiry, moves it to the
	 * expired account (`expireLots`, under each user's lock, one transaction per user), so the drop
	 * in their balance is a ledger transaction and its checks run (`onBalanceDropped`). Expired
	 * credit is already excluded from what a user may spend (`balanceColumns`); reserves sweep it too.
	 * Safe on many nodes at once: a second sweeper finds the lots already swept. Returns the users swept.
	 * `lookbackS`: how far back an expiry is looked for.
	 */
	async sweepExpired(limit: number, lookbackS: number): Promise<number> {
		// The window keeps the scan to lately expired lots (`credit_lots_expiring`); a lot that expired
		// before it is swept by its user's next reserve or clawback instead.
		const users = await this.q<{ user_id: string }>(
			null,
			`SELECT DISTINCT user_id FROM (
				SELECT user_id FROM credit_lots
				WHERE expires_at <= now() AND expires_at > now() - make_interval(secs => $2) AND remaining > 0
				ORDER BY expires_at LIMIT $1
			 ) l`,
			[limit, lookbackS]
		);
		let swept = 0;
		for (const { user_id } of users) {
			const moved = await this.run(async tx => {
				await this.lockUser(tx, user_id);
				return this.expireLots(tx, user_id);
			});
			if (moved > 0n) swept++;
		}
		return swept;
	}

	/** Available (unexpired lots), held, and the stored balance that includes not-yet-swept expired credit. */
	async balance(userId: string): Promise<Balance> {
		// One statement (one round trip, one snapshot): both accounts and the expired lots not yet swept.
		const [row] = await this.q<BalanceColumns>(null, `SELECT ${balanceColumns("$1")}`, [userId]);
		return balanceOf(row);
	}

	async holdOf(taskId: string): Promise<HoldView | null> {
		const [row] = await this.q<HoldRow>(null, `SELECT * FROM credit_holds WHERE task_id = $1`, [taskId]);
		return row ? holdView(row, false) : null;
	}

	/** At most `limit` of the user's ledger entries, newest first; `before`: the id of the last entry of the previous page. */
	async entries(userId: string, limit: number, before: number | null) {
		const rows = await this.q<{
			id: string;
			kind: string;
			cause_type: string;
			cause_id: string;
			available_delta: string;
			held_delta: string;
			tier: string | null;
			discount_bps: number | null;
			list_amount: string | null;
			operator: string | null;
			description: string;
			created_at: Date;
		}>(
			null,
			`SELECT id, kind, cause_type, cause_id, available_delta, held_delta, tier, discount_bps, list_amount, operator, description, created_at
			 FROM ledger_transactions WHERE user_id = $1 ${before != null ? "AND id < $3" : ""} ORDER BY id DESC LIMIT $2`,
			before != null ? [userId, limit, before] : [userId, limit]
		);
		return rows.map(r => ({
			id: String(r.id),
			kind: r.kind,
			cause: { type: r.cause_type, id: r.cause_id },
			availableDelta: credits(r.available_delta),
			heldDelta: credits(r.held_delta),
			tier: r.tier,
			discountBps: r.discount_bps,
			listAmount: r.list_amount == null ? null : credits(r.list_amount),
			operator: r.operator,
			description: r.description,
			createdAt: new Date(r.created_at).toISOString()
		}));
	}
}
