/**
 * Low-balance notices (issue 19 part 5): when a payer's available credit crosses under its threshold
 * (its own, or `BILLING_LOW_BALANCE_CREDITS`), one durable `billing.low_balance` per crossing.
 *
 * THE RULE
 * - Checked after every settlement of the payer (the same hook as auto top-up), and after any other
 *   transaction that takes credit away: a clawback or an expiry sweep (`Ledger.onBalanceDropped`).
 * - A crossing is the balance going from at or above the threshold to under it. The payer's
 *   `billing_alerts` row remembers whether the last check saw it under, and the newest ledger
 *   transaction then. Under again at the next check counts as a new crossing only when the balance
 *   rose to the threshold in between: the balance after each later transaction is the current one
 *   minus the deltas of the transactions after it, so a purchase followed by spending within one
 *   check's gap still counts, and a long run of small settlements under the threshold never repeats.
 * - The crossing is claimed by a conditional UPDATE on the state the check read (two parallel checks:
 *   one claims) and the notice's `billing_notices` row (`low_balance`, the crossing's number) commits
 *   with the event's outbox row.
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { directQuery } from "../db/direct";
import { balanceColumns, balanceOf, credits, type BalanceColumns, type Ledger } from "./ledger";
import { BILLING_LOW_BALANCE, noticeOnce } from "./billing-notices";
import type { Publisher } from "./stake-indexer";

interface AlertRow {
	payer_id: string;
	low_balance_credits: string | null;
	below: boolean;
	seen_transaction_id: string;
	crossings: number;
}

type CheckRead = Partial<AlertRow> & BalanceColumns & { newest: string | null };

/** Payers read in one statement at most (a batch of settlements is far smaller). */
const READ_BATCH_MAX = 500;

export interface LowBalanceView {
	/** The payer's own threshold; null = the platform's default. */
	lowBalanceCredits: number | null;
	/** The threshold in force (0 = no notices). */
	effectiveLowBalanceCredits: number;
	defaultLowBalanceCredits: number;
	below: boolean;
}

export type LowBalanceOutcome =
	| { noticed: false; reason: "off" | "above_threshold" | "still_below" | "raced" }
	| { noticed: true; crossing: number };

export class LowBalanceNotices {
	constructor(
		private readonly sequelize: Sequelize,
		private readonly ledger: Ledger,
		private readonly defaultCredits: number,
		private readonly publish: Publisher
	) {}

