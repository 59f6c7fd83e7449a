/**
 * Stopping and restarting a task by hand. A user cancels their own task: a queued one is finished
 * `cancelled` at once (its hold is then released by the caller's settlement), a running one is asked
 * to stop (the worker sees `cancel` on its next heartbeat). An operator requeues a live task.
 */
import { Conflict, NotFound } from "../errors";
import { isTerminal } from "./rules";
import type { TaskRow, TaskStore } from "./store";

export type CancelStore = Pick<TaskStore, "transaction" | "lockById" | "finish" | "requestCancel" | "requeue">;

/**
 * Cancels `taskId` for `userId` (404 for someone else's task, 409 `TASK_FINISHED` for a finished one;
 * cancelling twice is no change). `changed` with state `cancelled`: the task is done and needs its
 * settlement; `changed` otherwise: the worker is to be told.
 */
export function cancelTask(
	store: CancelStore,
	userId: string,
	taskId: string,
	now: number
): Promise<{ row: TaskRow; changed: boolean }> {
	return store.transaction(async tx => {
		const row = await store.lockById(taskId, tx);
		if (!row || row.user_id !== userId) throw NotFound("Task");
		if (row.state === "cancelled") return { row, changed: false };
		if (isTerminal(row.state))
			throw Conflict(`The task has already ${row.state}`, "TASK_FINISHED", { state: row.state });
		if (row.state === "running") return { row: await store.requestCancel(row.id, now, tx), changed: true };
		const spent = Number(row.spent_credits);
		const error = { code: "CANCELLED", message: "Cancelled by the user" };
		const done = await store.finish(
			row.id,
			{ state: "cancelled", now, spentCredits: spent, costCredits: spent, error },
			tx
		);
		return { row: done, changed: true };
	});
}

/**
 * Puts a queued or running task back at its place in the queue now (operators): a running one loses
 * its lease (the worker's next heartbeat gets `LEASE_LOST`), a queued one skips any backoff. A finished
 * task's hold is gone: 409 `TASK_FINISHED`.
 */
export function requeueTask(store: CancelStore, taskId: string, now: number): Promise<TaskRow> {
	return store.transaction(async tx => {
		const cur = await store.lockById(taskId, tx);
		if (!cur) throw NotFound("Task");
		if (cur.state !== "queued" && cur.state !== "running")
			throw Conflict(`A ${cur.state} task's hold is gone; submit it again instead`, "TASK_FINISHED", {
				state: cur.state
			});
		return store.requeue(cur.id, { now, notBefore: null }, tx);
	});
}
