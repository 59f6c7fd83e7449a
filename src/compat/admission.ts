/**
 * Admission of compatible requests to an ai node's worker slots, shared with the task worker
 * (AI_CONCURRENCY). A request takes a free slot at once; when every slot is busy it waits its turn,
 * higher tiers first and in arrival order within a tier, for at most `maxWaitMs`; when the tier's
 * share of the waiting line is full or the wait runs out it is refused (429 with retry-after).
 * Lower tiers get shorter lines (QUEUE_FACTOR × slots), so under overload they are shed first —
 * the same order the task queue's admission sheds in. Waiting requests also come before new task
 * leases: the task worker leases only slots nobody waits for.
 */
import { TIER_ORDER, TierName } from "../domain/tiers";

export const QUEUE_FACTOR: Record<TierName, number> = { free: 1, pro: 2, team: 4, enterprise: 8 };

export class AdmissionRefused extends Error {
	constructor(
		message: string,
		readonly retryAfterS: number
	) {
		super(message);
	}
}

interface Waiter {
	rank: number;
	seq: number;
	resolve(release: () => void): void;
	reject(err: Error): void;
	timer: NodeJS.Timeout;
}

export class SlotGate {
	private active = 0;
	private seq = 0;
	private readonly waiting: Waiter[] = [];

	constructor(
		private readonly opts: {
			slots: () => number;
			/** Slots held by other work (running tasks). */
			otherBusy: () => number;
			maxWaitMs: number;
			/** After every change of the slots in use or of the line (the node's announced load). */
			onChange?: () => void;
		}
	) {}

	get inUse(): number {
		return this.active;
	}

	get queued(): number {
		return this.waiting.length;
	}

	private free(): number {
		return this.opts.slots() - this.opts.otherBusy() - this.active;
	}

	private grant(): () => void {
		this.active++;
		this.opts.onChange?.();
		let done = false;
		return () => {
			if (done) return;
			done = true;
			this.active--;
			this.kick();
			this.opts.onChange?.();
		};
	}

	/** A free slot at once (nobody waiting), or null. */
	tryAcquire(): (() => void) | null {
		return this.free() > 0 && !this.waiting.length ? this.grant() : null;
	}

	/** Resolves with the slot's release function, or rejects with AdmissionRefused / the abort reason. */
	acquire(tier: TierName, signal?: AbortSignal): Promise<() => void> {
		if (this.free() > 0 && !this.waiting.length) return Promise.resolve(this.grant());
		const rank = TIER_ORDER.indexOf(tier);
		const sameOrHigher = this.waiting.filter(w => w.rank >= rank).length;
		if (sameOrHigher >= QUEUE_FACTOR[tier] * Math.max(1, this.opts.slots()))
			return Promise.reject(
				new AdmissionRefused("Every ai worker is busy and the line is full; retry shortly", 2)
			);
		return new Promise((resolve, reject) => {
			const w: Waiter = {
				rank,
				seq: this.seq++,
				resolve,
				reject,
				timer: setTimeout(() => {
					this.drop(w);
					reject(
						new AdmissionRefused(
							"Every ai worker stayed busy; retry shortly",
							Math.max(1, Math.ceil(this.opts.maxWaitMs / 1000))
						)
					);
				}, this.opts.maxWaitMs)
			};
			signal?.addEventListener(
				"abort",
				() => {
					if (this.drop(w)) reject(new Error("aborted"));
				},
				{ once: true }
			);
			// Higher tier first, then arrival.
			const at = this.waiting.findIndex(x => x.rank < rank);
			if (at < 0) this.waiting.push(w);
			else this.waiting.splice(at, 0, w);
			this.opts.onChange?.();
			this.kick();
		});
	}

	private drop(w: Waiter): boolean {
		const i = this.waiting.indexOf(w);
		if (i < 0) return false;
		this.waiting.splice(i, 1);
		clearTimeout(w.timer);
		this.opts.onChange?.();
		return true;
	}

	/** Hands freed slots to the waiters (call when other work frees a slot). */
	kick() {
		while (this.waiting.length && this.free() > 0) {
			const w = this.waiting.shift()!;
			clearTimeout(w.timer);
			w.resolve(this.grant());
		}
	}
}
