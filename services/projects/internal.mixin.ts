/**
 * The projects service's internal actions for other services (access checks, AI context, commits
 * on a user's behalf), the sandbox runner (reports, heartbeats) and operators (sweep, purge, GC,
 * inspection). Callable over the transporter, never published by the gateway; every one that acts
 * for a user checks that user's role here. Mixed into services/projects.service.ts.
 */
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { NotFound } from "../../src/errors";
import { INTERNAL } from "../../src/kit/service";
import type { Ctx } from "../../src/kit/service";
import { selectContext } from "../../src/projects/context";
import { runBlobGc } from "../../src/projects/gc";
import { resolveVersion } from "../../src/projects/guard";
import { normaliseProjectPath } from "../../src/projects/paths";
import { isProjectId } from "../../src/projects/repository";
import type { SandboxState } from "../../src/projects/sandbox";
import { commitVersion, verifyManifest } from "../../src/projects/versions";
import { projectView, versionView } from "../../src/projects/views";
import { commitParams, idParam, userIdParam, versionParam } from "./this";
import type { Commit, ProjectsThis } from "./this";

const InternalActions: Partial<
	ServiceSchema<ServiceSettingSchema, Record<string, never>, Record<string, never>, ProjectsThis>
> = {
	actions: {
		access: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { projectId: idParam, userId: userIdParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ projectId: string; userId: string }>) {
				const { project, role } = await this.guard.require(ctx.params.projectId, ctx.params.userId, "viewer");
				return {
					projectId: project.id,
					role,
					status: project.status,
					headVersion: project.headVersion,
					// The organisation owning it pays for its tasks (src/tasks/submit.ts).
					orgId: project.orgId
				};
			}
		},

		readContext: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: {
				projectId: idParam,
				userId: userIdParam,
				version: { ...versionParam, optional: true },
				maxBytes: { type: "number", integer: true, min: 1 },
				paths: { type: "array", items: "string", max: 10_000, optional: true }
			},
			async handler(
				this: ProjectsThis,
				ctx: Ctx<{ projectId: string; userId: string; version?: number; maxBytes: number; paths?: string[] }>
			) {
				const { project } = await this.guard.require(ctx.params.projectId, ctx.params.userId, "viewer");
				const version = resolveVersion(project, ctx.params.version);
				const manifest = await this.caches.manifest(project.id, version);
				const maxBytes = Math.min(ctx.params.maxBytes, this.cfg.contextMaxBytes);
				const paths = ctx.params.paths?.map((p, i) => normaliseProjectPath(p, `paths[${i}]`));
				const selection = await selectContext(manifest, e => this.caches.blob(e), { maxBytes, paths });
				return { projectId: project.id, version, maxBytes, ...selection };
			}
		},

		commitAsUser: {
			visibility: INTERNAL,
			params: {
				projectId: idParam,
				userId: userIdParam,
				taskId: { type: "string", min: 1, max: 128 },
				idempotencyKey: { type: "string", min: 1, max: 128, optional: true },
				...commitParams
			},
			async handler(
				this: ProjectsThis,
				ctx: Ctx<{ projectId: string; userId: string; taskId: string; idempotencyKey?: string } & Commit>
			) {
				// The caller says who the user is; whether that user may commit here is decided here.
				await this.guard.require(ctx.params.projectId, ctx.params.userId, "editor");
				return versionView(
					await commitVersion(this.commitDeps, {
						...ctx.params,
						idempotencyKey: ctx.params.idempotencyKey ?? null
					})
				);
			}
		},

		sandboxHeartbeat: {
			visibility: INTERNAL,
			params: { projectId: idParam, version: { ...versionParam, optional: true } },
			async handler(this: ProjectsThis, ctx: Ctx<{ projectId: string; version?: number }>) {
				return this.sandboxOut(await this.sandboxes.heartbeat(ctx.params.projectId, ctx.params.version));
			}
		},

		sandboxReport: {
			visibility: INTERNAL,
			params: {
				projectId: idParam,
				state: { type: "enum", values: ["running", "stopped", "failed"] },
				version: { ...versionParam, optional: true },
				reason: { type: "string", max: 500, optional: true }
			},
			async handler(
				this: ProjectsThis,
				ctx: Ctx<{ projectId: string; state: SandboxState; version?: number; reason?: string }>
			) {
				const { projectId, state: to, version, reason } = ctx.params;
				return this.sandboxOut(await this.sandboxes.apply(projectId, { to, actor: "runner", version, reason }));
			}
		},

		sweep: {
			visibility: INTERNAL,
			async handler(this: ProjectsThis) {
				return this.sweepOnce();
			}
		},

		purge: {
			visibility: INTERNAL,
			params: {
				projectId: { ...idParam, optional: true },
				olderThanS: { type: "number", integer: true, min: 0, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ projectId?: string; olderThanS?: number }>) {
				const { projectId } = ctx.params;
				if (projectId !== undefined && !isProjectId(projectId)) throw NotFound("Project");
				const olderThanS = ctx.params.olderThanS ?? (projectId ? 0 : this.cfg.purgeAfterS);
				const purged = await this.repo.purge({
					projectId,
					deletedBefore: new Date(Date.now() - olderThanS * 1000)
				});
				if (purged.length) this.logger.info(`Purged ${purged.length} deleted project(s): ${purged.join(", ")}`);
				return { purged };
			}
		},

		gc: {
			visibility: INTERNAL,
			params: {
				dryRun: { type: "boolean", default: false },
				graceS: { type: "number", integer: true, min: 0, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ dryRun: boolean; graceS?: number }>) {
				const { dryRun, graceS = this.cfg.gcGraceS } = ctx.params;
				const r = await runBlobGc(
					{ store: this.blobs, repo: this.repo, transaction: fn => this.transaction(fn) },
					{ dryRun, graceS }
				);
				const run = dryRun ? " (dry run)" : "";
				this.logger.info(`Blob GC${run}: scanned ${r.scanned}, deleted ${r.deleted}, spared ${r.spared}`);
				return r;
			}
		},

		inspect: {
			visibility: INTERNAL,
			params: { projectId: idParam, versions: { type: "number", integer: true, min: 1, max: 1000, default: 20 } },
			async handler(this: ProjectsThis, ctx: Ctx<{ projectId: string; versions: number }>) {
				const project = await this.guard.existing(ctx.params.projectId);
				const [members, versions, sandbox] = await Promise.all([
					this.repo.members(project.id),
					this.repo.versions(project.id, null, ctx.params.versions),
					this.repo.sandbox(project.id)
				]);
				return {
					project: { ...projectView(project, "owner"), role: undefined },
					members: members.map(m => ({ userId: m.userId, role: m.role })),
					versions: versions.map(versionView),
					sandbox: sandbox ? this.sandboxOut(sandbox) : null
				};
			}
		},

		verifyVersion: {
			visibility: INTERNAL,
			params: { projectId: idParam, version: versionParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ projectId: string; version: number }>) {
				const project = await this.guard.existing(ctx.params.projectId);
				const manifest = await this.repo.manifest(project.id, ctx.params.version);
				if (!manifest) throw NotFound("Version");
				const result = await verifyManifest(this.blobs, manifest);
				return { projectId: project.id, version: ctx.params.version, ...result };
			}
		}
	}
};

export const internalActions = InternalActions as unknown as Partial<ServiceSchema>;
