/**
 * Per-user request and token rates, per tier (`rateLimits` in src/domain/tiers.ts), counted in
 * Redis so every ai node shares one count (rate-limiter-flexible's atomic Lua consume), or in
 * memory in embedded mode.
 *
 * A task counts one request and its worst case without project context (prompt + max output
 * tokens, per fan-out model) when `ai.prepare` admits it; context tokens actually used are added
 * when it finishes (`charge`). A refusal answers 429 `RATE_LIMITED` with the seconds until the
 * window frees enough room.
 */
import type Redis from "ioredis";
import { RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { TIERS, TierName } from "../domain/tiers";

export class RateLimited extends Error {
	constructor(
		readonly what: "requests" | "tokens",
		readonly retryAfterS: number
	) {
		super(`Too many ${what} per minute for this tier; retry in ${retryAfterS} s`);
	}
}

export class UsageLimiter {
	private readonly limiters = new Map<string, RateLimiterAbstract>();

	constructor(
		private readonly redis: Redis | null,
		private readonly prefix: string
	) {}

	private limiter(tier: TierName, what: "requests" | "tokens"): RateLimiterAbstract {
		const key = `${tier}:${what}`;
		let l = this.limiters.get(key);
		if (!l) {
			const points = what === "requests" ? TIERS[tier].rateLimits.requestsPerMinute : TIERS[tier].rateLimits.tokensPerMinute;
			const keyPrefix = `${this.prefix}ai:rl:${key}`;
			l = this.redis
				? new RateLimiterRedis({ storeClient: this.redis, keyPrefix, points, duration: 60, insuranceLimiter: new RateLimiterMemory({ points, duration: 60 }) })
				: new RateLimiterMemory({ points, duration: 60, keyPrefix });
			this.limiters.set(key, l);
		}
		return l;
	}

	/** Counts one request and `tokens`, or throws RateLimited (counting nothing). */
	async admit(userId: string, tier: TierName, tokens: number): Promise<void> {
		const requests = this.limiter(tier, "requests");
		try {
			await requests.consume(userId, 1);
		} catch (err) {
			if (err instanceof RateLimiterRes) throw new RateLimited("requests", Math.max(1, Math.ceil(err.msBeforeNext / 1000)));
			throw err;
		}
		const tokenLimiter = this.limiter(tier, "tokens");
		const max = TIERS[tier].rateLimits.tokensPerMinute;
		try {
			// A task larger than a whole minute's allowance could never run; it takes the whole window instead.
			await tokenLimiter.consume(userId, Math.min(Math.max(1, tokens), max));
		} catch (err) {
			await requests.reward(userId, 1).catch(() => undefined);
			if (err instanceof RateLimiterRes) throw new RateLimited("tokens", Math.max(1, Math.ceil(err.msBeforeNext / 1000)));
			throw err;
		}
	}

	/** Adds tokens used beyond what `admit` counted (never refuses: the work is done). */
	async charge(userId: string, tier: TierName, tokens: number): Promise<void> {
		if (tokens <= 0) return;
		await this.limiter(tier, "tokens").penalty(userId, tokens);
	}
}