	/** Outside a transaction (the check after every settlement) straight on a pooled connection (src/db/direct.ts). */
	private q<T extends object>(tx: Transaction | null, sql: string, bind: unknown[]): Promise<T[]> {
		if (!tx) return directQuery<T>(this.sequelize, sql, bind);
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx });
	}

	private async row(payerId: string): Promise<AlertRow | null> {
		const [r] = await this.q<AlertRow>(null, `SELECT * FROM billing_alerts WHERE payer_id = $1`, [payerId]);
		return r ?? null;
	}

	private view(r: AlertRow | null): LowBalanceView {
		const own = r?.low_balance_credits == null ? null : credits(r.low_balance_credits);
		return {
			lowBalanceCredits: own,
			effectiveLowBalanceCredits: own ?? this.defaultCredits,
			defaultLowBalanceCredits: this.defaultCredits,
			below: r?.below ?? false
		};
	}

	async get(payerId: string): Promise<LowBalanceView> {
		return this.view(await this.row(payerId));
	}

	/** Sets the payer's threshold (null: back to the default; 0: no notices). */
	async configure(payerId: string, lowBalanceCredits: number | null): Promise<LowBalanceView> {
		const [r] = await this.q<AlertRow>(
			null,
			`INSERT INTO billing_alerts (payer_id, low_balance_credits) VALUES ($1, $2)
			 ON CONFLICT (payer_id) DO UPDATE SET low_balance_credits = $2, updated_at = now() RETURNING *`,
			[payerId, lowBalanceCredits == null ? null : String(lowBalanceCredits)]
		);
		return this.view(r);
	}

	/**
	 * The payer's alert state, its newest ledger transaction and its balance (Ledger.balance) in one
	 * snapshot. The checks run after every settlement, beside it (nobody waits on them), so the reads
	 * asked in one turn of the event loop, and those asked while one is in flight, go as one statement
	 * over all their payers: a batch of settlements costs one read, not one per payer.
	 */
	private read(payerId: string): Promise<CheckRead | undefined> {
		return new Promise((resolve, reject) => {
			const waiting = this.reads.get(payerId);
			if (waiting) waiting.push({ resolve, reject });
			else this.reads.set(payerId, [{ resolve, reject }]);
			this.scheduleReads();
		});
	}

	private readonly reads = new Map<
		string,
		Array<{ resolve(r: CheckRead | undefined): void; reject(e: unknown): void }>
	>();
	private reading = false;
	private readScheduled = false;

	private scheduleReads(): void {
		if (this.reading || this.readScheduled || !this.reads.size) return;
		this.readScheduled = true;
		setImmediate(() => {
			this.readScheduled = false;
			void this.readBatch();
		});
	}

	private async readBatch(): Promise<void> {
		const batch = [...this.reads].slice(0, READ_BATCH_MAX);
		for (const [payerId] of batch) this.reads.delete(payerId);
		this.reading = true;
		try {
			const rows = await this.q<CheckRead & { key: string }>(
				null,
				`SELECT k.payer_id AS key, a.payer_id, a.low_balance_credits, a.below, a.seen_transaction_id, a.crossings,
				        (SELECT max(id)::text FROM ledger_transactions WHERE user_id = k.payer_id) AS newest, ${balanceColumns("k.payer_id")}
				 FROM unnest($1::text[]) AS k(payer_id) LEFT JOIN billing_alerts a ON a.payer_id = k.payer_id`,
				[batch.map(([payerId]) => payerId)]
			);
			const byPayer = new Map(rows.map(r => [r.key, r]));
			for (const [payerId, waiting] of batch) for (const w of waiting) w.resolve(byPayer.get(payerId));
		} catch (err) {
			for (const [, waiting] of batch) for (const w of waiting) w.reject(err);
		} finally {
			this.reading = false;
			this.scheduleReads();
		}
	}

	async check(payerId: string): Promise<LowBalanceOutcome> {
		const read = await this.read(payerId);
		const r: AlertRow | null = read?.payer_id ? (read as AlertRow) : null;
		const newest = read?.newest ?? null;
		const threshold = BigInt(r?.low_balance_credits ?? this.defaultCredits);
		if (threshold <= 0n) return { noticed: false, reason: "off" };
		const { available } = balanceOf(read);
		const seen = r?.seen_transaction_id ?? "0";
		const newestId = newest ?? "0";
		if (available >= threshold) {
			if (r?.below !== false)
				await this.q(
					null,
					`INSERT INTO billing_alerts (payer_id, below, seen_transaction_id) VALUES ($1, false, $2)
					 ON CONFLICT (payer_id) DO UPDATE SET below = false, seen_transaction_id = GREATEST(billing_alerts.seen_transaction_id, $2), updated_at = now()
					 RETURNING payer_id`,
					[payerId, newestId]
				);
			return { noticed: false, reason: "above_threshold" };
		}
		if (r?.below && !(await this.roseSince(payerId, seen, available, threshold))) {
			await this.q(
				null,
				`UPDATE billing_alerts SET seen_transaction_id = GREATEST(seen_transaction_id, $2), updated_at = now()
				 WHERE payer_id = $1 AND below RETURNING payer_id`,
				[payerId, newestId]
			);
			return { noticed: false, reason: "still_below" };
		}
		return this.ledger.run(async tx => {
			await this.q(
				tx,
				`INSERT INTO billing_alerts (payer_id) VALUES ($1) ON CONFLICT (payer_id) DO NOTHING RETURNING payer_id`,
				[payerId]
			);
			// Claimed only from the state this check read: a parallel check that claimed first changed it.
			const [claimed] = await this.q<{ crossings: number }>(
				tx,
				`UPDATE billing_alerts SET below = true, seen_transaction_id = $3, crossings = crossings + 1, updated_at = now()
				 WHERE payer_id = $1 AND below = $2 AND seen_transaction_id = $4 RETURNING crossings`,
				[payerId, r?.below ?? false, newestId, seen]
			);
			if (!claimed) return { noticed: false as const, reason: "raced" as const };
			await noticeOnce(this.sequelize, tx, this.publish, {
				payerId,
				kind: "low_balance",
				crossing: String(claimed.crossings),
				topic: BILLING_LOW_BALANCE,
				details: {
					payerId,
					thresholdCredits: threshold.toString(),
					availableCredits: available.toString(),
					crossing: claimed.crossings
				}
			});
			return { noticed: true as const, crossing: claimed.crossings };
		});
	}

	/** Whether the balance stood at or above `threshold` after a transaction newer than `seenId`. */
	private async roseSince(payerId: string, seenId: string, available: bigint, threshold: bigint): Promise<boolean> {
		const [row] = await this.q<{ rose: boolean }>(
			null,
			`SELECT EXISTS (
				SELECT 1 FROM (
					SELECT $3::bigint - COALESCE(sum(available_delta) OVER (ORDER BY id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS after
					FROM ledger_transactions WHERE user_id = $1 AND id > $2::bigint
				) t WHERE after >= $4::bigint
			) AS rose`,
			[payerId, seenId, available.toString(), threshold.toString()]
		);
		return row.rose;
	}
}
