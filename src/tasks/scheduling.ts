/**
 * The pure scheduling core of the task queue. The Postgres scheduler (tasks_queue_head and
 * tasks_lease, migration 20261126-4002: FOR UPDATE SKIP LOCKED) orders by exactly the same key, with
 * the boost ceilings and the quantum passed in from the same constants; `vstSql` builds that key for
 * the reads over the whole queue (admission backlog, positions).
 *
 * THE RULE
 *
 * 1. Eligible by time: a queued task competes only once `notBefore` (retry backoff or
 *    admission deferral) is absent or `notBefore <= now`.
 * 2. User rank: among a user's time-eligible queued tasks, sorted by (enqueuedAt, id), the
 *    k-th task (0-based) has `userRank = k`. Running tasks do not count.
 * 3. Virtual start time:
 *        vst = enqueuedAt − min(max(boostMs, 0), boostCeilingMs(tier)) + userRank × fairnessQuantumMs
 *    where boostCeilingMs(tier) = min(tier.maxBoostMs + MAX_PURCHASED_BOOST_MS, MAX_TOTAL_BOOST_MS)
 *    (the stored boost is re-bounded here, so a bad row cannot jump further).
 *    `enqueuedAt` is the original submission time and is kept across retries.
 * 4. Order: ascending (vst, enqueuedAt, id); ids compare by UTF-16 code unit (JS `<`), which
 *    matches Postgres `uuid` ordering for lowercase UUIDs and `text COLLATE "C"`.
 * 5. Caps: walking that order, a task is taken only while its user runs fewer than
 *    `tier.perUserConcurrency` tasks and its tier occupies fewer than
 *    `tierConcurrencyCap(tier, totalWorkers)` workers; counts include tasks picked earlier in
 *    the same walk. A capped task is skipped, not a barrier: later tasks may still be taken.
 *
 * WHY
 *
 * - Round-robin within a tier: the k × quantum penalty interleaves users. Users flooding at
 *   the same moment are served strictly in turn; a user arriving Δ ms after a flooder waits
 *   behind at most ⌈Δ / quantum⌉ of the flooder's tasks, not the whole flood.
 * - Bounded jump, no starvation: task b is ordered before task a only if vst(b) < vst(a)
 *   (or equal and b is older), which needs
 *        enqueuedAt(b) − enqueuedAt(a) ≤ boostCeilingMs(tier b) + userRank(a) × quantum.
 *   So a premium task overtakes only work submitted at most `maxJumpMs(tier)` before it
 *   (plus the victim's own fairness penalty, caused by the victim's own backlog); every
 *   task starts no later than any eligible task with a later vst. Example: a free task
 *   submitted before an enterprise flood starts before every enterprise task enqueued more
 *   than 180 s (the enterprise ceiling) after it.
 */
import {
	TIERS,
	TIER_ORDER,
	type AdmissionThresholds,
	type TierName,
	type TierTable,
	boostCeilingMs,
	tierConcurrencyCap
} from "../domain/tiers";

/** Penalty per earlier queued task of the same user (see THE RULE, 2–3). */
export const FAIRNESS_QUANTUM_MS = 10_000;
/** Longest Retry-After the admission controller will ever advise. */
export const MAX_RETRY_AFTER_S = 3_600;

export interface QueuedTask {
	readonly id: string;
	readonly userId: string;
	readonly tier: TierName;
	/** Epoch ms of the original submission (kept across retries). */
	readonly enqueuedAt: number;
	/** Head start stored at submission (priorityBoostMs); bounded again when ordering. */
	readonly boostMs: number;
	readonly attempts: number;
	/** Epoch ms before which the task must not start (retry backoff, deferral). */
	readonly notBefore?: number | null;
	readonly estimatedRunMs: number;
}

/** What is running now, summarised. */
export interface RunningSummary {
	readonly byUser: ReadonlyMap<string, number>;
	readonly byTier: Readonly<Partial<Record<TierName, number>>>;
	/** Size of the worker pool; tier caps are shares of it. */
	readonly totalWorkers: number;
}

export interface SchedulingOptions {
	readonly tiers?: TierTable;
	readonly fairnessQuantumMs?: number;
}

/** A time-eligible task with the values its place in the queue derives from. */
export interface RankedTask {
	readonly task: QueuedTask;
	readonly userRank: number;
	readonly vstMs: number;
}

function settings(options: SchedulingOptions | undefined): { tiers: TierTable; quantum: number } {
	return { tiers: options?.tiers ?? TIERS, quantum: options?.fairnessQuantumMs ?? FAIRNESS_QUANTUM_MS };
}

