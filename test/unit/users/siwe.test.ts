import { SiweMessage } from "siwe";
import { checkSiweMessage } from "../../../src/users/siwe";
import type { UsersConfig } from "../../../src/users/config";

const NOW = Date.parse("2026-11-26T12:00:00.000Z");
const ADDRESS = "0xdAE181724fB312Bf39eC202fb5BA54E6F015caD4";
const expected: UsersConfig["siwe"] = {
	domain: "app.forgefluid.dev",
	uri: "https://app.forgefluid.dev",
	chainIds: [1, 8453],
	maxAgeS: 600,
	maxValidityS: 3600,
	nonceTtlS: 600,
	clockSkewS: 60
};

function msg(over: Partial<Record<string, unknown>> = {}): string {
	return new SiweMessage({
		domain: "app.forgefluid.dev",
		address: ADDRESS,
		statement: "Sign in",
		uri: "https://app.forgefluid.dev/login",
		version: "1",
		chainId: 8453,
		nonce: "abcdefgh12345678",
		issuedAt: new Date(NOW - 10_000).toISOString(),
		expirationTime: new Date(NOW + 600_000).toISOString(),
		...over
	}).prepareMessage();
}

const codeOf = (m: string, now = NOW) => {
	const r = checkSiweMessage(m, expected, now);
	return r.ok ? "OK" : r.code;
};

describe("checkSiweMessage", () => {
	test("accepts a well-formed, fresh message for this site and returns its fields", () => {
		const r = checkSiweMessage(msg(), expected, NOW);
		expect(r).toEqual({
			ok: true,
			fields: {
				address: ADDRESS,
				chainId: 8453,
				nonce: "abcdefgh12345678",
				domain: "app.forgefluid.dev",
				uri: "https://app.forgefluid.dev/login",
				issuedAt: new Date(NOW - 10_000),
				expirationTime: new Date(NOW + 600_000),
				notBefore: null
			}
		});
	});

	test.each([
		["another domain", { domain: "evil.dev" }, "SIWE_DOMAIN_MISMATCH"],
		["the domain with a port", { domain: "app.forgefluid.dev:8443" }, "SIWE_DOMAIN_MISMATCH"],
		["another scheme", { scheme: "http" }, "SIWE_DOMAIN_MISMATCH"],
		["another origin", { uri: "https://evil.dev/login" }, "SIWE_URI_MISMATCH"],
		["another URI port", { uri: "https://app.forgefluid.dev:444/" }, "SIWE_URI_MISMATCH"],
		["http instead of https", { uri: "http://app.forgefluid.dev/" }, "SIWE_URI_MISMATCH"],
		["a chain not accepted", { chainId: 31337 }, "SIWE_CHAIN_NOT_ALLOWED"],
		["no expiration", { expirationTime: undefined }, "SIWE_EXPIRATION_REQUIRED"],
		[
			"expiration before issuance",
			{ expirationTime: new Date(NOW - 20_000).toISOString() },
			"SIWE_INVALID_MESSAGE"
		],
		[
			"expired",
			{ issuedAt: new Date(NOW - 120_000).toISOString(), expirationTime: new Date(NOW - 1).toISOString() },
			"SIWE_EXPIRED"
		],
		["issued too long ago", { issuedAt: new Date(NOW - 601_000).toISOString() }, "SIWE_STALE"],
		[
			"issued in the future beyond the skew",
			{ issuedAt: new Date(NOW + 61_000).toISOString() },
			"SIWE_ISSUED_IN_FUTURE"
		],
		["valid for too long", { expirationTime: new Date(NOW + 3_600_000).toISOString() }, "SIWE_VALIDITY_TOO_LONG"],
		["not before in the future", { notBefore: new Date(NOW + 120_000).toISOString() }, "SIWE_NOT_YET_VALID"]
	])("refuses %s", (_name, over, code) => {
		expect(codeOf(msg(over))).toBe(code);
	});

	test("tolerates clock skew on issuedAt and notBefore, and the scheme when it matches", () => {
		expect(codeOf(msg({ issuedAt: new Date(NOW + 30_000).toISOString() }))).toBe("OK");
		expect(codeOf(msg({ notBefore: new Date(NOW + 30_000).toISOString() }))).toBe("OK");
		expect(codeOf(msg({ scheme: "https" }))).toBe("OK");
	});

	test("the boundaries: exactly max age passes, expiry at now fails", () => {
		expect(codeOf(msg({ issuedAt: new Date(NOW - 600_000).toISOString() }))).toBe("OK");
		expect(
			codeOf(msg({ issuedAt: new Date(NOW - 60_000).toISOString(), expirationTime: new Date(NOW).toISOString() }))
		).toBe("SIWE_EXPIRED");
	});

	test("refuses text that is not exactly one canonical EIP-4361 message", () => {
		const m = msg();
		for (const bad of [
			"",
			"hello",
			m + "\n",
			" " + m,
			m.replace("\n\n", "\n"),
			m.replace(ADDRESS, ADDRESS.toLowerCase()),
			m.replace("Nonce: abcdefgh12345678", "Nonce: short")
		])
			expect(codeOf(bad)).toBe("SIWE_INVALID_MESSAGE");
	});
});
