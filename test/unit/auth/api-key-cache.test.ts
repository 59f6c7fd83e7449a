import { ApiKeyCache } from "../../../src/auth/api-key-cache";
import type { AuthUser } from "../../../src/auth/user";

const user = (id: string, keyId: string): AuthUser => ({ id, role: "user", keyId, scopes: ["ai:use"] });

describe("ApiKeyCache", () => {
	it("remembers a verified key until its time is up", () => {
		let now = 1_000;
		const c = new ApiKeyCache(10_000, 100, () => now);
		c.set("ff_a_secret", user("u1", "a"), c.generation);
		expect(c.get("ff_a_secret")?.keyId).toBe("a");
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
