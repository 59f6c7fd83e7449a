/**
 * Per-API-key requests and tokens per minute, counted in Redis (rate-limiter-flexible's atomic
 * consume) so every ai node shares one count; in memory in embedded mode. A key's limits are its
 * own numbers, so there is one limiter per distinct limit value (few in practice). The tokens
 * counted are the request's worst case (prompt + output cap), as the tier limits count them.
 */
import type Redis from "ioredis";
import { RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { KeyLimits } from "./prepare";
import { Refused } from "./run";

export class KeyRateLimiter {
	private readonly limiters = new Map<string, RateLimiterAbstract>();

	constructor(
		private readonly redis: Redis | null,
		private readonly prefix: string
	) {}

	private limiter(what: "rpm" | "tpm", points: number): RateLimiterAbstract {
		const k = `${what}:${points}`;
		let l = this.limiters.get(k);
		if (!l) {
			// The key prefix names the kind only: a key whose limit changes keeps its current window's count.
			const keyPrefix = `${this.prefix}ai:key:${what}`;
			l = this.redis
				? new RateLimiterRedis({ storeClient: this.redis, keyPrefix, points, duration: 60 })
				: new RateLimiterMemory({ keyPrefix, points, duration: 60 });
			this.limiters.set(k, l);
		}
		return l;
	}

	async admit(keyId: string, limits: KeyLimits, tokens: number): Promise<void> {
		const rpm = limits.rpm ? this.limiter("rpm", limits.rpm) : null;
		if (rpm)
			try {
				await rpm.consume(keyId, 1);
			} catch (err) {
				if (err instanceof RateLimiterRes)
					throw new Refused(
						`This API key allows ${limits.rpm} requests per minute`,
						Math.max(1, Math.ceil(err.msBeforeNext / 1000))
					);
				throw err;
			}
		if (!limits.tpm) return;
		const tpm = this.limiter("tpm", limits.tpm);
		const counted = Math.min(Math.max(1, tokens), limits.tpm);
		try {
			await tpm.consume(keyId, counted);
		} catch (err) {
			await rpm?.reward(keyId, 1).catch(() => undefined);
			if (err instanceof RateLimiterRes) {
				await tpm.reward(keyId, counted).catch(() => undefined);
				throw new Refused(
					`This API key allows ${limits.tpm} tokens per minute`,
					Math.max(1, Math.ceil(err.msBeforeNext / 1000))
				);
			}
			throw err;
		}
	}
}
