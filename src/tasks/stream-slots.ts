/**
 * How many SSE streams a user holds open across all gateway nodes, kept in Redis so that the cap
 * (`TASKS_SSE_MAX_PER_USER`) holds for the cluster, not per node.
 *
 * Per user, a sorted set: one member per open stream (`<node>:<stream id>`), scored with the time
 * it lapses. Taking a place is one Lua step on Redis's clock: drop lapsed members, count, add when
 * under the cap. The gateway node refreshes its open streams' scores every `refreshMs`; a node that
 * dies stops refreshing, so its places lapse after `ttlMs` instead of leaking. Closing a stream
 * removes its member at once.
 *
 * When Redis cannot answer, a stream is admitted on the node's own count (the caller's fallback):
 * a Redis outage must not stop users from watching their tasks.
 *
 * Before a user is refused, the places that count against them are checked: a place held by a node
 * that is no longer in the cluster (a gateway killed with streams open: its clients reconnect to
 * another gateway at once, long before its places lapse), or by an earlier process of this very node
 * (restarted under the same node id), is released and the place is asked for again.
 */
import { randomUUID } from "node:crypto";
import type Redis from "ioredis";
import type { ServiceBroker } from "moleculer";
import { runtimeOf } from "../runtime/runtime";
import { confirmEviction } from "../middlewares/dead-node-detector";

const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

const REFRESH = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', key, ARGV[1])
end
return #KEYS`;

export class RedisStreamSlots {
	private readonly open = new Map<string, string>(); // member → key
	private timer: NodeJS.Timeout | null = null;

	constructor(
		private readonly redis: Redis,
		private readonly prefix: string,
		private readonly nodeId: string,
		private readonly opts: { ttlMs: number; refreshMs: number },
		/** Whether a node is in the cluster now; without it places lapse only by their TTL. */
		private readonly isLive?: (nodeId: string) => boolean | Promise<boolean>
	) {}

	private key(userId: string): string {
		return `${this.prefix}tasks:sse:${userId}`;
	}

	/**
	 * Takes one of `max` places of `userId`. Resolves to the release function (idempotent), to null when
	 * the user holds `max` streams across the cluster, or rejects when Redis cannot answer.
	 */
	async acquire(userId: string, max: number): Promise<(() => void) | null> {
		const key = this.key(userId);
		const member = `${this.nodeId}:${randomUUID()}`;
		let ok = (await this.redis.eval(ACQUIRE, 1, key, max, this.opts.ttlMs, member)) as number;
		if (ok !== 1 && (await this.releaseDeadPlaces(key)) > 0)
			ok = (await this.redis.eval(ACQUIRE, 1, key, max, this.opts.ttlMs, member)) as number;
		if (ok !== 1) return null;
		this.open.set(member, key);
		this.startRefreshing();
		let released = false;
		return () => {
			if (released) return;
			released = true;
			this.open.delete(member);
			if (!this.open.size) this.stopRefreshing();
			this.redis.zrem(key, member).catch(() => undefined); // lapses on its own otherwise
		};
	}

	/** Removes the places of `key` held by other nodes that left the cluster. */
	private async releaseDeadPlaces(key: string): Promise<number> {
		if (!this.isLive) return 0;
		const members = await this.redis.zrange(key, 0, -1);
		const nodeOf = (m: string) => m.slice(0, m.lastIndexOf(":"));
		const holders = [...new Set(members.map(nodeOf).filter(n => n !== this.nodeId))];
		const live = new Map(await Promise.all(holders.map(async n => [n, await this.isLive!(n)] as const)));
		// This node's own places are never judged here: they are its streams (or, after a restart under
		// the same id, lapse by their TTL).
		const dead = members.filter(m => nodeOf(m) !== this.nodeId && !live.get(nodeOf(m)));
		return dead.length ? this.redis.zrem(key, ...dead) : 0;
	}

	/** Streams this node holds open (through this object). */
	get size(): number {
		return this.open.size;
	}

	/** Pushes this node's places forward; called on a timer while any is open. */
	async refresh(): Promise<void> {
		if (!this.open.size) return;
		const entries = [...this.open.entries()];
		for (let i = 0; i < entries.length; i += 500) {
			const batch = entries.slice(i, i + 500);
			await this.redis.eval(
				REFRESH,
				batch.length,
				...batch.map(([, key]) => key),
				this.opts.ttlMs,
				...batch.map(([member]) => member)
			);
		}
	}

	stop(): void {
		this.stopRefreshing();
	}

	private startRefreshing() {
		if (this.timer) return;
		this.timer = setInterval(() => void this.refresh().catch(() => undefined), this.opts.refreshMs);
		this.timer.unref();
	}

	private stopRefreshing() {
		if (this.timer) clearInterval(this.timer);
		this.timer = null;
	}
}

const slotsByBroker = new WeakMap<ServiceBroker, RedisStreamSlots | null>();

/** The node's cluster-wide stream places, or null without Redis (embedded: one node, its own count is the cluster's). */
export function streamSlotsOf(broker: ServiceBroker): RedisStreamSlots | null {
	if (!slotsByBroker.has(broker)) {
		const rt = runtimeOf(broker);
		const ttlMs = rt.config.tasks.sseSlotTtlMs;
		slotsByBroker.set(
			broker,
			rt.redis
				? new RedisStreamSlots(
						rt.redis,
						rt.config.redisPrefix,
						broker.nodeID,
						{ ttlMs, refreshMs: Math.max(50, Math.floor(ttlMs / 3)) },
						async id => {
							const n = broker.registry.nodes.get(id);
							// A node this one has not heard of may not be discovered yet (or share Redis from another
							// namespace): its places count, and lapse by their TTL if it is gone.
							if (!n) return true;
							if (!n.available) return false;
							// Still listed: a gateway killed a moment ago is listed until its heartbeat times out.
							// A ping settles it (and evicts it cluster-wide when it does not answer).
							return !(await confirmEviction(broker, id, 1000));
						}
					)
				: null
		);
	}
	return slotsByBroker.get(broker) ?? null;
}
