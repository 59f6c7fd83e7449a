/**
 * Leases of the holds of compatible requests (`chat:<id>`), so a hold whose ai node dies mid-request
 * is given back (docs/compat.md "Dead nodes"). Table `chat_hold_leases`, owned by the users service
 * (which also owns the key budgets' `api_key_holds`):
 *
 * - the ai node opens the lease before it takes the credit hold and the key-budget hold, renews
 *   the leases of all its requests in one statement every third of the lease time while they
 *   stream, records the request's cost on the lease before it settles, and deletes the lease once
 *   both holds are settled;
 * - the sweeper (`sweepExpiredLeases`, every users node) takes leases that expired, locked and
 *   skipped by other sweepers: the credit hold is settled at the recorded cost or, with none
 *   recorded, released; the key hold likewise; then the lease is deleted. Every step is idempotent
 *   (the ledger answers a repeated settle/release as a duplicate, a key hold settles once), so a
 *   sweeper that dies half-way leaves the lease for the next sweep and nothing counts twice.
 * - a renewal that finds its lease gone tells the node, which stops the request (it was swept).
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { directQuery, StatementNames } from "../db/direct";
import { GroupCommit } from "../payments/group-commit";

export interface LeaseRow {
	hold_id: string;
	user_id: string;
	key_id: string | null;
	/** Recorded by the node before it settles; null: the request never finished. */
	cost: string | null;
}

interface OpenOp {
	holdId: string;
	userId: string;
	keyId: string | null;
	nodeId: string;
	ttlMs: number;
}

/** The last operation of each hold id (ops of one hold in one batch: the later one is what one by one would leave). */
function lastPerHold<Op extends { holdId: string }>(ops: Op[]): Op[] {
	return [...new Map(ops.map(o => [o.holdId, o])).values()];
}

/** Opens of one hold in one batch, as one by one: the first one's row, renewed to the last one's expiry. */
function opensPerHold(ops: OpenOp[]): OpenOp[] {
	const out = new Map<string, OpenOp>();
	for (const o of ops) {
		const first = out.get(o.holdId);
		out.set(o.holdId, first ? { ...first, ttlMs: o.ttlMs } : o);
	}
	return [...out.values()];
}

/**
 * Runs a batch as one statement; a batch that fails as a whole (a lost connection) is retried one
 * operation at a time, so one operation's failure is its own (each statement is idempotent).
 */
async function batched<Op, R>(ops: Op[], run: (ops: Op[]) => Promise<R[]>): Promise<Array<PromiseSettledResult<R>>> {
	try {
		return (await run(ops)).map(value => ({ status: "fulfilled", value }));
	} catch (err) {
		if (ops.length === 1) return [{ status: "rejected", reason: err }];
		return Promise.all(
			ops.map(op =>
				run([op]).then(
					([value]): PromiseSettledResult<R> => ({ status: "fulfilled", value }),
					(reason: unknown): PromiseSettledResult<R> => ({ status: "rejected", reason })
				)
			)
		);
	}
}

/**
 * The leases' writes of a request's path (open, record the cost, drop) are group-committed per
 * statement kind (src/payments/group-commit.ts): a lone one goes out at once; those that arrive while
 * one batch of their kind is in flight go together as the next, one statement for many
 * requests. Each goes straight on a pooled connection (src/db/direct.ts). Measured with bench/compat
 * (one batch in flight against two, and against no batching): bench/README.md "Compatible /v1".
 */
const BATCH = { maxBatch: 128, maxInFlight: 1 } as const;

const OPEN_SQL = `INSERT INTO chat_hold_leases (hold_id, user_id, key_id, node_id, expires_at)
	 SELECT b.hold_id, b.user_id, b.key_id, b.node_id, now() + make_interval(secs => b.ttl_ms / 1000)
	 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[]) AS b(hold_id, user_id, key_id, node_id, ttl_ms)
	 ON CONFLICT (hold_id) DO UPDATE SET expires_at = EXCLUDED.expires_at`;