/** The task's boost re-bounded to [0, boostCeilingMs(tier)]. */
function boundedBoostMs(task: Pick<QueuedTask, "tier" | "boostMs">, tiers: TierTable = TIERS): number {
	return Math.min(Math.max(task.boostMs, 0), boostCeilingMs(task.tier, tiers));
}

/** vst = enqueuedAt − bounded boost + userRank × quantum (THE RULE, 3). */
export function virtualStartTime(
	task: Pick<QueuedTask, "tier" | "boostMs" | "enqueuedAt">,
	userRank: number,
	options?: SchedulingOptions
): number {
	const { tiers, quantum } = settings(options);
	return task.enqueuedAt - boundedBoostMs(task, tiers) + userRank * quantum;
}

/**
 * How long after task `a` a task of `tier` may be submitted and still be ordered before `a`,
 * where `victimUserRank` is a's own user rank. A task of `tier` submitted more than this after
 * `a` always comes after it (THE RULE, WHY).
 */
export function maxJumpMs(tier: TierName, victimUserRank = 0, options?: SchedulingOptions): number {
	const { tiers, quantum } = settings(options);
	return boostCeilingMs(tier, tiers) + victimUserRank * quantum;
}

function compareRanked(a: RankedTask, b: RankedTask): number {
	if (a.vstMs !== b.vstMs) return a.vstMs - b.vstMs;
	if (a.task.enqueuedAt !== b.task.enqueuedAt) return a.task.enqueuedAt - b.task.enqueuedAt;
	return a.task.id < b.task.id ? -1 : a.task.id > b.task.id ? 1 : 0;
}

function isTimeEligible(task: QueuedTask, now: number): boolean {
	return task.notBefore === undefined || task.notBefore === null || task.notBefore <= now;
}

