/**
 * Indexes the staking contract's events into per-wallet stake positions.
 *
 * Only blocks with the configured confirmations are read. The cursor (last indexed block and its
 * hash) lives in PostgreSQL, so a restarted node resumes where the last one stopped; if the
 * cursor's block is no longer canonical, the index rewinds by the reorg window and replays.
 * Positions are rebuilt from a wallet's stored events (staking.ts), never patched. One node
 * indexes at a time (a transaction-scoped advisory lock); the others skip the pass.
 *
 * Wallets belong to users through the users service (`users.walletOwner`). When it cannot answer
 * (not deployed yet, or the wallet is not linked), positions are kept by address and the owner is
 * resolved later; whenever a user's positions or a wallet's owner change, `payments.stake.changed`
 * is published (durable outbox) with the user's full list of positions.
 */
import { QueryTypes, Sequelize, Transaction } from "sequelize";
import type { ForgeChain } from "./chain";
import { safeBlock } from "./chain-rules";
import { orgIdOfPayer } from "./payer";
import { Position, StakeEvent, replayStakeEvents } from "./staking";

/** An organisation's stake changed (`{ orgId, positions }`, as `payments.stake.changed` for a user). */
export const ORG_STAKE_CHANGED = "payments.org.stake.changed";

const CURSOR = "staking";
const INDEX_LOCK = 7_263_430_001; // arbitrary, fixed: "payments stake indexer"
const OWNER_RECHECK_S = 30;

/** undefined = could not ask (owner unknown for now); null = nobody owns it. */
export type OwnerResolver = (address: string) => Promise<string | null | undefined>;
export type Publisher = (tx: Transaction, topic: string, payload: unknown) => Promise<unknown>;

export interface StakeChanged {
	userId: string;
	positions: Array<{ amountWei: string; since: string }>;
}

interface Cursor {
	block: number;
	hash: string | null;
	time: Date | null;
}

interface EventRow {
	kind: StakeEvent["kind"];
	amount_wei: string;
	total_wei: string | null;
	block_time: Date;
	available_at: Date | null;
}

interface WalletRow {
	address: string;
	user_id: string | null;
	positions: Array<{ amountWei: string; since: string }>;
	active_wei: string;
	unbonding_wei: string;
	unbonding_available_at: Date | null;
}

export class StakeIndexer {
	constructor(
		private readonly sequelize: Sequelize,
		private readonly chain: ForgeChain,
		private readonly resolveOwner: OwnerResolver,
		private readonly publish: Publisher,
		private readonly log: { warn(...a: unknown[]): void; info(...a: unknown[]): void }
	) {}

	private get chainId() {
		return this.chain.settings.chainId;
	}

