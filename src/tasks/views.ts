/** The tasks service's answers over HTTP, and the SSE events of a task (response schemas; src/http/schema.ts). */
import { Type, type Static } from "@sinclair/typebox";
import { Str, Uuid, DateTime, Count, Num, Nullable, List, Named, AnyJson, Enum } from "../http/schema";
import { TIERS, TIER_ORDER, type AdmissionThresholds, type TierName } from "../domain/tiers";
import type { LeasedTask } from "./contract";
import type { QueueSnapshot } from "./queue-meta";
import { TASK_STATES } from "./rules";
import type { TaskRow } from "./store";

const State = Enum(TASK_STATES);

export const Task = Named("Task", {
	id: Uuid(),
	projectId: Nullable(Uuid()),
	kind: Str(32),
	state: State,
	tier: Str(32),
	prompt: Str(1_000_000),
	model: Nullable(Str(200)),
	models: List(Str(200), 10),
	maxOutputTokens: Nullable(Count()),
	priorityBoost: Str(32),
	position: Nullable(Count()),
	attempts: Count(),
	maxAttempts: Count(),
	cancelRequested: Type.Boolean(),
	createdAt: Nullable(DateTime()),
	enqueuedAt: Nullable(DateTime()),
	notBefore: Nullable(DateTime()),
	startedAt: Nullable(DateTime()),
	finishedAt: Nullable(DateTime()),
	nodeId: Nullable(Str(256)),
	maxCostCredits: Count(
		"the most the task may cost, at list price (the hold is this after the payer's discount, plus any boost fee)"
	),
	costCredits: Nullable(
		Count(
			"what the task cost at list price; what the payer was charged (after its discount, plus any boost fee) is the settlement in the ledger and GET /billing/usage"
		)
	),
	result: AnyJson("The task's output (kind-specific)"),
	usage: AnyJson("Token usage reported by the provider"),
	error: AnyJson("{ code, message, attempt } when failed or cancelled"),
	settlement: Str(32),
	version: Count()
});

export const Submitted = Named("Submitted", {
	task: Task,
	position: Nullable(Count()),
	expectedStartAt: Nullable(DateTime()),
	replayed: Type.Optional(Type.Boolean())
});

const TierStats = Type.Object({
	depth: Count(),
	waiting: Count(),
	expectedWaitMs: Nullable(Num(0)),
	waitP50Ms: Nullable(Num(0)),
	waitP99Ms: Nullable(Num(0)),
	waitTargetMs: Count(),
	admission: Type.Object({ deferAboveMs: Count(), rejectAboveMs: Count() })
});
export const QueueStats = Named("QueueStats", {
	at: DateTime(),
	capacity: Count(),
	running: Count(),
	p50RunMs: Nullable(Num(0)),
	tiers: Type.Record(Type.String({ maxLength: 32, pattern: "^[a-z]+$" }), TierStats)
});

/** The `data` of a state event (queued, started, completed, failed, cancelled). */
export const TaskStateData = Named("TaskStateData", {
	taskId: Uuid(),
	state: State,
	version: Count(),
	position: Type.Optional(Nullable(Count())),
	attempt: Count(),
	nodeId: Nullable(Str(256)),
	result: Type.Optional(AnyJson()),
	usage: Type.Optional(AnyJson()),
	costCredits: Type.Optional(Nullable(Count())),
	error: Type.Optional(AnyJson())
});
export type TaskStateData = Static<typeof TaskStateData>;
export const PositionData = Type.Object({ taskId: Uuid(), position: Count() });
export type PositionData = Static<typeof PositionData>;
export const DeltaData = Type.Object({ seq: Count(), text: Str(1_000_000) });
export const FallbackData = Type.Object({ seq: Count(), from: Str(200), to: Str(200), reason: Str(2000) });

/** The SSE stream's event types (GET /tasks/:id/events). */
export const TASK_EVENTS = {
	queued: TaskStateData,
	position: PositionData,
	started: TaskStateData,
	delta: DeltaData,
	fallback: FallbackData,
	completed: TaskStateData,
	failed: TaskStateData,
	cancelled: TaskStateData
};

export const views = {
	submit: Submitted,
	list: Type.Object({ items: List(Task, 200), nextCursor: Nullable(Str(512)) }),
	get: Task,
	cancel: Task,
	queueStats: QueueStats
};

