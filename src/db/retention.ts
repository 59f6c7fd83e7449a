/**
 * Retention: rows past their retention are deleted on a schedule, in bounded batches, by one node at a
 * time (issue #16 part 3; docs/retention.md). A rule names a table, how long its rows are kept, and one
 * batch as a single statement: it deletes at most `limit` rows older than the cutoff and answers how
 * many (a rule may write what it keeps of them in the same statement: the task summaries). A batch is
 * its own transaction, so a run never holds locks on more than one batch of rows, and a run stops after
 * `maxBatches` batches of a rule (the next run goes on).
 *
 * One node at a time: every batch (and a dry run's count) is a transaction that first takes the
 * transaction-scoped advisory lock of the run's name (`pg_try_advisory_xact_lock`); a node that does
 * not get it at its first batch skips the run, and one that loses it between batches ends its run
 * there (the other node goes on). No lock outlives its transaction, so this also holds behind a
 * transaction-mode pooler (PgBouncer), where a session lock would stay on whichever server
 * connection took it and its unlock could go to another.
 */
import type { Client as PgClient } from "pg";
import type { MetricRegistry } from "moleculer";
import type { Sequelize } from "sequelize";
import type { EnvReader } from "../env-reader";

const DAY_MS = 86_400_000;

export interface PruneRule {
	/** The table (the metric's label). */
	table: string;
	/** Days a row is kept after the time the rule reads; 0: kept forever (the rule never runs). */
	retentionDays: number;
	/** One batch: binds $1 (the cutoff) and $2 (most rows), answers one row `{ n }`: the rows deleted. */
	batchSql: string;
	/** The rows a run would delete now: binds $1 (the cutoff), answers one row `{ n }`. */
	countSql: string;
}

export interface RetentionConfig {
	/** How often each node tries a run (the one holding the lock does it). */
	everyMs: number;
	/** Most rows one batch deletes. */
	batchRows: number;
	/** Most batches per rule and run. */
	maxBatches: number;
	/** Pause between two batches (other work gets the table and the disk in between). */
	pauseMs: number;
	/** Days kept, per table family (0: forever). */
	days: {
		tasks: number;
		outbox: number;
		inbox: number;
		deadLetters: number;
		sessions: number;
		userTokens: number;
		mailOutbox: number;
	};
}

export function loadRetentionConfig(r: EnvReader): RetentionConfig {
	const days = (name: string, def: number) => r.int(name, def, 0, 36_500);
	return {
		everyMs: r.int("RETENTION_EVERY_MS", 600_000, 1_000, 86_400_000),
		batchRows: r.int("RETENTION_BATCH_ROWS", 5_000, 1, 100_000),
		maxBatches: r.int("RETENTION_MAX_BATCHES", 100, 1, 100_000),
		pauseMs: r.int("RETENTION_PAUSE_MS", 50, 0, 60_000),
		days: {
			tasks: days("TASKS_RETENTION_DAYS", 30),
			outbox: days("OUTBOX_RETENTION_DAYS", 7),
			inbox: days("INBOX_RETENTION_DAYS", 30),
			deadLetters: days("DEAD_LETTER_RETENTION_DAYS", 90),
			sessions: days("SESSION_RETENTION_DAYS", 7),
			userTokens: days("USER_TOKEN_RETENTION_DAYS", 7),
			mailOutbox: days("MAIL_OUTBOX_RETENTION_DAYS", 30)
		}
	};
}

/** The cutoff of a rule at `now`: rows older than it go; null when the rule keeps its rows forever. */
export function cutoffOf(retentionDays: number, now: number): Date | null {
	if (!Number.isFinite(retentionDays) || retentionDays <= 0) return null;
	return new Date(now - retentionDays * DAY_MS);
}

/**
 * A rule for a table whose rows carry nothing else worth keeping: `where` selects the rows past the
 * cutoff ($1), `key` is the primary key (a column list for a composite one).
 */
