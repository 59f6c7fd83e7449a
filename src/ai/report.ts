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
 */
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
	// Moleculer's "no tasks node reachable right now" (ServiceNotAvailableError) is a retryable 404.
	if ((err as { retryable?: boolean })?.retryable === true) return false;
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
	action: "tasks.complete" | "tasks.fail",
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
