import { topicMatches, MemoryEventBus } from "../../../src/events/memory-bus";
import { eventRetryDelayMs, EventEnvelope } from "../../../src/events/types";
import { MemoryKeyValueStore } from "../../../src/runtime/kv";

describe("topic patterns (AMQP semantics)", () => {
	test.each([
		["payments.credited", "payments.credited", true],
		["payments.*", "payments.credited", true],
		["payments.*", "payments.stake.changed", false],
		["payments.#", "payments.stake.changed", true],
		["#", "a.b.c", true],
		["*.changed", "stake.changed", true],
		["a.b", "a.b.c", false]
	])("%s ~ %s = %s", (p, t, expected) => expect(topicMatches(p, t)).toBe(expected));
});

test("retry delay grows exponentially with full jitter and a cap", () => {
	expect(eventRetryDelayMs(1, 100, 60_000, () => 0)).toBe(50);
	expect(eventRetryDelayMs(1, 100, 60_000, () => 1)).toBe(100);
	expect(eventRetryDelayMs(4, 100, 60_000, () => 1)).toBe(800);
	expect(eventRetryDelayMs(30, 100, 5_000, () => 1)).toBe(5_000);
});

test("memory bus: every group gets its own copy, failures retry then dead-letter", async () => {
	const dead: string[] = [];
	const bus = new MemoryEventBus(async dl => void dead.push(`${dl.consumer}:${dl.attempts}`));
	const seen: string[] = [];
	let flaky = 0;
	await bus.subscribe({
		group: "a",
		topics: ["x.*"],
		maxAttempts: 3,
		retryBaseMs: 1,
		handler: async e => void seen.push(`a:${e.topic}`)
	});
	await bus.subscribe({
		group: "b",
		topics: ["x.#"],
		maxAttempts: 3,
		retryBaseMs: 1,
		handler: async () => {
			flaky++;
			throw new Error("no");
		}
	});
	const ev: EventEnvelope = { id: "1", topic: "x.y", payload: {}, occurredAt: "", headers: {} };
	await bus.publish([ev]);
	expect(seen).toEqual(["a:x.y"]);
	expect(flaky).toBe(3);
	expect(dead).toEqual(["b:3"]);
});

test("memory key-value store: TTL, getDel single use, setIfAbsent, incrBy", async () => {
	const kv = new MemoryKeyValueStore();
	await kv.set("n", "1", 30);
	expect(await kv.getDel("n")).toBe("1");
	expect(await kv.getDel("n")).toBeNull();
	expect(await kv.setIfAbsent("k", "a")).toBe(true);
	expect(await kv.setIfAbsent("k", "b")).toBe(false);
	expect(await kv.incrBy("c", 2, 1000)).toBe(2);
	expect(await kv.incrBy("c", 3)).toBe(5);
	await kv.set("t", "x", 5);
	await new Promise(r => setTimeout(r, 15));
	expect(await kv.get("t")).toBeNull();
});
