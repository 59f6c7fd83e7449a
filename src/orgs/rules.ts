/**
 * Organisation roles and what each may do. Pure: the store applies these under the organisation's
 * row lock, so "the last owner cannot leave" holds however many requests race.
 *
 * - owner: everything, including other owners (promoting someone to owner is how ownership moves;
 *   an owner then steps down or leaves; there is always at least one owner).
 * - admin: the organisation's name, members (not owners) and invitations (not as owner), member caps.
 * - billing: the organisation's billing (wallet, usage, plans); sees members; changes no projects.
 * - member: sees the organisation and its members.
 */
export const ORG_ROLES = ["owner", "admin", "billing", "member"] as const;
export type OrgRole = (typeof ORG_ROLES)[number];

/** Roles an invitation may carry: ownership is given to a member, never to an address. */
export const INVITABLE_ROLES = ["admin", "billing", "member"] as const satisfies readonly OrgRole[];

export type OrgAction = "view" | "update" | "manageMembers" | "invite" | "billing" | "manageProjects";

const ALLOWED: Record<OrgAction, readonly OrgRole[]> = {
	view: ORG_ROLES,
	update: ["owner", "admin"],
	manageMembers: ["owner", "admin"],
	invite: ["owner", "admin"],
	billing: ["owner", "admin", "billing"],
	manageProjects: ["owner", "admin"]
};

export function orgCan(role: OrgRole | null | undefined, action: OrgAction): boolean {
	return !!role && ALLOWED[action].includes(role);
}

export type MemberChangeRefusal =
	| "INSUFFICIENT_ROLE" // the actor's role does not allow it
	| "OWNER_REQUIRED" // only an owner may make, change or remove an owner
	| "LAST_OWNER"; // the change would leave the organisation without an owner

/**
 * Whether `actor` may set `target`'s role to `next` (`null`: remove the member). `owners` is the
 * current number of owners. Returns the refusal, or null when allowed.
 */
export function memberChangeRefusal(p: {
	actorId: string;
	actorRole: OrgRole;
	targetId: string;
	targetRole: OrgRole;
	next: OrgRole | null;
	owners: number;
}): MemberChangeRefusal | null {
	const self = p.actorId === p.targetId;
	const touchesOwner = p.targetRole === "owner" || p.next === "owner";
	if (!self || p.next !== null) {
		// Leaving is everyone's right; every other change needs a managing role.
		if (!orgCan(p.actorRole, "manageMembers") && !(self && p.next === null)) return "INSUFFICIENT_ROLE";
		if (touchesOwner && p.actorRole !== "owner") return "OWNER_REQUIRED";
	}
	if (p.targetRole === "owner" && p.next !== "owner" && p.owners <= 1) return "LAST_OWNER";
	return null;
}
