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

/**
 * GET /tasks/:id/events — runs on the gateway node that holds the connection. It subscribes to the
 * node's stream hub first (fed by the `tasks.state` / `tasks.stream` broadcasts every gateway node
 * receives), then reads the task, so no transition can fall between the read and the subscription;
 * events not newer than what was already written are dropped by version and seq.
 */
async function taskEvents(
	this: unknown,
	req: IncomingMessage & { $ctx?: unknown },
	res: ServerResponse,
	params: Record<string, string>
): Promise<void> {
	const api = this as Service;
	const ctx = req.$ctx as Context<unknown, RequestMeta>;
	const cfg = runtimeOf(api.broker).config.tasks;
	const hub = taskStreamHubOf(api.broker);
	const meta = queueMetaOf(api.broker);
	const id = params.id;
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

	let ready = false;
	const early: Array<() => void> = [];
	let version = 0;
	let lastSeq = 0;
	let position: number | null = null;
	let state: TaskState = "queued";
	let closed = false;
	const timers: NodeJS.Timeout[] = [];

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
	const unsubscribe = hub.subscribe(id, { state: onState, stream: onStream });
	req.on("close", finish);
	res.on("close", finish);

	// The cluster-wide place and the task are asked for together (one round trip less before the first
	// frame); a refused place still answers 429 before a 404, and a task read for a refused stream is
	// dropped.
	const [placeR, taskR] = await Promise.allSettled([
		slots
			? slots.acquire(userId, cfg.sseMaxPerUser).catch((err: unknown) => {
					api.logger.warn(
						`SSE stream places not counted in Redis (admitted on this node's count): ${(err as Error).message}`
					);
					return () => undefined;
				})
			: null,
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
	const task = taskR.value as TaskView;

	res.writeHead(200, {
		"Content-Type": "text/event-stream; charset=utf-8",
		// Authenticated: never stored (no-store); no-transform keeps proxies from buffering the stream.
		"Cache-Control": "no-store, no-transform",
		Connection: "keep-alive",
		"X-Accel-Buffering": "no",
		"X-Request-Id": ctx.requestID ?? ""
	});
	write("retry: 2000\n\n");
	const last: EventId | null = parseLastEventId(req.headers["last-event-id"]);
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
				422: ["IDEMPOTENCY_KEY_REUSED", "PROMPT_TOO_LONG"]
			},
			auth: "required",
			status: 202,
			// 200: an Idempotency-Key seen before answers with the task it made (replayed: true).
			alsoStatus: [200],
			idempotent: true,
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
