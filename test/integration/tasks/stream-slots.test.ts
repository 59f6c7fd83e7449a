/**
 * The cluster-wide count of a user's open SSE streams, on the real Redis: places taken on one
 * gateway node count on the others, closing frees at once, a node that stops refreshing (it died)
 * loses its places after the TTL, and one that refreshes keeps them.
 */
import Redis from "ioredis";
import { RedisStreamSlots } from "../../../src/tasks/stream-slots";
import { REDIS_URL, eventually, uniqueId } from "../../support/env";

let redis: Redis;
const prefix = `fftest:${uniqueId("sse")}:`;

beforeAll(() => {
	redis = new Redis(REDIS_URL);
});

afterAll(async () => {
	const keys = await redis.keys(`${prefix}*`);
	if (keys.length) await redis.del(...keys);
	redis.disconnect();
});

const node = (id: string, ttlMs = 60_000, refreshMs = 20_000) =>
	new RedisStreamSlots(redis, prefix, id, { ttlMs, refreshMs });

test("places taken on one node count on another; closing one frees it at once; other users are apart", async () => {
	const a = node("gw-a");
	const b = node("gw-b");
	const r1 = await a.acquire("u1", 3);
	const r2 = await a.acquire("u1", 3);
	const r3 = await b.acquire("u1", 3);
	expect([r1, r2, r3].every(r => typeof r === "function")).toBe(true);
	expect(await b.acquire("u1", 3)).toBeNull();
	expect(await a.acquire("u1", 3)).toBeNull();
	expect(await a.acquire("u2", 3)).not.toBeNull();
	r1!();
	r1!(); // idempotent: frees one place, not two
	await eventually(async () => (await redis.zcard(`${prefix}tasks:sse:u1`)) === 2);
	const r4 = await b.acquire("u1", 3);
	expect(r4).not.toBeNull();
	expect(await a.acquire("u1", 3)).toBeNull();
	for (const r of [r2, r3, r4]) r!();
	a.stop();
	b.stop();
});

test("parallel acquisitions never exceed the cap", async () => {
	const nodes = [node("p-1"), node("p-2"), node("p-3")];
	const got = await Promise.all(Array.from({ length: 30 }, (_, i) => nodes[i % 3].acquire("racer", 7)));
	expect(got.filter(Boolean)).toHaveLength(7);
	for (const r of got) r?.();
	for (const n of nodes) n.stop();
});

test("a node that stops refreshing loses its places after the TTL; a refreshing node keeps them", async () => {
	// A TTL far above the refresh interval: a loaded machine's late timers must not look like a death.
	const dead = node("gw-dead", 1_500, 100_000);
	const alive = node("gw-alive", 1_500, 100);
	expect(await dead.acquire("u3", 2)).not.toBeNull();
	expect(await alive.acquire("u3", 2)).not.toBeNull();
	expect(await alive.acquire("u3", 2)).toBeNull();
	// The dead node's place lapses; the live one, refreshed every 100 ms, stays.
	let again: (() => void) | null = null;
	await eventually(async () => (again = await alive.acquire("u3", 2)) !== null, 5_000, 50);
	await new Promise(r => setTimeout(r, 1_800)); // longer than the TTL: only refreshing keeps them
	expect(await alive.acquire("u3", 2)).toBeNull();
	expect(alive.size).toBe(2);
	again!();
	dead.stop();
	alive.stop();
});

test("with Redis unreachable, taking a place fails (the route then admits on the node's own count) instead of hanging", async () => {
	const down = new Redis("redis://127.0.0.1:9", {
		lazyConnect: true,
		enableOfflineQueue: false,
		maxRetriesPerRequest: 0,
		retryStrategy: () => null
	});
	down.on("error", () => undefined);
	try {
		const slots = new RedisStreamSlots(down, prefix, "gw-down", { ttlMs: 1_000, refreshMs: 300 });
		await expect(slots.acquire("u4", 2)).rejects.toThrow();
		expect(slots.size).toBe(0);
		slots.stop();
	} finally {
		down.disconnect();
	}
});

test("before refusing, the places of nodes no longer in the cluster are released; live nodes' and its own stay", async () => {
	const live = new Set(["gw-live"]);
	const isLive = (id: string) => live.has(id);
	const dead = node("gw-dead");
	const alive = node("gw-live");
	const me = new RedisStreamSlots(redis, prefix, "gw-me", { ttlMs: 60_000, refreshMs: 20_000 }, isLive);
	expect(await dead.acquire("u9", 3)).not.toBeNull();
	expect(await alive.acquire("u9", 3)).not.toBeNull();
	expect(await me.acquire("u9", 3)).not.toBeNull();
	dead.stop();
	// Full, with a dead node's place among them: that one goes, the live node's and this node's stay.
	expect(await me.acquire("u9", 3)).not.toBeNull();
	const members = await redis.zrange(`${prefix}tasks:sse:u9`, 0, -1);
	expect(members.filter(m => m.startsWith("gw-live:"))).toHaveLength(1);
	expect(members.filter(m => m.startsWith("gw-dead:"))).toHaveLength(0);
	expect(members.filter(m => m.startsWith("gw-me:"))).toHaveLength(2);
	// Every place is held by live holders now: refused.
	expect(await me.acquire("u9", 3)).toBeNull();
	me.stop();
	alive.stop();
});
