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
import {
	Allocation,
	LOT_PRIORITY,
	LotSource,
	allocate,
	holdAmount,
	settlementCharge,
	spendOrder,
	splitAllocations
} from "./ledger-rules";

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

export class Ledger {
	private readonly knownUsers = new Set<string>();

	constructor(readonly sequelize: Sequelize) {}

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

	async reserve(p: {
		userId: string;
		taskId: string;
		listMaxCost: bigint;
		boostMs: number;
		listBoostFee: bigint;
		tier: TierName;
		discountBps: number;
	}): Promise<HoldView> {
		return this.run(async tx => {
			await this.lockUser(tx, p.userId);
			const existing = await this.findHold(tx, p.taskId, false);
			if (existing) return this.sameHold(existing, p.userId, p.listMaxCost);
			// One locked read of every lot with credit left: the expired ones are swept, the rest spent.
			const all = await this.spendableLots(tx, p.userId, true);
			if (all.some(l => l.expired)) await this.expireLots(tx, p.userId);
			const { amount, boostFee } = holdAmount(p.listMaxCost, p.discountBps, p.listBoostFee);
			const lots = spendOrder(all.filter(l => !l.expired));
			const { allocations, shortfall } = allocate(lots, amount);
			if (shortfall > 0n) {
				const available = lots.reduce((s, l) => s + l.remaining, 0n);
				throw PaymentRequired("Not enough credits for this task", {
					required: amount.toString(),
					available: available.toString()
				});
			}
			const posted = await this.post(tx, {
				kind: "reserve",
				userId: p.userId,
				causeType: "task",
				causeId: p.taskId,
				tier: p.tier,
				discountBps: p.discountBps,
				listAmount: p.listMaxCost,
				description: "Credits held for a task",
				metadata: p.boostMs ? { boostMs: p.boostMs, boostFee: boostFee.toString() } : {},
				entries: [
					...allocations.map(a => ({ account: availableKey(p.userId), amount: -a.amount, lotId: a.lotId })),
					{ account: heldKey(p.userId), amount }
				]
			});
			if (posted.duplicate) {
				// The same task id was reserved under another user at the same moment (different user locks).
				const other = await this.findHold(tx, p.taskId, false);
				if (other) return this.sameHold(other, p.userId, p.listMaxCost);
				throw Conflict("This task already has a hold", "HOLD_CONFLICT");
			}
			const [row] = await this.q<HoldRow>(
				tx,
				`INSERT INTO credit_holds (task_id, user_id, state, list_max_cost, boost_ms, boost_fee, amount, tier, discount_bps, allocations)
				 VALUES ($1, $2, 'held', $3, $4, $5, $6, $7, $8, $9::jsonb) RETURNING *`,
				[
					p.taskId,
					p.userId,
					p.listMaxCost.toString(),
					p.boostMs,
					boostFee.toString(),
					amount.toString(),
					p.tier,
					p.discountBps,
					JSON.stringify(allocations.map(a => ({ lotId: a.lotId, amount: a.amount.toString() })))
				]
			);
			return holdView(row, false);
		});
	}

	private async findHold(tx: Transaction, taskId: string, lock: boolean): Promise<HoldRow | null> {
		const [row] = await this.q<HoldRow>(
			tx,
			`SELECT * FROM credit_holds WHERE task_id = $1 ${lock ? "FOR UPDATE" : ""}`,
			[taskId]
		);
		return row ?? null;
	}

	private sameHold(row: HoldRow, userId: string, listMaxCost: bigint): HoldView {
		// Another user's task id is not revealed: it looks like a clash of ids.
		if (row.user_id !== userId) throw Conflict("This task id is already in use", "HOLD_CONFLICT");
		if (BigInt(row.list_max_cost) !== listMaxCost)
			throw Conflict("This task already has a hold with a different amount", "HOLD_MISMATCH", {
				listMaxCost: String(row.list_max_cost)
			});
		return holdView(row, true);
	}

	private async ownHold(tx: Transaction, taskId: string, userId: string): Promise<HoldRow> {
		const row = await this.findHold(tx, taskId, true);
		if (!row || row.user_id !== userId) throw NotFound("Hold");
		return row;
	}

