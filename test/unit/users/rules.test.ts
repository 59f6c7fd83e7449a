import { loadConfig } from "../../../src/config";
import { PasswordHasher, normalizeEmail, normalizePassword, passwordProblem } from "../../../src/users/credentials";
import { progressiveDelayS, throttleKey } from "../../../src/users/throttle";
import {
	API_KEY_PATTERN,
	REFRESH_TOKEN_PATTERN,
	newApiKey,
	newNonceToken,
	newRefreshToken,
	newSiweNonce,
	parseApiKey,
	sha256
} from "../../../src/users/tokens";
import { InvalidEventPayload, parsePlanChanged, parseStakeChanged, summarizeTier } from "../../../src/users/tier-facts";
import { effectiveScopes, hasScope, scopesOfRole } from "../../../src/auth/scopes";
import { forgeToWei, STAKE_MIN_HOLDING_MS } from "../../../src/domain/tiers";

describe("e-mail and password rules", () => {
	test("e-mails are trimmed, lower-cased and NFKC-normalised; malformed ones are refused", () => {
		expect(normalizeEmail("  Ada.Lovelace@Example.COM ")).toBe("ada.lovelace@example.com");
		expect(normalizeEmail("ａｄａ@example.com")).toBe("ada@example.com"); // full-width letters
		for (const bad of [
			"",
			"ada",
			"ada@",
			"@example.com",
			"a b@example.com",
			"ada@example",
			`${"a".repeat(65)}@example.com`,
			`a@${"b".repeat(250)}.com`
		])
			expect(normalizeEmail(bad)).toBeNull();
	});

	test("password length counts code points; blank passwords are refused", () => {
		const policy = { minLength: 10, maxLength: 12 };
		expect(passwordProblem("123456789", policy)).toBe("must be at least 10 characters");
		expect(passwordProblem("1234567890", policy)).toBeNull();
		expect(passwordProblem("🔥".repeat(12), policy)).toBeNull();
		expect(passwordProblem("🔥".repeat(13), policy)).toBe("must be at most 12 characters");
		expect(passwordProblem(" ".repeat(10), policy)).toBe("must not be blank");
		expect(normalizePassword("ﬁ")).toBe("fi");
	});

	test("argon2id hashing: verify, dummy verification for missing hashes, rehash detection", async () => {
		const verified: string[] = [];
		const hasher = new PasswordHasher({ memoryCostKiB: 19_456, timeCost: 2, parallelism: 1 }, against =>
			verified.push(against)
		);
		const hash = await hasher.hash("correct horse");
		expect(hash).toMatch(/^\$argon2id\$/);
		expect(await hasher.verify(hash, "correct horse")).toBe(true);
		expect(await hasher.verify(hash, "wrong horse")).toBe(false);
		expect(await hasher.verify(null, "anything")).toBe(false);
		expect(await hasher.verify("not a hash", "anything")).toBe(false);
		// A missing hash still costs one real argon2 verification, against the dummy.
		expect(verified).toEqual(["stored", "stored", "dummy", "stored"]);
		expect(hasher.needsRehash(hash)).toBe(false);
		const stronger = new PasswordHasher({ memoryCostKiB: 19_456, timeCost: 3, parallelism: 1 });
		expect(stronger.needsRehash(hash)).toBe(true);
		expect(hasher.needsRehash("$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA")).toBe(true);
		expect(await hasher.dummyHash()).toBe(await hasher.dummyHash());
	});
});

describe("progressive throttling", () => {
	const rule = { freeFailures: 5, baseDelayS: 2, maxDelayS: 900 };
	test("free failures, then doubling delays up to the cap", () => {
		expect([0, 4, 5, 6, 7, 8, 13, 14, 100, 10_000].map(n => progressiveDelayS(n, rule))).toEqual([
			0, 0, 2, 4, 8, 16, 512, 900, 900, 900
		]);
	});
	test("keys do not carry the e-mail in clear and separate account+IP pairs", () => {
		expect(throttleKey("ada@example.com", "1.2.3.4")).not.toContain("ada");
		expect(throttleKey("ada@example.com", "1.2.3.4")).not.toBe(throttleKey("ada@example.com", "1.2.3.5"));
		expect(throttleKey("a", "bc")).not.toBe(throttleKey("ab", "c"));
	});
});

