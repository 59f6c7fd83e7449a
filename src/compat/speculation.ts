/**
 * Whether a /v1 request may start its upstream call beside its hold instead of after it
 * (docs/compat.md "Speculation"). No byte goes to the client before the hold is confirmed either
 * way; what speculation risks is the provider tokens of a call whose hold is then refused (the
 * platform pays them, the user pays nothing). To bound that, a request speculates only when:
 *
 * - this node knows what the payer may spend (its available balance, bounded by what its own
 *   monthly cap leaves: payments.available) from a read at most `maxAgeMs` old (read in the
 *   background, once older than `refreshMs`, while the payer has requests: never on the path), less
 *   what this node settled for the payer since that read;
 * - that balance is at least `cover` × the worst case of everything the payer has in flight on this
 *   node, this request included (the read may already count some of them: the estimate errs low);
 * - no hold of the payer was refused on this node in the last `backoffMs` (spending elsewhere the
 *   read did not see yet), so a refusal is followed by the old order;
 * - the caller decides the rest (no key budget or cap the ai node cannot see, a free worker slot).
 */

export interface SpeculationOptions {
	/** What the payer may spend now: available credits, bounded by its own monthly cap (payments.available). */
	read(payerId: string): Promise<number>;
	/** 0: never speculate. */
	cover: number;
	maxAgeMs: number;
	refreshMs: number;
	backoffMs?: number;
	now?: () => number;
	warn?(msg: string): void;
}

interface Payer {
	/** Credits available at the last read, less what this node settled since. */
	available: number;
	/** When it was read; -Infinity when never. */
	readAt: number;
	reading: boolean;
	/** Sum of the worst cases in flight on this node. */
	inFlight: number;
	requests: number;
	refusedAt: number;
}

/** One request's place in its payer's in-flight sum; `done` once its hold is settled or given back. */
export interface Tracked {
	speculate: boolean;
	/** `charged`: what the settlement took (lowers the estimate until the next read). */
	done(charged: number): void;
	/** The hold was refused (speculating or not): the payer backs off. */
	refused(): void;
}

export class Speculation {
	private readonly payers = new Map<string, Payer>();
	private readonly now: () => number;
	private readonly backoffMs: number;

	constructor(private readonly o: SpeculationOptions) {
		this.now = o.now ?? Date.now;
		this.backoffMs = o.backoffMs ?? 30_000;
	}

	private payer(id: string): Payer {
		let p = this.payers.get(id);
		if (!p) {
			p = {
				available: 0,
				readAt: -Infinity,
				reading: false,
				inFlight: 0,
				requests: 0,
				refusedAt: -Infinity
			};
			this.payers.set(id, p);
		}
		return p;
	}

	private refresh(id: string, p: Payer) {
		if (p.reading || this.now() - p.readAt < this.o.refreshMs) return;
		p.reading = true;
		const startedAt = this.now();
		this.o
			.read(id)
			.then(available => {
				p.available = available;
				p.readAt = startedAt;
			})
			.catch(err => this.o.warn?.(`speculation: balance of ${id} not read: ${(err as Error).message}`))
			.finally(() => {
				p.reading = false;
			});
	}

	private sweptAt = 0;

	/** Forgets idle payers whose read is too old to be used and who are not backing off. */
	private sweep(now: number) {
		if (now - this.sweptAt < Math.max(1_000, this.o.maxAgeMs)) return;
		this.sweptAt = now;
		for (const [id, p] of this.payers)
			if (!p.requests && !p.reading && now - p.readAt > this.o.maxAgeMs && now - p.refusedAt >= this.backoffMs)
				this.payers.delete(id);
	}

	/** Counts the request in its payer's flight and says whether it may speculate. */
	track(payerId: string, maxCost: number, allowed: boolean): Tracked {
		this.sweep(this.now());
		const p = this.payer(payerId);
		p.inFlight += maxCost;
		p.requests++;
		const now = this.now();
		const speculate =
			allowed &&
			this.o.cover > 0 &&
			now - p.readAt <= this.o.maxAgeMs &&
			now - p.refusedAt >= this.backoffMs &&
			p.available >= this.o.cover * p.inFlight;
		this.refresh(payerId, p);
		let finished = false;
		return {
			speculate,
			done: charged => {
				if (finished) return;
				finished = true;
				p.inFlight -= maxCost;
				p.requests--;
				p.available -= charged;
			},
			refused: () => {
				p.refusedAt = this.now();
			}
		};
	}

	/** For tests and operators. */
	known(payerId: string): { available: number; readAt: number; inFlight: number } | null {
		const p = this.payers.get(payerId);
		return p && Number.isFinite(p.readAt)
			? { available: p.available, readAt: p.readAt, inFlight: p.inFlight }
			: null;
	}
}
