/** AES-256-GCM sealing of the TOTP secrets: round trip, binding to the row, tampering, rotation, config. */
import { randomBytes } from "node:crypto";
import { SecretBox, derivedSecretKey, parseSecretKeys } from "../../../src/users/secret-box";

const key = (kid: string) => ({ kid, key: randomBytes(32) });

test("seal/open round trip; every sealing has its own IV", () => {
	const box = new SecretBox([key("a")]);
	const one = box.seal("JBSWY3DPEHPK3PXP", "user-1");
	const two = box.seal("JBSWY3DPEHPK3PXP", "user-1");
	expect(one).not.toBe(two);
	expect(one).not.toContain("JBSWY3DPEHPK3PXP");
	expect(box.open(one, "user-1")).toBe("JBSWY3DPEHPK3PXP");
	expect(box.open(two, "user-1")).toBe("JBSWY3DPEHPK3PXP");
});

test("bound to its row: another user id, an altered byte, an unknown key or a plain value do not open", () => {
	const box = new SecretBox([key("a")]);
	const sealed = box.seal("JBSWY3DPEHPK3PXP", "user-1");
	expect(() => box.open(sealed, "user-2")).toThrow();
	const parts = sealed.split(".");
	const body = Buffer.from(parts[3], "base64url");
	body[0] ^= 1;
	expect(() => box.open([...parts.slice(0, 3), body.toString("base64url")].join("."), "user-1")).toThrow();
	expect(() => new SecretBox([key("b")]).open(sealed, "user-1")).toThrow(/unknown key/);
	expect(() => box.open("JBSWY3DPEHPK3PXP", "user-1")).toThrow(/malformed/);
});

test("rotation: the first key seals, old keys still open, and what they sealed needs resealing", () => {
	const old = key("old");
	const fresh = key("new");
	const before = new SecretBox([old]).seal("S", "u");
	const ring = new SecretBox([fresh, old]);
	expect(ring.open(before, "u")).toBe("S");
	expect(ring.needsReseal(before)).toBe(true);
	const after = ring.seal("S", "u");
	expect(after.split(".")[1]).toBe("new");
	expect(ring.needsReseal(after)).toBe(false);
});

test("the key derived from a JWT secret is stable and differs per secret", () => {
	const a = derivedSecretKey("k1", "x".repeat(32));
	expect(a.kid).toBe("jwt-k1");
	expect(derivedSecretKey("k1", "x".repeat(32)).key.equals(a.key)).toBe(true);
	expect(derivedSecretKey("k1", "y".repeat(32)).key.equals(a.key)).toBe(false);
	expect(a.key).toHaveLength(32);
});

test("MFA_ENCRYPTION_KEYS parsing names the variable on a bad value", () => {
	const good = randomBytes(32).toString("base64");
	const problems: string[] = [];
	expect(parseSecretKeys(`k1:${good}, k2:${good}`, "MFA_ENCRYPTION_KEYS", problems).map(k => k.kid)).toEqual([
		"k1",
		"k2"
	]);
	expect(problems).toEqual([]);
	for (const bad of [`k1:${randomBytes(16).toString("base64")}`, good, `jwt-x:${good}`]) {
		const p: string[] = [];
		expect(parseSecretKeys(bad, "MFA_ENCRYPTION_KEYS", p)).toEqual([]);
		expect(p[0]).toMatch(/^MFA_ENCRYPTION_KEYS must be/);
	}
	expect(parseSecretKeys(null, "MFA_ENCRYPTION_KEYS", [])).toEqual([]);
});