	private q<T extends object>(tx: Transaction | null, sql: string, bind: unknown[]): Promise<T[]> {
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx ?? undefined });
	}

	/**
	 * Indexes up to `maxBatches` batches of confirmed blocks. Returns the cursor after the pass, or
	 * null when another node holds the indexer lock.
	 */
	async index(maxBatches = 20): Promise<{ cursor: number; events: number } | null> {
		return this.sequelize.transaction(async tx => {
			const [{ locked }] = await this.q<{ locked: boolean }>(
				tx,
				`SELECT pg_try_advisory_xact_lock($1) AS locked`,
				[INDEX_LOCK]
			);
			if (!locked) return null;
			const touched = new Set<string>();
			let cursor = await this.cursor(tx);
			cursor = await this.checkReorg(tx, cursor, touched);
			let events = 0;
			const safe = safeBlock(await this.chain.head(), this.chain.settings.confirmations);
			for (let i = 0; i < maxBatches && cursor.block < safe; i++) {
				const to = Math.min(safe, cursor.block + this.chain.settings.logBatchBlocks);
				const logs = await this.chain.stakeLogs(cursor.block + 1, to);
				const times = new Map<number, Date>();
				for (const l of logs) {
					if (!times.has(l.blockNumber)) {
						// Never index with a made-up time: a stake's holding period runs from its block's time.
						const b = await this.chain.block(l.blockNumber);
						if (!b)
							throw new Error(
								`staking index: the chain node did not return block ${l.blockNumber}; waiting for the next pass`
							);
						times.set(l.blockNumber, b.time);
					}
					await this.q(
						tx,
						`INSERT INTO stake_events (chain_id, tx_hash, log_index, block_number, block_hash, block_time, address, kind, amount_wei, total_wei, available_at)
						 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING RETURNING tx_hash`,
						[
							this.chainId,
							l.txHash,
							l.logIndex,
							l.blockNumber,
							l.blockHash,
							times.get(l.blockNumber),
							l.address,
							l.kind,
							l.amountWei.toString(),
							l.totalWei?.toString() ?? null,
							l.availableAt
						]
					);
					touched.add(l.address);
					events++;
				}
				const block = await this.chain.block(to);
				cursor = { block: to, hash: block?.hash ?? null, time: block?.time ?? null };
			}
			await this.saveCursor(tx, cursor);
			for (const address of touched) await this.rebuildWallet(tx, address);
			await this.resolvePendingOwners(tx);
			return { cursor: cursor.block, events };
		});
	}

	/** Forgets everything indexed from `fromBlock` on and indexes again from there (operator command). */
	async reindexFrom(fromBlock: number): Promise<{ cursor: number; events: number } | null> {
		await this.sequelize.transaction(async tx => {
			const deleted = await this.q<{ address: string }>(
				tx,
				`DELETE FROM stake_events WHERE chain_id = $1 AND block_number >= $2 RETURNING address`,
				[this.chainId, fromBlock]
			);
			await this.saveCursor(tx, { block: fromBlock - 1, hash: null, time: null });
			for (const address of new Set(deleted.map(d => d.address))) await this.rebuildWallet(tx, address);
		});
		return this.index(1_000);
	}

	private async cursor(tx: Transaction | null): Promise<Cursor> {
		const [row] = await this.q<{ block_number: string; block_hash: string | null; block_time: Date | null }>(
			tx,
			`SELECT block_number, block_hash, block_time FROM chain_cursors WHERE name = $1 AND chain_id = $2`,
			[CURSOR, this.chainId]
		);
		return row
			? {
					block: Number(row.block_number),
					hash: row.block_hash,
					time: row.block_time ? new Date(row.block_time) : null
				}
			: { block: this.chain.settings.startBlock - 1, hash: null, time: null };
	}

	private async saveCursor(tx: Transaction, c: Cursor) {
		await this.q(
			tx,
			`INSERT INTO chain_cursors (name, chain_id, block_number, block_hash, block_time) VALUES ($1, $2, $3, $4, $5)
			 ON CONFLICT (name, chain_id) DO UPDATE SET block_number = $3, block_hash = $4, block_time = COALESCE($5, chain_cursors.block_time), updated_at = now()
			 RETURNING name`,
			[CURSOR, this.chainId, c.block, c.hash, c.time]
		);
	}

	/**
	 * "Now" for holding periods: the later of this server's clock and the last indexed block's time.
	 * A position's start is a block time, so its age is measured on the chain's clock; the server
	 * clock keeps it moving when the chain produces no blocks.
	 */
	async now(): Promise<number> {
		const c = await this.cursor(null);
		return Math.max(Date.now(), c.time?.getTime() ?? 0);
	}

	/** If the cursor's block is no longer canonical, rewinds by the reorg window and drops what was indexed past it. */
	private async checkReorg(tx: Transaction, cursor: Cursor, touched: Set<string>): Promise<Cursor> {
		if (cursor.hash == null || cursor.block < 0) return cursor;
		const block = await this.chain.block(cursor.block);
		// A node that cannot answer (lagging, failing) says nothing about a reorg: wait, do not rewind.
		if (!block)
			throw new Error(
				`staking index: the chain node did not return block ${cursor.block}; waiting for the next pass`
			);
		if (block.hash === cursor.hash) return cursor;
		const back = Math.max(this.chain.settings.startBlock - 1, cursor.block - this.chain.settings.reorgWindowBlocks);
		this.log.warn(`staking index: block ${cursor.block} is no longer canonical; re-indexing from ${back + 1}`);
		const deleted = await this.q<{ address: string }>(
			tx,
			`DELETE FROM stake_events WHERE chain_id = $1 AND block_number > $2 RETURNING address`,
			[this.chainId, back]
		);
		for (const d of deleted) touched.add(d.address);
		const backBlock = back >= 0 ? await this.chain.block(back) : null;
		return { block: back, hash: backBlock?.hash ?? null, time: backBlock?.time ?? null };
	}

	private async rebuildWallet(tx: Transaction, address: string) {
		const rows = await this.q<EventRow>(
			tx,
			`SELECT kind, amount_wei, total_wei, block_time, available_at FROM stake_events
			 WHERE chain_id = $1 AND address = $2 ORDER BY block_number, log_index`,
			[this.chainId, address]
		);
		const stake = replayStakeEvents(
			rows.map(r => ({
				kind: r.kind,
				amountWei: BigInt(r.amount_wei),
				totalWei: r.total_wei == null ? null : BigInt(r.total_wei),
				blockTime: new Date(r.block_time),
				availableAt: r.available_at ? new Date(r.available_at) : null
			}))
		);
		const [before] = await this.q<WalletRow>(
			tx,
			`SELECT * FROM stake_wallets WHERE chain_id = $1 AND address = $2 FOR UPDATE`,
			[this.chainId, address]
		);
		const owner = await this.resolveOwner(address);
		const userId = owner === undefined ? (before?.user_id ?? null) : owner;
		const positions = serialise(stake.positions);
		await this.q(
			tx,
			`INSERT INTO stake_wallets (chain_id, address, user_id, positions, active_wei, unbonding_wei, unbonding_available_at, owner_checked_at)
			 VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, CASE WHEN $8::boolean THEN now() END)
			 ON CONFLICT (chain_id, address) DO UPDATE SET user_id = $3, positions = $4::jsonb, active_wei = $5, unbonding_wei = $6,
				unbonding_available_at = $7, owner_checked_at = COALESCE(CASE WHEN $8::boolean THEN now() END, stake_wallets.owner_checked_at),
				updated_at = now()
			 RETURNING address`,
			[
				this.chainId,
				address,
				userId,
				JSON.stringify(positions),
				stake.activeWei.toString(),
				stake.unbondingWei.toString(),
				stake.unbondingAvailableAt,
				owner !== undefined
			]
		);
		const key = (ps: Array<{ amountWei: string; since: string }>) =>
			ps.map(p => `${p.amountWei}@${p.since}`).join(",");
		const changed = !before || before.user_id !== userId || key(before.positions) !== key(positions);
		if (!changed) return;
		for (const user of new Set([before?.user_id, userId])) if (user) await this.publishUser(tx, user);
	}

	/** Wallets whose owner was unknown: asks again (at most every OWNER_RECHECK_S per wallet). */
	private async resolvePendingOwners(tx: Transaction) {
		const rows = await this.q<{ address: string }>(
			tx,
			`SELECT address FROM stake_wallets WHERE chain_id = $1 AND user_id IS NULL
			 AND (owner_checked_at IS NULL OR owner_checked_at < now() - ($2 || ' seconds')::interval) LIMIT 100`,
			[this.chainId, String(OWNER_RECHECK_S)]
		);
		for (const { address } of rows) {
			const owner = await this.resolveOwner(address);
			if (owner === undefined) continue;
			await this.q(
				tx,
				`UPDATE stake_wallets SET user_id = $3, owner_checked_at = now() WHERE chain_id = $1 AND address = $2 RETURNING address`,
				[this.chainId, address, owner]
			);
			if (owner) await this.publishUser(tx, owner);
		}
	}

	/** Re-resolves one wallet's owner now (after a link or unlink). */
	async refreshOwner(address: string) {
		await this.sequelize.transaction(tx => this.rebuildWallet(tx, address.toLowerCase()));
	}

	/**
	 * A payer's positions changed. An organisation's wallets (users.walletOwner answers `org:<uuid>`)
	 * go out as `payments.org.stake.changed`, as its plan changes do: the users service keeps the
	 * stakes of accounts only, and the organisation's tier is read from payments.facts.
	 */
	private async publishUser(tx: Transaction, userId: string) {
		const positions = await this.positionsOf(userId, tx);
		const orgId = orgIdOfPayer(userId);
		if (orgId) await this.publish(tx, ORG_STAKE_CHANGED, { orgId, positions });
		else await this.publish(tx, "payments.stake.changed", { userId, positions } satisfies StakeChanged);
	}

	/** A user's active positions over all their wallets, oldest first. */
	async positionsOf(
		userId: string,
		tx: Transaction | null = null
	): Promise<Array<{ amountWei: string; since: string }>> {
		const rows = await this.q<{ positions: WalletRow["positions"] }>(
			tx,
			`SELECT positions FROM stake_wallets WHERE chain_id = $1 AND user_id = $2`,
			[this.chainId, userId]
		);
		return rows
			.flatMap(r => r.positions)
			.map(p => ({ amountWei: p.amountWei, since: p.since }))
			.sort((a, b) => a.since.localeCompare(b.since));
	}

	async walletsOf(userId: string) {
		const rows = await this.q<WalletRow>(
			null,
			`SELECT * FROM stake_wallets WHERE chain_id = $1 AND user_id = $2 ORDER BY address`,
			[this.chainId, userId]
		);
		return rows.map(r => ({
			address: r.address,
			positions: r.positions,
			activeWei: String(r.active_wei),
			unbondingWei: String(r.unbonding_wei),
			unbondingAvailableAt: r.unbonding_available_at ? new Date(r.unbonding_available_at).toISOString() : null
		}));
	}
}

function serialise(positions: Position[]) {
	return positions.map(p => ({ amountWei: p.amountWei.toString(), since: p.since.toISOString() }));
}
