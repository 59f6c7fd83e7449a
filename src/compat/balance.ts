/**
 * Where a compatible request goes (docs/compat.md, "Admission across nodes"): to the ai node with the
 * most free worker slots, by the load each ai node announces (`ai.load`); when none has a free slot,
 * to the one with the shortest line per slot. Join-the-shortest-queue instead of Moleculer's
 * round-robin, which sends every n-th request to a node whose slots are all busy (where it waits, or
 * is refused with 429) while another node has idle ones.
 *
 * Each gateway learns the loads from the announcements and counts its own picks since a node's last
 * announcement as taken, so a burst of requests on one gateway spreads instead of all going to the
 * node that looked freest. An announcement older than `staleMs`, or a node that left, is not used;
 * with nothing known the caller keeps Moleculer's balancing (no node named).
 */

/** What an ai node announces of its slots (services/ai.service.ts). */
export interface NodeLoad {
	nodeID: string;
	/** Worker slots (AI_CONCURRENCY). */
	slots: number;
	/** Slots in use: running tasks and compatible requests. */
	busy: number;
	/** Compatible requests waiting for a slot. */
	waiting: number;
}

interface Known extends NodeLoad {
	at: number;
	/** Picks of this gateway since the announcement. */
	picked: number;
}

export class LoadBoard {
	private readonly nodes = new Map<string, Known>();

	constructor(
		private readonly opts: { staleMs: number; now?: () => number; random?: () => number } = { staleMs: 5_000 }
	) {}

	private now() {
		return this.opts.now?.() ?? Date.now();
	}

	/** A node's announcement; malformed ones are ignored. */
	update(load: NodeLoad): void {
		const { nodeID, slots, busy, waiting } = load ?? ({} as NodeLoad);
		if (typeof nodeID !== "string" || !nodeID) return;
		if (![slots, busy, waiting].every(n => Number.isFinite(n) && n >= 0)) return;
		this.nodes.set(nodeID, { nodeID, slots, busy, waiting, at: this.now(), picked: 0 });
	}

	forget(nodeID: string): void {
		this.nodes.delete(nodeID);
	}

	/**
	 * The node to send the next request to, among `candidates` (nodes with the action, available);
	 * null when no candidate has a fresh announcement (the caller lets Moleculer balance). Counts the
	 * pick against the node until its next announcement.
	 */
	pick(candidates: readonly string[]): string | null {
		const now = this.now();
		let best: Known[] = [];
		let bestScore = -Infinity;
		for (const id of candidates) {
			const k = this.nodes.get(id);
			if (!k || now - k.at > this.opts.staleMs || k.slots <= 0) continue;
			const free = k.slots - k.busy - k.waiting - k.picked;
			// A free slot beats any line; among full nodes, the shortest line per slot.
			const score = free > 0 ? free : free / k.slots;
			if (score > bestScore) {
				bestScore = score;
				best = [k];
			} else if (score === bestScore) best.push(k);
		}
		if (!best.length) return null;
		const chosen = best[Math.floor((this.opts.random?.() ?? Math.random()) * best.length)] ?? best[0];
		chosen.picked++;
		return chosen.nodeID;
	}
}

/**
 * The ai node's side: announces its load after changes, at most once per `throttleMs`, and every
 * `everyMs` (so a gateway that just joined learns it, and an announcement's age tells a node that
 * went quiet). Never throws: an announcement that cannot be sent is the next one's job.
 */
export class LoadAnnouncer {
	private timer: NodeJS.Timeout | null = null;
	private ticker: NodeJS.Timeout | null = null;
	private stopped = true;

	constructor(
		private readonly opts: {
			read(): NodeLoad;
			send(load: NodeLoad): void;
			throttleMs: number;
			everyMs: number;
		}
	) {}

	start(): void {
		this.stopped = false;
		this.ticker = setInterval(() => this.send(), this.opts.everyMs);
		this.ticker.unref?.();
		this.send();
	}

	changed(): void {
		if (this.stopped || this.timer) return;
		this.timer = setTimeout(() => {
			this.timer = null;
			this.send();
		}, this.opts.throttleMs);
		this.timer.unref?.();
	}

	stop(): void {
		this.stopped = true;
		if (this.timer) clearTimeout(this.timer);
		if (this.ticker) clearInterval(this.ticker);
		this.timer = this.ticker = null;
	}

	private send() {
		if (this.stopped) return;
		try {
			this.opts.send(this.opts.read());
		} catch {
			// the next change or tick sends it again
		}
	}
}
