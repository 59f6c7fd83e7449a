/** The tasks service's settings, read from the environment (listed in .env.example and docs/tasks.md). */
import type { EnvReader } from "../env-reader";
import { TIERS, TIER_ORDER, type AdmissionThresholds, type TierName } from "../domain/tiers";

export interface TasksConfig {
	/** How long a lease lasts without a heartbeat; workers heartbeat well inside it. */
	leaseMs: number;
	/** How often each node sweeps expired leases and unfinished settlements. */
	sweepMs: number;
	/**
	 * Extra time an expired lease is left alone while the node holding it is still in the cluster
	 * (it is alive and will report: its heartbeats and report may just be failing to reach PostgreSQL).
	 */
	leaseGraceMs: number;
	/** Attempts a task gets (first run included) before a retryable failure becomes terminal. */
	maxAttempts: number;
	retryBaseMs: number;
	retryMaxMs: number;
	/** How often the queue metadata (positions, depths, waits) is rebuilt from PostgreSQL into Redis. */
	snapshotMs: number;
	/** Median run time assumed until finished tasks give real samples. */
	defaultRunMs: number;
	/** Worker slots assumed when no ai node is registered (estimates, not dispatch). */
	minCapacity: number;
	/** Most tasks one lease call may take. */
	maxLeaseSlots: number;
	/** Admission thresholds per tier; default to the tier table's. */
	admission: Record<TierName, AdmissionThresholds>;
	sseKeepAliveMs: number;
	/** How often an SSE stream of a queued task looks for a changed position. */
	ssePositionMs: number;
	/** Open event streams one user may hold on one gateway node; more get 429 TOO_MANY_STREAMS. */
	sseMaxPerUser: number;
	/** How long a gateway node's claim on a stream place lasts unless refreshed (it refreshes every third of it). */
	sseSlotTtlMs: number;
	promptMaxChars: number;
}

export function loadTasksConfig(r: EnvReader): TasksConfig {
	const admission = {} as Record<TierName, AdmissionThresholds>;
	for (const tier of TIER_ORDER) {
		const up = tier.toUpperCase();
		const deferAboveMs = r.int(
			`TASKS_ADMISSION_${up}_DEFER_MS`,
			TIERS[tier].admission.deferAboveMs,
			0,
			7 * 86_400_000
		);
		const rejectAboveMs = r.int(
			`TASKS_ADMISSION_${up}_REJECT_MS`,
			TIERS[tier].admission.rejectAboveMs,
			0,
			7 * 86_400_000
		);
		if (rejectAboveMs < deferAboveMs)
			r.problems.push(
				`TASKS_ADMISSION_${up}_REJECT_MS must be at least TASKS_ADMISSION_${up}_DEFER_MS (${deferAboveMs})`
			);
		admission[tier] = { deferAboveMs, rejectAboveMs };
	}
	const retryBaseMs = r.int("TASKS_RETRY_BASE_MS", 1_000, 1, 3_600_000);
	const retryMaxMs = r.int("TASKS_RETRY_MAX_MS", 300_000, 1, 86_400_000);
	if (retryMaxMs < retryBaseMs) r.problems.push("TASKS_RETRY_MAX_MS must be at least TASKS_RETRY_BASE_MS");
	return {
		leaseMs: r.int("TASKS_LEASE_MS", 30_000, 500, 3_600_000),
		sweepMs: r.int("TASKS_SWEEP_MS", 1_000, 50, 600_000),
		leaseGraceMs: r.int("TASKS_LEASE_GRACE_MS", 30_000, 0, 3_600_000),
		maxAttempts: r.int("TASKS_MAX_ATTEMPTS", 3, 1, 100),
		retryBaseMs,
		retryMaxMs,
		snapshotMs: r.int("TASKS_SNAPSHOT_MS", 1_000, 50, 600_000),
		defaultRunMs: r.int("TASKS_DEFAULT_RUN_MS", 30_000, 1, 3_600_000),
		minCapacity: r.int("TASKS_MIN_CAPACITY", 1, 1, 100_000),
		maxLeaseSlots: r.int("TASKS_MAX_LEASE_SLOTS", 64, 1, 10_000),
		admission,
		sseKeepAliveMs: r.int("TASKS_SSE_KEEPALIVE_MS", 15_000, 100, 600_000),
		ssePositionMs: r.int("TASKS_SSE_POSITION_MS", 1_000, 50, 600_000),
		sseMaxPerUser: r.int("TASKS_SSE_MAX_PER_USER", 32, 1, 100_000),
		sseSlotTtlMs: r.int("TASKS_SSE_SLOT_TTL_MS", 30_000, 300, 3_600_000),
		promptMaxChars: r.int("TASKS_PROMPT_MAX_CHARS", 200_000, 1, 10_000_000)
	};
}
