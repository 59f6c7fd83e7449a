/**
 * The users service's cached actions and how their entries are dropped when the facts behind them
 * change. Keys are computed by the cacher itself (so they match what its middleware stored), and
 * removed by exact key: no SCAN over the cache.
 */
import type { ServiceBroker } from "moleculer";
import { bumpUserStamp } from "../auth/api-key-cache";
import { runtimeOf } from "../runtime/runtime";

export const CACHED_ACTIONS = {
	authState: { name: "users.authState", keys: ["userId", "sid"] },
	getTier: { name: "users.getTier", keys: ["userId"] },
	profile: { name: "users.profile", keys: ["userId"] }
} as const;

type CachedAction = (typeof CACHED_ACTIONS)[keyof typeof CACHED_ACTIONS];

interface KeyingCacher {
	getCacheKey(
		action: { name: string },
		opts: { keys: readonly string[] },
		ctx: { params: Record<string, unknown>; meta: object }
	): string;
	del(keys: string[]): Promise<void>;
}

export function cacheKeyOf(
	broker: ServiceBroker,
	action: CachedAction,
	params: Record<string, unknown>
): string | null {
	// The typings name the first argument a string; the implementation reads `action.name`.
	const cacher = broker.cacher as unknown as KeyingCacher | undefined;
	return cacher ? cacher.getCacheKey({ name: action.name }, { keys: action.keys }, { params, meta: {} }) : null;
}

/**
 * A read that began before the change committed can still store the old answer after the delete;
 * deleting again a little later removes such late writes (reads take milliseconds, not seconds).
 */
const REDELETE_AFTER_MS = [1_000, 5_000];

/**
 * Drops what is cached about a user: profile and tier always, the API keys the gateways remember
 * (`users.forgotten`), and the auth state of the sessions named (revoked sessions, or all of them when the user is disabled or their role changes).
 * Owned by the users service, which stops it (and its pending re-deletes) when it stops.
 */
export class UserCacheInvalidator {
	private readonly pending = new Set<NodeJS.Timeout>();

	constructor(private readonly broker: ServiceBroker) {}

	async forget(userId: string, sessionIds: readonly string[] = []): Promise<void> {
		// The gateways' memory of verified API keys (src/auth/api-key-cache.ts): the new stamp makes the
		// next request with any of the user's keys look them up again, on every gateway; the event frees memory.
		await bumpUserStamp(runtimeOf(this.broker).kv, userId);
		await this.broker.broadcast("users.forgotten", { userId }).catch(() => undefined);
		const cacher = this.broker.cacher as unknown as KeyingCacher | undefined;
		if (!cacher) return;
		const keys = [
			cacheKeyOf(this.broker, CACHED_ACTIONS.profile, { userId }),
			cacheKeyOf(this.broker, CACHED_ACTIONS.getTier, { userId }),
			...sessionIds.map(sid => cacheKeyOf(this.broker, CACHED_ACTIONS.authState, { userId, sid }))
		].filter((k): k is string => k !== null);
		await cacher.del(keys);
		for (const ms of REDELETE_AFTER_MS) {
			const timer = setTimeout(() => {
				this.pending.delete(timer);
				cacher.del(keys).catch(() => undefined);
			}, ms);
			timer.unref();
			this.pending.add(timer);
		}
	}

	stop() {
		for (const timer of this.pending) clearTimeout(timer);
		this.pending.clear();
	}
}