describe("opaque credentials", () => {
	test("API keys match the gateway's shape check, parse back, and store only a digest of the secret", () => {
		const gatewayShape = /^ff_[A-Za-z0-9]{1,64}_[A-Za-z0-9_-]{16,128}$/;
		const k = newApiKey();
		expect(k.key).toMatch(gatewayShape);
		expect(k.key).toMatch(API_KEY_PATTERN);
		const parsed = parseApiKey(k.key)!;
		expect(parsed.id).toBe(k.id);
		expect(sha256(parsed.secret).equals(k.secretHash)).toBe(true);
		expect(parseApiKey("ff_abc")).toBeNull();
		expect(parseApiKey(`ff_${"a".repeat(65)}_${"b".repeat(20)}`)).toBeNull();
		expect(newApiKey().key).not.toBe(k.key);
	});
	test("refresh tokens, nonces and nonce tokens have their documented shapes", () => {
		const r = newRefreshToken();
		expect(r.token).toMatch(REFRESH_TOKEN_PATTERN);
		expect(sha256(r.token).equals(r.hash)).toBe(true);
		expect(newSiweNonce()).toMatch(/^[A-Za-z0-9]{24}$/);
		expect(newNonceToken()).toMatch(/^[A-Za-z0-9_-]{43}$/);
	});
});

describe("tier facts", () => {
	const userId = "8ba685c5-dca5-4166-b3bc-805311bd0955";
	test("payloads are checked; bad ones are refused (and so dead-lettered)", () => {
		expect(parsePlanChanged({ userId: userId.toUpperCase(), planTier: "pro" })).toEqual({
			userId,
			planTier: "pro"
		});
		expect(parsePlanChanged({ userId, planTier: null })).toEqual({ userId, planTier: null });
		expect(parseStakeChanged({ userId, positions: [{ amountWei: "12", since: "2026-01-01T00:00:00Z" }] })).toEqual({
			userId,
			positions: [{ amountWei: 12n, since: Date.parse("2026-01-01T00:00:00Z") }]
		});
		for (const bad of [
			() => parsePlanChanged({ userId: "u1", planTier: "pro" }),
			() => parsePlanChanged({ userId, planTier: "gold" }),
			() => parseStakeChanged({ userId, positions: {} }),
			() => parseStakeChanged({ userId, positions: [{ amountWei: 12, since: "2026-01-01" }] }),
			() => parseStakeChanged({ userId, positions: [{ amountWei: "-1", since: "2026-01-01" }] }),
			() => parseStakeChanged({ userId, positions: [{ amountWei: "1", since: "yesterday" }] }),
			() => parsePlanChanged(null)
		])
			expect(bad).toThrow(InvalidEventPayload);
	});

	test("summary: override wins, else the higher of plan and matured stake; maturity is reported", () => {
		const now = Date.parse("2026-11-26T00:00:00Z");
		const matured = { amountWei: forgeToWei(10_000), since: now - STAKE_MIN_HOLDING_MS };
		const young = { amountWei: forgeToWei(100_000), since: now - 1000 };
		const s = summarizeTier({ planTier: "pro", positions: [matured, young], tierOverride: null }, now);
		expect(s).toEqual({
			tier: "team",
			planTier: "pro",
			stakeTier: "team",
			adminOverride: null,
			stakedWei: forgeToWei(110_000).toString(),
			effectiveStakeWei: forgeToWei(10_000).toString(),
			feeDiscountBps: 1000,
			nextStakeMaturityAt: new Date(young.since + STAKE_MIN_HOLDING_MS).toISOString()
		});
		expect(summarizeTier({ planTier: "enterprise", positions: [], tierOverride: "free" }, now).tier).toBe("free");
		expect(summarizeTier({ planTier: null, positions: [], tierOverride: null }, now)).toEqual(
			expect.objectContaining({ tier: "free", stakedWei: "0", feeDiscountBps: 0, nextStakeMaturityAt: null })
		);
	});
});

