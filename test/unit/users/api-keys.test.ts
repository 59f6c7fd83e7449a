/** src/users/api-keys.ts over a fake store: keys never wider than the role, verified by digest, use recorded at most once per interval. */
import { DomainError } from "../../../src/errors";
import { ApiKeys, type ApiKeysDeps } from "../../../src/users/api-keys";
import type { ApiKeyForVerification, ApiKeyRow } from "../../../src/users/store";
import { newApiKey } from "../../../src/users/tokens";

const USER = "11111111-1111-4111-8111-111111111111";
const NOW = Date.parse("2026-12-01T12:00:00Z");

function setup(stored: Partial<ApiKeyForVerification> = {}, members: Record<string, string> = {}) {
	const fresh = newApiKey();
	const touched: string[] = [];
	const created: unknown[] = [];
	const row: ApiKeyForVerification = {
		id: fresh.id,
		user_id: USER,
		scopes: ["users:read", "admin"],
		last_used_at: new Date(NOW - 10_000),
		allowed_models: null,
		monthly_budget_credits: null,
		monthly_cap_credits: null,
		rpm: null,
		tpm: null,
		org_id: null,
		secret_hash: fresh.secretHash,
		role: "user",
		usable: true,
		...stored
	};
	const store = {
		apiKeyForVerification: async (id: string) => (id === row.id ? row : null),
		touchApiKey: async (id: string) => void touched.push(id),
		createApiKey: async (opts: object) => {
			created.push(opts);
			return { id: "k", name: "n", scopes: [], created_at: new Date(NOW) } as unknown as ApiKeyRow;
		}
	} as unknown as ApiKeysDeps["store"];
	const keys = new ApiKeys({
		store,
		cfg: { maxPerUser: 10, lastUsedWriteIntervalS: 60 },
		secondFactor: { stepUp: async () => undefined },
		now: () => NOW,
		orgRole: async (orgId, userId) => members[`${orgId}/${userId}`] ?? null,
		onTouchFailed: () => undefined
	});
	return { keys, key: fresh.key, touched, created };
}

describe("API keys", () => {
	test("a live key stands for its owner with its scopes, never more than the role holds", async () => {
		const s = setup();
		expect(await s.keys.verify(s.key)).toEqual({
			id: USER,
			role: "user",
			keyId: expect.any(String),
			scopes: ["users:read"]
		});
	});

	test("a wrong secret, an unusable key, or no key at all: null", async () => {
		const s = setup();
		expect(await s.keys.verify(s.key.slice(0, -1) + (s.key.endsWith("A") ? "B" : "A"))).toBeNull();
		expect(await s.keys.verify("not a key")).toBeNull();
		const revoked = setup({ usable: false });
		expect(await revoked.keys.verify(revoked.key)).toBeNull();
	});

	test("use is recorded only when the last record is older than the interval", async () => {
		const recent = setup();
		await recent.keys.verify(recent.key);
		expect(recent.touched).toEqual([]);
		const stale = setup({ last_used_at: new Date(NOW - 61_000) });
		await stale.keys.verify(stale.key);
		expect(stale.touched).toHaveLength(1);
	});

	test("/v1 limits travel with the key user", async () => {
		const s = setup({ monthly_budget_credits: "500", rpm: 10 });
		expect(await s.keys.verify(s.key)).toMatchObject({
			keyLimits: { models: null, monthlyBudgetCredits: 500, rpm: 10, tpm: null }
		});
	});

	test("a key's monthly spend cap travels with the key user, also as its only limit", async () => {
		const s = setup({ monthly_cap_credits: "0" });
		expect(await s.keys.verify(s.key)).toMatchObject({
			keyLimits: { models: null, monthlyBudgetCredits: null, monthlyCapCredits: 0, rpm: null, tpm: null }
		});
		const none = setup();
		expect((await none.keys.verify(none.key))?.keyLimits).toBeUndefined();
	});

	test("a scope the role does not hold is a 422 naming it; nothing is created", async () => {
		const s = setup();
		const err = await s.keys
			.create({ id: USER, role: "user", sid: "s", scopes: ["*"] }, { name: "k", scopes: ["users:read", "admin"] })
			.then(
				() => null,
				(e: DomainError) => e
			);
		expect({ status: err?.status, details: err?.details }).toEqual({
			status: 422,
			details: [{ field: "scopes", message: "scope 'admin' is not available to role user", type: "scope" }]
		});
		expect(s.created).toEqual([]);
	});
});
