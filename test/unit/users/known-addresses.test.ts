/** Known sign-in addresses while the store (Redis) cannot answer: "cannot tell", never a 5xx (docs/faults.md). */
import { MemoryKeyValueStore, type KeyValueStore } from "../../../src/runtime/kv";
import { KnownAddresses } from "../../../src/users/throttle";

/** A store whose every call fails the way ioredis does while Redis is down (offline queue off). */
function downStore(): KeyValueStore {
	const fail = () => Promise.reject(new Error("Stream isn't writeable and enableOfflineQueue options is false"));
	return { get: fail, set: fail, setIfAbsent: fail, getDel: fail, del: fail, incrBy: fail, clear: fail };
}

test("a known address is known; an unknown one is not", async () => {
	const known = new KnownAddresses(new MemoryKeyValueStore(), "k", 3600);
	await known.remember("a@example.test", "10.0.0.1");
	expect(await known.has("a@example.test", "10.0.0.1")).toBe(true);
	expect(await known.has("a@example.test", "10.0.0.2")).toBe(false);
});

test("while the store is down: the lookup answers null (cannot tell) and remembering is dropped", async () => {
	const known = new KnownAddresses(downStore(), "k", 3600);
	expect(await known.has("a@example.test", "10.0.0.1")).toBeNull();
	await expect(known.remember("a@example.test", "10.0.0.1")).resolves.toBeUndefined();
});

test("an error that is not the store being down is not swallowed", async () => {
	const broken: KeyValueStore = { ...downStore(), get: () => Promise.reject(new TypeError("bug")) };
	await expect(new KnownAddresses(broken, "k", 3600).has("a@example.test", "10.0.0.1")).rejects.toThrow("bug");
});
