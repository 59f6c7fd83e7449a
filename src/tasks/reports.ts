/**
 * A worker's reports on a leased task (docs/task-lifecycle.md): it succeeded, or it failed. Each
 * report is one transaction that checks the lease (409 `LEASE_LOST` for a stale one), records what
 * the model was shown, writes the next state and, when the task is done, publishes `tasks.finished`
 * durably in the same transaction. A failure goes back to the queue with a backoff when the rules
 * allow another attempt (src/tasks/rules.ts afterFailure). Settling the hold and announcing the state
 * are the caller's, after the commit. Collaborators come in as parameters, for unit tests.
 */
import { randomUUID } from "node:crypto";
import type { Transaction } from "sequelize";
import { Conflict } from "../errors";
import { afterFailure } from "./rules";
import { retryBackoffMs } from "./scheduling";
import type { TaskRow, TaskStore } from "./store";

/** What every report names: the lease, and what the model was shown (src/ai/context-frames.ts ContextRecord). */
export interface LeaseReport {
	taskId: string;
	leaseId: string;
	context?: Record<string, unknown>;
}

export interface CompleteReport extends LeaseReport {
	result: Record<string, unknown>;
	usage: Record<string, unknown>;
	costCredits: number;
}

export interface FailReport extends LeaseReport {
	error: { code: string; message: string };
	retryable: boolean;
	usage?: Record<string, unknown>;
	costCredits?: number;
}

export type ReportStore = Pick<
	TaskStore,
	"transaction" | "lockLeased" | "saveContext" | "finish" | "requeue" | "completeLeased"
>;

export interface ReportDeps {
	store: ReportStore;
	/** Publishes a durable event inside `tx` (mixins/durable-events.mixin.ts). */
	publish(tx: Transaction, topic: string, payload: unknown): Promise<unknown>;
	/** An outbox event was committed outside `publish` (the folded completion): the relay should look now. */
	published(): void;
	retry: { baseMs: number; maxMs: number };
	now(): number;
	/** The backoff's jitter, in [0, 1). */
	random(): number;
}

/** The leased row of a report, locked, with its context recorded; 409 `LEASE_LOST` when the lease is gone. */
async function lockReported(store: ReportStore, p: LeaseReport, tx: Transaction): Promise<TaskRow> {
	const cur = await store.lockLeased(p.taskId, p.leaseId, tx);
	if (!cur) throw Conflict("This lease is no longer valid", "LEASE_LOST");
	if (p.context) await store.saveContext(cur.id, cur.attempts, p.context, tx);
	return cur;
}

function finishedEvent(done: TaskRow, costCredits: number, outcome: { usage?: unknown; error?: unknown }) {
	return {
		taskId: done.id,
		userId: done.user_id,
		projectId: done.project_id,
		state: done.state,
		kind: done.kind,
		costCredits,
		...outcome
	};
}

/**
 * Success: the task is done; its cost is what it spent before plus this attempt's, capped by the
 * hold. One statement (TaskStore.completeLeased): the lease check, the context, the final state and
 * the durable `tasks.finished` event commit together.
 */
export async function completeTask(deps: ReportDeps, p: CompleteReport): Promise<TaskRow> {
	const done = await deps.store.completeLeased({
		taskId: p.taskId,
		leaseId: p.leaseId,
		now: deps.now(),
		result: p.result,
		usage: p.usage,
		costCredits: p.costCredits,
		...(p.context ? { context: p.context } : {}),
		event: { id: randomUUID(), occurredAt: new Date().toISOString() }
	});
	if (!done) throw Conflict("This lease is no longer valid", "LEASE_LOST");
	deps.published();
	return done;
}

/**
 * Failure: another attempt after a backoff (the row comes back `queued` with `not_before`), or the
 * task is done (`failed`, or `cancelled` when it was asked to stop). What the attempt spent counts.
 */
export function failTask(deps: ReportDeps, p: FailReport): Promise<TaskRow> {
	const now = deps.now();
	return deps.store.transaction(async tx => {
		const cur = await lockReported(deps.store, p, tx);
		const spent = Math.min(Number(cur.spent_credits) + (p.costCredits ?? 0), Number(cur.max_cost_credits));
		const next = afterFailure(
			{ cancelRequested: cur.cancel_requested, attempts: cur.attempts, maxAttempts: cur.max_attempts },
			{ code: p.error.code, retryable: p.retryable }
		);
		const error = { code: p.error.code, message: p.error.message, attempt: cur.attempts };
		if (next === "queued") {
			const delay = retryBackoffMs(cur.attempts, { ...deps.retry, jitter: deps.random });
			return deps.store.requeue(cur.id, { now, notBefore: now + delay, spentCredits: spent, error }, tx);
		}
		const done = await deps.store.finish(
			cur.id,
			{ state: next, now, usage: p.usage, costCredits: spent, spentCredits: spent, error },
			tx
		);
		await deps.publish(tx, "tasks.finished", finishedEvent(done, spent, { error }));
		return done;
	});
}