const COST_SQL = `UPDATE chat_hold_leases l SET cost = b.cost
	 FROM unnest($1::text[], $2::bigint[]) AS b(hold_id, cost) WHERE l.hold_id = b.hold_id RETURNING l.hold_id`;
const DROP_SQL = `DELETE FROM chat_hold_leases WHERE hold_id = ANY($1::text[])`;

export class HoldLeaseStore {
	private readonly names = new StatementNames("ff_leases");
	private readonly opens = new GroupCommit<OpenOp, void>({
		...BATCH,
		run: ops =>
			batched(ops, async b => {
				const rows = opensPerHold(b);
				await this.direct(OPEN_SQL, [
					rows.map(r => r.holdId),
					rows.map(r => r.userId),
					rows.map(r => r.keyId),
					rows.map(r => r.nodeId),
					rows.map(r => r.ttlMs)
				]);
				return b.map(() => undefined);
			})
	});
	private readonly costs = new GroupCommit<{ holdId: string; cost: number }, boolean>({
		...BATCH,
		run: ops =>
			batched(ops, async b => {
				const rows = lastPerHold(b);
				const found = await this.direct<{ hold_id: string }>(COST_SQL, [
					rows.map(r => r.holdId),
					rows.map(r => r.cost)
				]);
				const live = new Set(found.map(r => r.hold_id));
				return b.map(o => live.has(o.holdId));
			})
	});
	private readonly drops = new GroupCommit<string, void>({
		...BATCH,
		run: ops =>
			batched(ops, async b => {
				await this.direct(DROP_SQL, [[...new Set(b)]]);
				return b.map(() => undefined);
			})
	});

	/** `namedStatements`: the batched writes as named prepared statements (DB_NAMED_STATEMENTS). */
	constructor(
		private readonly db: Sequelize,
		private readonly namedStatements = false
	) {}

