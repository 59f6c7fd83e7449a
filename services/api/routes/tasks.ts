/** REST routes of the tasks service (docs/tasks.md), including the SSE stream of a task's events. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Context, Service } from "moleculer";
import { currentUser, type RequestMeta } from "../../../src/kit/service";
import { CAP_CODES } from "../../../src/payments/spend-caps";
import { TooManyRequests } from "../../../src/errors";
import { runtimeOf } from "../../../src/runtime/runtime";
import { queueMetaOf } from "../../../src/tasks/queue-meta";
import {
	type EventId,
	type TaskState,
	isTerminal,
	needsStateEvent,
	parseLastEventId,
	sseFrame,
	stateEventName
} from "../../../src/tasks/rules";
import { taskStreamHubOf, type TaskStateEvent, type TaskStreamEvent } from "../../../src/tasks/stream-hub";
import { streamSlotsOf } from "../../../src/tasks/stream-slots";
import type { RouteSpec } from "../../../src/http/route-spec";
import { views, TASK_EVENTS, type TaskStateData, type PositionData } from "../../../src/tasks/views";

const tag = "tasks";

/** The fields of `tasks.get`'s answer the stream uses. */
interface TaskView {
	id: string;
	state: TaskState;
	version: number;
	position: number | null;
	attempts: number;
	nodeId: string | null;
	result: unknown;
	usage: unknown;
	costCredits: number | null;
	error: unknown;
	cancelRequested: boolean;
}

function stateData(t: TaskView): TaskStateData {
	return {
		taskId: t.id,
		state: t.state,
		version: t.version,
		position: t.state === "queued" ? t.position : undefined,
		attempt: t.attempts,
		nodeId: t.nodeId,
		...(t.state === "succeeded" ? { result: t.result, usage: t.usage, costCredits: t.costCredits } : {}),
		...(t.state === "failed" || t.state === "cancelled"
			? { error: t.error, usage: t.usage, costCredits: t.costCredits }
			: {})
	};
}

/** Where a stream's task comes from: an existing task (GET), or a submission made for the stream (POST). */
type StreamSource = { id: string } | { submit: (ctx: Context<unknown, RequestMeta>) => Promise<{ task: TaskView }> };

/**
 * A task's SSE stream, on the gateway node that holds the connection: GET /tasks/:id/events, and
 * POST /tasks with `Accept: text/event-stream` (the submission answered with its own stream).
 *
 * GET subscribes to the node's stream hub (fed by the `tasks.state` / `tasks.stream` broadcasts every
 * gateway node receives) first, then reads the task, so no transition can fall between the read and
 * the subscription. POST takes the stream's places first (a refused stream submits nothing), then
 * listens to every event of the user's tasks, submits, and keeps the new task's events (the worker may
 * start at once: the lease at insert); the submission's answer is the task as read. Either way, events
 * not newer than what was already written are dropped by version and seq.
 */
