/**
 * Deployment health and choice, per ai node.
 *
 * Circuit per deployment: `closed` → after AI_CIRCUIT_FAILURES consecutive failed attempts →
 * `open` for AI_CIRCUIT_COOLDOWN_MS (never chosen) → `half-open`: one trial attempt at a time;
 * its success closes the circuit, its failure opens it for another cooldown. Separately, a 429 or
 * overload that says `Retry-After` cools the deployment down until then (it is skipped, the
 * circuit is unaffected unless failures keep coming).
 *
 * Shared across ai nodes: when a failure opens a circuit or sets a Retry-After cooldown, `onShare`
 * reports it (the ai service broadcasts it to the other ai nodes) and `applyShared` takes one in,
 * so a provider that said "stop" to one node is left alone by all of them for that long. Durations
 * are sent, not clock times, so clocks need not agree. Failure counts stay per node.
 *
 * Choice among the deployments that are usable now: `least-busy` takes the lowest
 * in-flight/weight (ties by weight), `weighted` draws by weight. Deployments already tried
 * in this generation come last.
 */
import type { Balancing, DeploymentConfig } from "./config";

export type CircuitState = "closed" | "open" | "half-open";

export interface DeploymentHealth {
	id: string;
	model: string;
	provider: string;
	baseUrl: string | null;
	weight: number;
	circuit: CircuitState;
	inflight: number;
	consecutiveFailures: number;
	/** Epoch ms until which the deployment is skipped (circuit cooldown or Retry-After), or null. */
	availableAt: number | null;
	successes: number;
	failures: number;
	lastError: string | null;
}

interface State {
	cfg: DeploymentConfig;
	circuit: CircuitState;
	openedUntil: number;
	coolUntil: number;
	inflight: number;
	trialInFlight: boolean;
	consecutiveFailures: number;
	successes: number;
	failures: number;
	lastError: string | null;
}

/** A cooldown or open circuit one node tells the others about (durations from the moment it is sent). */
export interface SharedCooldown {
	id: string;
	/** Retry-After cooldown left, ms (0: none). */
	coolForMs: number;
	/** Open-circuit time left, ms (0: not open). */
	openForMs: number;
}

export interface Lease {
	deployment: DeploymentConfig;
	/** Exactly one of these is called when the attempt ends. */
	success(): void;
	failure(reason: string, retryAfterMs?: number | null): void;
	/** The attempt ended for a reason that says nothing about the deployment (cancel, budget). */
	neutral(): void;
}

export class DeploymentRouter {
	private readonly states = new Map<string, State>();

	constructor(
		deployments: readonly DeploymentConfig[],
		private readonly opts: {
			balancing: Balancing;
			circuitFailures: number;
			circuitCooldownMs: number;
			now?: () => number;
			random?: () => number;
			onChange?: (h: DeploymentHealth) => void;
			onShare?: (c: SharedCooldown) => void;
		}
	) {
		for (const d of deployments)
			this.states.set(d.id, {
				cfg: d,
				circuit: "closed",
				openedUntil: 0,
				coolUntil: 0,
				inflight: 0,
				trialInFlight: false,
				consecutiveFailures: 0,
				successes: 0,
				failures: 0,
				lastError: null
			});
	}

	private now() {
		return (this.opts.now ?? Date.now)();
	}

	private refresh(s: State, now: number) {
		if (s.circuit === "open" && now >= s.openedUntil) {
			s.circuit = "half-open";
			s.trialInFlight = false;
		}
	}

	private usable(s: State, now: number): boolean {
		this.refresh(s, now);
		if (now < s.coolUntil) return false;
		if (s.circuit === "open") return false;
		if (s.circuit === "half-open" && s.trialInFlight) return false;
		return true;
	}

	deploymentsOf(model: string): DeploymentConfig[] {
		return [...this.states.values()].filter(s => s.cfg.model === model).map(s => s.cfg);
	}

	/** Takes a usable deployment of `model` (untried ones first), or null. */
	acquire(model: string, tried: ReadonlySet<string> = new Set(), untriedOnly = false): Lease | null {
		const now = this.now();
		const usable = [...this.states.values()].filter(s => s.cfg.model === model && this.usable(s, now));
		const fresh = usable.filter(s => !tried.has(s.cfg.id));
		const pool = fresh.length || untriedOnly ? fresh : usable;
		if (!pool.length) return null;
		const chosen = this.opts.balancing === "weighted" ? this.drawWeighted(pool) : this.leastBusy(pool);
		return this.lease(chosen);
	}

