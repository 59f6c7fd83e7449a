/** The tasks service's answers over HTTP, and the SSE events of a task (response schemas; src/http/schema.ts). */
import { Type, type Static } from "@sinclair/typebox";
import { Str, Uuid, DateTime, Count, Num, Nullable, List, Named, AnyJson, Enum } from "../http/schema";
import { TASK_STATES } from "./rules";

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
	maxCostCredits: Count(),
	costCredits: Nullable(Count()),
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
