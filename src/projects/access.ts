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
