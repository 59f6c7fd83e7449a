/**
 * Queue metadata: positions, depths, expected waits and rolling wait samples per tier. Derived
 * data only — Redis in cluster mode, process memory in embedded mode — rebuilt from PostgreSQL by
 * the snapshot job, so wiping it loses nothing (positions and stats come back on the next pass).
 */
import type Redis from "ioredis";
import type { ServiceBroker } from "moleculer";
import { TIER_ORDER, type TierName } from "../domain/tiers";
import { deleteKeysWithPrefix } from "../runtime/kv";
import { runtimeOf } from "../runtime/runtime";

export interface QueueSnapshot {
	/** Epoch ms the snapshot was taken. */
	at: number;
	/** Queued tasks per tier, time-eligible or waiting for notBefore. */
	depth: Record<TierName, number>;
	/** Of those, tasks waiting for notBefore (retry backoff or admission deferral). */
	waiting: Record<TierName, number>;
	running: number;
	/** Worker slots of the available ai nodes. */
	capacity: number;
	p50RunMs: number;
	/** Expected wait of a task submitted now, per tier (tierBacklogWaitMs). */
	expectedWaitMs: Record<TierName, number>;
	/** Rolling p50/p99 of recent queue waits per tier (ms); null without samples. */
	waitP50Ms: Record<TierName, number | null>;
	waitP99Ms: Record<TierName, number | null>;
}

export interface QueueMeta {
	writeSnapshot(snapshot: QueueSnapshot, positions: ReadonlyMap<string, number>): Promise<void>;
	readSnapshot(): Promise<QueueSnapshot | null>;
	position(taskId: string): Promise<number | null>;
	pushWait(tier: TierName, ms: number): Promise<void>;
	waits(tier: TierName): Promise<number[]>;
	replaceWaits(tier: TierName, samples: readonly number[]): Promise<void>;
	/** True for the one caller per `ttlMs` window that should do a periodic job. */
	tryLead(job: string, owner: string, ttlMs: number): Promise<boolean>;
	clear(): Promise<void>;
}

const WAIT_SAMPLES = 1_000;

class RedisQueueMeta implements QueueMeta {
	constructor(
		private readonly redis: Redis,
		private readonly prefix: string
	) {}

	private k(name: string) {
		return `${this.prefix}${name}`;
	}

	async writeSnapshot(snapshot: QueueSnapshot, positions: ReadonlyMap<string, number>) {
		const tmp = this.k(`pos:tmp:${snapshot.at}:${Math.random().toString(36).slice(2)}`);
		const m = this.redis.multi();
		if (positions.size) {
			const flat: string[] = [];
			for (const [id, p] of positions) flat.push(id, String(p));
			for (let i = 0; i < flat.length; i += 2_000) m.hset(tmp, ...flat.slice(i, i + 2_000));
			m.rename(tmp, this.k("pos"));
		} else m.del(this.k("pos"));
		m.set(this.k("snapshot"), JSON.stringify(snapshot));
		await m.exec();
	}

	async readSnapshot() {
		const raw = await this.redis.get(this.k("snapshot"));
		return raw ? (JSON.parse(raw) as QueueSnapshot) : null;
	}

	async position(taskId: string) {
		const raw = await this.redis.hget(this.k("pos"), taskId);
		return raw === null ? null : Number(raw);
	}

	async pushWait(tier: TierName, ms: number) {
		await this.redis
			.multi()
			.lpush(this.k(`waits:${tier}`), String(Math.round(ms)))
			.ltrim(this.k(`waits:${tier}`), 0, WAIT_SAMPLES - 1)
			.exec();
	}

	async waits(tier: TierName) {
		return (await this.redis.lrange(this.k(`waits:${tier}`), 0, WAIT_SAMPLES - 1)).map(Number);
	}

	async replaceWaits(tier: TierName, samples: readonly number[]) {
		const key = this.k(`waits:${tier}`);
		const m = this.redis.multi().del(key);
		if (samples.length) m.rpush(key, ...samples.slice(0, WAIT_SAMPLES).map(String));
		await m.exec();
	}

	async tryLead(job: string, owner: string, ttlMs: number) {
		return (
			(await this.redis.set(this.k(`lead:${job}`), owner, "PX", Math.max(1, Math.floor(ttlMs)), "NX")) === "OK"
		);
	}

