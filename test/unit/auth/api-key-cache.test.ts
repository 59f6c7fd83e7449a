import { ApiKeyCache, bumpKeyStamp, bumpUserStamp, keyIdOf, resolveRemembered } from "../../../src/auth/api-key-cache";
import type { KeyValueStore } from "../../../src/runtime/kv";
import { MemoryKeyValueStore } from "../../../src/runtime/kv";
import type { AuthUser } from "../../../src/auth/user";

const user = (id: string, keyId: string): AuthUser => ({ id, role: "user", keyId, scopes: ["ai:use"] });

describe("ApiKeyCache", () => {
	it("remembers a verified key until its time is up", () => {
		let now = 1_000;
		const c = new ApiKeyCache(10_000, 100, () => now);
		c.set("ff_a_secret", user("u1", "a"), c.generation);
		expect(c.get("ff_a_secret")?.user.keyId).toBe("a");
		expect(c.get("ff_b_other")).toBeUndefined();
		now += 9_999;
		expect(c.get("ff_a_secret")).toBeDefined();
		now += 1;
		expect(c.get("ff_a_secret")).toBeUndefined();
	});

	it("forgets by key id and by user id", () => {
		const c = new ApiKeyCache(10_000);
		c.set("k1", user("u1", "a"), c.generation);
		c.set("k2", user("u1", "b"), c.generation);
		c.set("k3", user("u2", "c"), c.generation);
		c.forgetKey("a");
		expect(c.get("k1")).toBeUndefined();
		expect(c.get("k2")).toBeDefined();
		c.forgetUser("u1");
		expect(c.get("k2")).toBeUndefined();
		expect(c.get("k3")).toBeDefined();
	});

	it("does not remember an answer that was in flight while something was forgotten", () => {
		const c = new ApiKeyCache(10_000);
		const before = c.generation;
		c.forgetKey("a"); // the revocation arrives while the lookup is out
		c.set("k1", user("u1", "a"), before);
		expect(c.get("k1")).toBeUndefined();
		c.set("k1", user("u1", "a"), c.generation);
		expect(c.get("k1")).toBeDefined();
	});

	it("holds at most `max` entries (the oldest goes) and nothing with a zero ttl", () => {
		const c = new ApiKeyCache(10_000, 2);
		for (const k of ["k1", "k2", "k3"]) c.set(k, user("u", k), c.generation);
		expect(c.size).toBe(2);
		expect(c.get("k1")).toBeUndefined();
		const off = new ApiKeyCache(0);
		off.set("k1", user("u", "a"), off.generation);
		expect(off.get("k1")).toBeUndefined();
	});
});

describe("resolveRemembered (stamps in the shared store)", () => {
	const KEY = "ff_abc123_secretsecretsecret00";
	const setup = (answer: () => AuthUser | null) => {
		const kv = new MemoryKeyValueStore();
		const cache = new ApiKeyCache(10_000);
		let lookups = 0;
		const d = {
			cache,
			kv: kv as KeyValueStore,
			verify: async () => {
				lookups++;
				return answer();
			}
		};
		return { kv, cache, d, lookups: () => lookups };
	};

	it("reads the key id from the key", () => {
		expect(keyIdOf(KEY)).toBe("abc123");
		expect(keyIdOf("ff__x")).toBeNull();
		expect(keyIdOf("nope")).toBeNull();
	});

	it("remembers a key from its second lookup on, and serves it while the stamps are unchanged", async () => {
		const t = setup(() => user("u1", "abc123"));
		await resolveRemembered(t.d, KEY); // learns the owner
		await resolveRemembered(t.d, KEY); // remembered under the stamps read before it
		expect(t.lookups()).toBe(2);
		for (let i = 0; i < 5; i++) expect((await resolveRemembered(t.d, KEY))?.id).toBe("u1");
		expect(t.lookups()).toBe(2);
	});

	it("a key stamp written after a revocation makes the next request look the key up (no event needed)", async () => {
		let revoked = false;
		const t = setup(() => (revoked ? null : user("u1", "abc123")));
		await resolveRemembered(t.d, KEY);
		await resolveRemembered(t.d, KEY);
		revoked = true;
		await bumpKeyStamp(t.kv, "abc123");
		expect(await resolveRemembered(t.d, KEY)).toBeNull();
		expect(t.lookups()).toBe(3);
	});

	it("a user stamp (disabled, role or tier changed) does the same for every key of the user", async () => {
		let role: AuthUser["role"] = "user";
		const t = setup(() => ({ ...user("u1", "abc123"), role }));
		await resolveRemembered(t.d, KEY);
		await resolveRemembered(t.d, KEY);
		role = "admin";
		await bumpUserStamp(t.kv, "u1");
		expect((await resolveRemembered(t.d, KEY))?.role).toBe("admin");
		await bumpUserStamp(t.kv, "someone-else");
		expect((await resolveRemembered(t.d, KEY))?.role).toBe("admin");
		expect(t.lookups()).toBe(3); // one lookup after the change, remembered under the new stamp; another user's stamp changes nothing
	});

	it("an answer that raced a change is refused at its first use (stamps are read before the lookup)", async () => {
		const kv = new MemoryKeyValueStore();
		const cache = new ApiKeyCache(10_000);
		let revoked = false;
		let lookups = 0;
		const d = {
			cache,
			kv: kv as KeyValueStore,
			verify: async () => {
				lookups++;
				const answer = revoked ? null : user("u1", "abc123");
				// The revocation commits and stamps while this (stale) answer is on its way back.
				if (lookups === 2) {
					revoked = true;
					await bumpKeyStamp(kv, "abc123");
				}
				return answer;
			}
		};
		await resolveRemembered(d, KEY);
		expect((await resolveRemembered(d, KEY))?.id).toBe("u1"); // the stale answer itself
		expect(await resolveRemembered(d, KEY)).toBeNull();
	});

	it("never serves from memory when the store cannot be read, and never remembers organisation keys", async () => {
		const t = setup(() => user("u1", "abc123"));
		await resolveRemembered(t.d, KEY);
		await resolveRemembered(t.d, KEY);
		const broken = { ...t.d, kv: { get: () => Promise.reject(new Error("down")) } as unknown as KeyValueStore };
		await resolveRemembered(broken, KEY);
		expect(t.lookups()).toBe(3);
		const org = setup(() => ({ ...user("u1", "abc123"), orgId: "o1" }));
		for (let i = 0; i < 3; i++) await resolveRemembered(org.d, KEY);
		expect(org.lookups()).toBe(3);
		expect(org.cache.size).toBe(0);
	});
});

describe("a remembered key's own expiry", () => {
	it("is checked at every use of the entry, not only when the entry ends", () => {
		let now = 1_000;
		const c = new ApiKeyCache(10_000, 100, () => now);
		c.set("ff_a_secret", { ...user("u1", "a"), keyExpiresAt: 3_000 }, c.generation);
		c.set("ff_b_secret", user("u1", "b"), c.generation);
		now = 2_999;
		expect(c.get("ff_a_secret")).toBeDefined();
		now = 3_000;
		expect(c.get("ff_a_secret")).toBeUndefined();
		// A key without an expiry lives its entry's time.
		expect(c.get("ff_b_secret")).toBeDefined();
	});
});
