/**
 * Pure rules of the tasks service besides the queue order and its caps (src/tasks/scheduling.ts):
 * what an expired lease becomes, what a finished task settles, wait percentiles, and the
 * Server-Sent Events wire format.
 */
import { createHash } from "node:crypto";
import type { TierName } from "../domain/tiers";

export const TASK_STATES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type TaskState = (typeof TASK_STATES)[number];
const TERMINAL_STATES: readonly TaskState[] = ["succeeded", "failed", "cancelled"];

export function isTerminal(state: TaskState): boolean {
	return TERMINAL_STATES.includes(state);
}

export interface Candidate {
	readonly id: string;
	readonly userId: string;
	readonly tier: TierName;
}

/** A running task whose lease expired: cancelled if cancel was asked, failed when out of attempts, else queued again. */
export function afterLeaseExpiry(task: {
	cancelRequested: boolean;
	attempts: number;
	maxAttempts: number;
}): Exclude<TaskState, "running" | "succeeded"> {
	if (task.cancelRequested) return "cancelled";
	if (task.attempts >= task.maxAttempts) return "failed";
	return "queued";
}

/**
 * Whether the sweeper takes an expired lease back. A lease whose holder is still in the cluster gets
 * `graceMs` more: a live worker whose heartbeats cannot reach PostgreSQL right now has finished or
 * is finishing, and will report; re-running its task would throw that work away. A holder that left
 * the cluster (killed, evicted) gets no grace.
 */
export function leaseIsLost(p: { expiresAt: number; now: number; holderAlive: boolean; graceMs: number }): boolean {
	return p.now > p.expiresAt + (p.holderAlive ? p.graceMs : 0);
}

/** What a worker's failure report does to the task. */
export function afterFailure(
	task: { cancelRequested: boolean; attempts: number; maxAttempts: number },
	report: { code: string; retryable: boolean }
): "queued" | "failed" | "cancelled" {
	if (report.code === "CANCELLED" || task.cancelRequested) return "cancelled";
	if (report.retryable && task.attempts < task.maxAttempts) return "queued";
	return "failed";
}

export type Settlement = { readonly action: "settle"; readonly actualCost: number } | { readonly action: "release" };

/**
 * A finished task pays what its attempts used (earlier failed attempts plus the last), never more
 * than the hold; nothing used means the hold is released.
 */
export function settlementFor(spentCredits: number, lastCostCredits: number, maxCostCredits: number): Settlement {
	const used = Math.min(Math.max(0, spentCredits) + Math.max(0, lastCostCredits), maxCostCredits);
	return used > 0 ? { action: "settle", actualCost: used } : { action: "release" };
}

/** Nearest-rank percentile (p in (0, 100]) of unsorted samples; null without samples. */
export function percentile(samples: readonly number[], p: number): number | null {
	if (!samples.length) return null;
	const sorted = [...samples].sort((a, b) => a - b);
	const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
	return sorted[Math.min(rank, sorted.length) - 1];
}

/** Fingerprint of a submission's body, so an Idempotency-Key reused for different work is refused. */
export function requestHash(body: unknown): string {
	return createHash("sha256").update(stableJson(body)).digest("base64url");
}

function stableJson(v: unknown): string {
	if (v === null || typeof v !== "object") return JSON.stringify(v) ?? "null";
	if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
	const entries = Object.entries(v as Record<string, unknown>)
		.filter(([, x]) => x !== undefined)
		.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
	return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableJson(x)}`).join(",")}}`;
}

// ---- Server-Sent Events ----------------------------------------------------------------------

/**
 * Event ids are `<version>:<seq>`: `version` is the task's transition counter (state events carry
 * seq 0), deltas carry the worker's delta counter + 1 (workers count from 0) within the run that
 * version started. Ids therefore
 * grow along the stream, and a reconnecting client's Last-Event-ID says which state it saw last
 * and how far into that run's deltas it got.
 */
export interface EventId {
	readonly version: number;
	readonly seq: number;
}

function formatEventId(id: EventId): string {
	return `${id.version}:${id.seq}`;
}

export function parseLastEventId(raw: unknown): EventId | null {
	if (typeof raw !== "string") return null;
	const m = /^(\d{1,9}):(\d{1,9})$/.exec(raw.trim());
	return m ? { version: Number(m[1]), seq: Number(m[2]) } : null;
}

/** One SSE frame; data is JSON on one line (JSON.stringify escapes newlines). */
export function sseFrame(event: string, data: unknown, id?: EventId): string {
	return `${id ? `id: ${formatEventId(id)}\n` : ""}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** The SSE event name of a task state. */
export function stateEventName(state: TaskState): string {
	switch (state) {
		case "queued":
			return "queued";
		case "running":
			return "started";
		case "succeeded":
			return "completed";
		default:
			return state;
	}
}

/** Whether a client that last saw `last` still needs the state event of `version`. */
export function needsStateEvent(last: EventId | null, version: number): boolean {
	return !last || last.version < version;
}