	async settle(p: { userId: string; taskId: string; listActualCost: bigint }): Promise<HoldView> {
		return this.run(async tx => {
			const hold = await this.ownHold(tx, p.taskId, p.userId);
			if (hold.state === "settled") {
				if (BigInt(hold.list_actual_cost ?? -1) === p.listActualCost) return holdView(hold, true);
				throw Conflict("This task was already settled with another cost", "HOLD_ALREADY_SETTLED", {
					listActualCost: String(hold.list_actual_cost)
				});
			}
			if (hold.state === "released") throw Conflict("This task's hold was released", "HOLD_RELEASED");
			await this.lockUser(tx, p.userId);
			const held = BigInt(hold.amount);
			const charge = settlementCharge(held, p.listActualCost, hold.discount_bps, BigInt(hold.boost_fee));
			const allocations: Allocation[] = hold.allocations.map(a => ({ lotId: a.lotId, amount: BigInt(a.amount) }));
			const { returned } = splitAllocations(allocations, charge);
			await this.post(tx, {
				kind: "settle",
				userId: p.userId,
				causeType: "task",
				causeId: p.taskId,
				tier: hold.tier,
				discountBps: hold.discount_bps,
				listAmount: p.listActualCost,
				description: "Task charged",
				metadata: {
					held: held.toString(),
					charged: charge.toString(),
					capped: charge === held && p.listActualCost > 0n
				},
				entries: [
					{ account: heldKey(p.userId), amount: -held },
					{ account: "sys:revenue", amount: charge },
					...returned.map(a => ({ account: availableKey(p.userId), amount: a.amount, lotId: a.lotId }))
				]
			});
			const [row] = await this.q<HoldRow>(
				tx,
				`UPDATE credit_holds SET state = 'settled', list_actual_cost = $2, charged = $3, finished_at = now() WHERE task_id = $1 RETURNING *`,
				[p.taskId, p.listActualCost.toString(), charge.toString()]
			);
			return holdView(row, false);
		});
	}

	async release(p: { userId: string; taskId: string }): Promise<HoldView> {
		return this.run(async tx => {
			const hold = await this.ownHold(tx, p.taskId, p.userId);
			if (hold.state === "released") return holdView(hold, true);
			if (hold.state === "settled")
				throw Conflict("This task's hold was already settled", "HOLD_ALREADY_SETTLED");
			await this.lockUser(tx, p.userId);
			const held = BigInt(hold.amount);
			await this.post(tx, {
				kind: "release",
				userId: p.userId,
				causeType: "task",
				causeId: p.taskId,
				tier: hold.tier,
				discountBps: hold.discount_bps,
				description: "Task hold released",
				entries: [
					{ account: heldKey(p.userId), amount: -held },
					...hold.allocations.map(a => ({
						account: availableKey(p.userId),
						amount: BigInt(a.amount),
						lotId: a.lotId
					}))
				]
			});
			const [row] = await this.q<HoldRow>(
				tx,
				`UPDATE credit_holds SET state = 'released', finished_at = now() WHERE task_id = $1 RETURNING *`,
				[p.taskId]
			);
			return holdView(row, false);
		});
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
		return { taken, shortfall, duplicate: false };
	}

	/** Available (unexpired lots), held, and the stored balance that includes not-yet-swept expired credit. */
	async balance(userId: string): Promise<{ available: bigint; held: bigint; expiredPending: bigint }> {
		const rows = await this.q<{ key: string; balance: string }>(
			null,
			`SELECT key, balance FROM ledger_accounts WHERE key IN ($1, $2)`,
			[availableKey(userId), heldKey(userId)]
		);
		const [exp] = await this.q<{ s: string | null }>(
			null,
			`SELECT SUM(remaining) AS s FROM credit_lots WHERE user_id = $1 AND remaining > 0 AND expires_at <= now()`,
			[userId]
		);
		const get = (k: string) => BigInt(rows.find(r => r.key === k)?.balance ?? 0);
		const expiredPending = BigInt(exp?.s ?? 0);
		return { available: get(availableKey(userId)) - expiredPending, held: get(heldKey(userId)), expiredPending };
	}

	async holdOf(taskId: string): Promise<HoldView | null> {
		const [row] = await this.q<HoldRow>(null, `SELECT * FROM credit_holds WHERE task_id = $1`, [taskId]);
		return row ? holdView(row, false) : null;
	}

	/** The user's ledger, newest first; `before` is the id of the last transaction of the previous page. */
	async entries(userId: string, limit: number, before: bigint | null) {
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
			before != null ? [userId, limit + 1, before.toString()] : [userId, limit + 1]
		);
		const page = rows.slice(0, limit);
		return {
			items: page.map(r => ({
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
			})),
			nextBefore: rows.length > limit ? BigInt(page[page.length - 1].id) : null
		};
	}
}