	private rows<T extends object>(sql: string, bind: unknown[], transaction?: Transaction): Promise<T[]> {
		return this.db.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction });
	}

	private direct<T extends object>(sql: string, values: unknown[]): Promise<T[]> {
		return directQuery<T>(this.db, sql, values, this.namedStatements ? this.names.of(sql) : null);
	}

	/** Idempotent on the hold id (a retried open renews). */
	open(p: OpenOp): Promise<void> {
		return this.opens.submit(p);
	}

	/** Renews the given leases; returns the ids that have none any more (swept). */
	async renew(holdIds: string[], ttlMs: number): Promise<string[]> {
		if (!holdIds.length) return [];
		const found = await this.rows<{ hold_id: string }>(
			`UPDATE chat_hold_leases SET expires_at = now() + make_interval(secs => $2::float8 / 1000)
			 WHERE hold_id = ANY($1::text[]) RETURNING hold_id`,
			[holdIds, ttlMs]
		);
		const live = new Set(found.map(r => r.hold_id));
		return holdIds.filter(id => !live.has(id));
	}

	/** Records the cost the node is about to settle at; false when the lease is gone. */
	recordCost(holdId: string, cost: number): Promise<boolean> {
		return this.costs.submit({ holdId, cost });
	}

	drop(holdId: string): Promise<void> {
		return this.drops.submit(holdId);
	}

	/** Expired leases, locked in `tx` (other sweepers skip them). */
	lockExpired(limit: number, tx: Transaction): Promise<LeaseRow[]> {
		return this.rows<LeaseRow>(
			`SELECT hold_id, user_id, key_id, cost::text AS cost FROM chat_hold_leases
			 WHERE expires_at < now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
			[limit],
			tx
		);
	}

	/** Deletes a swept lease in the transaction that locked it. */
	async dropLocked(holdId: string, tx: Transaction): Promise<void> {
		await this.rows(`DELETE FROM chat_hold_leases WHERE hold_id = $1 RETURNING hold_id`, [holdId], tx);
	}

	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
		return this.db.transaction(fn);
	}
}

export interface SweepLeaseDeps {
	store: Pick<HoldLeaseStore, "lockExpired" | "dropLocked" | "transaction">;
	/** payments.settle / payments.release of the credit hold (idempotent; NOT_FOUND: never held). */
	settleCredits(userId: string, holdId: string, cost: number): Promise<void>;
	releaseCredits(userId: string, holdId: string): Promise<void>;
	/** The key-budget hold at `credits` (0 = released); a no-op for an unknown or settled hold. */
	settleKey(holdId: string, credits: number): Promise<void>;
	warn(msg: string, detail?: string): void;
}

const codeOf = (err: unknown) => (err as { type?: string })?.type;

/**
 * One sweep of expired leases: each row's holds are finished and the row deleted inside the
 * transaction that locked it, so two sweepers never work on one lease. Returns how many were swept.
 */
export async function sweepExpiredLeases(deps: SweepLeaseDeps, limit = 50): Promise<number> {
	return deps.store.transaction(async tx => {
		const rows = await deps.store.lockExpired(limit, tx);
		let swept = 0;
		for (const r of rows) {
			const cost = r.cost == null ? null : Number(r.cost);
			try {
				let keyCredits: number | null = cost ?? 0;
				try {
					if (cost == null) await deps.releaseCredits(r.user_id, r.hold_id);
					else await deps.settleCredits(r.user_id, r.hold_id, cost);
				} catch (err) {
					// NOT_FOUND: the node died before its hold committed. HOLD_ALREADY_SETTLED on a release:
					// the node settled without getting its cost onto the lease (and settles the key hold itself).
					const code = codeOf(err);
					if (code === "HOLD_ALREADY_SETTLED" && cost == null) keyCredits = null;
					else if (code !== "NOT_FOUND") throw err;
				}
				if (r.key_id && keyCredits != null) await deps.settleKey(r.hold_id, keyCredits);
				await deps.store.dropLocked(r.hold_id, tx);
				swept++;
			} catch (err) {
				deps.warn(
					`hold ${r.hold_id} of a dead ai node: not swept yet; the next sweep retries`,
					(err as Error).message
				);
			}
		}
		return swept;
	});
}

/**
 * The ai node's side: the leases of its requests in flight, renewed together. `renew` gets the ids
 * and answers the ones whose lease is gone; `onLost` stops those requests.
 */
export class LeaseKeeper {
	private readonly open = new Set<string>();
	private timer: NodeJS.Timeout | null = null;
	private busy = false;

	constructor(
		private readonly opts: {
			ttlMs: number;
			renew(holdIds: string[], ttlMs: number): Promise<string[]>;
			onLost(holdId: string): void;
			warn(msg: string): void;
		}
	) {}

	get size(): number {
		return this.open.size;
	}

	add(holdId: string) {
		this.open.add(holdId);
		if (!this.timer) {
			this.timer = setInterval(() => void this.renewNow(), Math.max(50, Math.floor(this.opts.ttlMs / 3)));
			this.timer.unref();
		}
	}

	delete(holdId: string) {
		this.open.delete(holdId);
		if (!this.open.size && this.timer) {
			clearInterval(this.timer);
			this.timer = null;
		}
	}

	/** One renewal of every open lease (one call); a failure is retried at the next tick. */
	async renewNow(): Promise<void> {
		if (this.busy || !this.open.size) return;
		this.busy = true;
		try {
			const lost = await this.opts.renew([...this.open], this.opts.ttlMs);
			for (const id of lost)
				if (this.open.has(id)) {
					this.delete(id);
					this.opts.onLost(id);
				}
		} catch (err) {
			this.opts.warn(`hold lease renewal failed: ${(err as Error).message}`);
		} finally {
			this.busy = false;
		}
	}

	stop() {
		if (this.timer) clearInterval(this.timer);
		this.timer = null;
		this.open.clear();
	}
}