	clear() {
		return deleteKeysWithPrefix(this.redis, this.prefix);
	}
}

class MemoryQueueMeta implements QueueMeta {
	private snapshot: QueueSnapshot | null = null;
	private positions = new Map<string, number>();
	private readonly samples = new Map<TierName, number[]>();
	private readonly leads = new Map<string, number>();

	async writeSnapshot(snapshot: QueueSnapshot, positions: ReadonlyMap<string, number>) {
		this.snapshot = structuredClone(snapshot);
		this.positions = new Map(positions);
	}
	async readSnapshot() {
		return this.snapshot ? structuredClone(this.snapshot) : null;
	}
	async position(taskId: string) {
		return this.positions.get(taskId) ?? null;
	}
	async pushWait(tier: TierName, ms: number) {
		const list = this.samples.get(tier) ?? [];
		list.unshift(Math.round(ms));
		list.length = Math.min(list.length, WAIT_SAMPLES);
		this.samples.set(tier, list);
	}
	async waits(tier: TierName) {
		return [...(this.samples.get(tier) ?? [])];
	}
	async replaceWaits(tier: TierName, samples: readonly number[]) {
		this.samples.set(tier, samples.slice(0, WAIT_SAMPLES));
	}
	async tryLead(job: string, _owner: string, ttlMs: number) {
		const now = Date.now();
		if ((this.leads.get(job) ?? 0) > now) return false;
		this.leads.set(job, now + ttlMs);
		return true;
	}
	async clear() {
		this.snapshot = null;
		this.positions.clear();
		this.samples.clear();
		this.leads.clear();
	}
}

/**
 * The Redis store, degraded instead of failing while Redis cannot answer: reads find nothing (the
 * callers then compute from PostgreSQL: positions with `positionOf`, statistics with a fresh
 * snapshot), writes are dropped (the snapshot job rewrites everything once Redis is back), and
 * every node leads the periodic jobs (their writes are dropped; nothing runs twice that matters).
 */
class DegradingQueueMeta implements QueueMeta {
	private lastWarnAt = 0;
	constructor(
		private readonly inner: QueueMeta,
		private readonly logger: { warn(...a: unknown[]): void }
	) {}
	private down<T>(value: T) {
		return (err: unknown): T => {
			const now = Date.now();
			if (now - this.lastWarnAt > 5000) {
				this.lastWarnAt = now;
				this.logger.warn(
					"queue metadata unavailable in Redis; served from PostgreSQL",
					(err as Error)?.message
				);
			}
			return value;
		};
	}
	writeSnapshot(snapshot: QueueSnapshot, positions: ReadonlyMap<string, number>) {
		return this.inner.writeSnapshot(snapshot, positions).catch(this.down(undefined));
	}
	readSnapshot() {
		return this.inner.readSnapshot().catch(this.down(null));
	}
	position(taskId: string) {
		return this.inner.position(taskId).catch(this.down(null));
	}
	pushWait(tier: TierName, ms: number) {
		return this.inner.pushWait(tier, ms).catch(this.down(undefined));
	}
	waits(tier: TierName) {
		return this.inner.waits(tier).catch(this.down([] as number[]));
	}
	replaceWaits(tier: TierName, samples: readonly number[]) {
		return this.inner.replaceWaits(tier, samples).catch(this.down(undefined));
	}
	tryLead(job: string, owner: string, ttlMs: number) {
		return this.inner.tryLead(job, owner, ttlMs).catch(this.down(true));
	}
	clear() {
		return this.inner.clear();
	}
}

const metas = new WeakMap<ServiceBroker, QueueMeta>();

/** The node's queue metadata store (the gateway's SSE streams and the tasks service share it). */
export function queueMetaOf(broker: ServiceBroker): QueueMeta {
	let meta = metas.get(broker);
	if (!meta) {
		const rt = runtimeOf(broker);
		meta = rt.redis
			? new DegradingQueueMeta(new RedisQueueMeta(rt.redis, `${rt.config.redisPrefix}tasks:`), rt.logger)
			: new MemoryQueueMeta();
		metas.set(broker, meta);
	}
	return meta;
}

export function emptyByTier<T>(value: T): Record<TierName, T> {
	return Object.fromEntries(TIER_ORDER.map(t => [t, value])) as Record<TierName, T>;
}
