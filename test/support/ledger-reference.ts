/**
 * The TypeScript hold operations the ledger functions replaced (migration
 * 20261202-3003-ledger-functions), kept verbatim as the reference of the equivalence tests
 * (test/integration/payments/ledger-functions.test.ts): the same sequences run through both must
 * leave the same balances, lots, holds and ledger transactions and answer the same outcomes.
 * Each operation is its own transaction of about ten statements, under the user's lock.
 */
import { QueryTypes, type Transaction } from "sequelize";
import { Conflict, NotFound, PaymentRequired } from "../../src/errors";
import type { TierName } from "../../src/domain/tiers";
import { availableKey, heldKey, credits, type HoldView, type Ledger } from "../../src/payments/ledger";
import {
	allocate,
	holdAmount,
	settlementCharge,
	spendOrder,
	splitAllocations,
	type Allocation
} from "../../src/payments/ledger-rules";

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

const toLots = (rows: LotRow[]) =>
	rows.map(r => ({
		id: String(r.id),
		remaining: BigInt(r.remaining),
		priority: r.priority,
		expiresAt: r.expires_at ? new Date(r.expires_at) : null,
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

export class ReferenceHolds {
	constructor(private readonly ledger: Ledger) {}

	private q<T extends object>(tx: Transaction | null, sql: string, bind: unknown[]): Promise<T[]> {
		return this.ledger.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx ?? undefined });
	}

	private async spendableLots(tx: Transaction, userId: string, includeExpired: boolean) {
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
		return this.ledger.run(async tx => {
			await this.ledger.lockUser(tx, p.userId);
			const existing = await this.findHold(tx, p.taskId, false);
			if (existing) return this.sameHold(existing, p.userId, p.listMaxCost);
			// One locked read of every lot with credit left: the expired ones are swept, the rest spent.
			const all = await this.spendableLots(tx, p.userId, true);
			if (all.some(l => l.expired)) await this.ledger.expireLots(tx, p.userId);
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
			const posted = await this.ledger.post(tx, {
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
		return this.ledger.run(async tx => {
			const hold = await this.ownHold(tx, p.taskId, p.userId);
			if (hold.state === "settled") {
				if (BigInt(hold.list_actual_cost ?? -1) === p.listActualCost) return holdView(hold, true);
				throw Conflict("This task was already settled with another cost", "HOLD_ALREADY_SETTLED", {
					listActualCost: String(hold.list_actual_cost)
				});
			}
			if (hold.state === "released") throw Conflict("This task's hold was released", "HOLD_RELEASED");
			await this.ledger.lockUser(tx, p.userId);
			const held = BigInt(hold.amount);
			const charge = settlementCharge(held, p.listActualCost, hold.discount_bps, BigInt(hold.boost_fee));
			const allocations: Allocation[] = hold.allocations.map(a => ({ lotId: a.lotId, amount: BigInt(a.amount) }));
			const { returned } = splitAllocations(allocations, charge);
			await this.ledger.post(tx, {
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
		return this.ledger.run(async tx => {
			const hold = await this.ownHold(tx, p.taskId, p.userId);
			if (hold.state === "released") return holdView(hold, true);
			if (hold.state === "settled")
				throw Conflict("This task's hold was already settled", "HOLD_ALREADY_SETTLED");
			await this.ledger.lockUser(tx, p.userId);
			const held = BigInt(hold.amount);
			await this.ledger.post(tx, {
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
}
