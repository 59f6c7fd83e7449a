/**
 * orgs: organisations, their members and roles, and e-mail invitations. A thin shell: the rules are
 * in src/orgs/rules.ts, the SQL in src/orgs/store.ts, the answers in src/orgs/views.ts (docs/orgs.md).
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { BILLING_ROLES } from "../src/payments/payer";
import { ORG_MEMBERS_CHANGED } from "../src/payments/seats";
import { durableEvents, type DurableThis } from "../mixins/durable-events.mixin";
import { runtimeOf } from "../src/runtime/runtime";
import type { OrgsConfig } from "../src/orgs/config";
import { INVITABLE_ROLES, ORG_ROLES, type OrgRole } from "../src/orgs/rules";
import { INVITATION_TOKEN_PATTERN, OrgStore } from "../src/orgs/store";
import { invitationView, memberView, orgView } from "../src/orgs/views";
import { normalizeEmail } from "../src/users/credentials";
import { INTERNAL, currentUser, type Ctx } from "../src/kit/service";
import { requireInKeyOrg } from "../src/auth/org-key";

interface OrgsThis extends Service, DurableThis {
	cfg: OrgsConfig;
	sequelize: Sequelize;
	store: OrgStore;
	membersChanged(tx: Transaction, orgId: string): Promise<void>;
}

const idParam = { type: "uuid" } as const;
const nameParam = { type: "string", min: 1, max: 100, trim: true } as const;
/** A monthly spend cap in credits per calendar month (UTC); null clears it (src/payments/spend-caps.ts). */
const capParam = {
	type: "number",
	integer: true,
	min: 0,
	max: Number.MAX_SAFE_INTEGER,
	optional: true,
	nullable: true
} as const;

