/**
 * Reporting a finished task's outcome (`tasks.complete` / `tasks.fail`) until the tasks service has
 * it. Finished work is paid for: an outcome that cannot be reported now (PostgreSQL cut, tasks node
 * restarting, an open circuit) is kept and sent again with backoff, never dropped and never turned
 * into a failure. The loop ends when:
 * - the tasks service accepts it ("accepted");
 * - it answers LEASE_LOST: another attempt owns the task now, or this very report was already
 *   accepted and its answer lost ("lost"); either way there is nothing left to report;
 * - the worker is stopping ("abandoned"): the lease then expires and the task runs again elsewhere.
 * A refusal other than LEASE_LOST (4xx: the report itself is invalid) is thrown: sending it again
 * cannot succeed.
 *
 * `reportDurably` keeps the outcome on disk as well (src/ai/outcome-spool.ts) for as long as the
 * loop runs, so a worker killed or stopped meanwhile sends it again when it starts (`replaySpool`).
 */
import type { OutcomeSpool, ReportAction } from "./outcome-spool";

export type ReportOutcome = "accepted" | "lost" | "abandoned";

export interface ReportDeps {
	call(action: string, params: unknown): Promise<unknown>;
	/** True once the worker is stopping. */
	stopping(): boolean;
	logger: { warn(...a: unknown[]): void };
	sleep?: (ms: number) => Promise<void>;
	baseDelayMs?: number;
	maxDelayMs?: number;
}

const isLeaseLost = (err: unknown) =>
	(err as { type?: string })?.type === "LEASE_LOST" || (err as { code?: unknown })?.code === "LEASE_LOST";

const isRefusal = (err: unknown) => {
	// Over the broker the status is `code`; a DomainError met without a hop carries it as `status`.
	const e = err as { code?: unknown; status?: unknown };
	const code = typeof e?.code === "number" ? e.code : e?.status;
	// Moleculer's "no tasks node reachable right now" (ServiceNotAvailableError) is a retryable 404;
	// "no tasks node known" (ServiceNotFoundError: a worker that has just started, the tasks nodes
	// restarting) is not marked retryable but is "not now" too.
	if ((err as { retryable?: boolean })?.retryable === true) return false;
	if ((err as { type?: string })?.type === "SERVICE_NOT_FOUND") return false;
	// 408/429 are "not now", not "never".
	return typeof code === "number" && code >= 400 && code < 500 && code !== 408 && code !== 429;
};

/** Delay before retry `n` (1-based): exponential, capped, with jitter in its upper half. */
export function reportRetryDelayMs(n: number, baseMs: number, maxMs: number, rand: () => number = Math.random) {
	const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, n - 1));
	return Math.round(exp / 2 + (rand() * exp) / 2);
}

export async function reportOutcome(
	deps: ReportDeps,
	action: ReportAction,
	params: { taskId: string; leaseId: string } & Record<string, unknown>
): Promise<ReportOutcome> {
	const sleep = deps.sleep ?? ((ms: number) => new Promise<void>(r => setTimeout(r, ms)));
	const base = deps.baseDelayMs ?? 100;
	const max = deps.maxDelayMs ?? 1000;
	for (let n = 1; ; n++) {
		try {
			await deps.call(action, params);
			return "accepted";
		} catch (err) {
			if (isLeaseLost(err)) return "lost";
			if (isRefusal(err)) throw err;
			if (deps.stopping()) return "abandoned";
			if (n === 1 || n % 10 === 0)
				deps.logger.warn(
					`${action} of task ${params.taskId} failed (${(err as Error).message}); the outcome is kept and sent again`
				);
			await sleep(reportRetryDelayMs(n, base, max));
		}
	}
}

export interface DurableReportDeps extends ReportDeps {
	/** Where outcomes are kept until the tasks service has them; null: in memory only. */
	spool?: OutcomeSpool | null;
	logger: ReportDeps["logger"] & { error?(...a: unknown[]): void; info?(...a: unknown[]): void };
}

/**
 * `reportOutcome`, with the outcome on disk until the loop ends: written (and fsynced) before the
 * first send, deleted once the tasks service accepted it or answered LEASE_LOST, kept when the worker
 * stops first ("abandoned": `replaySpool` sends it at the next start). A report the tasks service
 * refuses outright is moved aside (`.rejected`), not replayed. A spool that cannot be written (disk
 * full, read-only) costs durability only: the outcome is still sent from memory.
 */
export async function reportDurably(
	deps: DurableReportDeps,
	action: ReportAction,
	params: { taskId: string; leaseId: string } & Record<string, unknown>
): Promise<ReportOutcome> {
	let spooled = false;
	if (deps.spool) {
		try {
			await deps.spool.put(action, params);
			spooled = true;
		} catch (err) {
			deps.logger.warn(
				`outcome of task ${params.taskId} could not be spooled (${(err as Error).message}); it is kept in memory only`
			);
		}
	}
	return settle(deps, spooled ? deps.spool! : null, action, params);
}

async function settle(
	deps: DurableReportDeps,
	spool: OutcomeSpool | null,
	action: ReportAction,
	params: { taskId: string; leaseId: string } & Record<string, unknown>
): Promise<ReportOutcome> {
	let r: ReportOutcome;
	try {
		r = await reportOutcome(deps, action, params);
	} catch (err) {
		await spool?.reject(params).catch(() => undefined);
		throw err;
	}
	if (spool && r !== "abandoned")
		await spool
			.remove(params)
			.catch(e =>
				deps.logger.warn(`spooled outcome of task ${params.taskId} not removed: ${(e as Error).message}`)
			);
	return r;
}

export interface ReplaySummary {
	found: number;
	accepted: number;
	lost: number;
	abandoned: number;
	rejected: number;
	corrupt: number;
}

/**
 * Sends every outcome left in the spool (a previous run of this worker died or stopped before the
 * tasks service had it), each with `reportOutcome`'s backoff, all at once. Resolves when every one
 * has ended: accepted or lost (deleted), abandoned because this worker is stopping again (kept), or
 * refused (moved aside).
 */
export async function replaySpool(deps: DurableReportDeps, spool: OutcomeSpool): Promise<ReplaySummary> {
	const { outcomes, corrupt } = await spool.list();
	const sum: ReplaySummary = { found: outcomes.length, accepted: 0, lost: 0, abandoned: 0, rejected: 0, corrupt: 0 };
	sum.corrupt = corrupt.length;
	for (const name of corrupt)
		(deps.logger.error ?? deps.logger.warn)(`outcome spool: ${name} is not a readable outcome; moved aside`);
	if (outcomes.length)
		(deps.logger.info ?? deps.logger.warn)(
			`outcome spool: sending ${outcomes.length} outcome(s) a previous run of this worker did not report`
		);
	await Promise.all(
		outcomes.map(async o => {
			try {
				sum[await settle(deps, spool, o.action, o.params)]++;
			} catch (err) {
				sum.rejected++;
				(deps.logger.error ?? deps.logger.warn)(
					`outcome spool: ${o.action} of task ${o.params.taskId} refused (${(err as Error).message}); moved aside`
				);
			}
		})
	);
	return sum;
}
