/**
 * Sandbox status changes and the periodic sweep, over the pure state machine of sandbox.ts. Every
 * change is a conditional UPDATE on the row's generation, published as `projects.sandbox.changed`
 * in the same transaction; the sweep fails timed-out sandboxes and purges long-deleted projects.
 */
import type { Transaction } from "sequelize";
import { Conflict, NotFound } from "../errors";
import { isProjectId } from "./repository";
import type { ProjectsRepository, SandboxRecord } from "./repository";
import { transitionSandbox } from "./sandbox";
import type { SandboxActor, SandboxState } from "./sandbox";
import { iso } from "./views";

export const SANDBOX_CHANGED = "projects.sandbox.changed";

export interface SandboxChangedEvent {
	projectId: string;
	from: SandboxState;
	to: SandboxState;
	version: number | null;
	actor: SandboxActor;
	failureReason: string | null;
	generation: number;
	at: string;
}

export interface SandboxesDeps {
	repo: Pick<ProjectsRepository, "sandbox" | "updateSandbox" | "heartbeat" | "failTimedOutSandboxes" | "purge">;
	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
	publish(tx: Transaction, topic: string, payload: unknown): Promise<unknown>;
	timeouts: { heartbeatTimeoutS: number; provisionTimeoutS: number };
	/** Soft-deleted projects older than this are purged by the sweep. */
	purgeAfterS: number;
}

export interface SandboxRequest {
	to: SandboxState;
	actor: SandboxActor;
	version?: number;
	reason?: string;
}

function changedEvent(row: SandboxRecord, from: SandboxState, actor: SandboxActor): SandboxChangedEvent {
	return {
		projectId: row.projectId,
		from,
		to: row.state,
		version: row.version,
		actor,
		failureReason: row.failureReason,
		generation: row.generation,
		at: iso(row.stateChangedAt)!
	};
}

export class Sandboxes {
	constructor(private readonly deps: SandboxesDeps) {}

	/** The sandbox of a project, or a 404 (also for a malformed id). */
	async status(projectId: string): Promise<SandboxRecord> {
		const current = isProjectId(projectId) ? await this.deps.repo.sandbox(projectId) : null;
		if (!current) throw NotFound("Project");
		return current;
	}

	/** Applies a transition: 409 when illegal, unchanged when asked for the current state again. */
	async apply(projectId: string, request: SandboxRequest): Promise<SandboxRecord> {
		// A concurrent transition moves the generation; plan again from what it left.
		for (let attempt = 0; attempt < 3; attempt++) {
			const current = await this.status(projectId);
			const result = transitionSandbox(current, { ...request, now: new Date() });
			if (!result.ok) {
				throw Conflict(`Illegal sandbox transition: ${result.reason}`, result.code, {
					field: "state",
					reason: result.reason,
					state: current.state,
					requested: request.to
				});
			}
			if (!result.changed) return current;
			const updated = await this.deps.transaction(async tx => {
				const row = await this.deps.repo.updateSandbox(tx, projectId, current.generation, result.next);
				if (row) await this.deps.publish(tx, SANDBOX_CHANGED, changedEvent(row, current.state, request.actor));
				return row;
			});
			if (updated) return updated;
		}
		throw Conflict("The sandbox is changing state concurrently; try again", "SANDBOX_BUSY");
	}

	/** Stops the sandbox of a project when it is up (a deleted project has nothing left to run). */
	async stopIfUp(projectId: string): Promise<void> {
		const sandbox = await this.deps.repo.sandbox(projectId);
		if (sandbox && (sandbox.state === "running" || sandbox.state === "provisioning"))
			await this.apply(projectId, { to: "stopped", actor: "user" });
	}

	/** A runner's heartbeat: the status, or 409 `SANDBOX_NOT_RUNNING` (the runner should stop). */
	async heartbeat(projectId: string, version: number | undefined): Promise<SandboxRecord> {
		if (!isProjectId(projectId)) throw NotFound("Project");
		const beat = await this.deps.repo.heartbeat(projectId, version ?? null);
		if (beat) return beat;
		const current = await this.status(projectId);
		const at = current.version !== null ? ` at version ${current.version}` : "";
		throw Conflict(`The sandbox is ${current.state}${at}, not running this version`, "SANDBOX_NOT_RUNNING", {
			field: "state",
			reason: "heartbeat from a sandbox that is not running",
			state: current.state,
			version: current.version
		});
	}

	/** One sweep: timed-out sandboxes become failed, long-deleted projects are purged. */
	async sweep(): Promise<{ failedSandboxes: number; purgedProjects: number }> {
		const { heartbeatTimeoutS, provisionTimeoutS } = this.deps.timeouts;
		const failed = await this.deps.transaction(async tx => {
			const rows = await this.deps.repo.failTimedOutSandboxes(tx, heartbeatTimeoutS, provisionTimeoutS);
			for (const row of rows) await this.deps.publish(tx, SANDBOX_CHANGED, changedEvent(row, row.from, "sweep"));
			return rows.length;
		});
		const purged = await this.deps.repo.purge({
			deletedBefore: new Date(Date.now() - this.deps.purgeAfterS * 1000)
		});
		return { failedSandboxes: failed, purgedProjects: purged.length };
	}
}
