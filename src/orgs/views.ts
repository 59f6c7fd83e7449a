/** The orgs service's answers over HTTP (response schemas of the REST contract; src/http/schema.ts). */
import { Type } from "@sinclair/typebox";
import { Count, DateTime, Email, Enum, List, Named, Nullable, Str, Uuid } from "../http/schema";
import { INVITABLE_ROLES, ORG_ROLES, type OrgRole } from "./rules";
import type { InvitationRow, MemberRow, OrgRow } from "./store";

const Role = () => Enum(ORG_ROLES);

export const Org = Named("Org", {
	id: Uuid(),
	name: Str(100),
	role: Role(),
	members: Count(),
	monthlyCapCredits: Nullable(
		Count("The organisation's spend cap per calendar month (UTC) on its wallet; null = none")
	),
	createdBy: Uuid(),
	createdAt: DateTime(),
	updatedAt: DateTime()
});

export const OrgMember = Named("OrgMember", {
	orgId: Uuid(),
	userId: Uuid(),
	role: Role(),
	monthlyCapCredits: Nullable(Count("Spend cap per calendar month (UTC) on the organisation's wallet; null = none")),
	addedBy: Nullable(Uuid()),
	createdAt: DateTime(),
	updatedAt: DateTime()
});

export const OrgInvitation = Named("OrgInvitation", {
	id: Uuid(),
	orgId: Uuid(),
	email: Email(),
	role: Enum(INVITABLE_ROLES),
	expiresAt: DateTime(),
	createdAt: DateTime()
});

export const views = {
	create: Org,
	list: Type.Object({ items: List(Org, 1000) }),
	get: Org,
	update: Org,
	members: Type.Object({ items: List(OrgMember, 1000) }),
	updateMember: OrgMember,
	removeMember: Type.Object({ orgId: Uuid(), userId: Uuid(), removed: Type.Literal(true) }),
	invite: OrgInvitation,
	accept: Type.Object({ org: Org, member: OrgMember, alreadyMember: Type.Boolean() })
};

const iso = (d: Date) => new Date(d).toISOString();

export function orgView(o: OrgRow, role: OrgRole, members: number) {
	return {
		id: o.id,
		name: o.name,
		role,
		members,
		monthlyCapCredits: o.monthly_cap_credits == null ? null : Number(o.monthly_cap_credits),
		createdBy: o.created_by,
		createdAt: iso(o.created_at),
		updatedAt: iso(o.updated_at)
	};
}

export function memberView(m: MemberRow) {
	return {
		orgId: m.org_id,
		userId: m.user_id,
		role: m.role,
		monthlyCapCredits: m.monthly_cap_credits == null ? null : Number(m.monthly_cap_credits),
		addedBy: m.added_by,
		createdAt: iso(m.created_at),
		updatedAt: iso(m.updated_at)
	};
}

export function invitationView(i: InvitationRow) {
	return {
		id: i.id,
		orgId: i.org_id,
		email: i.email,
		role: i.role as (typeof INVITABLE_ROLES)[number],
		expiresAt: iso(i.expires_at),
		createdAt: iso(i.created_at)
	};
}