const OrgsService: ServiceSchema<ServiceSettingSchema, Record<string, never>, Record<string, never>, OrgsThis> = {
	name: "orgs",
	// Publishes only: `orgs.members.changed` (the team plan's seats follow the member count; docs/orgs.md).
	mixins: [durableEvents({ group: "orgs" }) as ServiceSchema],

	actions: {
		create: {
			auth: "required",
			scope: "orgs:write",
			params: { $$strict: "remove", name: nameParam },
			async handler(this: OrgsThis, ctx: Ctx<{ name: string }>) {
				const { org } = await this.store.create(currentUser(ctx).id, ctx.params.name, this.cfg.maxOwnedPerUser);
				ctx.meta.$location = `/api/v1/orgs/${org.id}`;
				return orgView(org, "owner", 1);
			}
		},

		list: {
			auth: "required",
			scope: "orgs:read",
			params: { $$strict: "remove" },
			async handler(this: OrgsThis, ctx: Ctx) {
				const rows = await this.store.listFor(currentUser(ctx).id);
				return { items: rows.map(r => orgView(r, r.role, Number(r.members))) };
			}
		},

		get: {
			auth: "required",
			scope: "orgs:read",
			orgKey: true,
			params: { $$strict: "remove", id: idParam },
			async handler(this: OrgsThis, ctx: Ctx<{ id: string }>) {
				requireInKeyOrg(ctx.meta.user, ctx.params.id, "Organisation");
				const { org, role } = await this.store.authorize(ctx.params.id, currentUser(ctx).id, "view");
				return orgView(org, role, await this.store.memberCount(org.id));
			}
		},

		update: {
			auth: "required",
			scope: "orgs:write",
			params: {
				$$strict: "remove",
				id: idParam,
				name: { ...nameParam, optional: true },
				monthlyCapCredits: {
					...capParam,
					description: "The organisation's monthly spend cap on its wallet (null removes it)"
				}
			},
			async handler(this: OrgsThis, ctx: Ctx<{ id: string; name?: string; monthlyCapCredits?: number | null }>) {
				const userId = currentUser(ctx).id;
				const { name, monthlyCapCredits } = ctx.params;
				const org = await this.store.update(ctx.params.id, userId, { name, monthlyCapCredits });
				const { role } = await this.store.authorize(org.id, userId, "view");
				return orgView(org, role, await this.store.memberCount(org.id));
			}
		},

		members: {
			auth: "required",
			scope: "orgs:read",
			orgKey: true,
			params: { $$strict: "remove", id: idParam },
			async handler(this: OrgsThis, ctx: Ctx<{ id: string }>) {
				requireInKeyOrg(ctx.meta.user, ctx.params.id, "Organisation");
				await this.store.authorize(ctx.params.id, currentUser(ctx).id, "view");
				return { items: (await this.store.members(ctx.params.id)).map(memberView) };
			}
		},

		updateMember: {
			auth: "required",
			scope: "orgs:write",
			params: {
				$$strict: "remove",
				id: idParam,
				userId: { type: "uuid" },
				role: { type: "enum", values: [...ORG_ROLES], optional: true },
				monthlyCapCredits: {
					...capParam,
					description: "The member's monthly spend cap on the organisation's wallet (null removes it)"
				}
			},
			async handler(
				this: OrgsThis,
				ctx: Ctx<{ id: string; userId: string; role?: OrgRole; monthlyCapCredits?: number | null }>
			) {
				const { member } = await this.store.changeMember(
					ctx.params.id,
					currentUser(ctx).id,
					ctx.params.userId,
					{
						role: ctx.params.role,
						monthlyCapCredits: ctx.params.monthlyCapCredits
					}
				);
				return memberView(member!);
			}
		},

		removeMember: {
			auth: "required",
			scope: "orgs:write",
			params: { $$strict: "remove", id: idParam, userId: { type: "uuid" } },
			async handler(this: OrgsThis, ctx: Ctx<{ id: string; userId: string }>) {
				await this.store.changeMember(
					ctx.params.id,
					currentUser(ctx).id,
					ctx.params.userId,
					{ remove: true },
					this.membersChanged
				);
				// Org API keys and sessions act on membership read per request: nothing is cached to drop.
				return { orgId: ctx.params.id, userId: ctx.params.userId, removed: true as const };
			}
		},

		invite: {
			auth: "required",
			scope: "orgs:write",
			params: {
				$$strict: "remove",
				id: idParam,
				email: { type: "email", max: 254, normalize: true },
				role: { type: "enum", values: [...INVITABLE_ROLES], default: "member" }
			},
			async handler(this: OrgsThis, ctx: Ctx<{ id: string; email: string; role: OrgRole }>) {
				const userId = currentUser(ctx).id;
				const email = normalizeEmail(ctx.params.email) ?? ctx.params.email;
				const { invitation, token, org } = await this.store.invite(
					ctx.params.id,
					userId,
					email,
					ctx.params.role,
					this.cfg.invitationTtlS,
					this.cfg.maxPendingInvitations
				);
				// The token leaves only in the message; the answer never carries it.
				await ctx.call("users.sendOrgInvitation", {
					to: email,
					orgName: org.name,
					role: ctx.params.role,
					inviterId: userId,
					token,
					expiresInS: this.cfg.invitationTtlS
				});
				ctx.meta.$location = `/api/v1/orgs/${org.id}/members`;
				return invitationView(invitation);
			}
		},

		acceptInvitation: {
			auth: "required",
			scope: "orgs:write",
			params: { $$strict: "remove", token: { type: "string", pattern: INVITATION_TOKEN_PATTERN } },
			async handler(this: OrgsThis, ctx: Ctx<{ token: string }>) {
				const userId = currentUser(ctx).id;
				const profile = (await ctx.call("users.profile", { userId })) as {
					email: string | null;
					emailVerified: boolean;
				};
				const verified = profile.email && profile.emailVerified ? profile.email : null;
				const r = await this.store.accept(
					ctx.params.token,
					userId,
					verified,
					this.cfg.maxMembers,
					this.membersChanged
				);
				return {
					org: orgView(r.org, r.member.role, await this.store.memberCount(r.org.id)),
					member: memberView(r.member),
					alreadyMember: r.alreadyMember
				};
			}
		},

		/** The organisations a user belongs to, with the role in each (projects lists their projects). */
		membershipsOf: {
			visibility: INTERNAL,
			params: { userId: { type: "string", min: 1, max: 128 } },
			async handler(this: OrgsThis, ctx: Ctx<{ userId: string }>) {
				const rows = await this.store.listFor(ctx.params.userId);
				return { items: rows.map(r => ({ orgId: r.id, role: r.role })) };
			}
		},

		/** Who hears about an organisation's billing (users mails the past-due notice): name and billing-role members. */
		/** Operators (REPL orgs-show, orgs-grant): organisations by id or name, with their members. */
		operatorFind: {
			visibility: INTERNAL,
			params: { ref: { type: "string", min: 1, max: 100, trim: true } },
			async handler(this: OrgsThis, ctx: Ctx<{ ref: string }>) {
				const orgs = await this.store.find(ctx.params.ref);
				const items = [];
				for (const org of orgs) {
					const members = await this.store.members(org.id);
					const { role: _role, ...view } = orgView(org, "owner", members.length);
					items.push({ ...view, memberList: members.map(memberView) });
				}
				return { items };
			}
		},

		billingContacts: {
			visibility: INTERNAL,
			params: { orgId: idParam },
			async handler(this: OrgsThis, ctx: Ctx<{ orgId: string }>) {
				const [org] = await this.sequelize.query<{ name: string }>(`SELECT name FROM orgs WHERE id = $1`, {
					bind: [ctx.params.orgId],
					type: QueryTypes.SELECT
				});
				if (!org) return null;
				const members = await this.store.members(ctx.params.orgId);
				return { name: org.name, userIds: members.filter(m => BILLING_ROLES.has(m.role)).map(m => m.user_id) };
			}
		},

		/** How many members an organisation has (payments sets the team plan's seats from it), or null. */
		seatCount: {
			visibility: INTERNAL,
			params: { orgId: idParam },
			async handler(this: OrgsThis, ctx: Ctx<{ orgId: string }>) {
				const [org] = await this.sequelize.query(`SELECT id FROM orgs WHERE id = $1`, {
					bind: [ctx.params.orgId],
					type: QueryTypes.SELECT
				});
				return org
					? { orgId: ctx.params.orgId, members: await this.store.memberCount(ctx.params.orgId) }
					: null;
			}
		},

		/**
		 * The caller's role in an organisation, or null (other services authorise org resources with it),
		 * with the caps on their spending of its wallet: their own and the organisation's.
		 */
		roleOf: {
			visibility: INTERNAL,
			params: { orgId: idParam, userId: { type: "string", min: 1, max: 128 } },
			async handler(this: OrgsThis, ctx: Ctx<{ orgId: string; userId: string }>) {
				const m = await this.store.memberWithCaps(ctx.params.orgId, ctx.params.userId);
				const num = (v: string | null) => (v == null ? null : Number(v));
				return m
					? {
							role: m.role,
							monthlyCapCredits: num(m.monthly_cap_credits),
							orgMonthlyCapCredits: num(m.org_monthly_cap_credits)
						}
					: null;
			}
		}
	},

	methods: {
		/**
		 * The member count changed: a durable event in the transaction of the change (the outbox), so
		 * the seats follow even when the node dies right after the commit.
		 */
		async membersChanged(this: OrgsThis, tx: Transaction, orgId: string) {
			await this.publishDurable(tx, ORG_MEMBERS_CHANGED, { orgId });
		}
	},

	created(this: OrgsThis) {
		const rt = runtimeOf(this.broker);
		this.cfg = rt.config.orgs;
		this.sequelize = rt.sequelize;
		this.store = new OrgStore(rt.sequelize);
	}
};

export default OrgsService as unknown as ServiceSchema;