	/** Earliest time one of `model`'s deployments becomes usable again (null when none is configured). */
	nextAvailableAt(model: string): number | null {
		const now = this.now();
		let best: number | null = null;
		for (const s of this.states.values()) {
			if (s.cfg.model !== model) continue;
			this.refresh(s, now);
			const at = Math.max(s.coolUntil, s.circuit === "open" ? s.openedUntil : 0, now);
			if (best === null || at < best) best = at;
		}
		return best;
	}

	private leastBusy(pool: State[]): State {
		return pool.reduce((best, s) => {
			const a = s.inflight / s.cfg.weight;
			const b = best.inflight / best.cfg.weight;
			return a < b || (a === b && s.cfg.weight > best.cfg.weight) ? s : best;
		});
	}

	private drawWeighted(pool: State[]): State {
		const total = pool.reduce((n, s) => n + s.cfg.weight, 0);
		let r = (this.opts.random ?? Math.random)() * total;
		for (const s of pool) {
			r -= s.cfg.weight;
			if (r < 0) return s;
		}
		return pool[pool.length - 1];
	}

	private lease(s: State): Lease {
		s.inflight++;
		const trial = s.circuit === "half-open";
		if (trial) s.trialInFlight = true;
		let ended = false;
		const end = () => {
			if (ended) return false;
			ended = true;
			s.inflight--;
			if (trial) s.trialInFlight = false;
			return true;
		};
		return {
			deployment: s.cfg,
			success: () => {
				if (!end()) return;
				s.successes++;
				s.consecutiveFailures = 0;
				s.circuit = "closed";
				this.opts.onChange?.(this.view(s));
			},
			failure: (reason, retryAfterMs) => {
				if (!end()) return;
				const now = this.now();
				s.failures++;
				s.consecutiveFailures++;
				s.lastError = reason;
				const cooled = retryAfterMs != null && retryAfterMs > 0;
				if (cooled) s.coolUntil = Math.max(s.coolUntil, now + retryAfterMs);
				const opened = trial || s.consecutiveFailures >= this.opts.circuitFailures;
				if (opened) {
					s.circuit = "open";
					s.openedUntil = now + this.opts.circuitCooldownMs;
				}
				this.opts.onChange?.(this.view(s));
				if (cooled || opened)
					this.opts.onShare?.({
						id: s.cfg.id,
						coolForMs: Math.max(0, s.coolUntil - now),
						openForMs: opened ? this.opts.circuitCooldownMs : 0
					});
			},
			neutral: () => {
				end();
			}
		};
	}

	private view(s: State): DeploymentHealth {
		const now = this.now();
		this.refresh(s, now);
		const until = Math.max(s.coolUntil, s.circuit === "open" ? s.openedUntil : 0);
		return {
			id: s.cfg.id,
			model: s.cfg.model,
			provider: s.cfg.provider,
			baseUrl: s.cfg.baseUrl,
			weight: s.cfg.weight,
			circuit: s.circuit,
			inflight: s.inflight,
			consecutiveFailures: s.consecutiveFailures,
			availableAt: until > now ? until : null,
			successes: s.successes,
			failures: s.failures,
			lastError: s.lastError
		};
	}

	health(): DeploymentHealth[] {
		return [...this.states.values()].map(s => this.view(s));
	}

	/**
	 * Takes in another node's cooldown or open circuit for a deployment this node also has (by id);
	 * only ever extends what is already known. Returns false for an unknown deployment.
	 */
	applyShared(c: SharedCooldown): boolean {
		const s = this.states.get(c.id);
		if (!s) return false;
		const now = this.now();
		this.refresh(s, now);
		let changed = false;
		if (c.coolForMs > 0 && now + c.coolForMs > s.coolUntil) {
			s.coolUntil = now + c.coolForMs;
			changed = true;
		}
		if (c.openForMs > 0 && (s.circuit !== "open" || now + c.openForMs > s.openedUntil)) {
			s.circuit = "open";
			s.openedUntil = Math.max(s.openedUntil, now + c.openForMs);
			changed = true;
		}
		if (changed) this.opts.onChange?.(this.view(s));
		return changed;
	}

	/** Operator action: close a circuit and clear cooldowns now. */
	reset(id?: string) {
		for (const s of this.states.values())
			if (!id || s.cfg.id === id) {
				s.circuit = "closed";
				s.coolUntil = 0;
				s.openedUntil = 0;
				s.consecutiveFailures = 0;
				s.trialInFlight = false;
			}
	}
}
