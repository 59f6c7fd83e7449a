/**
 * Organisation API keys over fakes: src/users/org-api-keys.ts (who makes, sees and revokes them,
 * which scopes they may hold) and their verification in src/users/api-keys.ts (the creator's
 * membership asked every time), and the org-key rules of src/auth/org-key.ts.
 */
import { DomainError } from "../../../src/errors";
import { orgOfRequest, requireInKeyOrg } from "../../../src/auth/org-key";
import type { AuthUser } from "../../../src/auth/user";
import { ApiKeys, type ApiKeysDeps } from "../../../src/users/api-keys";
import { OrgApiKeys, type OrgApiKeysDeps } from "../../../src/users/org-api-keys";
import type { ApiKeyForVerification, ApiKeyRow } from "../../../src/users/store";
import { newApiKey } from "../../../src/users/tokens";

const ORG = "22222222-2222-4222-8222-222222222222";
const OTHER_ORG = "33333333-3333-4333-8333-333333333333";
const ADMIN = "11111111-1111-4111-8111-111111111111";
const BILLER = "44444444-4444-4444-8444-444444444444";
const user = (id: string): AuthUser => ({ id, role: "user", scopes: ["*"] });

function orgKeys(roles: Record<string, string>) {
	const created: Array<Record<string, unknown>> = [];
	const listed: Array<[string, string | null]> = [];
	const revoked: Array<[string, string, string | null]> = [];
	const store = {
		createApiKey: async (opts: Record<string, unknown>) => {
			created.push(opts);
			return {
				id: opts.id,
				user_id: opts.userId,
				name: opts.name,
				scopes: opts.scopes,
				created_at: new Date(),
				expires_at: null,
				last_used_at: null,
				revoked_at: null,
				allowed_models: null,
				monthly_budget_credits: null,
				monthly_cap_credits: null,
				rpm: null,
				tpm: null,
				org_id: opts.orgId
			} as ApiKeyRow;
		},
		orgApiKeys: async (orgId: string, creator: string | null) => {
			listed.push([orgId, creator]);
			return [];
		},
		revokeOrgApiKey: async (orgId: string, id: string, creator: string | null) => {
			revoked.push([orgId, id, creator]);
			return id === "known" ? BILLER : null; // made by the billing member
		},
		audit: async () => undefined
	} as unknown as OrgApiKeysDeps["store"];
	const keys = new OrgApiKeys({
		store,
		cfg: { maxPerUser: 10, lastUsedWriteIntervalS: 60 },
		secondFactor: { stepUp: async () => undefined },
		orgRole: async (orgId, userId) => (orgId === ORG ? (roles[userId] ?? null) : null)
	});
	return { keys, created, listed, revoked };
}

const code = (p: Promise<unknown>) =>
	p.then(
		() => "ok",
		(e: DomainError) => `${e.status}/${e.code}`
	);