async function streamTask(
	api: Service,
	req: IncomingMessage & { $ctx?: unknown },
	res: ServerResponse,
	source: StreamSource
): Promise<void> {
	const ctx = req.$ctx as Context<unknown, RequestMeta>;
	const cfg = runtimeOf(api.broker).config.tasks;
	const hub = taskStreamHubOf(api.broker);
	const meta = queueMetaOf(api.broker);
	let id = "id" in source ? source.id : "";
	// Each open stream holds a socket, listeners and timers: a per-user cap keeps one client from
	// exhausting them. Counted across the cluster in Redis, and on this node as the backstop that
	// also holds when Redis cannot answer.
	const userId = currentUser(ctx).id;
	const tooMany = () =>
		TooManyRequests(
			`At most ${cfg.sseMaxPerUser} event streams may be open at once; close one first`,
			5,
			"TOO_MANY_STREAMS"
		);
	const releaseHere = hub.openStream(userId, cfg.sseMaxPerUser);
	if (!releaseHere) throw tooMany();
	let releaseCluster: (() => void) | null = null;
	const slots = streamSlotsOf(api.broker);
	const release = () => {
		releaseHere();
		releaseCluster?.();
	};
	const acquirePlace = () =>
		slots
			? slots.acquire(userId, cfg.sseMaxPerUser).catch((err: unknown) => {
					api.logger.warn(
						`SSE stream places not counted in Redis (admitted on this node's count): ${(err as Error).message}`
					);
					return () => undefined;
				})
			: null;

	let ready = false;
	const early: Array<() => void> = [];
	let version = 0;
	let lastSeq = 0;
	let position: number | null = null;
	let state: TaskState = "queued";
	let closed = false;
	const timers: NodeJS.Timeout[] = [];
	let unsubscribe: () => void = () => undefined;

	const write = (chunk: string) => {
		if (!closed && !res.writableEnded) res.write(chunk);
	};
	const finish = () => {
		if (closed) return;
		closed = true;
		unsubscribe();
		release();
		for (const t of timers) clearInterval(t);
		if (!res.writableEnded) res.end();
	};
	const writeState = (t: TaskView) => {
		version = t.version;
		lastSeq = 0;
		state = t.state;
		if (t.state === "queued") position = t.position;
		write(sseFrame(stateEventName(t.state), stateData(t), { version: t.version, seq: 0 }));
		if (isTerminal(t.state)) finish();
	};
	const onState = (s: TaskStateEvent) => {
		if (!ready) return void early.push(() => onState(s));
		if (s.version <= version || closed) return;
		if (isTerminal(s.state)) {
			// The broadcast is a hint; the stored row has the result and final usage.
			ctx.call("tasks.get", { id })
				.then(t => writeState(t as TaskView))
				.catch(() => finish());
			return;
		}
		writeState({
			id,
			state: s.state,
			version: s.version,
			position: s.position ?? null,
			attempts: s.attempt ?? 0,
			nodeId: s.nodeId ?? null,
			result: null,
			usage: null,
			costCredits: null,
			error: null,
			cancelRequested: false
		});
	};
	const onStream = (e: TaskStreamEvent) => {
		if (!ready) return void early.push(() => onStream(e));
		if (closed || state !== "running") return;
		writeDelta(e);
	};
	const handlers = { state: onState, stream: onStream };
	// The response's close is the client going away (a POST's request has closed once its body was read).
	if ("id" in source) req.on("close", finish);
	res.on("close", finish);

	let task: TaskView;
	if ("id" in source) {
		unsubscribe = hub.subscribe(id, handlers);
		// The cluster-wide place and the task are asked for together (one round trip less before the
		// first frame); a refused place still answers 429 before a 404, and a task read for a refused
		// stream is dropped.
		const [placeR, taskR] = await Promise.allSettled([
			acquirePlace(),
			ctx.call("tasks.get", { id }) // 404 for someone else's task
		]);
		const place = placeR.status === "fulfilled" ? placeR.value : null;
		// The client went away meanwhile: finish() gave back this node's place; the cluster's is given back here.
		if (closed) return void place?.();
		if (slots && !place) {
			closed = true;
			unsubscribe();
			releaseHere();
			throw tooMany();
		}
		releaseCluster = place;
		if (taskR.status === "rejected") {
			closed = true;
			unsubscribe();
			release();
			throw taskR.reason;
		}
		task = taskR.value as TaskView;
	} else {
		// The places first: a stream refused here submits nothing.
		const place = await acquirePlace();
		if (closed) return void place?.();
		if (slots && !place) {
			closed = true;
			releaseHere();
			throw tooMany();
		}
		releaseCluster = place;
		// Every event of this user's tasks from before the submission is sent; the new task's are kept.
		const pending: Array<[TaskStateEvent | null, TaskStreamEvent | null]> = [];
		const stopUser = hub.subscribeUser(userId, (s, e) => void pending.push([s, e]));
		let submitted: { task: TaskView };
		try {
			submitted = await source.submit(ctx);
		} catch (err) {
			stopUser();
			if (!closed) {
				closed = true;
				release();
			}
			throw err;
		}
		stopUser();
		task = submitted.task;
		id = task.id;
		// In the same turn as stopUser(): nothing of the new task falls between the two subscriptions.
		unsubscribe = hub.subscribe(id, handlers);
		for (const [s, e] of pending) {
			if (s?.taskId === id) onState(s);
			else if (e?.taskId === id) onStream(e);
		}
		// The client went away while the task was submitted: it runs and settles as any other.
		if (closed) return void unsubscribe();
	}

	res.writeHead(200, {
		"Content-Type": "text/event-stream; charset=utf-8",
		// Authenticated: never stored (no-store); no-transform keeps proxies from buffering the stream.
		"Cache-Control": "no-store, no-transform",
		Connection: "keep-alive",
		"X-Accel-Buffering": "no",
		"X-Request-Id": ctx.requestID ?? ""
	});
	write("retry: 2000\n\n");
	const last: EventId | null = "id" in source ? parseLastEventId(req.headers["last-event-id"]) : null;
	if (needsStateEvent(last, task.version)) writeState(task);
	else {
		version = task.version;
		state = task.state;
		position = task.position;
		lastSeq = last && last.version === task.version ? last.seq : 0;
		if (isTerminal(task.state)) return finish();
	}
	if (closed) return;
	if (state === "running") {
		for (const d of hub.missed(id, version, lastSeq - 1)) writeDelta(d);
	}
	ready = true;
	for (const fn of early.splice(0)) fn();

	timers.push(
		setInterval(() => write(": keep-alive\n\n"), cfg.sseKeepAliveMs),
		setInterval(() => {
			if (state !== "queued" || closed) return;
			meta.position(id)
				.then(p => {
					if (p !== null && p !== position && state === "queued" && !closed) {
						position = p;
						write(sseFrame("position", { taskId: id, position: p } satisfies PositionData));
					}
				})
				.catch(() => undefined);
		}, cfg.ssePositionMs)
	);
	for (const t of timers) t.unref();

	/** Workers number deltas from 0; the id's seq is theirs + 1, so `<version>:0` stays the state event. */
	function writeDelta(e: TaskStreamEvent) {
		const idSeq = e.seq + 1;
		if (idSeq <= lastSeq) return;
		lastSeq = idSeq;
		write(
			sseFrame(
				e.type,
				e.type === "delta"
					? { seq: e.seq, text: e.text }
					: { seq: e.seq, from: e.from, to: e.to, reason: e.reason },
				{ version, seq: idSeq }
			)
		);
	}
}

