/**
 * Moleculer's Redis cacher, degraded instead of failing when Redis cannot answer: a read that fails
 * is a miss (the action runs), a write or an invalidation that fails is logged and dropped. The
 * cache holds only what can be rebuilt, so a Redis outage costs speed, never a 5xx. Its ioredis
 * client is built from the Redis policy by the caller (`redisClientOptions`), so a command fails
 * within the policy's command timeout instead of the library's 20 retries, and at once while Redis is
 * known down (`failFastWhenDown`).
 *
 * What is lost: an invalidation dropped while Redis was unreachable (but not restarted) leaves the
 * entry until its TTL (60 s) ends.
 */
import { Cachers, type ServiceBroker } from "moleculer";
import type Redis from "ioredis";
import { failFastWhenDown } from "./dependency-policy";

type Options = ConstructorParameters<typeof Cachers.Redis>[0];

export class ResilientRedisCacher extends Cachers.Redis {
	private lastWarnAt = 0;

	constructor(opts: Options) {
		// No redlock: no action asks for cache locks, and a lock against a Redis that is down retries for seconds.
		// (Moleculer checks `redlock !== false`; its type says only an object.)
		super({ ...opts, redlock: false as unknown as Record<string, never> });
	}

	override init(broker: ServiceBroker) {
		super.init(broker);
		// Down is a miss at once, not a wait for the next reconnection.
		failFastWhenDown((this as unknown as { client: Redis }).client);
	}

	private degraded(op: string, err: unknown) {
		// One line every few seconds, not one per request, during an outage.
		const now = Date.now();
		if (now - this.lastWarnAt < 5000) return;
		this.lastWarnAt = now;
		this.logger.warn(
			`Redis cacher ${op} failed; the cache is bypassed while Redis cannot answer`,
			(err as Error)?.message
		);
	}

	override get(key: string) {
		return super.get(key).catch(err => {
			this.degraded("get", err);
			return this.opts.missingResponse ?? null;
		});
	}

	override getWithTTL(key: string) {
		return super.getWithTTL(key).catch(err => {
			this.degraded("get", err);
			return { data: this.opts.missingResponse ?? null, ttl: null } as unknown as Record<string, unknown>;
		});
	}

	override set(key: string, data: unknown, ttl?: number) {
		return super.set(key, data, ttl).catch(err => this.degraded("set", err));
	}

	override del(key: string | string[]) {
		return super.del(key).catch(err => this.degraded("del", err));
	}

	override clean(match?: string | string[]) {
		return super.clean(match).catch(err => this.degraded("clean", err));
	}
}
