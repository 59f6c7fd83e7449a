/**
 * Group commit: operations that arrive while earlier batches are in flight wait and go together
 * as the next batch, so under load many operations share one statement, one commit and one pool
 * connection, while a lone operation goes out at once (no timer, no added latency when idle).
 * At most `maxInFlight` batches run at a time and a batch holds at most `maxBatch` operations.
 *
 * With `keyOf` (the ledger: the user an operation locks), an operation whose key is in a batch in
 * flight waits for that batch instead of going out in a second one: the second batch would only wait
 * on the same row lock, and the operations that arrive meanwhile go with it when it does go. One hot
 * user's burst is then two round trips (the first operation, then the rest) instead of three
 * (the first, the second alone behind the first one's lock, then the rest). Operations of one key keep
 * their order; operations of other keys pass them.
 *
 * Hand-written (about 60 lines): DataLoader batches per event-loop tick but has no cap on batches
 * in flight, and the cap is what makes batches grow with load here.
 */
export interface GroupCommitOptions<Op, R> {
	maxBatch: number;
	maxInFlight: number;
	/** Runs a batch; answers one settled outcome per operation, in order. */
	run(ops: Op[]): Promise<Array<PromiseSettledResult<R>>>;
	/** What an operation contends on: one key is never in two batches in flight. */
	keyOf?(op: Op): string;
}

interface Waiting<Op, R> {
	op: Op;
	resolve(value: R): void;
	reject(err: unknown): void;
}

export class GroupCommit<Op, R> {
	private waiting: Array<Waiting<Op, R>> = [];
	private inFlight = 0;
	/** Keys of the batches in flight, with how many batches hold each. */
	private readonly busy = new Map<string, number>();

	constructor(private readonly opts: GroupCommitOptions<Op, R>) {
		if (opts.maxBatch < 1 || opts.maxInFlight < 1) throw new RangeError("maxBatch and maxInFlight must be >= 1");
	}

	submit(op: Op): Promise<R> {
		return new Promise<R>((resolve, reject) => {
			this.waiting.push({ op, resolve, reject });
			this.pump();
		});
	}

	/** Operations queued or in flight (for tests and metrics). */
	get pending(): number {
		return this.waiting.length + this.inFlight;
	}

	/** The next batch: the oldest operations whose keys are not in flight, in order, up to maxBatch. */
	private take(): { batch: Array<Waiting<Op, R>>; keys: string[] } {
		const keyOf = this.opts.keyOf;
		if (!keyOf) return { batch: this.waiting.splice(0, this.opts.maxBatch), keys: [] };
		const batch: Array<Waiting<Op, R>> = [];
		const rest: Array<Waiting<Op, R>> = [];
		const taken = new Set<string>();
		const held = new Set<string>();
		for (const w of this.waiting) {
			const k = keyOf(w.op);
			// A key one of whose operations stays behind keeps the rest of its operations behind too.
			if (batch.length < this.opts.maxBatch && !this.busy.has(k) && !held.has(k)) {
				batch.push(w);
				taken.add(k);
			} else {
				rest.push(w);
				held.add(k);
			}
		}
		this.waiting = rest;
		return { batch, keys: [...taken] };
	}

	private pump(): void {
		while (this.inFlight < this.opts.maxInFlight && this.waiting.length) {
			const { batch, keys } = this.take();
			if (!batch.length) return; // every waiting key is in flight: the batch's end pumps again
			for (const k of keys) this.busy.set(k, (this.busy.get(k) ?? 0) + 1);
			this.inFlight++;
			this.opts
				.run(batch.map(w => w.op))
				.then(
					outcomes =>
						batch.forEach((w, i) => {
							const o = outcomes[i];
							if (!o) w.reject(new Error("the batch answered fewer outcomes than operations"));
							else if (o.status === "fulfilled") w.resolve(o.value);
							else w.reject(o.reason);
						}),
					err => batch.forEach(w => w.reject(err))
				)
				.finally(() => {
					this.inFlight--;
					for (const k of keys) {
						const n = this.busy.get(k)! - 1;
						if (n) this.busy.set(k, n);
						else this.busy.delete(k);
					}
					this.pump();
				});
		}
	}
}
