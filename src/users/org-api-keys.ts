/**
 * Organisation API keys (issue 19, docs/orgs.md "API keys"): made, listed and revoked by a signed-in
 * session of the organisation's owners and admins, in the same format and digest as personal keys
 * (src/users/tokens.ts), stored with the organisation's id. Such a key acts as its creator within
 * the organisation only; verification (api-keys.ts) asks for the creator's membership every time,
 * and the actions keep it inside (src/auth/org-key.ts).
 */
import { ORG_KEY_SCOPES, scopesOfRole, type Scope } from "../auth/scopes";
import type { AuthUser } from "../auth/user";
import { Conflict, Forbidden, NotFound, Unprocessable } from "../errors";
import type { UsersConfig } from "./config";
import type { SecondFactor } from "./second-factor";
import type { ApiKeyRow, UsersStore } from "./store";
import { newApiKey } from "./tokens";
import { orgApiKeyView } from "./views";

export interface NewOrgApiKeyInput {
	name: string;
	scopes: Scope[];
	expiresInDays?: number;
	mfaCode?: string;
}

/** Organisation roles that make keys and see and revoke every key of the organisation. */
export const ORG_KEY_MANAGERS: ReadonlySet<string> = new Set(["owner", "admin"]);

/** The user's role in the organisation; a non-member gets 404, as for the organisation's other routes. */
export async function roleInOrg(
	orgRole: (orgId: string, userId: string) => Promise<string | null>,
	orgId: string,
	userId: string
): Promise<string> {
	const role = await orgRole(orgId, userId);
	if (!role) throw NotFound("Organisation");
	return role;
}

export interface OrgApiKeysDeps {
	store: Pick<UsersStore, "createApiKey" | "orgApiKeys" | "revokeOrgApiKey" | "audit">;
	cfg: UsersConfig["apiKeys"];
	secondFactor: Pick<SecondFactor, "stepUp">;
	/** The user's role in the organisation (orgs.roleOf), null when not a member. */
	orgRole(orgId: string, userId: string): Promise<string | null>;
}

const view = (k: ApiKeyRow) => orgApiKeyView({ ...k, org_id: k.org_id ?? "" });

export class OrgApiKeys {
	constructor(private readonly d: OrgApiKeysDeps) {}

	private roleIn(orgId: string, userId: string): Promise<string> {
		return roleInOrg(this.d.orgRole, orgId, userId);
	}

	async create(owner: AuthUser, orgId: string, input: NewOrgApiKeyInput) {
		const role = await this.roleIn(orgId, owner.id);
		if (!ORG_KEY_MANAGERS.has(role))
			throw Forbidden("Only the organisation's owners and admins make its API keys", "INSUFFICIENT_ROLE");
		await this.d.secondFactor.stepUp(owner.id, input.mfaCode);
		const allowed = scopesOfRole(owner.role).filter(s => ORG_KEY_SCOPES.includes(s));
		const denied = input.scopes.filter(s => !allowed.includes(s));
		if (denied.length)
			throw Unprocessable(
				"Some fields are invalid",
				denied.map(s => ({
					field: "scopes",
					message: `scope '${s}' is not available to an organisation API key`,
					type: "scope"
				}))
			);
		const fresh = newApiKey();
		const row = await this.d.store.createApiKey({
			id: fresh.id,
			userId: owner.id,
			name: input.name,
			secretHash: fresh.secretHash,
			scopes: input.scopes,
			expiresInDays: input.expiresInDays ?? null,
			maxPerUser: this.d.cfg.maxPerUser,
			orgId
		});
		if (row === "limit")
			throw Conflict(`An account may hold at most ${this.d.cfg.maxPerUser} active API keys`, "API_KEY_LIMIT");
		// The only time the secret is ever shown.
		return { ...view(row), key: fresh.key };
	}

	/** Owners and admins see every live key of the organisation; other members the ones they made. */
	async list(userId: string, orgId: string) {
		const role = await this.roleIn(orgId, userId);
		const rows = await this.d.store.orgApiKeys(orgId, ORG_KEY_MANAGERS.has(role) ? null : userId);
		return { items: rows.map(view) };
	}

	/** Owners and admins revoke any key of the organisation; other members their own. Returns its creator. */
	async revoke(userId: string, orgId: string, id: string) {
		const role = await this.roleIn(orgId, userId);
		const creator = await this.d.store.revokeOrgApiKey(orgId, id, ORG_KEY_MANAGERS.has(role) ? null : userId);
		if (!creator) throw NotFound("API key");
		await this.d.store.audit(undefined, creator, userId, "apiKey.revoke", { id, orgId });
		return { view: { id, orgId, revoked: true as const }, creator };
	}
}
