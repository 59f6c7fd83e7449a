/**
 * The worker's slots offered to submissions on its own node (docs/task-lifecycle.md, "Dispatch": the
 * lease at insert). A claim holds one slot from the moment the tasks service asks until its insert
 * answered: the slot then runs the task the insert leased, or is given back when the task was queued
 * (or the insert failed). Claimed slots are not free to the lease pump or to compatible requests, so
 * a slot is never promised twice.
 */
import { randomUUID } from "node:crypto";
import type { CheckedAccess, LeasedTask, LocalWorker, WorkerSlotClaim } from "../tasks/contract";

export interface SlotClaimDeps {
	nodeId: string;
	/** Slots free now, claimed ones already left out. */
	free(): number;
	/** False while the worker is stopping. */
	canClaim(): boolean;
	/** Runs a task leased in its insert (synchronously takes a slot, as a leased task does). */
	start(task: LeasedTask, access?: CheckedAccess): void;
	/** A claim was given back: its slot is free again. */
	released(): void;
	newLeaseId?(): string;
}

export class SlotClaims implements LocalWorker {
	private held = 0;

	constructor(private readonly deps: SlotClaimDeps) {}

	get nodeId(): string {
		return this.deps.nodeId;
	}

	/** Slots claimed and not yet started or given back. */
	get count(): number {
		return this.held;
	}

	claim(): WorkerSlotClaim | null {
		if (!this.deps.canClaim() || this.deps.free() <= 0) return null;
		this.held++;
		let open = true;
		const close = () => {
			if (!open) return false;
			open = false;
			this.held--;
			return true;
		};
		return {
			leaseId: this.deps.newLeaseId?.() ?? randomUUID(),
			start: (task, access) => {
				if (close()) this.deps.start(task, access);
			},
			release: () => {
				if (close()) this.deps.released();
			}
		};
	}
}