describe("organisation API keys: make, list, revoke", () => {
	test("an owner or admin makes one in the personal key format, bound to the organisation, shown once", async () => {
		const s = orgKeys({ [ADMIN]: "admin" });
		const made = await s.keys.create(user(ADMIN), ORG, { name: "ci", scopes: ["projects:read", "tasks:write"] });
		expect(made.key).toMatch(/^ff_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
		expect(made).toMatchObject({ orgId: ORG, createdBy: ADMIN, scopes: ["projects:read", "tasks:write"] });
		expect(s.created[0]).toMatchObject({ orgId: ORG, userId: ADMIN });
	});

	test("billing and member roles are refused (403), a non-member does not see the organisation (404)", async () => {
		const s = orgKeys({ [BILLER]: "billing", m: "member" });
		expect(await code(s.keys.create(user(BILLER), ORG, { name: "x", scopes: ["billing:read"] }))).toBe(
			"403/INSUFFICIENT_ROLE"
		);
		expect(await code(s.keys.create(user("m"), ORG, { name: "x", scopes: ["projects:read"] }))).toBe(
			"403/INSUFFICIENT_ROLE"
		);
		expect(await code(s.keys.create(user(ADMIN), OTHER_ORG, { name: "x", scopes: ["projects:read"] }))).toBe(
			"404/NOT_FOUND"
		);
		expect(s.created).toHaveLength(0);
	});

	test("scopes outside the organisation (the creator's account, orgs:write, admin) are a 422", async () => {
		const s = orgKeys({ [ADMIN]: "owner" });
		for (const scope of ["users:read", "users:write", "orgs:write", "admin"] as const)
			expect(
				await code(s.keys.create({ ...user(ADMIN), role: "admin" }, ORG, { name: "x", scopes: [scope] }))
			).toBe("422/VALIDATION_ERROR");
		expect(s.created).toHaveLength(0);
	});

	test("owners and admins list and revoke every key; other members only their own", async () => {
		const s = orgKeys({ [ADMIN]: "admin", [BILLER]: "billing" });
		await s.keys.list(ADMIN, ORG);
		await s.keys.list(BILLER, ORG);
		expect(s.listed).toEqual([
			[ORG, null],
			[ORG, BILLER]
		]);
		expect(await s.keys.revoke(ADMIN, ORG, "known")).toEqual({
			view: { id: "known", orgId: ORG, revoked: true },
			creator: BILLER
		});
		expect(await code(s.keys.revoke(BILLER, ORG, "missing"))).toBe("404/NOT_FOUND");
		expect(s.revoked[1]).toEqual([ORG, "missing", BILLER]);
		expect(await code(s.keys.list(ADMIN, OTHER_ORG))).toBe("404/NOT_FOUND");
	});
});

describe("organisation API keys: verification", () => {
	function verifier(orgId: string | null, member: boolean) {
		const fresh = newApiKey();
		const row: ApiKeyForVerification = {
			id: fresh.id,
			user_id: ADMIN,
			scopes: ["projects:read"],
			last_used_at: new Date(),
			allowed_models: null,
			monthly_budget_credits: null,
			monthly_cap_credits: null,
			rpm: null,
			tpm: null,
			org_id: orgId,
			secret_hash: fresh.secretHash,
			role: "user",
			usable: true
		};
		const asked: string[] = [];
		const keys = new ApiKeys({
			store: {
				apiKeyForVerification: async () => row,
				touchApiKey: async () => undefined
			} as unknown as ApiKeysDeps["store"],
			cfg: { maxPerUser: 10, lastUsedWriteIntervalS: 60 },
			secondFactor: { stepUp: async () => undefined },
			now: () => Date.now(),
			orgRole: async (o, u) => {
				asked.push(`${o}/${u}`);
				return member ? "admin" : null;
			},
			onTouchFailed: () => undefined
		});
		return { keys, key: fresh.key, asked };
	}

	test("a member's organisation key stands for the creator with the organisation attached", async () => {
		const v = verifier(ORG, true);
		expect(await v.keys.verify(v.key)).toEqual({
			id: ADMIN,
			role: "user",
			keyId: expect.any(String),
			orgId: ORG,
			scopes: ["projects:read"]
		});
		expect(v.asked).toEqual([`${ORG}/${ADMIN}`]);
	});

	test("once the creator is no longer a member, the key is refused (null: 401)", async () => {
		const v = verifier(ORG, false);
		expect(await v.keys.verify(v.key)).toBeNull();
	});

	test("a personal key never asks the organisation", async () => {
		const v = verifier(null, false);
		expect(await v.keys.verify(v.key)).toMatchObject({ id: ADMIN });
		expect(v.asked).toEqual([]);
	});
});

describe("organisation API keys: staying inside the organisation", () => {
	const key: AuthUser = { id: ADMIN, role: "user", keyId: "k", orgId: ORG, scopes: ["projects:read"] };
	const session = user(ADMIN);

	test("a resource of another organisation, or a personal one, is 404 to an organisation key", () => {
		expect(() => requireInKeyOrg(key, ORG, "Project")).not.toThrow();
		expect(() => requireInKeyOrg(key, OTHER_ORG, "Project")).toThrow(expect.objectContaining({ status: 404 }));
		expect(() => requireInKeyOrg(key, null, "Project")).toThrow(expect.objectContaining({ status: 404 }));
		expect(() => requireInKeyOrg(session, null, "Project")).not.toThrow();
	});

	test("a request's organisation defaults to the key's own; another one is 404; sessions choose", () => {
		expect(orgOfRequest(key, undefined)).toBe(ORG);
		expect(orgOfRequest(key, ORG)).toBe(ORG);
		expect(() => orgOfRequest(key, OTHER_ORG)).toThrow(expect.objectContaining({ status: 404 }));
		// Hooks run before validation: a malformed id is refused as validation would, not as another organisation.
		expect(() => orgOfRequest(key, "not-a-uuid")).toThrow(
			expect.objectContaining({ status: 422, code: "VALIDATION_ERROR" })
		);
		expect(orgOfRequest(session, undefined)).toBeUndefined();
		expect(orgOfRequest(session, OTHER_ORG)).toBe(OTHER_ORG);
	});
});
