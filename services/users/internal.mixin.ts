/**
 * What the gateway and the other services call on the users service (never published by the
 * gateway), mixed into services/users.service.ts: session state, tiers, profiles, wallet owners,
 * operator session actions, and the invitation mail of orgs.
 */
import type { Context } from "moleculer";
import { orgPayerId } from "../../src/payments/payer";
import type { Role } from "../../src/auth/user";
import { NotFound } from "../../src/errors";
import { INTERNAL } from "../../src/kit/service";
import { CACHED_ACTIONS } from "../../src/users/cache";
import { profileOf } from "../../src/users/profile";
import { summarizeTier, type TierSummary } from "../../src/users/tier-facts";
import { isUuid } from "../../src/kit/uuid";
import { sessionView, type ProfileView } from "../../src/users/views";
import { ADDRESS_PATTERN, type UsersMixin, type UsersThis } from "./host";

export const internalMixin: UsersMixin = {
	name: "users",
	actions: {
		/**
		 * Mails an organisation invitation through the account mailer (orgs service; the dev outbox in
		 * embedded mode). The link is built here from APP_URL; the token travels only in the message.
		 */
		sendOrgInvitation: {
			visibility: INTERNAL,
			params: {
				to: { type: "email", max: 254 },
				orgName: { type: "string", min: 1, max: 100 },
				role: { type: "string", min: 1, max: 32 },
				inviterId: { type: "uuid" },
				token: { type: "string", pattern: /^ffi_[A-Za-z0-9_-]{43}$/ },
				expiresInS: { type: "number", integer: true, min: 1 }
			},
			async handler(
				this: UsersThis,
				ctx: Context<{
					to: string;
					orgName: string;
					role: string;
					inviterId: string;
					token: string;
					expiresInS: number;
				}>
			) {
				const p = ctx.params;
				const inviter = await this.store.userById(p.inviterId);
				this.mailer.sendLater(p.to, {
					kind: "orgInvitation",
					orgName: p.orgName,
					role: p.role,
					inviter: inviter?.display_name ?? inviter?.email ?? null,
					link: `${this.cfg.mail.appUrl}/invitations/accept?token=${encodeURIComponent(p.token)}`,
					expiresInS: p.expiresInS
				});
				return { sent: true };
			}
		},

		/**
		 * Who owns a wallet (payments attributes on-chain stakes through it): the account that linked
		 * it, or the payer `org:<uuid>` of the organisation that did (src/users/org-wallets.ts).
		 */
		walletOwner: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { address: { type: "string", pattern: ADDRESS_PATTERN } },
			async handler(this: UsersThis, ctx: Context<{ address: string }>): Promise<{ userId: string } | null> {
				const address = ctx.params.address.toLowerCase();
				const w = await this.store.walletByAddress(address);
				if (w) return { userId: w.user_id };
				const o = await this.store.orgWalletByAddress(address);
				return o ? { userId: orgPayerId(o.org_id) } : null;
			}
		},

		authState: {
			visibility: INTERNAL,
			cache: { keys: [...CACHED_ACTIONS.authState.keys] },
			params: { userId: { type: "string", max: 64 }, sid: { type: "string", max: 64 } },
			async handler(
				this: UsersThis,
				ctx: Context<{ userId: string; sid: string }>
			): Promise<{ role: Role } | null> {
				if (!isUuid(ctx.params.userId) || !isUuid(ctx.params.sid)) return null;
				return this.store.authState(ctx.params.userId, ctx.params.sid);
			}
		},

		/** Which of these ids are accounts (disabled ones included); other strings are simply not. */
		exist: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { userIds: { type: "array", items: { type: "string", min: 1, max: 200 }, min: 1, max: 500 } },
			async handler(this: UsersThis, ctx: Context<{ userIds: string[] }>): Promise<{ known: string[] }> {
				const ids = [...new Set(ctx.params.userIds.filter(isUuid))];
				return { known: ids.length ? await this.store.existingUserIds(ids) : [] };
			}
		},

		getTier: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			cache: { keys: [...CACHED_ACTIONS.getTier.keys] },
			params: { userId: { type: "uuid" } },
			async handler(
				this: UsersThis,
				ctx: Context<{ userId: string }>
			): Promise<TierSummary & { userId: string }> {
				const facts = await this.store.tierFacts(ctx.params.userId);
				if (!facts.exists) throw NotFound("User");
				return { userId: ctx.params.userId, ...summarizeTier(facts, Date.now()) };
			}
		},

		profile: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			cache: { keys: [...CACHED_ACTIONS.profile.keys] },
			params: { userId: { type: "uuid" } },
			async handler(this: UsersThis, ctx: Context<{ userId: string }>): Promise<ProfileView> {
				return profileOf(this.store, ctx.params.userId, Date.now());
			}
		},

		userSessions: {
			visibility: INTERNAL,
			params: { userId: { type: "uuid" }, includeEnded: { type: "boolean", optional: true } },
			async handler(this: UsersThis, ctx: Context<{ userId: string; includeEnded?: boolean }>) {
				const sessions = await this.sessions.list(ctx.params.userId, ctx.params.includeEnded ?? false);
				return { items: sessions.map(s => sessionView(s)) };
			}
		},

		revokeUserSessions: {
			visibility: INTERNAL,
			params: { userId: { type: "uuid" }, reason: { type: "string", min: 1, max: 64, default: "operator" } },
			async handler(this: UsersThis, ctx: Context<{ userId: string; reason: string }>) {
				const { userId, reason } = ctx.params;
				const revoked = await this.sessions.endAll(userId, reason);
				await this.store.audit(undefined, userId, "operator", "sessions.revoke", { reason, count: revoked });
				return { userId, revoked };
			}
		}
	}
};
