/**
 * Per-user request and token rates, per tier (`rateLimits` in src/domain/tiers.ts), counted in
 * Redis so every ai node shares one count (rate-limiter-flexible's atomic Lua consume), or in
 * memory in embedded mode.
 *
 * A task counts one request and its worst case without project context (prompt + max output
 * tokens, per fan-out model) when `ai.prepare` admits it. When a run ends, `settle` brings the
 * count to what the run really used: more (context, several attempts) is added; less is given back,
 * but only while the fixed window that counted the admission is still the current one (a window
 * that has expired already forgot the admission) and never more than that window holds. Which window
 * counted the admission is told by its end on Redis's clock (`windowEndMs`, returned by `admit`,
 * carried by the task to the node that runs it), so no server's clock is trusted. A retried
 * task's later attempts add all their tokens (the admission was settled by the first). A refusal
 * answers 429 `RATE_LIMITED` with the seconds until the window frees enough room, and counts
 * nothing (rate-limiter-flexible counts a refused consume; it is given back at once).
 */
import type Redis from "ioredis";
import { RateLimiterAbstract, RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import { TIERS, TierName } from "../domain/tiers";
import { DomainError } from "../errors";

const WINDOW_MS = 60_000;
/**
 * How far a window's end as recorded at admission may be from its end as seen later and still be the
 * same window. The record can be late by the round trip between the count and reading Redis's clock;
 * the next window ends at least a whole window later.
 */
const SAME_WINDOW_MS = 5_000;

/**
 * Give-back in one step on the rate-limiter-flexible key (a counter with the window's expiry): only
 * while the window that counted the admission is still the current one (the key's end, Redis time +
 * pttl, is the end recorded at admission), never more than the window holds. Returns what was given back.
 */
const GIVE_BACK_LUA = `
local consumed = tonumber(redis.call('GET', KEYS[1]) or '0')
if consumed <= 0 then return 0 end
local pttl = redis.call('PTTL', KEYS[1])
if pttl <= 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if math.abs(now + pttl - tonumber(ARGV[2])) > tonumber(ARGV[3]) then return 0 end
local give = math.min(tonumber(ARGV[1]), consumed)
if give <= 0 then return 0 end
redis.call('DECRBY', KEYS[1], give)
return give`;

export class RateLimited extends DomainError {
	constructor(
		readonly what: "requests" | "tokens",
		readonly retryAfterS: number
	) {
		super("RATE_LIMITED", 429, `Too many ${what} per minute for this tier; retry in ${retryAfterS} s`, {
			retryAfter: retryAfterS
		});
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
			const points =
				what === "requests" ? TIERS[tier].rateLimits.requestsPerMinute : TIERS[tier].rateLimits.tokensPerMinute;
			const keyPrefix = `${this.prefix}ai:rl:${key}`;
			l = this.redis
				? new RateLimiterRedis({
						storeClient: this.redis,
						keyPrefix,
						points,
						duration: WINDOW_MS / 1000,
						insuranceLimiter: new RateLimiterMemory({ points, duration: WINDOW_MS / 1000 })
					})
				: new RateLimiterMemory({ points, duration: WINDOW_MS / 1000, keyPrefix });
			this.limiters.set(key, l);
		}
		return l;
	}

	/** What `admit` counts for a task whose worst case is `tokens`. */
	private admitted(tier: TierName, tokens: number): number {
		return Math.min(Math.max(1, tokens), TIERS[tier].rateLimits.tokensPerMinute);
	}

	/**
	 * Counts one request and `tokens`, or throws RateLimited (counting nothing). Returns when the
	 * window that counted the tokens ends, on Redis's clock (this process's in embedded mode), or null
	 * when that cannot be told (then nothing will be given back).
	 */
	async admit(userId: string, tier: TierName, tokens: number): Promise<{ windowEndMs: number | null }> {
		const requests = this.limiter(tier, "requests");
		const tokenLimiter = this.limiter(tier, "tokens");
		const wanted = this.admitted(tier, tokens);
		// Both counts and Redis's clock in flight together (one round trip's wait, not three). A refused
		// count is given back, and so is the other one's when it was taken.
		const refusal = (err: unknown) => (err instanceof RateLimiterRes ? err : null);
		const clock = this.redis ? this.redis.time().catch(() => null) : Promise.resolve(null);
		const [req, tok] = await Promise.allSettled([
			requests.consume(userId, 1),
			tokenLimiter.consume(userId, wanted)
		]);
		if (req.status === "rejected" || tok.status === "rejected") {
			await Promise.all([
				req.status === "fulfilled" ? requests.reward(userId, 1).catch(() => undefined) : undefined,
				// rate-limiter-flexible counts a refused consume: the tokens are given back either way.
				tok.status === "fulfilled" || refusal(tok.reason)
					? tokenLimiter.reward(userId, wanted).catch(() => undefined)
					: undefined
			]);
			await clock;
			const r = req.status === "rejected" ? req.reason : null;
			if (r !== null) {
				const res = refusal(r);
				if (res) throw new RateLimited("requests", Math.max(1, Math.ceil(res.msBeforeNext / 1000)));
				throw r;
			}
			const t = (tok as PromiseRejectedResult).reason;
			const res = refusal(t);
			if (res) throw new RateLimited("tokens", Math.max(1, Math.ceil(res.msBeforeNext / 1000)));
			throw t;
		}
		const counted = tok.value;
		// msBeforeNext comes from the same atomic step as the count; Redis's clock is read in the same
		// round trip, so the end is off by at most that round trip (SAME_WINDOW_MS covers it).
		if (!this.redis) return { windowEndMs: Date.now() + counted.msBeforeNext };
		const t = await clock;
		if (!t) return { windowEndMs: null };
		const [s, us] = t;
		return { windowEndMs: Number(s) * 1000 + Math.floor(Number(us) / 1000) + counted.msBeforeNext };
	}

	/**
	 * After a run: `counted` is the worst case `admit` was given for the task, `windowEndMs` what
	 * `admit` returned for it; `used` what this attempt used. Never refuses: the work is done.
	 */
	async settle(
		userId: string,
		tier: TierName,
		p: { counted: number; used: number; windowEndMs: number | null; firstAttempt: boolean }
	): Promise<void> {
		const tokens = this.limiter(tier, "tokens");
		const delta = Math.max(0, p.used) - (p.firstAttempt ? this.admitted(tier, p.counted) : 0);
		if (delta > 0) {
			await tokens.penalty(userId, delta);
			return;
		}
		if (delta === 0 || p.windowEndMs === null || !Number.isFinite(p.windowEndMs)) return;
		if (this.redis) {
			// One step on Redis: the window check and the give-back cannot be split by a window rolling over.
			const key = (tokens as RateLimiterRedis).getKey(userId);
			await this.redis.eval(GIVE_BACK_LUA, 1, key, String(-delta), String(p.windowEndMs), String(SAME_WINDOW_MS));
			return;
		}
		// In memory (one process, embedded mode): read, then reward.
		const res = await tokens.get(userId);
		if (!res) return; // the window that counted the admission has expired
		if (Math.abs(Date.now() + res.msBeforeNext - p.windowEndMs) > SAME_WINDOW_MS) return; // another window: nothing of the admission is left in it
		const refund = Math.min(-delta, res.consumedPoints);
		if (refund > 0) await tokens.reward(userId, refund);
	}

	/** Tokens counted for the user in the current window (operators, tests). */
	async tokensCounted(userId: string, tier: TierName): Promise<number> {
		const res = await this.limiter(tier, "tokens").get(userId);
		return res ? Math.max(0, res.consumedPoints) : 0;
	}
}
