/**
 * API keys: made by a signed-in session, never wider than the owner's role, shown once, stored as a
 * SHA-256 digest (src/users/tokens.ts). The gateway verifies a key on every request; the /v1
 * compatible endpoints hold and settle a key's monthly budget (docs/compat.md).
 */
import type { Scope } from "../auth/scopes";
import { scopesOfRole } from "../auth/scopes";
import type { AuthUser } from "../auth/user";
import { CompatError, toWire } from "../compat/errors";
import { Conflict, NotFound, Unprocessable } from "../errors";
import type { UsersConfig } from "./config";
import type { SecondFactor } from "./second-factor";
import type { ApiKeyForVerification, UsersStore } from "./store";
import { digestsEqual, newApiKey, parseApiKey, sha256 } from "./tokens";
import { apiKeyView } from "./views";

export interface NewApiKeyInput {
	name: string;
	scopes: Scope[];
	expiresInDays?: number;
	mfaCode?: string;
	models?: string[];
	monthlyBudgetCredits?: number;
	monthlyCapCredits?: number;
	rpm?: number;
	tpm?: number;
}

export interface ApiKeysDeps {
	store: Pick<
		UsersStore,
		| "createApiKey"
		| "apiKeysOf"
		| "revokeApiKey"
		| "setApiKeyCap"
		| "apiKeyForVerification"
		| "touchApiKey"
		| "reserveKeyBudget"
		| "settleKeyBudget"
		| "audit"
	>;
	cfg: UsersConfig["apiKeys"];
	secondFactor: Pick<SecondFactor, "stepUp">;
	now(): number;
	/** The creator's role in an organisation key's organisation (orgs.roleOf), null when not a member. */
	orgRole(orgId: string, userId: string): Promise<string | null>;
	/** Told when recording a key's last use failed (it is retried at the next use). */
	onTouchFailed(err: Error): void;
}

/** The user a verified key stands for: its scopes within the role, and its /v1 limits if any. */
function keyUser(row: ApiKeyForVerification): AuthUser {
	const limited =
		row.allowed_models || row.monthly_budget_credits || row.monthly_cap_credits != null || row.rpm || row.tpm;
	return {
		id: row.user_id,
		role: row.role,
		keyId: row.id,
		...(row.expires_at ? { keyExpiresAt: new Date(row.expires_at).getTime() } : {}),
		...(row.org_id ? { orgId: row.org_id } : {}),
		scopes: row.scopes.filter(s => scopesOfRole(row.role).includes(s as Scope)),
		...(limited
			? {
					keyLimits: {
						models: row.allowed_models,
						monthlyBudgetCredits:
							row.monthly_budget_credits == null ? null : Number(row.monthly_budget_credits),
						monthlyCapCredits: row.monthly_cap_credits == null ? null : Number(row.monthly_cap_credits),
						rpm: row.rpm,
						tpm: row.tpm
					}
				}
			: {})
	};
}

export class ApiKeys {
	constructor(private readonly d: ApiKeysDeps) {}

	async create(owner: AuthUser, input: NewApiKeyInput) {
		await this.d.secondFactor.stepUp(owner.id, input.mfaCode);
		const allowed = scopesOfRole(owner.role);
		const denied = input.scopes.filter(s => !allowed.includes(s));
		if (denied.length)
			throw Unprocessable(
				"Some fields are invalid",
				denied.map(s => ({
					field: "scopes",
					message: `scope '${s}' is not available to role ${owner.role}`,
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
			limits: {
				models: input.models ?? null,
				monthlyBudgetCredits: input.monthlyBudgetCredits ?? null,
				monthlyCapCredits: input.monthlyCapCredits ?? null,
				rpm: input.rpm ?? null,
				tpm: input.tpm ?? null
			}
		});
		if (row === "limit")
			throw Conflict(`An account may hold at most ${this.d.cfg.maxPerUser} active API keys`, "API_KEY_LIMIT");
		// The only time the secret is ever shown.
		return { ...apiKeyView(row), key: fresh.key };
	}

	async list(userId: string) {
		return { items: (await this.d.store.apiKeysOf(userId)).map(apiKeyView) };
	}

	/** Sets or clears (null) a key's monthly spend cap; 404 for a key the user does not have. */
	async setCap(userId: string, id: string, monthlyCapCredits: number | null) {
		const row = await this.d.store.setApiKeyCap(userId, id, monthlyCapCredits);
		if (!row) throw NotFound("API key");
		await this.d.store.audit(undefined, userId, userId, "apiKey.update", { id, monthlyCapCredits });
		return apiKeyView(row);
	}

	async revoke(userId: string, id: string): Promise<{ id: string; revoked: true }> {
		if (!(await this.d.store.revokeApiKey(userId, id))) throw NotFound("API key");
		await this.d.store.audit(undefined, userId, userId, "apiKey.revoke", { id });
		return { id, revoked: true };
	}

	/** The user a key stands for, or null for anything that is not a live key (nor a member's organisation key). Records its use, at most once per interval. */
	async verify(key: string): Promise<AuthUser | null> {
		const parsed = parseApiKey(key);
		if (!parsed) return null;
		const row = await this.d.store.apiKeyForVerification(parsed.id);
		if (!row || !digestsEqual(row.secret_hash, sha256(parsed.secret)) || !row.usable) return null;
		// An organisation key lives only while its creator is a member: asked on every request, so a
		// removed member's keys stop at once.
		if (row.org_id && !(await this.d.orgRole(row.org_id, row.user_id))) return null;
		const intervalS = this.d.cfg.lastUsedWriteIntervalS;
		if (!row.last_used_at || this.d.now() - new Date(row.last_used_at).getTime() > intervalS * 1000)
			this.d.store.touchApiKey(row.id, intervalS).catch((err: Error) => this.d.onTouchFailed(err));
		return keyUser(row);
	}

	/** Holds part of the key's monthly budget; a 402-kind refusal (the /v1 error shape) when it is spent. */
	async reserveBudget(keyId: string, holdId: string, credits: number): Promise<{ held: boolean }> {
		const r = await this.d.store.reserveKeyBudget(keyId, holdId, credits);
		if (r === "over")
			throw toWire(
				new CompatError(
					"insufficient_credits",
					`This API key's monthly budget does not cover this request (at most ${credits} credits)`,
					null,
					"key_budget_exceeded"
				)
			);
		return { held: r === "held" };
	}
}
