/**
 * Organisation wallets (src/users/org-wallets.ts; routes under /orgs/:id/wallets), mixed into
 * services/users.service.ts: the users service verifies SIWE proofs and holds every wallet claim, so
 * an address belongs to one account or one organisation.
 */
import { currentUser, type Ctx } from "../../src/kit/service";
import type { SiweInput } from "../../src/users/siwe-proof";
import { ADDRESS_PATTERN, mfaCodeParam, siweParams, type UsersMixin, type UsersThis } from "./host";

const orgIdParam = { type: "uuid" } as const;

export const orgWalletsMixin: UsersMixin = {
	name: "users",
	actions: {
		linkOrgWallet: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: orgIdParam, ...siweParams, mfaCode: mfaCodeParam },
			async handler(this: UsersThis, ctx: Ctx<SiweInput & { id: string; mfaCode?: string }>) {
				const { id, ...input } = ctx.params;
				const linked = await this.orgWallets.link(currentUser(ctx).id, id, input);
				ctx.meta.$location = `/api/v1/orgs/${id}/wallets`;
				return linked;
			}
		},

		listOrgWallets: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: orgIdParam },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				return this.orgWallets.list(currentUser(ctx).id, ctx.params.id);
			}
		},

		unlinkOrgWallet: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: orgIdParam, address: { type: "string", pattern: ADDRESS_PATTERN } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string; address: string }>) {
				return this.orgWallets.unlink(currentUser(ctx).id, ctx.params.id, ctx.params.address);
			}
		}
	}
};
