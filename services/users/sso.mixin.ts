/**
 * Single sign-on actions of the users service (issue 18), mixed into services/users.service.ts:
 * OpenID Connect and GitHub sign-in, and linking identities to a signed-in account. Each action
 * validates its params and calls src/users/sso.ts.
 */
import { runtimeOf } from "../../src/runtime/runtime";
import { IdentityStore } from "../../src/users/identity-store";
import { currentUser, type Ctx } from "../../src/kit/service";
import { SSO_PROVIDER_ID } from "../../src/users/sso-config";
import { ssoProviders, type CallbackParams } from "../../src/users/sso-providers";
import { FLOW_TOKEN_PATTERN, SingleSignOn, identityView } from "../../src/users/sso";
import { mfaCodeParam, type UsersMixin, type UsersThis } from "./host";

interface SsoThis extends UsersThis {
	sso: SingleSignOn;
}

const providerParam = { type: "string", pattern: SSO_PROVIDER_ID, description: "The provider's id" } as const;
const callbackParams = {
	provider: providerParam,
	flowToken: {
		type: "string",
		pattern: FLOW_TOKEN_PATTERN,
		description: "The flowToken of the start answer (kept by the client that started)"
	},
	code: { type: "string", min: 1, max: 2048, description: "The `code` parameter of the callback" },
	state: { type: "string", min: 1, max: 512, description: "The `state` parameter of the callback" },
	iss: {
		type: "string",
		min: 1,
		max: 2048,
		optional: true,
		description: "The `iss` parameter of the callback, when the provider sends one (RFC 9207)"
	}
} as const;

type CallbackCtx = Ctx<CallbackParams & { provider: string; flowToken: string; mfaCode?: string }>;
const callbackOf = (p: CallbackParams): CallbackParams => ({ code: p.code, state: p.state, iss: p.iss });

export const ssoMixin: UsersMixin<SsoThis> = {
	name: "users",
	actions: {
		ssoProviders: {
			async handler(this: SsoThis) {
				return { items: this.sso.providerList() };
			}
		},

		ssoStart: {
			params: { $$strict: "remove", provider: providerParam },
			async handler(this: SsoThis, ctx: Ctx<{ provider: string }>) {
				return this.sso.start(ctx.params.provider, "sign_in", null);
			}
		},

		ssoCallback: {
			params: { $$strict: "remove", ...callbackParams },
			async handler(this: SsoThis, ctx: CallbackCtx) {
				const p = ctx.params;
				const signedIn = await this.sso.signIn(p.provider, p.flowToken, callbackOf(p));
				const { userId, created } = signedIn;
				if (created) {
					await this.store.audit(undefined, userId, userId, "user.register", {
						method: "sso",
						provider: p.provider
					});
					// A sign-up with an address the provider vouched for: a proven address, so the welcome
					// grant as after a verification link (once per address and account, signup_grants).
					if ("email" in signedIn && signedIn.email)
						await this.offerSignupGrant(
							userId,
							{ kind: "email", email: signedIn.email },
							"verified",
							ctx.meta.ip
						);
				}
				return { ...(await this.steps.complete(userId, "sso", ctx.meta)), created };
			}
		},

		identityLinkStart: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", provider: providerParam },
			async handler(this: SsoThis, ctx: Ctx<{ provider: string }>) {
				return this.sso.start(ctx.params.provider, "link", currentUser(ctx).id);
			}
		},

		linkIdentity: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", ...callbackParams, mfaCode: mfaCodeParam },
			async handler(this: SsoThis, ctx: CallbackCtx) {
				const p = ctx.params;
				const r = await this.sso.link(currentUser(ctx).id, p.provider, p.flowToken, callbackOf(p), p.mfaCode);
				return { ...identityView(r.identity), alreadyLinked: r.alreadyLinked };
			}
		},

		listIdentities: {
			auth: "required",
			sessionOnly: true,
			async handler(this: SsoThis, ctx: Ctx) {
				return { items: (await this.sso.list(currentUser(ctx).id)).map(identityView) };
			}
		},

		removeIdentity: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: { type: "uuid" } },
			async handler(this: SsoThis, ctx: Ctx<{ id: string }>) {
				await this.sso.remove(currentUser(ctx).id, ctx.params.id);
				return { id: ctx.params.id, removed: true };
			}
		}
	},

	created(this: SsoThis) {
		const rt = runtimeOf(this.broker);
		this.sso = new SingleSignOn({
			cfg: rt.config.users.sso,
			providers: ssoProviders(rt.config.users.sso, this.logger),
			identities: new IdentityStore(rt.sequelize),
			db: rt.sequelize,
			kv: rt.kv,
			userIdByEmail: async email => (await this.store.userByEmail(email))?.id ?? null,
			stepUp: (userId, code) => this.secondFactor.stepUp(userId, code),
			audit: (userId, action, details) => this.store.audit(undefined, userId, userId, action, details)
		});
	}
};
