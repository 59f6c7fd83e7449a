/**
 * Login throttling that runs *before* any password is hashed: failures are counted per key
 * (account+IP, and IP) and, past a free allowance, each further failure imposes a delay that
 * doubles up to a cap. Nothing is locked for good; a success clears the account+IP count.
 * Counters live in Redis when the node has one (shared by every replica), else in memory.
 */
import { createHash } from "node:crypto";
import type Redis from "ioredis";
import { RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { KeyValueStore } from "../runtime/kv";
import { isDependencyDown } from "../runtime/dependency-policy";
import type { ThrottleRule } from "./config";

/** Seconds a client must wait after its `failures`-th consecutive failure (0 while within the allowance). */
export function progressiveDelayS(
	failures: number,
	rule: Pick<ThrottleRule, "freeFailures" | "baseDelayS" | "maxDelayS">
): number {
	if (failures < rule.freeFailures) return 0;
	const doublings = Math.min(failures - rule.freeFailures, 30);
	return Math.min(rule.maxDelayS, rule.baseDelayS * 2 ** doublings);
}

/** Keys hold no e-mail addresses in clear. */
export function throttleKey(...parts: string[]): string {
	return createHash("sha256").update(parts.join("\u0000")).digest("base64url").slice(0, 32);
}

export function makeLimiter(
	redis: Redis | null,
	keyPrefix: string,
	points: number,
	durationS: number
): RateLimiterAbstract {
	if (!redis) return new RateLimiterMemory({ keyPrefix, points, duration: durationS });
	return new RateLimiterRedis({
		storeClient: redis,
		keyPrefix,
		points,
		duration: durationS,
		// If Redis is unreachable, keep throttling per replica rather than failing open or closed.
		insuranceLimiter: new RateLimiterMemory({ keyPrefix, points, duration: durationS })
	});
}

export class ProgressiveThrottle {
	private readonly failures: RateLimiterAbstract;
	private readonly blocks: RateLimiterAbstract;

	constructor(
		redis: Redis | null,
		keyPrefix: string,
		private readonly rule: ThrottleRule
	) {
		this.failures = makeLimiter(redis, `${keyPrefix}:fails`, 1_000_000, rule.windowS);
		// One point per second: `block()` marks a key as waiting for its delay.
		this.blocks = makeLimiter(redis, `${keyPrefix}:wait`, 1, 1);
	}

	/** Seconds the key must still wait (0 = may try now). */
	async retryAfterS(key: string): Promise<number> {
		const res = await this.blocks.get(key);
		return res && res.consumedPoints > 1 ? Math.max(1, Math.ceil(res.msBeforeNext / 1000)) : 0;
	}

	/** Counts a failure; returns the delay now imposed (0 within the allowance). */
	async recordFailure(key: string): Promise<number> {
		const res: RateLimiterRes = await this.failures.penalty(key, 1);
		const delay = progressiveDelayS(res.consumedPoints, this.rule);
		if (delay > 0) await this.blocks.block(key, delay);
		return delay;
	}

	async reset(key: string): Promise<void> {
		await Promise.all([this.failures.delete(key), this.blocks.delete(key)]);
	}
}

/**
 * Guesses against one account from any number of addresses (keyed by the normalised e-mail, so unknown
 * accounts behave exactly like real ones). Every attempt is counted *before* hashing, so a burst of
 * parallel requests cannot all slip through on a stale count. Past the allowance only one attempt per
 * delay gets through, claimed atomically; the delay doubles up to a cap and never becomes a lockout.
 * An admitted attempt stays counted (as a failure) until `reset`.
 */
export class AccountGuessLimiter {
	private readonly attempts: RateLimiterAbstract;
	private readonly gate: RateLimiterAbstract;

	constructor(
		redis: Redis | null,
		keyPrefix: string,
		private readonly rule: ThrottleRule
	) {
		this.attempts = makeLimiter(redis, `${keyPrefix}:tries`, 1_000_000, rule.windowS);
		// One attempt per gate period; each claim sets its own period (`customDuration`).
		this.gate = makeLimiter(redis, `${keyPrefix}:gate`, 1, 1);
	}

	/** 0 = this attempt may go on (and is now counted); otherwise the seconds to wait (nothing counted). */
	async admit(key: string): Promise<number> {
		const n = (await this.attempts.penalty(key, 1)).consumedPoints;
		const delay = progressiveDelayS(n, this.rule);
		if (delay === 0) return 0;
		try {
			// The attempt that takes the gate holds it for the delay its own failure would earn.
			await this.gate.consume(key, 1, { customDuration: delay });
			return 0;
		} catch (rej) {
			await this.attempts.reward(key, 1);
			if (rej instanceof RateLimiterRes) return Math.max(1, Math.ceil(rej.msBeforeNext / 1000));
			throw rej;
		}
	}

	async reset(key: string): Promise<void> {
		await Promise.all([this.attempts.delete(key), this.gate.delete(key)]);
	}
}

/**
 * Addresses that have signed in to an account with its password lately. They skip the account-wide
 * limiter (the per account+IP and per-IP ones still apply), so a guesser spread over many addresses
 * cannot keep the owner out from where they usually sign in. Only a correct password adds an address,
 * so an attacker's addresses are never known for any account, real or not.
 */
export class KnownAddresses {
	constructor(
		private readonly kv: KeyValueStore,
		private readonly keyPrefix: string,
		/** 0 = remember nothing (every address goes through the account-wide limiter). */
		private readonly ttlS: number
	) {}

	private key(account: string, ip: string) {
		return `${this.keyPrefix}:${throttleKey(account, ip)}`;
	}

	/**
	 * Whether the address is known; null while the store (Redis) cannot answer. Signing in keeps
	 * working through a Redis outage (docs/faults.md): an address that cannot be looked up goes
	 * through the account-wide limiter like an unknown one (the stricter path), without the
	 * new-address mail.
	 */
	async has(account: string, ip: string | undefined): Promise<boolean | null> {
		if (!ip || this.ttlS === 0) return false;
		try {
			return (await this.kv.get(this.key(account, ip))) !== null;
		} catch (err) {
			if (isDependencyDown(err)) return null;
			throw err;
		}
	}

	/** Dropped while the store cannot answer: the address is then asked about again next time. */
	async remember(account: string, ip: string | undefined): Promise<void> {
		if (!ip || this.ttlS === 0) return;
		try {
			await this.kv.set(this.key(account, ip), "1", this.ttlS * 1000);
		} catch (err) {
			if (!isDependencyDown(err)) throw err;
		}
	}
}
