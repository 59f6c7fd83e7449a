/**
 * Who may touch a project, asked of the database: the role checks every action starts with, and
 * member changes under the project row lock. The rules themselves are pure, in access.ts.
 */
import type { Transaction } from "sequelize";
import { DomainError, Forbidden, NotFound } from "../errors";
import { checkMemberChange, effectiveRole, hasRole } from "./access";
import type { MemberChange, OrgRoleOfMember, ProjectRole } from "./access";
import { isProjectId } from "./repository";
import type { ProjectRecord, ProjectsRepository } from "./repository";

export type GuardRepo = Pick<ProjectsRepository, "projectForMember" | "project" | "members">;

/** The version `requested` of `project` (default its head), or a 404 past the head. */
export function resolveVersion(project: ProjectRecord, requested: number | undefined): number {
	if (requested === undefined) return project.headVersion;
	if (requested > project.headVersion)
		throw NotFound("Version", {
			field: "version",
			reason: `the project's latest version is ${project.headVersion}`
		});
	return requested;
}

/** A user's role in an organisation, asked of the orgs service on every check (null: not a member). */
export type OrgRoleLookup = (orgId: string, userId: string) => Promise<OrgRoleOfMember | null>;

export class ProjectGuard {
	constructor(
		private readonly repo: GuardRepo,
		private readonly orgRole: OrgRoleLookup
	) {}

	/**
	 * The project and the role that counts for `userId` (access.ts `effectiveRole`), or null when
	 * the user has none. An organisation's project asks the organisation on every call, so a removed
	 * member loses access on the next request.
	 */
	private async found(
		projectId: string,
		userId: string,
		tx?: Transaction,
		lock = false
	): Promise<{ project: ProjectRecord; role: ProjectRole } | null> {
		const row = await this.repo.projectForMember(projectId, userId, tx, lock);
		if (!row) return null;
		const orgId = row.project.orgId;
		const org = orgId ? { owned: true, role: await this.orgRole(orgId, userId) } : { owned: false, role: null };
		const role = effectiveRole(row.role, org);
		return role ? { project: row.project, role } : null;
	}

	/**
	 * The project and the user's role, when it is at least `min`; 404 for a non-member, a deleted
	 * project or a malformed id (the same answer as someone else's project), 403 for too low a role.
	 */
	async require(
		projectId: string,
		userId: string,
		min: ProjectRole,
		opts: { allowDeleted?: boolean } = {}
	): Promise<{ project: ProjectRecord; role: ProjectRole }> {
		if (!isProjectId(projectId)) throw NotFound("Project");
		const found = await this.found(projectId, userId);
		if (!found || (found.project.status === "deleted" && !opts.allowDeleted)) throw NotFound("Project");
		if (!hasRole(found.role, min))
			throw Forbidden(`This needs the ${min} role in the project; you are a ${found.role}`, "INSUFFICIENT_ROLE");
		return found;
	}

	/** Any project by id, deleted ones included (operators), or a 404. */
	async existing(projectId: string): Promise<ProjectRecord> {
		const project = isProjectId(projectId) ? await this.repo.project(projectId) : null;
		if (!project) throw NotFound("Project");
		return project;
	}

	/** A live project: the user's (viewer) when `userId` is given, else any not deleted (indexing). */
	async live(projectId: string, userId?: string): Promise<ProjectRecord> {
		if (userId !== undefined) return (await this.require(projectId, userId, "viewer")).project;
		const project = await this.existing(projectId);
		if (project.status === "deleted") throw NotFound("Project");
		return project;
	}

	/**
	 * The project locked for an owner's change (`what`, e.g. "delete a project"); 404 as `require`
	 * (an owner still finds a deleted project with `deleted`), 403 `INSUFFICIENT_ROLE` otherwise.
	 */
	async forOwner(
		tx: Transaction,
		projectId: string,
		userId: string,
		what: string,
		opts: { deleted?: boolean } = {}
	): Promise<{ project: ProjectRecord; role: ProjectRole }> {
		const found = await this.found(projectId, userId, tx, true);
		const hidden = found?.project.status === "deleted" && !(opts.deleted && found.role === "owner");
		if (!found || hidden) throw NotFound("Project");
		if (!hasRole(found.role, "owner")) throw Forbidden(`Only an owner can ${what}`, "INSUFFICIENT_ROLE");
		return found;
	}

	/**
	 * Checks a member change under the project row lock (which serialises member changes, so two
	 * owners cannot demote each other to zero owners); throws the verdict's error on `field`.
	 */
	async memberChange(
		tx: Transaction,
		projectId: string,
		change: { actorId: string; targetId: string; change: MemberChange; field: string }
	): Promise<{ noop: boolean }> {
		const { actorId, targetId, field } = change;
		const found = await this.found(projectId, actorId, tx, true);
		if (!found || found.project.status === "deleted") throw NotFound("Project");
		const members = await this.repo.members(projectId, tx);
		const verdict = checkMemberChange({
			actorId,
			actorRole: found.role,
			targetId,
			targetRole: members.find(m => m.userId === targetId)?.role ?? null,
			change: change.change,
			// An organisation's project is never orphaned: its owners and admins manage it.
			ownerCount: found.project.orgId ? Number.POSITIVE_INFINITY : members.filter(m => m.role === "owner").length
		});
		if (!verdict.ok)
			throw new DomainError(verdict.code, verdict.status, verdict.reason, { field, reason: verdict.reason });
		return { noop: verdict.noop };
	}
}
