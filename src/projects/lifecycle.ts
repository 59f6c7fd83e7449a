/**
 * A project's metadata and members: create, change, delete (soft) and restore, add, change and
 * remove members. Each change runs in one transaction under the project row lock that the owner
 * and member checks (guard.ts) take, so two owners cannot, say, demote each other to none.
 */
import { randomUUID } from "node:crypto";
import type { Transaction } from "sequelize";
import { Conflict, DomainError, Forbidden, NotFound } from "../errors";
import type { OrgRoleOfMember, ProjectRole } from "./access";
import type { OrgRoleLookup, ProjectGuard } from "./guard";
import type { ProjectRecord, ProjectsRepository } from "./repository";
import type { Sandboxes } from "./sandboxes";

export interface LifecycleDeps {
	repo: Pick<ProjectsRepository, "createProject" | "updateProject" | "setMember" | "removeMember" | "setOrg">;
	guard: Pick<ProjectGuard, "forOwner" | "memberChange">;
	orgRole: OrgRoleLookup;
	sandboxes: Pick<Sandboxes, "stopIfUp">;
	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
	warn(message: string, err: unknown): void;
}

type Owned = { project: ProjectRecord; role: ProjectRole };

export class ProjectLifecycle {
	constructor(private readonly deps: LifecycleDeps) {}

	/**
	 * A new project at version 0 (empty), owned by its creator, or with `orgId` by that organisation
	 * (the creator must be its owner or admin; a non-member gets 404, as for the organisation itself).
	 */
	async create(ownerId: string, p: { name: string; description: string; orgId?: string }): Promise<ProjectRecord> {
		const { orgId, ...fields } = p;
		if (orgId) await this.requireOrgManager(orgId, ownerId, "create the organisation's projects");
		const id = randomUUID();
		return this.deps.transaction(tx => this.deps.repo.createProject(tx, { id, ownerId, orgId, ...fields }));
	}

	/**
	 * Moves a user's own project into an organisation: the caller must own the project and be an
	 * owner or admin of the organisation. One way: an organisation's project does not move again
	 * (409 `ALREADY_IN_ORG`). Who pays for its tasks does not change yet (issue 19 part 2).
	 */
	async transfer(userId: string, id: string, orgId: string): Promise<Owned> {
		await this.requireOrgManager(orgId, userId, "move projects into the organisation");
		return this.deps.transaction(async tx => {
			const { project } = await this.deps.guard.forOwner(tx, id, userId, "transfer a project");
			if (project.orgId)
				throw Conflict("The project already belongs to an organisation", "ALREADY_IN_ORG", { field: "orgId" });
			// Re-checked under the project lock: a role lost meanwhile refuses the move.
			await this.requireOrgManager(orgId, userId, "move projects into the organisation");
			return { project: await this.deps.repo.setOrg(tx, id, orgId), role: "owner" };
		});
	}

	private async requireOrgManager(orgId: string, userId: string, what: string): Promise<OrgRoleOfMember> {
		const role = await this.deps.orgRole(orgId, userId);
		if (!role) throw NotFound("Organisation", { field: "orgId" });
		if (role !== "owner" && role !== "admin")
			throw Forbidden(`Only an owner or admin of the organisation can ${what}`, "INSUFFICIENT_ROLE");
		return role;
	}

	/** Renames, describes, archives or unarchives (owner). */
	update(
		userId: string,
		id: string,
		patch: { name?: string; description?: string; archived?: boolean }
	): Promise<Owned> {
		const status = patch.archived === undefined ? undefined : patch.archived ? "archived" : "active";
		return this.deps.transaction(async tx => {
			const { role } = await this.deps.guard.forOwner(tx, id, userId, "change a project");
			const { name, description } = patch;
			return { project: await this.deps.repo.updateProject(tx, id, { name, description, status }), role };
		});
	}

	/** Soft-deletes (owner), then stops the sandbox: a deleted project has nothing left to run. */
	async remove(userId: string, id: string): Promise<ProjectRecord> {
		const project = await this.deps.transaction(async tx => {
			await this.deps.guard.forOwner(tx, id, userId, "delete a project");
			return this.deps.repo.updateProject(tx, id, { status: "deleted" });
		});
		await this.deps.sandboxes
			.stopIfUp(project.id)
			.catch(err => this.deps.warn("could not stop the sandbox of a deleted project", err));
		return project;
	}

	/** Undoes a delete before the purge (owner); 409 `PROJECT_NOT_DELETED` for a live project. */
	restore(userId: string, id: string): Promise<Owned> {
		return this.deps.transaction(async tx => {
			const found = await this.deps.guard.forOwner(tx, id, userId, "restore a project", { deleted: true });
			if (found.project.status !== "deleted") throw Conflict("The project is not deleted", "PROJECT_NOT_DELETED");
			return { project: await this.deps.repo.updateProject(tx, id, { status: "active" }), role: found.role };
		});
	}

	/**
	 * Adds a member or changes a role. `accountExists` was asked before (no row stays locked during
	 * that call) and is told only once the actor was found allowed: others learn nothing about accounts.
	 */
	setMember(
		actorId: string,
		id: string,
		member: { userId: string; role: ProjectRole; accountExists: boolean }
	): Promise<void> {
		const { userId, role } = member;
		return this.deps.transaction(async tx => {
			const change = { kind: "set", role } as const;
			const verdict = await this.deps.guard.memberChange(tx, id, {
				actorId,
				targetId: userId,
				change,
				field: "role"
			});
			if (verdict.noop) return;
			if (!member.accountExists)
				throw new DomainError("USER_NOT_FOUND", 404, "No account has this user id", { field: "userId" });
			await this.deps.repo.setMember(tx, id, userId, role, actorId);
		});
	}

	/** Removes a member (owner), or the actor leaves. */
	removeMember(actorId: string, id: string, userId: string): Promise<void> {
		return this.deps.transaction(async tx => {
			const change = { kind: "remove" } as const;
			await this.deps.guard.memberChange(tx, id, { actorId, targetId: userId, change, field: "userId" });
			await this.deps.repo.removeMember(tx, id, userId);
		});
	}
}