const iso = (d: Date | null): string | null => (d ? new Date(d).toISOString() : null);
const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

/** A task as its owner sees it (`Task`); `context` is the latest attempt's record (src/ai/context-frames.ts). */
export function taskView(r: TaskRow, position: number | null = null, context: unknown = null) {
	const c = context as { state?: string; reason?: string; frames?: unknown[] } | null;
	return {
		id: r.id,
		projectId: r.project_id,
		kind: r.kind,
		state: r.state,
		tier: r.tier,
		prompt: r.prompt,
		model: r.request.model ?? r.prepared.models?.[0]?.model ?? null,
		models: (r.prepared.models ?? []).map(m => m.model),
		maxOutputTokens: r.prepared.maxOutputTokens ?? r.request.maxOutputTokens ?? null,
		priorityBoost: r.request.priorityBoost ?? "none",
		position: r.state === "queued" ? position : null,
		attempts: r.attempts,
		maxAttempts: r.max_attempts,
		cancelRequested: r.cancel_requested,
		createdAt: iso(r.created_at),
		enqueuedAt: iso(r.enqueued_at),
		notBefore: iso(r.not_before),
		startedAt: iso(r.started_at),
		finishedAt: iso(r.finished_at),
		nodeId: r.node_id,
		maxCostCredits: Number(r.max_cost_credits),
		costCredits: num(r.cost_credits),
		result: r.result ?? null,
		usage: r.usage ?? null,
		error: r.error ?? null,
		// Of the credits held for it: "none" while it is not finished, "pending" for the moment
		// between the final state and the ledger's settlement, then "settled" or "released".
		settlement: r.settlement,
		// What the model was shown on the latest attempt: frames (path, lines, tokens), and whether the
		// context service chose them ("selected") or it did not answer ("degraded": included paths + map).
		context: c?.frames ?? null,
		contextState: c?.state ?? null,
		contextReason: c?.reason ?? null,
		version: r.version
	};
}

/** The operators' view of a task (REPL `tasks inspect`): the owner's view plus lease and hold details. */
export function inspectView(r: TaskRow, position: number | null, context: unknown) {
	return {
		...taskView(r, position, context),
		userId: r.user_id,
		leaseId: r.lease_id,
		leaseExpiresAt: iso(r.lease_expires_at),
		settlement: r.settlement,
		boostMs: r.boost_ms
	};
}

/** What a worker gets for a leased row (src/tasks/contract.ts). */
export function leasedTask(r: TaskRow): LeasedTask {
	return {
		taskId: r.id,
		leaseId: r.lease_id!,
		attempt: r.attempts,
		userId: r.user_id,
		tier: r.tier,
		projectId: r.project_id,
		kind: r.kind,
		prompt: r.prompt,
		model: r.prepared.models?.[0]?.model ?? r.request.model ?? null,
		models: (r.prepared.models ?? []).map(m => m.model),
		maxOutputTokens: r.prepared.maxOutputTokens,
		maxCostCredits: Number(r.max_cost_credits),
		idempotencyKey: r.id,
		leaseExpiresAt: r.lease_expires_at!.toISOString(),
		submittedAt: r.created_at.toISOString(),
		rateWindowEndMs: typeof r.prepared.rateWindowEndMs === "number" ? r.prepared.rateWindowEndMs : null,
		include: r.request.include ?? null,
		exclude: r.request.exclude ?? null
	};
}

/** `QueueStats` of a snapshot, with each tier's admission thresholds. */
export function queueStatsView(s: QueueSnapshot, admission: Record<TierName, AdmissionThresholds>) {
	return {
		at: new Date(s.at).toISOString(),
		capacity: s.capacity,
		running: s.running,
		p50RunMs: s.p50RunMs,
		tiers: Object.fromEntries(
			TIER_ORDER.map(t => [
				t,
				{
					depth: s.depth[t],
					waiting: s.waiting[t],
					expectedWaitMs: Number.isFinite(s.expectedWaitMs[t]) ? s.expectedWaitMs[t] : null,
					waitP50Ms: s.waitP50Ms[t],
					waitP99Ms: s.waitP99Ms[t],
					waitTargetMs: TIERS[t].waitTargetMs,
					admission: admission[t]
				}
			])
		)
	};
}