/** Time-eligible tasks with user rank and vst, in queue order; caps not applied. */
export function rankQueue(tasks: readonly QueuedTask[], now: number, options?: SchedulingOptions): RankedTask[] {
	const byUser = new Map<string, QueuedTask[]>();
	for (const task of tasks) {
		if (!isTimeEligible(task, now)) continue;
		const own = byUser.get(task.userId);
		if (own) own.push(task);
		else byUser.set(task.userId, [task]);
	}
	const ranked: RankedTask[] = [];
	for (const own of byUser.values()) {
		own.sort((a, b) => a.enqueuedAt - b.enqueuedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
		own.forEach((task, userRank) =>
			ranked.push({ task, userRank, vstMs: virtualStartTime(task, userRank, options) })
		);
	}
	return ranked.sort(compareRanked);
}

class CapTracker {
	private readonly byUser: Map<string, number>;
	private readonly byTier: Map<TierName, number>;
	private readonly totalWorkers: number;

	constructor(
		running: RunningSummary,
		private readonly tiers: TierTable
	) {
		this.byUser = new Map(running.byUser);
		this.byTier = new Map(TIER_ORDER.map(tier => [tier, running.byTier[tier] ?? 0]));
		this.totalWorkers = running.totalWorkers;
	}

	allows(task: QueuedTask): boolean {
		const userRunning = this.byUser.get(task.userId) ?? 0;
		const tierRunning = this.byTier.get(task.tier) ?? 0;
		return (
			userRunning < this.tiers[task.tier].perUserConcurrency &&
			tierRunning < tierConcurrencyCap(task.tier, this.totalWorkers, this.tiers)
		);
	}

	take(task: QueuedTask): void {
		this.byUser.set(task.userId, (this.byUser.get(task.userId) ?? 0) + 1);
		this.byTier.set(task.tier, (this.byTier.get(task.tier) ?? 0) + 1);
	}
}

/**
 * Eligible tasks in queue order: time-eligible, and whose user and tier are below their caps
 * given `running` alone (picks do not update caps here; pickNext does).
 */
export function orderQueue(
	tasks: readonly QueuedTask[],
	running: RunningSummary,
	now: number,
	options?: SchedulingOptions
): QueuedTask[] {
	const caps = new CapTracker(running, settings(options).tiers);
	return rankQueue(tasks, now, options)
		.filter(ranked => caps.allows(ranked.task))
		.map(ranked => ranked.task);
}

/** Up to `capacity` tasks to start now, in queue order, with caps counting earlier picks. */
export function pickNext(
	tasks: readonly QueuedTask[],
	running: RunningSummary,
	now: number,
	capacity: number,
	options?: SchedulingOptions
): QueuedTask[] {
	const picked: QueuedTask[] = [];
	if (capacity <= 0) return picked;
	const caps = new CapTracker(running, settings(options).tiers);
	for (const { task } of rankQueue(tasks, now, options)) {
		if (!caps.allows(task)) continue;
		caps.take(task);
		picked.push(task);
		if (picked.length >= capacity) break;
	}
	return picked;
}

/**
 * 1-based place of each time-eligible task in queue order (caps ignored: they depend on
 * what runs when the task reaches the head). Tasks waiting for `notBefore` are absent.
 */
export function queuePositions(
	tasks: readonly QueuedTask[],
	now: number,
	options?: SchedulingOptions
): Map<string, number> {
	const positions = new Map<string, number>();
	rankQueue(tasks, now, options).forEach((ranked, index) => positions.set(ranked.task.id, index + 1));
	return positions;
}

export interface ExpectedWaitInput {
	/** 1-based queue position. */
	readonly position: number;
	/** Workers serving the queue. */
	readonly capacity: number;
	/** Median run time of recent tasks. */
	readonly p50RunMs: number;
	/** Workers free right now (default 0: all busy). */
	readonly idleWorkers?: number;
}

/**
 * Wave estimate: the first `idleWorkers` positions start at once; after that the queue
 * drains `capacity` tasks per `p50RunMs`, and a task waits for whole waves:
 *     wait = ceil(max(0, position − idleWorkers) / capacity) × p50RunMs
 * Pessimistic by up to one run (assumes busy workers have just started), which suits
 * admission control. No capacity means an unbounded wait.
 */
export function expectedWaitMs(input: ExpectedWaitInput): number {
	if (input.position < 1) throw new RangeError(`position is 1-based, got ${input.position}`);
	if (input.capacity <= 0) return Number.POSITIVE_INFINITY;
	const ahead = Math.max(0, input.position - (input.idleWorkers ?? 0));
	return Math.ceil(ahead / input.capacity) * input.p50RunMs;
}

/**
 * The most time-eligible queued tasks under which a submission is accepted however they rank: with
 * `queued` tasks queued, a newcomer queues behind at most `queued` of them, and even with no worker
 * idle expectedWaitMs(queued + 1) ≤ deferAboveMs. So with queued ≤ this bound, admissionDecision on the
 * exact count ahead is "accept", and the admission read need not rank the queue (TaskStore.admit).
 * −1 when no backlog is sure to be accepted (no capacity); Infinity when every one is (p50 of 0 ms).
 *     ceil((queued + 1) / capacity) × p50RunMs ≤ deferAboveMs  ⇔  queued ≤ floor(capacity × floor(deferAboveMs / p50RunMs)) − 1
 */
export function surelyAcceptedBacklog(input: {
	capacity: number;
	p50RunMs: number;
	thresholds: AdmissionThresholds;
}): number {
	const { capacity, p50RunMs } = input;
	const defer = input.thresholds.deferAboveMs;
	if (!(capacity > 0) || !(defer >= 0)) return -1;
	if (!(p50RunMs > 0) || defer === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
	return Math.floor(capacity * Math.floor(defer / p50RunMs)) - 1;
}

/**
 * Expected wait of a task submitted now by a user with nothing queued, per tier: its vst is
 * `now − tier.maxBoostMs`, it queues behind every time-eligible task with vst ≤ that (ties go
 * to the older task), and expectedWaitMs turns the position into time. Lower tiers see
 * longer waits for the same backlog, which with rising thresholds sheds them first.
 */
export function tierBacklogWaitMs(
	tasks: readonly QueuedTask[],
	now: number,
	load: Omit<ExpectedWaitInput, "position">,
	options?: SchedulingOptions
): Record<TierName, number> {
	const { tiers } = settings(options);
	const ranked = rankQueue(tasks, now, options);
	const result = {} as Record<TierName, number>;
	for (const tier of TIER_ORDER) {
		const newcomerVst = now - tiers[tier].maxBoostMs;
		const ahead = ranked.filter(r => r.vstMs <= newcomerVst).length;
		result[tier] = expectedWaitMs({ ...load, position: ahead + 1 });
	}
	return result;
}

export type AdmissionDecision =
	| { readonly action: "accept" }
	| { readonly action: "defer"; readonly retryAfterS: number }
	| { readonly action: "reject"; readonly retryAfterS: number };

export interface AdmissionInput {
	readonly tier: TierName;
	readonly expectedWaitMs: number;
	/** Defaults to the tier's thresholds from the tier table. */
	readonly thresholds?: AdmissionThresholds;
}

/**
 * accept when expectedWaitMs ≤ deferAboveMs; defer when ≤ rejectAboveMs; reject (HTTP 429)
 * above. `retryAfterS` is the time for the backlog to drain back to the defer threshold at
 * one ms per ms, i.e. when a new submission would be accepted outright:
 *     retryAfterS = clamp(ceil((expectedWaitMs − deferAboveMs) / 1000), 1, MAX_RETRY_AFTER_S)
 * A deferred submission is stored with enqueuedAt = notBefore = now + retryAfterS × 1000, so
 * it joins the queue (and the backlog) only then. Because the table's thresholds rise with
 * rank, a growing backlog defers and rejects free first and enterprise last.
 */
export function admissionDecision(input: AdmissionInput): AdmissionDecision {
	if (Number.isNaN(input.expectedWaitMs)) throw new RangeError("expectedWaitMs must be a number");
	const thresholds = input.thresholds ?? TIERS[input.tier].admission;
	if (input.expectedWaitMs <= thresholds.deferAboveMs) return { action: "accept" };
	const retryAfterS = Math.min(
		MAX_RETRY_AFTER_S,
		Math.max(1, Math.ceil((input.expectedWaitMs - thresholds.deferAboveMs) / 1000))
	);
	if (input.expectedWaitMs <= thresholds.rejectAboveMs) return { action: "defer", retryAfterS };
	return { action: "reject", retryAfterS };
}

export interface RetryBackoffOptions {
	readonly baseMs: number;
	readonly maxMs: number;
	/** Uniform in [0, 1); values outside are clamped. Pass a seeded source in tests. */
	readonly jitter: () => number;
}

/**
 * Delay before retry number `attempt` (1 = first retry), exponential with full jitter:
 *     ceiling = min(maxMs, baseMs × 2^(attempt − 1));  delay = floor(jitter() × ceiling)
 * so 0 ≤ delay < ceiling ≤ maxMs. The task's `notBefore` becomes now + delay.
 */
export function retryBackoffMs(attempt: number, options: RetryBackoffOptions): number {
	if (!Number.isInteger(attempt) || attempt < 1)
		throw new RangeError(`attempt must be an integer >= 1, got ${attempt}`);
	const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** (attempt - 1));
	const draw = Math.min(Math.max(options.jitter(), 0), 1 - Number.EPSILON);
	return Math.floor(draw * ceiling);
}

export interface VstSqlColumns {
	/** Defaults: t.enqueued_at, t.boost_ms, t.tier, r.user_rank. */
	readonly enqueuedAt?: string;
	readonly boostMs?: string;
	readonly tier?: string;
	readonly userRank?: string;
	/** `timestamptz` (default) or `epoch_ms` (a BIGINT column of epoch milliseconds). */
	readonly enqueuedAtType?: "timestamptz" | "epoch_ms";
}

/**
 * The user-rank window over every time-eligible queued row (THE RULE, 2), for the reads that need
 * every rank (admission backlog, positions). The lease and the queue head do not rank the whole
 * queue: they rank each user's first tasks from the index (migration 20261126-4002).
 */
export const USER_RANK_SQL = "(row_number() OVER (PARTITION BY user_id ORDER BY enqueued_at, id) - 1)";

/**
 * SQL for vst, built from the same tier table and constants as `virtualStartTime`:
 *   enqueued_at − LEAST(GREATEST(boost_ms, 0), <ceiling per tier>) ms + user_rank × quantum ms
 * Unknown tiers get ceiling 0 (CASE … ELSE 0: LEAST would ignore a NULL). With timestamptz,
 * store enqueued_at truncated to milliseconds so JS and SQL compare the same instants.
 * Order by `vst, enqueued_at, id` (id as uuid or text COLLATE "C"). Column names are
 * interpolated as written: pass SQL fragments from code, never user input. Checked once
 * against PostgreSQL 18 (seeded mixes with ties, uuid ids, both column types): same order.
 */
export function vstSql(columns: VstSqlColumns = {}, options?: SchedulingOptions): string {
	const { tiers, quantum } = settings(options);
	const enqueuedAt = columns.enqueuedAt ?? "t.enqueued_at";
	const boostMs = columns.boostMs ?? "t.boost_ms";
	const tier = columns.tier ?? "t.tier";
	const userRank = columns.userRank ?? "r.user_rank";
	const ceilings = TIER_ORDER.map(name => `WHEN '${name}' THEN ${boostCeilingMs(name, tiers)}`).join(" ");
	const boost = `LEAST(GREATEST(${boostMs}, 0), CASE ${tier} ${ceilings} ELSE 0 END)`;
	if (columns.enqueuedAtType === "epoch_ms") {
		return `(${enqueuedAt} - ${boost} + ${userRank} * ${quantum})`;
	}
	return `(${enqueuedAt} - ${boost} * interval '1 millisecond' + ${userRank} * interval '${quantum} milliseconds')`;
}