describe("scopes", () => {
	test("sessions hold their role's scopes; keys only theirs and never beyond the role", () => {
		expect(effectiveScopes({ role: "user", scopes: ["*"] })).toEqual(scopesOfRole("user"));
		expect(scopesOfRole("user")).not.toContain("admin");
		expect(hasScope({ role: "admin", scopes: ["*"] }, "admin")).toBe(true);
		expect(hasScope({ role: "user", scopes: ["admin"] }, "admin")).toBe(false);
		expect(hasScope({ role: "user", scopes: ["users:read"] }, "users:write")).toBe(false);
		expect(effectiveScopes({ role: "user", scopes: ["users:read", "admin"] })).toEqual(["users:read"]);
	});
});

describe("users configuration", () => {
	const base = { JWT_KEYS: `k:${"s".repeat(40)}` };
	test("embedded defaults", () => {
		const c = loadConfig(base).users;
		expect(c.siwe).toEqual(
			expect.objectContaining({
				domain: "localhost:3000",
				uri: "http://localhost:3000",
				chainIds: [31337],
				maxAgeS: 600
			})
		);
		expect(c.passwords.argon2).toEqual({ memoryCostKiB: 19_456, timeCost: 2, parallelism: 1 });
		expect(c.chain).toEqual(expect.objectContaining({ rpcUrls: {}, forgeChainId: 31337, forgeTokenAddress: null }));
		expect(c.sessions.gatewayCheck).toBe(true);
	});
	test("the SIWE domain and URI follow the gateway's port and PUBLIC_URL unless set", () => {
		expect(loadConfig({ ...base, PORT: "4000" }).users.siwe).toEqual(
			expect.objectContaining({ domain: "localhost:4000", uri: "http://localhost:4000" })
		);
		expect(loadConfig({ ...base, PUBLIC_URL: "https://app.example.com" }).users.siwe).toEqual(
			expect.objectContaining({ domain: "app.example.com", uri: "https://app.example.com" })
		);
		expect(
			loadConfig({ ...base, PUBLIC_URL: "https://app.example.com", SIWE_DOMAIN: "login.example.com" }).users.siwe
				.domain
		).toBe("login.example.com");
	});
	test("rpc URLs per chain; weaker argon2 and malformed values are refused, naming the variable", () => {
		const c = loadConfig({
			...base,
			SIWE_RPC_URLS: "1=https://rpc.example/1,8453=http://127.0.0.1:8545",
			SIWE_CHAIN_IDS: "1, 8453"
		}).users;
		expect(c.chain.rpcUrls).toEqual({ 1: "https://rpc.example/1", 8453: "http://127.0.0.1:8545" });
		expect(c.siwe.chainIds).toEqual([1, 8453]);
		const problems = (env: Record<string, string>) => {
			try {
				loadConfig({ ...base, ...env });
				return "";
			} catch (err) {
				return (err as Error).message;
			}
		};
		expect(problems({ ARGON2_MEMORY_KIB: "4096" })).toContain("ARGON2_MEMORY_KIB");
		expect(problems({ ARGON2_TIME_COST: "1" })).toContain("ARGON2_TIME_COST");
		expect(problems({ SIWE_CHAIN_IDS: "mainnet" })).toContain("SIWE_CHAIN_IDS");
		expect(problems({ SIWE_RPC_URLS: "1=ftp://x" })).toContain("SIWE_RPC_URLS");
		expect(problems({ SIWE_DOMAIN: "https://app.example" })).toContain("SIWE_DOMAIN");
		expect(problems({ FORGE_TOKEN_ADDRESS: "0x1234" })).toContain("FORGE_TOKEN_ADDRESS");
		expect(problems({ SIWE_URI: "app.example" })).toContain("SIWE_URI");
	});
});