export function deleteRule(p: { table: string; retentionDays: number; key: string; where: string }): PruneRule {
	return {
		table: p.table,
		retentionDays: p.retentionDays,
		batchSql: `WITH gone AS (
				DELETE FROM ${p.table} WHERE (${p.key}) IN (
					SELECT ${p.key} FROM ${p.table} WHERE ${p.where} LIMIT $2 FOR UPDATE SKIP LOCKED
				) RETURNING 1
			) SELECT count(*)::integer AS n FROM gone`,
		countSql: `SELECT count(*)::integer AS n FROM ${p.table} WHERE ${p.where}`
	};
}

export interface PruneReport {
	/** Per table: rows deleted (a dry run: rows that would be). */
	tables: Record<string, number>;
	dryRun: boolean;
	/** Tables a run stopped on after its batch budget, its last batch full (more rows may be due; the next run goes on). */
	unfinished: string[];
}

export interface PruneOptions {
	now: number;
	batchRows: number;
	maxBatches: number;
	pauseMs: number;
	dryRun?: boolean;
	/** Rows deleted by a batch, as they commit (the metric). */
	onPruned?(table: string, rows: number): void;
	/** Asked between batches: true ends the run (the service is stopping). */
	stopping?(): boolean;
}

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

/**
 * Runs `rules` once under the advisory lock named `lockName` (taken per batch); null when another node
 * holds it at the first batch. A dry run takes the lock too (so it does not count rows a running prune
 * is deleting) and deletes nothing.
 */
export async function runPrune(
	sequelize: Sequelize,
	lockName: string,
	rules: readonly PruneRule[],
	o: PruneOptions
): Promise<PruneReport | null> {
	const pool = sequelize.connectionManager;
	const conn = (await pool.getConnection({ type: "write" })) as PgClient;
	/** One statement in a transaction holding the run's lock; null when another node holds it. */
	const locked = async (sql: string, bind: unknown[]): Promise<number | null> => {
		await conn.query("BEGIN");
		try {
			const { rows } = await conn.query<{ locked: boolean }>(
				`SELECT pg_try_advisory_xact_lock(hashtext('forgefluid retention'), hashtext($1)) AS locked`,
				[lockName]
			);
			if (!rows[0]?.locked) {
				await conn.query("ROLLBACK");
				return null;
			}
			const r = await conn.query<{ n: number }>(sql, bind);
			await conn.query("COMMIT");
			return Number(r.rows[0]?.n ?? 0);
		} catch (err) {
			await conn.query("ROLLBACK").catch(() => undefined);
			throw err;
		}
	};
	try {
		const report: PruneReport = { tables: {}, dryRun: !!o.dryRun, unfinished: [] };
		let first = true;
		for (const rule of rules) {
			const cutoff = cutoffOf(rule.retentionDays, o.now);
			report.tables[rule.table] ??= 0;
			if (!cutoff) continue;
			for (let b = 0; ; b++) {
				if (o.stopping?.()) return report;
				if (b >= o.maxBatches) {
					report.unfinished.push(rule.table);
					break;
				}
				const n = await locked(
					o.dryRun ? rule.countSql : rule.batchSql,
					o.dryRun ? [cutoff] : [cutoff, o.batchRows]
				);
				if (n === null) {
					if (first) return null;
					report.unfinished.push(rule.table);
					return report;
				}
				first = false;
				report.tables[rule.table] += n;
				if (o.dryRun) break;
				if (n > 0) o.onPruned?.(rule.table, n);
				if (n < o.batchRows) break;
				if (o.pauseMs > 0) await sleep(o.pauseMs);
			}
		}
		// A run with nothing to do (every rule keeps its rows) still answers whether the lock was free.
		if (first && (await locked("SELECT 0 AS n", [])) === null) return null;
		return report;
	} finally {
		pool.releaseConnection(conn);
	}
}

/** The retention counter, registered once per broker: `retention_pruned_rows_total{table}`. */
export function registerRetentionMetrics(m: MetricRegistry): void {
	if (!m.hasMetric("retention.pruned.rows.total"))
		m.register({
			type: "counter",
			name: "retention.pruned.rows.total",
			labelNames: ["table"],
			description: "Rows deleted by retention, per table (finished tasks, outbox, inbox, sessions, ...)"
		});
}