/** GET /tasks/:id/events */
function taskEvents(
	this: unknown,
	req: IncomingMessage & { $ctx?: unknown },
	res: ServerResponse,
	params: Record<string, string>
): Promise<void> {
	return streamTask(this as Service, req, res, { id: params.id });
}

/** POST /tasks with `Accept: text/event-stream`: the submission, answered with the new task's stream. */
function submitAndStream(
	this: unknown,
	req: IncomingMessage & { $ctx?: unknown; $params?: Record<string, unknown> },
	res: ServerResponse
): Promise<void> {
	const params = req.$params ?? {};
	return streamTask(this as Service, req, res, {
		submit: ctx => ctx.call("tasks.submit", params) as Promise<{ task: TaskView }>
	});
}

export function tasksRoutes(): RouteSpec[] {
	return [
		{
			method: "POST",
			path: "/tasks",
			action: "tasks.submit",
			response: views.submit,
			errors: {
				// No credits on the payer's wallet, or a monthly spend cap reached (docs/payments.md).
				402: ["INSUFFICIENT_CREDITS", ...Object.values(CAP_CODES)],
				404: ["NOT_FOUND"],
				422: ["IDEMPOTENCY_KEY_REUSED", "PROMPT_TOO_LONG"],
				// Admission: the tier's queue is too long (Retry-After). With Accept: text/event-stream, also
				// the user's open streams at the cap (nothing is submitted).
				429: ["QUEUE_FULL", "TOO_MANY_STREAMS"]
			},
			auth: "required",
			status: 202,
			// 200: an Idempotency-Key seen before answers with the task it made (replayed: true).
			alsoStatus: [200],
			idempotent: true,
			// Accept: text/event-stream: answered with the new task's event stream (as GET /tasks/:id/events).
			acceptStream: submitAndStream,
			events: TASK_EVENTS,
			summary: "Submit an AI task → 202, queue position, expected start",
			tag
		},
		{
			method: "GET",
			path: "/tasks",
			action: "tasks.list",
			response: views.list,
			auth: "required",
			summary: "Your tasks, newest first",
			tag
		},
		{
			method: "GET",
			path: "/tasks/:id",
			action: "tasks.get",
			response: views.get,
			auth: "required",
			summary: "One task with result, usage and cost",
			tag
		},
		{
			method: "GET",
			path: "/tasks/:id/events",
			action: "tasks.get",
			response: views.get,
			auth: "required",
			summary: "Server-Sent Events: queued, position, started, delta, completed/failed/cancelled",
			tag,
			stream: taskEvents,
			events: TASK_EVENTS,
			errors: { 429: ["TOO_MANY_STREAMS"] }
		},
		{
			method: "POST",
			path: "/tasks/:id/cancel",
			action: "tasks.cancel",
			response: views.cancel,
			errors: { 409: ["TASK_FINISHED"] },
			auth: "required",
			summary: "Cancel queued or running work; the unused hold is released",
			tag
		},
		{
			method: "GET",
			path: "/queue/stats",
			action: "tasks.queueStats",
			response: views.queueStats,
			auth: "required",
			summary: "Depth and expected wait per tier",
			tag
		}
	];
}
