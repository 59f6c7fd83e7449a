/**
 * A small key-value store for state that can be rebuilt (nonces, sessions hints, queue metadata):
 * Redis in cluster mode, process memory in embedded mode. Same semantics in both, so the domain
 * code never knows which one it talks to.
 */
import type Redis from "ioredis";

export interface KeyValueStore {
	get(key: string): Promise<string | null>;
	/** Sets a value; with ttlMs the key expires. */
	set(key: string, value: string, ttlMs?: number): Promise<void>;
	/** Sets only when absent; true when it was set. */
	setIfAbsent(key: string, value: string, ttlMs?: number): Promise<boolean>;
	/** Atomically reads and removes (single-use tokens such as SIWE nonces). */
	getDel(key: string): Promise<string | null>;
	del(...keys: string[]): Promise<number>;
	/** Atomic increment; the ttl is applied when the key is created. */
	incrBy(key: string, by: number, ttlMs?: number): Promise<number>;
	/** Removes every key under this store's prefix (tests, rebuilds). */
	clear(): Promise<void>;
}

export class RedisKeyValueStore implements KeyValueStore {
	constructor(
		private readonly redis: Redis,
		private readonly prefix: string
	) {}
	private k(key: string) {
		return this.prefix + key;
	}
	get(key: string) {
		return this.redis.get(this.k(key));
	}
	async set(key: string, value: string, ttlMs?: number) {
		if (ttlMs) await this.redis.set(this.k(key), value, "PX", ttlMs);
		else await this.redis.set(this.k(key), value);
	}
	async setIfAbsent(key: string, value: string, ttlMs?: number) {
		const r = ttlMs
			? await this.redis.set(this.k(key), value, "PX", ttlMs, "NX")
			: await this.redis.set(this.k(key), value, "NX");
		return r === "OK";
	}
	getDel(key: string) {
		return this.redis.getdel(this.k(key));
	}
	del(...keys: string[]) {
		return keys.length ? this.redis.del(...keys.map(k => this.k(k))) : Promise.resolve(0);
	}
	async incrBy(key: string, by: number, ttlMs?: number) {
		const k = this.k(key);
		const res = await this.redis.multi().incrby(k, by).pttl(k).exec();
		const value = Number(res?.[0]?.[1]);
		if (ttlMs && Number(res?.[1]?.[1]) < 0) await this.redis.pexpire(k, ttlMs);
		return value;
	}
	clear() {
		return deleteKeysWithPrefix(this.redis, this.prefix);
	}
}

/** Deletes every key under a prefix, in SCAN batches (never KEYS, which blocks Redis). */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<void> {
	let cursor = "0";
	do {
		const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
		if (keys.length) await redis.del(...keys);
		cursor = next;
	} while (cursor !== "0");
}

export class MemoryKeyValueStore implements KeyValueStore {
	private readonly data = new Map<string, { value: string; expiresAt: number | null }>();
	private writes = 0;
	/** Drops every expired entry (Redis expires keys itself): a key never read again (an unused SIWE nonce) does not stay. */
	private sweep() {
		const now = Date.now();
		for (const [k, e] of this.data) if (e.expiresAt != null && e.expiresAt <= now) this.data.delete(k);
	}
	private live(key: string) {
		const e = this.data.get(key);
		if (e && e.expiresAt != null && e.expiresAt <= Date.now()) {
			this.data.delete(key);
			return undefined;
		}
		return e;
	}
	async get(key: string) {
		return this.live(key)?.value ?? null;
	}
	async set(key: string, value: string, ttlMs?: number) {
		// Every 1,000th write sweeps: amortised O(1) a write, memory bounded by what is alive.
		if (++this.writes % 1_000 === 0) this.sweep();
		this.data.set(key, { value, expiresAt: ttlMs ? Date.now() + ttlMs : null });
	}
	/** How many entries are held, expired or not (tests). */
	get size(): number {
		return this.data.size;
	}
	async setIfAbsent(key: string, value: string, ttlMs?: number) {
		if (this.live(key)) return false;
		await this.set(key, value, ttlMs);
		return true;
	}
	async getDel(key: string) {
		const e = this.live(key);
		this.data.delete(key);
		return e?.value ?? null;
	}
	async del(...keys: string[]) {
		let n = 0;
		for (const k of keys) if (this.live(k) && this.data.delete(k)) n++;
		return n;
	}
	async incrBy(key: string, by: number, ttlMs?: number) {
		const e = this.live(key);
		const value = Number(e?.value ?? 0) + by;
		this.data.set(key, { value: String(value), expiresAt: e ? e.expiresAt : ttlMs ? Date.now() + ttlMs : null });
		return value;
	}
	async clear() {
		this.data.clear();
	}
}
