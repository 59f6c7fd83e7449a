/**
 * The per-node relay between Moleculer broadcasts and the SSE streams a gateway node serves.
 * The api service feeds it every `tasks.state` and `tasks.stream` broadcast (each gateway node
 * receives all of them); stream handlers on that node subscribe per task. It also keeps the recent
 * deltas of each running task so a client that reconnects (to any gateway node — all of them saw
 * the same broadcasts) gets the deltas it missed after its Last-Event-ID.
 */
import { EventEmitter } from "node:events";
import type { ServiceBroker } from "moleculer";
import type { TaskState } from "./rules";

export interface TaskStateEvent {
	taskId: string;
	userId: string;
	state: TaskState;
	version: number;
	position?: number | null;
	attempt?: number;
	nodeId?: string | null;
	error?: { code: string; message: string } | null;
	costCredits?: number | null;
}

export interface TaskStreamEvent {
	taskId: string;
	userId: string;
	seq: number;
	type: "delta" | "fallback";
	text?: string;
	from?: string;
	to?: string;
	reason?: string;
}

interface Buffered {
	/** The version (running transition) these deltas belong to; null until a `running` state is seen. */
	version: number | null;
	deltas: TaskStreamEvent[];
	touched: number;
}

const MAX_DELTAS_PER_TASK = 2_000;
const MAX_TASKS = 2_000;

export class TaskStreamHub {
	private readonly emitter = new EventEmitter();
	private readonly buffers = new Map<string, Buffered>();
	private readonly openByUser = new Map<string, number>();

	constructor() {
		// One listener per open SSE stream of a task; many clients may watch the same task.
		this.emitter.setMaxListeners(0);
	}

	onState(state: TaskStateEvent) {
		if (state.state === "running")
			this.buffers.set(state.taskId, { version: state.version, deltas: [], touched: Date.now() });
		this.emitter.emit(`state:${state.taskId}`, state);
		this.emitter.emit(`user:${state.userId}`, state, null);
		if (state.state !== "running" && state.state !== "queued") {
			// Finished: a late reconnect gets the stored result, not deltas.
			this.buffers.delete(state.taskId);
		}
	}

	onStream(ev: TaskStreamEvent) {
		let buf = this.buffers.get(ev.taskId);
		if (!buf) {
			buf = { version: null, deltas: [], touched: Date.now() };
			this.buffers.set(ev.taskId, buf);
			this.evict();
		}
		buf.touched = Date.now();
		if (buf.deltas.length < MAX_DELTAS_PER_TASK) buf.deltas.push(ev);
		this.emitter.emit(`stream:${ev.taskId}`, ev);
		this.emitter.emit(`user:${ev.userId}`, null, ev);
	}

	/** Deltas of the run that started at `version` with seq > afterSeq. */
	missed(taskId: string, version: number, afterSeq: number): TaskStreamEvent[] {
		const buf = this.buffers.get(taskId);
		if (!buf || (buf.version !== null && buf.version !== version)) return [];
		return buf.deltas.filter(d => d.seq > afterSeq);
	}

	subscribe(
		taskId: string,
		handlers: { state(s: TaskStateEvent): void; stream(e: TaskStreamEvent): void }
	): () => void {
		const s = `state:${taskId}`;
		const d = `stream:${taskId}`;
		this.emitter.on(s, handlers.state);
		this.emitter.on(d, handlers.stream);
		return () => {
			this.emitter.off(s, handlers.state);
			this.emitter.off(d, handlers.stream);
		};
	}

	/**
	 * Every event of `userId`'s tasks, in arrival order: for a stream whose task does not exist yet
	 * (POST /tasks answering with the stream), held until the submission names the task.
	 */
	subscribeUser(userId: string, handler: (s: TaskStateEvent | null, e: TaskStreamEvent | null) => void): () => void {
		const k = `user:${userId}`;
		this.emitter.on(k, handler);
		return () => void this.emitter.off(k, handler);
	}

	/**
	 * Counts an open SSE stream of `userId` against `max` (per node). Returns the release function
	 * (idempotent), or null when the user already holds `max` streams here.
	 */
	openStream(userId: string, max: number): (() => void) | null {
		const n = this.openByUser.get(userId) ?? 0;
		if (n >= max) return null;
		this.openByUser.set(userId, n + 1);
		let released = false;
		return () => {
			if (released) return;
			released = true;
			const left = (this.openByUser.get(userId) ?? 1) - 1;
			if (left > 0) this.openByUser.set(userId, left);
			else this.openByUser.delete(userId);
		};
	}

	openStreams(userId: string): number {
		return this.openByUser.get(userId) ?? 0;
	}

	listenerCount(taskId: string): number {
		return this.emitter.listenerCount(`state:${taskId}`);
	}

	private evict() {
		if (this.buffers.size <= MAX_TASKS) return;
		const oldest = [...this.buffers.entries()]
			.sort((a, b) => a[1].touched - b[1].touched)
			.slice(0, this.buffers.size - MAX_TASKS);
		for (const [id] of oldest) this.buffers.delete(id);
	}
}

const hubs = new WeakMap<ServiceBroker, TaskStreamHub>();

export function taskStreamHubOf(broker: ServiceBroker): TaskStreamHub {
	let hub = hubs.get(broker);
	if (!hub) {
		hub = new TaskStreamHub();
		hubs.set(broker, hub);
	}
	return hub;
}
