/**
 * Login throttling that runs *before* any password is hashed: failures are counted per key
 * (account+IP, and IP) and, past a free allowance, each further failure imposes a delay that
 * doubles up to a cap. Nothing is locked for good; a success clears the account+IP count.
 * Counters live in Redis when the node has one (shared by every replica), else in memory.
 */
import { createHash } from "node:crypto";
import type Redis from "ioredis";
import { RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { ThrottleRule } from "./config";

/** Seconds a client must wait after its `failures`-th consecutive failure (0 while within the allowance). */
export function progressiveDelayS(failures: number, rule: Pick<ThrottleRule, "freeFailures" | "baseDelayS" | "maxDelayS">): number {
	if (failures < rule.freeFailures) return 0;
	const doublings = Math.min(failures - rule.freeFailures, 30);
	return Math.min(rule.maxDelayS, rule.baseDelayS * 2 ** doublings);
}

/** Keys hold no e-mail addresses in clear. */
export function throttleKey(...parts: string[]): string {
	return createHash("sha256").update(parts.join("\u0000")).digest("base64url").slice(0, 32);
}

export function makeLimiter(redis: Redis | null, keyPrefix: string, points: number, durationS: number): RateLimiterAbstract {
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
