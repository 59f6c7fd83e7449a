/**
 * Who may do what in a project. Pure.
 *
 * Roles are ordered viewer < editor < owner: viewers read (files, versions, diffs, sandbox
 * status, members); editors also commit and start/stop the sandbox; owners also rename, archive,
 * delete and restore the project and manage its members. A project may have several owners, never
 * none. Anyone who is not a member is told the project does not exist (404), whatever they ask.
 */

export const PROJECT_ROLES = ["owner", "editor", "viewer"] as const;
export type ProjectRole = (typeof PROJECT_ROLES)[number];

const RANK: Readonly<Record<ProjectRole, number>> = { viewer: 1, editor: 2, owner: 3 };

export function isProjectRole(value: unknown): value is ProjectRole {
	return typeof value === "string" && (PROJECT_ROLES as readonly string[]).includes(value);
}

/** Whether `role` is at least `min`; no role (not a member) is never enough. */
export function hasRole(role: ProjectRole | null | undefined, min: ProjectRole): boolean {
	return role != null && RANK[role] >= RANK[min];
}

/** Where a role sorts in member lists: owners (0), editors (1), viewers (2). */
export function memberListRank(role: ProjectRole): number {
	return RANK.owner - RANK[role];
}

export type MemberChange = { kind: "set"; role: ProjectRole } | { kind: "remove" };

export interface MemberChangeInput {
	actorId: string;
	actorRole: ProjectRole;
	targetId: string;
	/** The target's current role, null when not a member. */
	targetRole: ProjectRole | null;
	change: MemberChange;
	ownerCount: number;
}

export type MemberChangeVerdict =
	| { ok: true; noop: boolean }
	| { ok: false; status: 403 | 404 | 409; code: "FORBIDDEN" | "NOT_A_MEMBER" | "LAST_OWNER"; reason: string };

/**
 * Whether a member change is allowed: owners manage everyone; any member may remove themselves
 * (leave); the last owner can be neither removed nor demoted, so a project is never orphaned.
 */
export function checkMemberChange(input: MemberChangeInput): MemberChangeVerdict {
	const { actorId, actorRole, targetId, targetRole, change, ownerCount } = input;
	const leaving = change.kind === "remove" && actorId === targetId;
	if (actorRole !== "owner" && !leaving) {
		return { ok: false, status: 403, code: "FORBIDDEN", reason: "only an owner can manage members" };
	}
	if (change.kind === "remove" && targetRole === null) {
		return { ok: false, status: 404, code: "NOT_A_MEMBER", reason: "that user is not a member of this project" };
	}
	const losesOwner = targetRole === "owner" && (change.kind === "remove" || change.role !== "owner");
	if (losesOwner && ownerCount <= 1) {
		return {
			ok: false,
			status: 409,
			code: "LAST_OWNER",
			reason: "a project needs at least one owner; add another owner first"
		};
	}
	return { ok: true, noop: change.kind === "set" && change.role === targetRole };
}

/** An organisation role as the orgs service reports it (src/orgs/rules.ts). */
export type OrgRoleOfMember = "owner" | "admin" | "billing" | "member";

/**
 * The role that counts in a project, from the user's own project role and, for an organisation's
 * project, their role in that organisation (null: not a member of it):
 *
 * | organisation role | role in the organisation's project |
 * |---|---|
 * | owner, admin | owner (manage the project and its members) |
 * | member | their project role, else viewer |
 * | billing | viewer (reads; changes no project), whatever their project role |
 * | none | none: a project role alone gives nothing, so leaving the organisation ends access |
 *
 * A user's own project (no organisation) goes by the project role only.
 */
export function effectiveRole(
	projectRole: ProjectRole | null,
	org: { owned: boolean; role: OrgRoleOfMember | null }
): ProjectRole | null {
	if (!org.owned) return projectRole;
	switch (org.role) {
		case null:
			return null;
		case "owner":
		case "admin":
			return "owner";
		case "billing":
			return "viewer";
		case "member":
			return projectRole ?? "viewer";
	}
}
