/**
 * The worker side of leasing: fills a node's free slots with leases, one lease call at a time.
 *
 * A pump asked for while a lease call is in flight is not dropped: it marks one more round, taken
 * as soon as that call is back, because a slot that freed meanwhile was not counted in the call
 * (dropping it would leave the slot idle until the next poll, up to `AI_POLL_MS`). A round that
 * leases fewer tasks than it asked for ends the pump (the queue has nothing more for this node),
 * unless such a mark arrived during it.
 */
export interface LeasePumpDeps<T> {
	/** Slots free now. */
	free(): number;
	/** False when leasing makes no sense now (no tasks service reachable, node stopping). */
	canLease(): boolean;
	/** Asks for up to `slots` tasks; throws on failure (the round ends, the next poll retries). */
	lease(slots: number): Promise<T[]>;
	/** Starts a leased task (synchronously takes its slot). */
	start(task: T): void;
	onError?(err: unknown): void;
}

export class LeasePump<T> {
	private leasing = false;
	private again = false;

	constructor(private readonly deps: LeasePumpDeps<T>) {}

	/** Whether a lease call is in flight. */
	get busy(): boolean {
		return this.leasing;
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
				const free = this.deps.free();
				if (free <= 0 || !this.deps.canLease()) break;
				let tasks: T[];
				try {
					tasks = await this.deps.lease(free);
				} catch (err) {
					this.deps.onError?.(err);
					break;
				}
				if (!Array.isArray(tasks)) tasks = [];
				for (const t of tasks) this.deps.start(t);
				if (tasks.length < free && !this.again) break;
			}
		} finally {
			this.leasing = false;
		}
	}
}
