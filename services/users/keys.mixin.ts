/**
 * API keys of the users service, mixed into services/users.service.ts: a signed-in session makes,
 * lists and revokes them; the gateway verifies them; the /v1 compatible endpoints hold and settle a
 * key's monthly budget. Each action calls src/users/api-keys.ts.
 */
import type { Context } from "moleculer";
import { ORG_KEY_SCOPES, SCOPES, type Scope } from "../../src/auth/scopes";
import type { AuthUser } from "../../src/auth/user";
import { bumpKeyStamp } from "../../src/auth/api-key-cache";
import { INTERNAL, currentUser, type Ctx } from "../../src/kit/service";
import { runtimeOf } from "../../src/runtime/runtime";
import type { NewApiKeyInput } from "../../src/users/api-keys";
import type { NewOrgApiKeyInput } from "../../src/users/org-api-keys";
import { mfaCodeParam, type UsersMixin, type UsersThis } from "./host";

const keyIdParam = { type: "string", pattern: /^[A-Za-z0-9]{1,64}$/ } as const;
const orgIdParam = { type: "uuid" } as const;
const holdParams = {
	keyId: keyIdParam,
	holdId: { type: "string", min: 1, max: 128 },
	credits: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }
} as const;
/** A monthly spend cap in credits per calendar month (UTC), enforced at the hold (src/payments/spend-caps.ts). */
const capParam = {
	type: "number",
	integer: true,
	min: 0,
	max: Number.MAX_SAFE_INTEGER,
	optional: true,
	nullable: true,
	description: "spend cap per calendar month (UTC) at every hold made with the key; null clears it"
} as const;
type HoldCtx = Context<{ keyId: string; holdId: string; credits: number }>;

export const keysMixin: UsersMixin = {
	name: "users",
	actions: {
		createApiKey: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				name: { type: "string", min: 1, max: 64, trim: true },
				scopes: {
					type: "array",
					items: { type: "enum", values: [...SCOPES] },
					min: 1,
					max: SCOPES.length,
					unique: true
				},
				expiresInDays: { type: "number", integer: true, min: 1, max: 3650, optional: true },
				mfaCode: mfaCodeParam,
				// Limits the /v1 compatible endpoints enforce (docs/compat.md).
				models: {
					type: "array",
					items: { type: "string", min: 1, max: 200 },
					min: 1,
					max: 100,
					unique: true,
					optional: true
				},
				monthlyBudgetCredits: {
					type: "number",
					integer: true,
					min: 1,
					max: Number.MAX_SAFE_INTEGER,
					optional: true
				},
				monthlyCapCredits: { ...capParam, nullable: false },
				rpm: { type: "number", integer: true, min: 1, max: 1_000_000, optional: true },
				tpm: { type: "number", integer: true, min: 1, max: 1_000_000_000, optional: true }
			},
			async handler(this: UsersThis, ctx: Ctx<NewApiKeyInput & { scopes: Scope[] }>) {
				const created = await this.apiKeys.create(currentUser(ctx), ctx.params);
				ctx.meta.$location = "/api/v1/users/me/api-keys";
				return created;
			}
		},

		listApiKeys: {
			auth: "required",
			sessionOnly: true,
			async handler(this: UsersThis, ctx: Ctx) {
				return this.apiKeys.list(currentUser(ctx).id);
			}
		},

		/** Sets or clears a key's monthly spend cap (enforced at every hold made with the key). */
		updateApiKey: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: keyIdParam, monthlyCapCredits: { ...capParam, optional: false } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string; monthlyCapCredits: number | null }>) {
				const userId = currentUser(ctx).id;
				const view = await this.apiKeys.setCap(userId, ctx.params.id, ctx.params.monthlyCapCredits);
				// Gateways that remember the key look it up again, so the next request carries the new cap.
				await bumpKeyStamp(runtimeOf(this.broker).kv, ctx.params.id);
				await this.broker.broadcast("users.apiKey.revoked", { userId, keyId: ctx.params.id });
				return view;
			}
		},

		revokeApiKey: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: keyIdParam },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				const r = await this.apiKeys.revoke(currentUser(ctx).id, ctx.params.id);
				// Gateways that remember the key (src/auth/api-key-cache.ts) stop serving it at once.
				await bumpKeyStamp(runtimeOf(this.broker).kv, ctx.params.id);
				await this.broker.broadcast("users.apiKey.revoked", {
					userId: currentUser(ctx).id,
					keyId: ctx.params.id
				});
				return r;
			}
		},

		// ---- Organisation keys (src/users/org-api-keys.ts; routes under /orgs/:id/keys) ----

		createOrgApiKey: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				id: orgIdParam,
				name: { type: "string", min: 1, max: 64, trim: true },
				scopes: {
					type: "array",
					items: { type: "enum", values: [...ORG_KEY_SCOPES] },
					min: 1,
					max: ORG_KEY_SCOPES.length,
					unique: true
				},
				expiresInDays: { type: "number", integer: true, min: 1, max: 3650, optional: true },
				mfaCode: mfaCodeParam
			},
			async handler(this: UsersThis, ctx: Ctx<NewOrgApiKeyInput & { id: string }>) {
				const { id, ...input } = ctx.params;
				const created = await this.orgApiKeys.create(currentUser(ctx), id, input);
				ctx.meta.$location = `/api/v1/orgs/${id}/keys`;
				return created;
			}
		},

		listOrgApiKeys: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: orgIdParam },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				return this.orgApiKeys.list(currentUser(ctx).id, ctx.params.id);
			}
		},

		revokeOrgApiKey: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: orgIdParam, keyId: keyIdParam },
			async handler(this: UsersThis, ctx: Ctx<{ id: string; keyId: string }>) {
				const r = await this.orgApiKeys.revoke(currentUser(ctx).id, ctx.params.id, ctx.params.keyId);
				await bumpKeyStamp(runtimeOf(this.broker).kv, ctx.params.keyId);
				// Named by the key's creator (whose key it is), as a personal key's revocation is.
				await this.broker.broadcast("users.apiKey.revoked", { userId: r.creator, keyId: ctx.params.keyId });
				return r.view;
			}
		},

		verifyApiKey: {
			visibility: INTERNAL,
			params: { key: { type: "string", max: 256 } },
			async handler(this: UsersThis, ctx: Context<{ key: string }>): Promise<AuthUser | null> {
				return this.apiKeys.verify(ctx.params.key);
			}
		},

		/** Holds part of an API key's monthly budget (ai, for /v1 requests): 402-kind refusal when spent. */
		reserveKeyBudget: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { ...holdParams, limit: { type: "number", integer: true, min: 1, optional: true } },
			async handler(this: UsersThis, ctx: HoldCtx) {
				return this.apiKeys.reserveBudget(ctx.params.keyId, ctx.params.holdId, ctx.params.credits);
			}
		},

		settleKeyBudget: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: holdParams,
			async handler(this: UsersThis, ctx: HoldCtx) {
				return { settled: await this.store.settleKeyBudget(ctx.params.holdId, ctx.params.credits) };
			}
		},

		/** An API key's spend this month (tests, operators). */
		keySpend: {
			visibility: INTERNAL,
			params: { keyId: keyIdParam },
			async handler(this: UsersThis, ctx: Context<{ keyId: string }>) {
				return this.store.keySpend(ctx.params.keyId);
			}
		}
	}
};
