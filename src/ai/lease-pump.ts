/**
 * The worker side of leasing: fills a node's free slots with leases, one lease call at a time.
 *
 * A pump asked for while a lease call is in flight is not dropped: it marks one more round, taken
 * as soon as that call is back, because a slot that freed meanwhile was not counted in the call
 * (dropping it would leave the slot idle until the next poll, up to `AI_POLL_MS`). A round that
 * leases fewer tasks than it asked for ends the pump (the queue has nothing more for this node),
 * unless such a mark arrived during it.
 *
 * Lost answers (docs/task-lifecycle.md, "Dispatch"): each call names its lease id. A call that
 * failed may still have leased tasks on the tasks node (it timed out there while the tasks node went
 * on), so its lease id is kept for `recoverForMs` and sent as `recover` with the next calls, also
 * when no slot is free; the tasks leased under it come back in such a call's answer and are started
 * then (once: a task already running here is not started again). A lease id that brought tasks back
 * is dropped: all of a call's tasks commit together, so none can come later.
 */
import { randomUUID } from "node:crypto";

export interface Leased {
	taskId: string;
	leaseId: string;
}

export interface LeasePumpDeps<T extends Leased> {
	/** Slots free now. */
	free(): number;
	/** False when leasing makes no sense now (no tasks service reachable, node stopping). */
	canLease(): boolean;
	/**
	 * Asks for up to `slots` tasks under the lease id `leaseId`, and for the tasks of the earlier lease
	 * ids in `recover`; throws on failure (the round ends, the next poll retries).
	 */
	lease(slots: number, call: { leaseId: string; recover: string[] }): Promise<T[]>;
	/** Starts a leased task (synchronously takes its slot). */
	start(task: T): void;
	/** Whether a task runs here already (a recovered lease of it is then not started). */
	isRunning(taskId: string): boolean;
	onError?(err: unknown): void;
	/** Whether a failed call may have leased tasks (default yes; no for a call that was never sent). */
	mayHaveLeased?(err: unknown): boolean;
	/** How long the lease id of a failed call is asked about (default 120 s: past any lease plus its grace). */
	recoverForMs?: number;
	now?(): number;
	newLeaseId?(): string;
}

/** At most this many lost lease ids are kept (the oldest go first); tasks.lease takes up to 64. */
const MAX_RECOVER = 64;

export class LeasePump<T extends Leased> {
	private leasing = false;
	private again = false;
	/** Lease id of a failed call → when it failed. */
	private readonly unanswered = new Map<string, number>();

	constructor(private readonly deps: LeasePumpDeps<T>) {}

	/** Whether a lease call is in flight. */
	get busy(): boolean {
		return this.leasing;
	}

	/** Lease ids of failed calls still asked about. */
	get lost(): string[] {
		return [...this.unanswered.keys()];
	}

	async pump(): Promise<void> {
		if (this.leasing) {
			this.again = true;
			return;
		}
		this.leasing = true;
		try {
			for (;;) {
				this.again = false;
				const now = this.deps.now?.() ?? Date.now();
				const keepFor = this.deps.recoverForMs ?? 120_000;
				for (const [id, at] of this.unanswered) if (now - at > keepFor) this.unanswered.delete(id);
				const free = Math.max(0, this.deps.free());
				const recover = this.lost;
				if ((free <= 0 && !recover.length) || !this.deps.canLease()) break;
				const leaseId = this.deps.newLeaseId?.() ?? randomUUID();
				let tasks: T[];
				try {
					tasks = await this.deps.lease(free, { leaseId, recover });
				} catch (err) {
					// A call for no slot leased nothing, whatever happened to it.
					if (free > 0 && (this.deps.mayHaveLeased?.(err) ?? true)) this.remember(leaseId, now);
					this.deps.onError?.(err);
					break;
				}
				if (!Array.isArray(tasks)) tasks = [];
				let fresh = 0;
				for (const t of tasks) {
					if (t.leaseId === leaseId) {
						// A fresh lease: always started (the task's previous attempt may still be winding down here).
						fresh++;
						this.deps.start(t);
						continue;
					}
					this.unanswered.delete(t.leaseId);
					if (!this.deps.isRunning(t.taskId)) this.deps.start(t);
				}
				// A call for no slot only asked about lost answers; otherwise as before.
				if ((free === 0 || fresh < free) && !this.again) break;
			}
		} finally {
			this.leasing = false;
		}
	}

	private remember(leaseId: string, at: number) {
		this.unanswered.set(leaseId, at);
		while (this.unanswered.size > MAX_RECOVER) this.unanswered.delete(this.unanswered.keys().next().value!);
	}
}
