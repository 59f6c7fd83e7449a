/**
 * The projects service: project metadata and membership, immutable versions of a project's files
 * over a content-addressed blob store, diffs, and the sandbox status a runner reports. The domain
 * rules live in src/projects/ (paths, change sets, diffs, roles, the sandbox state machine); this
 * file does the I/O around them. See docs/projects.md.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { Readable } from "node:stream";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Sequelize, Transaction } from "sequelize";
import { durableEvents } from "../mixins/durable-events.mixin";
import type { DurableThis } from "../mixins/durable-events.mixin";
import type { AuthUser } from "../src/auth/user";
import type { Config } from "../src/config";
import { withTransaction } from "../src/db/sequelize";
import { Conflict, DomainError, Forbidden, NotFound, Unauthorized, Unprocessable } from "../src/errors";
import { runtimeOf } from "../src/runtime/runtime";
import { checkMemberChange, decodeCursor, encodeCursor, hasRole, PROJECT_ROLES } from "../src/projects/access";
import type { MemberChange, ProjectRole } from "../src/projects/access";
import type { BlobStore, GcResult } from "../src/projects/blob-store";
import { applyChangeSet } from "../src/projects/changeset";
import type { ChangeOp } from "../src/projects/changeset";
import type { ProjectsConfig } from "../src/projects/config";
import { contentTypeFor } from "../src/projects/content-type";
import { selectContext } from "../src/projects/context";
import { ProjectDomainError } from "../src/projects/errors";
import { FsBlobStore } from "../src/projects/fs-blob-store";
import { collectGarbage } from "../src/projects/gc";
import { sha256Hex } from "../src/projects/hash";
import { fileModeOf, manifestDiff, manifestFromEntries } from "../src/projects/manifest";
import type { Manifest, ManifestEntry } from "../src/projects/manifest";
import { normaliseProjectPath } from "../src/projects/paths";
import { PgBlobStore } from "../src/projects/pg-blob-store";
import { isProjectId, ProjectsRepository } from "../src/projects/repository";
import type { ProjectRecord, SandboxRecord, VersionRecord } from "../src/projects/repository";
import { SANDBOX_STATES, transitionSandbox } from "../src/projects/sandbox";
import type { SandboxActor, SandboxState } from "../src/projects/sandbox";
import { fileResponseHeaders } from "../src/projects/serving";
import { unifiedDiff } from "../src/projects/textdiff";
import type { UnifiedDiffKind } from "../src/projects/textdiff";
import type { Ctx } from "../src/kit/service";

const LIST_MAX = 100;
/** Parsed manifests kept per process; at the 10,000-file limit one is a few MB. */
const HOT_MANIFESTS = 32;
const FS_PUT_PARALLEL = 16;
const STREAM_CHUNK_BYTES = 64 * 1024;

function* chunksOf(data: Buffer, size: number): Generator<Buffer> {
	for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

export const VERSION_CREATED = "projects.version.created";
export const SANDBOX_CHANGED = "projects.sandbox.changed";

export interface CommitInput {
	projectId: string;
	userId: string;
	baseVersion: number;
	message: string;
	changes: ChangeOp[];
	taskId: string | null;
	idempotencyKey: string | null;
}

export interface VersionCreatedEvent {
	projectId: string;
	version: number;
	parentVersion: number;
	authorId: string;
	taskId: string | null;
	message: string;
	fileCount: number;
	totalBytes: number;
	changes: { added: number; removed: number; modified: number; renamed: number };
	createdAt: string;
}

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

interface ProjectsThis extends DurableThis {
	memberChange(
		tx: Transaction,
		projectId: string,
		actorId: string,
		targetId: string,
		change: MemberChange,
		field: string
	): Promise<{ ok: true; noop: boolean }>;
	config: Config;
	cfg: ProjectsConfig;
	sequelize: Sequelize;
	repo: ProjectsRepository;
	blobs: BlobStore;
	sweepTimer: NodeJS.Timeout | null;
	sweeping: Promise<unknown> | null;
	/** Parsed manifests of this process, most recently used last (immutable, so never stale). */
	hotManifests: Map<string, Manifest>;

	userOf(ctx: Ctx<unknown>): AuthUser;
	requireRole(
		projectId: string,
		userId: string,
		min: ProjectRole,
		opts?: { allowDeleted?: boolean }
	): Promise<{ project: ProjectRecord; role: ProjectRole }>;
	contextProject(projectId: string, userId?: string): Promise<ProjectRecord>;
	resolveVersion(project: ProjectRecord, requested: number | undefined): number;
	loadManifest(projectId: string, version: number): Promise<Manifest>;
	readBlob(entry: ManifestEntry): Promise<Buffer>;
	commit(input: CommitInput): Promise<VersionRecord>;
	commitOnce(input: CommitInput): Promise<VersionRecord>;
	storeBlobs(tx: Transaction, blobs: Map<string, Buffer>): Promise<number>;
	applySandbox(
		projectId: string,
		request: { to: SandboxState; actor: SandboxActor; version?: number; reason?: string }
	): Promise<SandboxRecord>;
	sweepOnce(): Promise<{ failedSandboxes: number; purgedProjects: number }>;
	scheduleSweep(): void;
	runGc(opts: { dryRun: boolean; graceS: number }): Promise<GcResult & { removedTempFiles: number }>;
	cacheGet<T>(key: string): Promise<T | null>;
	cacheSet(key: string, value: unknown): Promise<void>;
}

function iso(d: Date | null): string | null {
	return d ? new Date(d).toISOString() : null;
}

function projectView(p: ProjectRecord, role: ProjectRole) {
	return {
		id: p.id,
		name: p.name,
		description: p.description,
		status: p.status,
		ownerId: p.ownerId,
		role,
		headVersion: p.headVersion,
		fileCount: p.fileCount,
		totalBytes: p.totalBytes,
		createdAt: iso(p.createdAt),
		updatedAt: iso(p.updatedAt),
		archivedAt: iso(p.archivedAt),
		deletedAt: iso(p.deletedAt)
	};
}

function versionView(v: VersionRecord) {
	return {
		projectId: v.projectId,
		number: v.number,
		parentNumber: v.parentNumber,
		message: v.message,
		authorId: v.authorId,
		taskId: v.taskId,
		fileCount: v.fileCount,
		totalBytes: v.totalBytes,
		createdAt: iso(v.createdAt)
	};
}

function entryView(entry: ManifestEntry) {
	return { sha256: entry.sha256, size: entry.size, mode: fileModeOf(entry) };
}

function sandboxView(s: SandboxRecord, cfg: ProjectsConfig) {
	return {
		projectId: s.projectId,
		state: s.state,
		version: s.version,
		stateChangedAt: iso(s.stateChangedAt),
		startedAt: iso(s.startedAt),
		stoppedAt: iso(s.stoppedAt),
		lastHeartbeatAt: iso(s.lastHeartbeatAt),
		failureReason: s.failureReason,
		heartbeatTimeoutS: cfg.sandbox.heartbeatTimeoutS
	};
}

function isUniqueViolation(err: unknown, constraint?: string): boolean {
	const e = err as {
		name?: string;
		parent?: { code?: string; constraint?: string };
		original?: { code?: string; constraint?: string };
	};
	const pg = e?.parent ?? e?.original;
	return pg?.code === "23505" && (constraint === undefined || pg.constraint === constraint);
}

const idParam = { type: "string", min: 1, max: 64 } as const;
const versionParam = { type: "number", integer: true, min: 0, max: 2_147_483_647, convert: true } as const;
const changeItem = {
	type: "object",
	strict: "remove",
	props: {
		op: { type: "enum", values: ["add", "modify", "delete", "rename"] },
		path: { type: "string", optional: true },
		from: { type: "string", optional: true },
		to: { type: "string", optional: true },
		content: { type: "string", optional: true },
		encoding: { type: "enum", values: ["utf8", "base64"], optional: true },
		mode: { type: "number", integer: true, optional: true }
	}
} as const;
const commitParams = {
	baseVersion: { ...versionParam, convert: false },
	message: { type: "string", min: 1, max: 2000, trim: true },
	changes: { type: "array", min: 1, max: 100_000, items: changeItem }
} as const;

const ProjectsService: ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	ProjectsThis
> = {
	name: "projects",
	mixins: [durableEvents({ group: "projects" })],

	actions: {
		create: {
			auth: "required",
			scope: "projects:write",
			params: {
				$$strict: "remove",
				name: { type: "string", min: 1, max: 200, trim: true },
				description: { type: "string", max: 5000, optional: true, default: "" }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ name: string; description: string }>) {
				const user = this.userOf(ctx);
				const id = randomUUID();
				const project = await withTransaction(this.sequelize, tx =>
					this.repo.createProject(tx, {
						id,
						ownerId: user.id,
						name: ctx.params.name,
						description: ctx.params.description
					})
				);
				ctx.meta.$location = `/api/v1/projects/${id}`;
				return projectView(project, "owner");
			}
		},

		list: {
			auth: "required",
			scope: "projects:read",
			params: {
				$$strict: "remove",
				limit: { type: "number", integer: true, min: 1, max: LIST_MAX, default: 20, convert: true },
				cursor: { type: "string", max: 64, optional: true },
				scope: { type: "enum", values: ["all", "own", "shared"], default: "all" },
				includeArchived: { type: "boolean", default: false, convert: true }
			},
			async handler(
				this: ProjectsThis,
				ctx: Ctx<{ limit: number; cursor?: string; scope: "all" | "own" | "shared"; includeArchived: boolean }>
			) {
				const user = this.userOf(ctx);
				const beforeSeq = ctx.params.cursor === undefined ? null : decodeCursor(ctx.params.cursor);
				if (ctx.params.cursor !== undefined && beforeSeq === null) {
					throw Unprocessable("Invalid cursor", [
						{ field: "cursor", message: "not a cursor from this list", type: "cursor" }
					]);
				}
				const rows = await this.repo.listForMember(user.id, {
					...ctx.params,
					beforeSeq,
					limit: ctx.params.limit + 1
				});
				const page = rows.slice(0, ctx.params.limit);
				return {
					items: page.map(r => projectView(r.project, r.role)),
					nextCursor: rows.length > ctx.params.limit ? encodeCursor(page[page.length - 1].project.seq) : null
				};
			}
		},

		get: {
			auth: "required",
			scope: "projects:read",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				const { project, role } = await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				return projectView(project, role);
			}
		},

		update: {
			auth: "required",
			scope: "projects:write",
			params: {
				$$strict: "remove",
				id: idParam,
				name: { type: "string", min: 1, max: 200, trim: true, optional: true },
				description: { type: "string", max: 5000, optional: true },
				archived: { type: "boolean", optional: true }
			},
			async handler(
				this: ProjectsThis,
				ctx: Ctx<{ id: string; name?: string; description?: string; archived?: boolean }>
			) {
				const userId = this.userOf(ctx).id;
				return withTransaction(this.sequelize, async tx => {
					const found = await this.repo.projectForMember(ctx.params.id, userId, tx, true);
					if (!found || found.project.status === "deleted") throw NotFound("Project");
					if (!hasRole(found.role, "owner"))
						throw Forbidden("Only an owner can change a project", "INSUFFICIENT_ROLE");
					const status =
						ctx.params.archived === undefined ? undefined : ctx.params.archived ? "archived" : "active";
					const project = await this.repo.updateProject(tx, ctx.params.id, {
						name: ctx.params.name,
						description: ctx.params.description,
						status
					});
					return projectView(project, found.role);
				});
			}
		},

		remove: {
			auth: "required",
			scope: "projects:write",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				const userId = this.userOf(ctx).id;
				const project = await withTransaction(this.sequelize, async tx => {
					const found = await this.repo.projectForMember(ctx.params.id, userId, tx, true);
					if (!found || found.project.status === "deleted") throw NotFound("Project");
					if (!hasRole(found.role, "owner"))
						throw Forbidden("Only an owner can delete a project", "INSUFFICIENT_ROLE");
					return this.repo.updateProject(tx, ctx.params.id, { status: "deleted" });
				});
				// A deleted project's sandbox has nothing left to run.
				const sandbox = await this.repo.sandbox(project.id);
				if (sandbox && (sandbox.state === "running" || sandbox.state === "provisioning")) {
					await this.applySandbox(project.id, { to: "stopped", actor: "user" }).catch(err =>
						this.logger.warn("could not stop the sandbox of a deleted project", err)
					);
				}
				return {
					...projectView(project, "owner"),
					purgeAfter: new Date(project.deletedAt!.getTime() + this.cfg.purgeAfterS * 1000).toISOString()
				};
			}
		},

		restore: {
			auth: "required",
			scope: "projects:write",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				const userId = this.userOf(ctx).id;
				return withTransaction(this.sequelize, async tx => {
					const found = await this.repo.projectForMember(ctx.params.id, userId, tx, true);
					if (!found || (found.project.status === "deleted" && found.role !== "owner"))
						throw NotFound("Project");
					if (!hasRole(found.role, "owner"))
						throw Forbidden("Only an owner can restore a project", "INSUFFICIENT_ROLE");
					if (found.project.status !== "deleted")
						throw Conflict("The project is not deleted", "PROJECT_NOT_DELETED");
					return projectView(
						await this.repo.updateProject(tx, ctx.params.id, { status: "active" }),
						found.role
					);
				});
			}
		},

		members: {
			auth: "required",
			scope: "projects:read",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				const members = await this.repo.members(ctx.params.id);
				return {
					items: members.map(m => ({
						userId: m.userId,
						role: m.role,
						addedBy: m.addedBy,
						createdAt: iso(m.createdAt),
						updatedAt: iso(m.updatedAt)
					}))
				};
			}
		},

		setMember: {
			auth: "required",
			scope: "projects:write",
			params: {
				$$strict: "remove",
				id: idParam,
				userId: { type: "string", min: 1, max: 128 },
				role: { type: "enum", values: [...PROJECT_ROLES] }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; userId: string; role: ProjectRole }>) {
				const actorId = this.userOf(ctx).id;
				// Asked before the transaction (no row stays locked during the call), told only after the
				// caller was found allowed to change the members: others learn nothing about accounts.
				const { known } = await ctx.call<{ known: string[] }, { userIds: string[] }>("users.exist", {
					userIds: [ctx.params.userId]
				});
				return withTransaction(this.sequelize, async tx => {
					const verdict = await this.memberChange(
						tx,
						ctx.params.id,
						actorId,
						ctx.params.userId,
						{ kind: "set", role: ctx.params.role },
						"role"
					);
					if (!verdict.noop) {
						if (!known.includes(ctx.params.userId))
							throw new DomainError("USER_NOT_FOUND", 404, "No account has this user id", {
								field: "userId"
							});
						await this.repo.setMember(tx, ctx.params.id, ctx.params.userId, ctx.params.role, actorId);
					}
					return { projectId: ctx.params.id, userId: ctx.params.userId, role: ctx.params.role };
				});
			}
		},

		removeMember: {
			auth: "required",
			scope: "projects:write",
			params: { id: idParam, userId: { type: "string", min: 1, max: 128 } },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; userId: string }>) {
				const actorId = this.userOf(ctx).id;
				return withTransaction(this.sequelize, async tx => {
					await this.memberChange(
						tx,
						ctx.params.id,
						actorId,
						ctx.params.userId,
						{ kind: "remove" },
						"userId"
					);
					await this.repo.removeMember(tx, ctx.params.id, ctx.params.userId);
					return { projectId: ctx.params.id, userId: ctx.params.userId, removed: true };
				});
			}
		},

		versions: {
			auth: "required",
			scope: "projects:read",
			params: {
				$$strict: "remove",
				id: idParam,
				limit: { type: "number", integer: true, min: 1, max: LIST_MAX, default: 20, convert: true },
				cursor: { type: "string", max: 64, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; limit: number; cursor?: string }>) {
				await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				const before = ctx.params.cursor === undefined ? null : decodeCursor(ctx.params.cursor);
				if (ctx.params.cursor !== undefined && before === null) {
					throw Unprocessable("Invalid cursor", [
						{ field: "cursor", message: "not a cursor from this list", type: "cursor" }
					]);
				}
				const rows = await this.repo.versions(ctx.params.id, before, ctx.params.limit + 1);
				const page = rows.slice(0, ctx.params.limit);
				return {
					items: page.map(versionView),
					nextCursor: rows.length > ctx.params.limit ? encodeCursor(page[page.length - 1].number) : null
				};
			}
		},

		version: {
			auth: "required",
			scope: "projects:read",
			params: { id: idParam, n: versionParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; n: number }>) {
				const { project } = await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				const number = this.resolveVersion(project, ctx.params.n);
				const [version, manifest] = await Promise.all([
					this.repo.version(project.id, number),
					this.loadManifest(project.id, number)
				]);
				return {
					...versionView(version!),
					files: Object.entries(manifest).map(([p, e]) => ({ path: p, ...entryView(e) }))
				};
			}
		},

		commit: {
			auth: "required",
			scope: "projects:write",
			params: { $$strict: "remove", id: idParam, ...commitParams },
			async handler(
				this: ProjectsThis,
				ctx: Ctx<{ id: string; baseVersion: number; message: string; changes: ChangeOp[] }>
			) {
				const user = this.userOf(ctx);
				await this.requireRole(ctx.params.id, user.id, "editor");
				const version = await this.commit({
					projectId: ctx.params.id,
					userId: user.id,
					baseVersion: ctx.params.baseVersion,
					message: ctx.params.message,
					changes: ctx.params.changes,
					taskId: null,
					idempotencyKey: ctx.meta.idempotencyKey ?? null
				});
				ctx.meta.$location = `/api/v1/projects/${version.projectId}/versions/${version.number}`;
				return versionView(version);
			}
		},

		tree: {
			auth: "required",
			scope: "projects:read",
			params: {
				$$strict: "remove",
				id: idParam,
				version: { ...versionParam, optional: true },
				prefix: { type: "string", max: 1024, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; version?: number; prefix?: string }>) {
				const { project } = await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				const number = this.resolveVersion(project, ctx.params.version);
				const manifest = await this.loadManifest(project.id, number);
				const prefix = ctx.params.prefix ? `${ctx.params.prefix.replace(/\/+$/, "")}/` : "";
				const files = Object.entries(manifest)
					.filter(([p]) => p.startsWith(prefix))
					.map(([p, e]) => ({ path: p, ...entryView(e) }));
				return { projectId: project.id, version: number, files };
			}
		},

		file: {
			auth: "required",
			scope: "projects:read",
			params: {
				id: idParam,
				path: { type: "string", min: 1, max: 8192 },
				version: { ...versionParam, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; path: string; version?: number }>) {
				const { project } = await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				const filePath = normaliseProjectPath(ctx.params.path, "path");
				const number = this.resolveVersion(project, ctx.params.version);
				const manifest = await this.loadManifest(project.id, number);
				const entry = Object.hasOwn(manifest, filePath) ? manifest[filePath] : undefined;
				if (!entry)
					throw NotFound("File", {
						field: "path",
						reason: `no file "${filePath}" in version ${number}`,
						path: filePath
					});
				const data = await this.readBlob(entry);
				const contentType = contentTypeFor(filePath, data);
				ctx.meta.$responseType = contentType;
				ctx.meta.$responseHeaders = {
					...fileResponseHeaders({
						path: filePath,
						contentType,
						sha256: entry.sha256,
						version: number,
						pinned: ctx.params.version !== undefined
					}),
					"Content-Length": String(data.length)
				};
				// A stream, not a Buffer: across nodes Moleculer sends it in chunks, where one Buffer
				// would be a single transporter message (NATS refuses those over max_payload, 1 MB by default).
				return Readable.from(chunksOf(data, STREAM_CHUNK_BYTES));
			}
		},

		diff: {
			auth: "required",
			scope: "projects:read",
			params: {
				$$strict: "remove",
				id: idParam,
				from: versionParam,
				to: versionParam,
				patches: { type: "boolean", default: true, convert: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; from: number; to: number; patches: boolean }>) {
				const { project } = await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				const from = this.resolveVersion(project, ctx.params.from);
				const to = this.resolveVersion(project, ctx.params.to);
				const [a, b] = await Promise.all([
					this.loadManifest(project.id, from),
					this.loadManifest(project.id, to)
				]);
				const d = manifestDiff(a, b);
				const maxBytes = this.cfg.diff.maxFileBytes;
				const patches: Array<{ path: string; fromPath?: string; kind: UnifiedDiffKind; patch: string }> = [];
				const work: Array<{
					path: string;
					fromPath?: string;
					old: ManifestEntry | null;
					new: ManifestEntry | null;
				}> = [
					...d.added.map(x => ({ path: x.path, old: null, new: x.entry })),
					...d.removed.map(x => ({ path: x.path, old: x.entry, new: null })),
					...d.modified.map(x => ({ path: x.path, old: x.from, new: x.to }))
				];
				const wanted = ctx.params.patches ? work.slice(0, this.cfg.diff.maxPatchFiles) : [];
				for (const w of wanted) {
					if ((w.old?.size ?? 0) > maxBytes || (w.new?.size ?? 0) > maxBytes) {
						patches.push({
							path: w.path,
							kind: "too-large",
							patch: `File too large to diff (limit ${maxBytes} bytes)\n`
						});
						continue;
					}
					const [oldBuf, newBuf] = await Promise.all([
						w.old ? this.readBlob(w.old) : null,
						w.new ? this.readBlob(w.new) : null
					]);
					const u = unifiedDiff(w.path, oldBuf, newBuf, { maxBytes });
					if (u.kind !== "identical") patches.push({ path: w.path, kind: u.kind, patch: u.patch });
				}
				patches.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
				return {
					projectId: project.id,
					from,
					to,
					added: d.added.map(x => ({ path: x.path, ...entryView(x.entry) })),
					removed: d.removed.map(x => ({ path: x.path, ...entryView(x.entry) })),
					modified: d.modified.map(x => ({ path: x.path, from: entryView(x.from), to: entryView(x.to) })),
					renamed: d.renamed.map(x => ({ from: x.from, to: x.to, ...entryView(x.entry) })),
					patches: ctx.params.patches ? patches : undefined,
					patchesTruncated: ctx.params.patches && work.length > wanted.length
				};
			}
		},

		sandbox: {
			auth: "required",
			scope: "projects:read",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				await this.requireRole(ctx.params.id, this.userOf(ctx).id, "viewer");
				return sandboxView((await this.repo.sandbox(ctx.params.id))!, this.cfg);
			}
		},

		setSandbox: {
			auth: "required",
			scope: "projects:write",
			params: {
				$$strict: "remove",
				id: idParam,
				state: { type: "enum", values: [...SANDBOX_STATES] },
				version: { ...versionParam, optional: true, convert: false }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; state: SandboxState; version?: number }>) {
				const { project } = await this.requireRole(ctx.params.id, this.userOf(ctx).id, "editor");
				let version: number | undefined;
				if (ctx.params.state === "provisioning") {
					if (project.status !== "active")
						throw Conflict("An archived project's sandbox cannot be started", "PROJECT_ARCHIVED");
					version = this.resolveVersion(project, ctx.params.version);
				}
				return sandboxView(
					await this.applySandbox(project.id, { to: ctx.params.state, actor: "user", version }),
					this.cfg
				);
			}
		},

		// ---- Internal actions (other services, the sandbox runner, operators) ----

		access: {
			visibility: "public", // callable from other nodes, never published by the gateway
			retryPolicy: { enabled: true },
			params: { projectId: idParam, userId: { type: "string", min: 1, max: 128 } },
			async handler(this: ProjectsThis, ctx: Context<{ projectId: string; userId: string }>) {
				const { project, role } = await this.requireRole(ctx.params.projectId, ctx.params.userId, "viewer");
				return { projectId: project.id, role, status: project.status, headVersion: project.headVersion };
			}
		},

		readContext: {
			visibility: "public", // callable from other nodes, never published by the gateway
			retryPolicy: { enabled: true },
			params: {
				projectId: idParam,
				userId: { type: "string", min: 1, max: 128 },
				version: { ...versionParam, optional: true },
				maxBytes: { type: "number", integer: true, min: 1 },
				paths: { type: "array", items: "string", max: 10_000, optional: true }
			},
			async handler(
				this: ProjectsThis,
				ctx: Context<{
					projectId: string;
					userId: string;
					version?: number;
					maxBytes: number;
					paths?: string[];
				}>
			) {
				const { project } = await this.requireRole(ctx.params.projectId, ctx.params.userId, "viewer");
				const number = this.resolveVersion(project, ctx.params.version);
				const manifest = await this.loadManifest(project.id, number);
				const maxBytes = Math.min(ctx.params.maxBytes, this.cfg.contextMaxBytes);
				const paths = ctx.params.paths?.map((p, i) => normaliseProjectPath(p, `paths[${i}]`));
				const selection = await selectContext(manifest, entry => this.readBlob(entry), { maxBytes, paths });
				return { projectId: project.id, version: number, maxBytes, ...selection };
			}
		},

		// The context service's reads (context/, Python): a version's file list, then its blobs in
		// batches the caller sizes under the transporter's message limit. With userId, the caller's
		// access is checked (viewer); without it (indexing on projects.version.created) only a live project.
		contextManifest: {
			visibility: "public", // callable from other nodes, never published by the gateway
			retryPolicy: { enabled: true },
			params: {
				projectId: idParam,
				userId: { type: "string", min: 1, max: 128, optional: true },
				version: { ...versionParam, optional: true },
				// pages in manifest order, so a 10,000-file version never becomes one oversized message
				offset: { type: "number", integer: true, min: 0, default: 0 },
				limit: { type: "number", integer: true, min: 1, max: 5000, default: 2000 }
			},
			async handler(
				this: ProjectsThis,
				ctx: Context<{ projectId: string; userId?: string; version?: number; offset: number; limit: number }>
			) {
				const project = await this.contextProject(ctx.params.projectId, ctx.params.userId);
				const number = this.resolveVersion(project, ctx.params.version);
				const entries = Object.entries(await this.loadManifest(project.id, number));
				const { offset, limit } = ctx.params;
				return {
					projectId: project.id,
					version: number,
					headVersion: project.headVersion,
					total: entries.length,
					files: entries
						.slice(offset, offset + limit)
						.map(([path, e]) => ({ path, sha256: e.sha256, size: e.size }))
				};
			}
		},

		contextBlobs: {
			visibility: "public", // callable from other nodes, never published by the gateway
			retryPolicy: { enabled: true },
			params: {
				projectId: idParam,
				version: versionParam,
				sha256: { type: "array", items: { type: "string", length: 64 }, min: 1, max: 1000 }
			},
			async handler(this: ProjectsThis, ctx: Context<{ projectId: string; version: number; sha256: string[] }>) {
				const project = await this.contextProject(ctx.params.projectId);
				const number = this.resolveVersion(project, ctx.params.version);
				// Only blobs of that version: a blob hash is no capability by itself.
				const byHash = new Map(
					Object.values(await this.loadManifest(project.id, number)).map(e => [e.sha256, e])
				);
				const blobs = [];
				for (const sha of new Set(ctx.params.sha256)) {
					const entry = byHash.get(sha);
					if (entry) blobs.push({ sha256: sha, base64: (await this.readBlob(entry)).toString("base64") });
				}
				return { blobs };
			}
		},

		commitAsUser: {
			visibility: "public", // callable from other nodes, never published by the gateway
			params: {
				projectId: idParam,
				userId: { type: "string", min: 1, max: 128 },
				taskId: { type: "string", min: 1, max: 128 },
				idempotencyKey: { type: "string", min: 1, max: 128, optional: true },
				...commitParams
			},
			async handler(
				this: ProjectsThis,
				ctx: Context<{
					projectId: string;
					userId: string;
					taskId: string;
					idempotencyKey?: string;
					baseVersion: number;
					message: string;
					changes: ChangeOp[];
				}>
			) {
				// The caller says who the user is; whether that user may commit here is decided here.
				await this.requireRole(ctx.params.projectId, ctx.params.userId, "editor");
				const version = await this.commit({
					projectId: ctx.params.projectId,
					userId: ctx.params.userId,
					baseVersion: ctx.params.baseVersion,
					message: ctx.params.message,
					changes: ctx.params.changes,
					taskId: ctx.params.taskId,
					idempotencyKey: ctx.params.idempotencyKey ?? null
				});
				return versionView(version);
			}
		},

		sandboxHeartbeat: {
			visibility: "public", // callable from other nodes, never published by the gateway
			params: { projectId: idParam, version: { ...versionParam, optional: true } },
			async handler(this: ProjectsThis, ctx: Context<{ projectId: string; version?: number }>) {
				if (!isProjectId(ctx.params.projectId)) throw NotFound("Project");
				const beat = await this.repo.heartbeat(ctx.params.projectId, ctx.params.version ?? null);
				if (beat) return sandboxView(beat, this.cfg);
				const current = await this.repo.sandbox(ctx.params.projectId);
				if (!current) throw NotFound("Project");
				// The runner should stop: this sandbox is not (or no longer) the running one.
				throw Conflict(
					`The sandbox is ${current.state}${current.version !== null ? ` at version ${current.version}` : ""}, not running this version`,
					"SANDBOX_NOT_RUNNING",
					{
						field: "state",
						reason: "heartbeat from a sandbox that is not running",
						state: current.state,
						version: current.version
					}
				);
			}
		},

		sandboxReport: {
			visibility: "public", // callable from other nodes, never published by the gateway
			params: {
				projectId: idParam,
				state: { type: "enum", values: ["running", "stopped", "failed"] },
				version: { ...versionParam, optional: true },
				reason: { type: "string", max: 500, optional: true }
			},
			async handler(
				this: ProjectsThis,
				ctx: Context<{ projectId: string; state: SandboxState; version?: number; reason?: string }>
			) {
				if (!isProjectId(ctx.params.projectId)) throw NotFound("Project");
				const record = await this.applySandbox(ctx.params.projectId, {
					to: ctx.params.state,
					actor: "runner",
					version: ctx.params.version,
					reason: ctx.params.reason
				});
				return sandboxView(record, this.cfg);
			}
		},

		sweep: {
			visibility: "public", // callable from other nodes, never published by the gateway
			async handler(this: ProjectsThis) {
				return this.sweepOnce();
			}
		},

		purge: {
			visibility: "public", // callable from other nodes, never published by the gateway
			params: {
				projectId: { ...idParam, optional: true },
				olderThanS: { type: "number", integer: true, min: 0, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Context<{ projectId?: string; olderThanS?: number }>) {
				if (ctx.params.projectId !== undefined && !isProjectId(ctx.params.projectId)) throw NotFound("Project");
				const olderThanS = ctx.params.olderThanS ?? (ctx.params.projectId ? 0 : this.cfg.purgeAfterS);
				const purged = await this.repo.purge({
					projectId: ctx.params.projectId,
					deletedBefore: new Date(Date.now() - olderThanS * 1000)
				});
				if (purged.length) this.logger.info(`Purged ${purged.length} deleted project(s): ${purged.join(", ")}`);
				return { purged };
			}
		},

		gc: {
			visibility: "public", // callable from other nodes, never published by the gateway
			params: {
				dryRun: { type: "boolean", default: false },
				graceS: { type: "number", integer: true, min: 0, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Context<{ dryRun: boolean; graceS?: number }>) {
				return this.runGc({ dryRun: ctx.params.dryRun, graceS: ctx.params.graceS ?? this.cfg.gcGraceS });
			}
		},

		inspect: {
			visibility: "public", // callable from other nodes, never published by the gateway
			params: { projectId: idParam, versions: { type: "number", integer: true, min: 1, max: 1000, default: 20 } },
			async handler(this: ProjectsThis, ctx: Context<{ projectId: string; versions: number }>) {
				const project = isProjectId(ctx.params.projectId)
					? await this.repo.project(ctx.params.projectId)
					: null;
				if (!project) throw NotFound("Project");
				const [members, versions, sandbox] = await Promise.all([
					this.repo.members(project.id),
					this.repo.versions(project.id, null, ctx.params.versions),
					this.repo.sandbox(project.id)
				]);
				return {
					project: { ...projectView(project, "owner"), role: undefined },
					members: members.map(m => ({ userId: m.userId, role: m.role })),
					versions: versions.map(versionView),
					sandbox: sandbox ? sandboxView(sandbox, this.cfg) : null
				};
			}
		},

		verifyVersion: {
			visibility: "public", // callable from other nodes, never published by the gateway
			params: { projectId: idParam, version: versionParam },
			async handler(this: ProjectsThis, ctx: Context<{ projectId: string; version: number }>) {
				const project = isProjectId(ctx.params.projectId)
					? await this.repo.project(ctx.params.projectId)
					: null;
				if (!project) throw NotFound("Project");
				const manifest = await this.repo.manifest(project.id, ctx.params.version);
				if (!manifest) throw NotFound("Version");
				const problems: Array<{
					path: string;
					sha256: string;
					problem: "missing" | "corrupt" | "size-mismatch";
				}> = [];
				let checked = 0;
				// Straight from the store (never the cache), re-hashed here whatever the store's own setting.
				for (const [p, entry] of Object.entries(manifest)) {
					checked++;
					let data: Buffer | null;
					try {
						data = await this.blobs.get(entry.sha256);
					} catch (err) {
						if (err instanceof ProjectDomainError && err.code === "BLOB_CORRUPT") {
							problems.push({ path: p, sha256: entry.sha256, problem: "corrupt" });
							continue;
						}
						throw err;
					}
					if (data === null) problems.push({ path: p, sha256: entry.sha256, problem: "missing" });
					else if (sha256Hex(data) !== entry.sha256)
						problems.push({ path: p, sha256: entry.sha256, problem: "corrupt" });
					else if (data.length !== entry.size)
						problems.push({ path: p, sha256: entry.sha256, problem: "size-mismatch" });
				}
				return {
					projectId: project.id,
					version: ctx.params.version,
					checked,
					ok: problems.length === 0,
					problems
				};
			}
		}
	},

	methods: {
		/**
		 * Checks a member change under the project row lock (which serialises member changes, so two
		 * owners cannot demote each other to zero owners); throws the verdict's error, returns it otherwise.
		 */
		async memberChange(
			this: ProjectsThis,
			tx: Transaction,
			projectId: string,
			actorId: string,
			targetId: string,
			change: MemberChange,
			field: string
		) {
			const found = await this.repo.projectForMember(projectId, actorId, tx, true);
			if (!found || found.project.status === "deleted") throw NotFound("Project");
			const members = await this.repo.members(projectId, tx);
			const target = members.find(m => m.userId === targetId);
			const verdict = checkMemberChange({
				actorId,
				actorRole: found.role,
				targetId,
				targetRole: target?.role ?? null,
				change,
				ownerCount: members.filter(m => m.role === "owner").length
			});
			if (!verdict.ok)
				throw new DomainError(verdict.code, verdict.status, verdict.reason, { field, reason: verdict.reason });
			return verdict;
		},

		userOf(ctx: Ctx<unknown>): AuthUser {
			const user = ctx.meta.user;
			if (!user) throw Unauthorized();
			return user;
		},

		async requireRole(
			this: ProjectsThis,
			projectId: string,
			userId: string,
			min: ProjectRole,
			opts: { allowDeleted?: boolean } = {}
		) {
			// A malformed id names no project: the same 404 as someone else's project.
			if (!isProjectId(projectId)) throw NotFound("Project");
			const found = await this.repo.projectForMember(projectId, userId);
			if (!found || (found.project.status === "deleted" && !opts.allowDeleted)) throw NotFound("Project");
			if (!hasRole(found.role, min)) {
				throw Forbidden(
					`This needs the ${min} role in the project; you are a ${found.role}`,
					"INSUFFICIENT_ROLE"
				);
			}
			return found;
		},

		async contextProject(this: ProjectsThis, projectId: string, userId?: string): Promise<ProjectRecord> {
			if (userId !== undefined) return (await this.requireRole(projectId, userId, "viewer")).project;
			const project = isProjectId(projectId) ? await this.repo.project(projectId) : null;
			if (!project || project.status === "deleted") throw NotFound("Project");
			return project;
		},

		resolveVersion(project: ProjectRecord, requested: number | undefined): number {
			if (requested === undefined) return project.headVersion;
			if (requested > project.headVersion)
				throw NotFound("Version", {
					field: "version",
					reason: `the project's latest version is ${project.headVersion}`
				});
			return requested;
		},

		async cacheGet<T>(this: ProjectsThis, key: string): Promise<T | null> {
			const cacher = this.broker.cacher;
			if (!cacher) return null;
			try {
				return ((await cacher.get(key)) as T | null) ?? null;
			} catch (err) {
				this.logger.warn("projects cache read failed", (err as Error).message);
				return null;
			}
		},

		async cacheSet(this: ProjectsThis, key: string, value: unknown): Promise<void> {
			const cacher = this.broker.cacher;
			if (!cacher) return;
			try {
				await cacher.set(key, value, this.cfg.cache.ttlS);
			} catch (err) {
				this.logger.warn("projects cache write failed", (err as Error).message);
			}
		},

		/**
		 * Versions are immutable, so a cached manifest is never stale: first this process's parsed
		 * copies, then the shared cacher (stored as entries, which survive JSON unchanged), then SQL.
		 */
		async loadManifest(this: ProjectsThis, projectId: string, version: number): Promise<Manifest> {
			const key = `projects.manifest:${projectId}:${version}`;
			const hot = this.hotManifests.get(key);
			if (hot) {
				this.hotManifests.delete(key);
				this.hotManifests.set(key, hot);
				return hot;
			}
			const cached = await this.cacheGet<Array<[string, ManifestEntry]>>(key);
			let manifest: Manifest | null = cached ? manifestFromEntries(cached) : null;
			if (!manifest) {
				manifest = await this.repo.manifest(projectId, version);
				if (!manifest) throw NotFound("Version");
				await this.cacheSet(key, Object.entries(manifest));
			}
			this.hotManifests.set(key, manifest);
			if (this.hotManifests.size > HOT_MANIFESTS)
				this.hotManifests.delete(this.hotManifests.keys().next().value!);
			return manifest;
		},

		/** Content-addressed: a cached blob is right by construction. Small ones only, base64 so any cacher keeps them. */
		async readBlob(this: ProjectsThis, entry: ManifestEntry): Promise<Buffer> {
			const cacheable = entry.size <= this.cfg.cache.blobMaxBytes;
			const key = `projects.blob:${entry.sha256}`;
			if (cacheable) {
				const cached = await this.cacheGet<string>(key);
				if (typeof cached === "string") return Buffer.from(cached, "base64");
			}
			const data = await this.blobs.get(entry.sha256);
			if (data === null)
				throw new DomainError("BLOB_MISSING", 500, `Blob ${entry.sha256} is missing from the store`);
			if (cacheable) await this.cacheSet(key, data.toString("base64"));
			return data;
		},

		async storeBlobs(this: ProjectsThis, tx: Transaction, blobs: Map<string, Buffer>): Promise<number> {
			if (blobs.size === 0) return 0;
			const store = this.blobs;
			// Under the shared GC lock: a blob found here cannot be collected before this commit's references are visible.
			if (store instanceof PgBlobStore) {
				const present = await store.has([...blobs.keys()], { transaction: tx });
				const missing = [...blobs].filter(([sha]) => !present.has(sha));
				return (await store.putMany(missing, { transaction: tx })).size;
			}
			const present = await store.has([...blobs.keys()]);
			const missing = [...blobs].filter(([sha]) => !present.has(sha));
			// FsBlobStore.putMany writes (and fsyncs) one file after another; a few at a time overlap the syncs.
			let created = 0;
			for (let i = 0; i < missing.length; i += FS_PUT_PARALLEL) {
				const done = await Promise.all(
					missing.slice(i, i + FS_PUT_PARALLEL).map(([sha, data]) => store.put(sha, data))
				);
				created += done.filter(Boolean).length;
			}
			return created;
		},

		async commit(this: ProjectsThis, input: CommitInput): Promise<VersionRecord> {
			const { projectId, userId, idempotencyKey } = input;
			if (!idempotencyKey) return this.commitOnce(input);
			const earlier = await this.repo.versionByIdempotencyKey(projectId, userId, idempotencyKey);
			if (earlier) return earlier;
			try {
				return await this.commitOnce(input);
			} catch (err) {
				// Retries of one request that raced each other: one made the version, the others found the
				// head moved (or the key taken). They are the same request: answer with that version.
				if ((err instanceof DomainError && err.code === "VERSION_CONFLICT") || isUniqueViolation(err)) {
					const made = await this.repo.versionByIdempotencyKey(projectId, userId, idempotencyKey);
					if (made) return made;
				}
				throw err;
			}
		},

		async commitOnce(this: ProjectsThis, input: CommitInput): Promise<VersionRecord> {
			const { projectId, userId, baseVersion, idempotencyKey } = input;
			const project = await this.repo.project(projectId);
			if (!project || project.status === "deleted") throw NotFound("Project");
			const stale = () =>
				Conflict(
					`Version ${baseVersion} is not the head; the head is version ${project.headVersion}. Rebase your changes on it.`,
					"VERSION_CONFLICT",
					{
						field: "baseVersion",
						reason: "the base version is not the head",
						baseVersion,
						headVersion: project.headVersion
					}
				);
			if (project.status === "archived")
				throw Conflict("The project is archived; unarchive it to commit", "PROJECT_ARCHIVED");
			if (baseVersion !== project.headVersion) throw stale();

			const parent = await this.loadManifest(projectId, baseVersion);
			const { manifest, newBlobs, fileCount, totalBytes } = applyChangeSet(
				parent,
				input.changes,
				this.cfg.limits
			);

			let version: VersionRecord;
			try {
				version = await withTransaction(this.sequelize, async tx => {
					await this.repo.lockOutGc(tx);
					if (!(await this.repo.advanceHead(tx, projectId, baseVersion, fileCount, totalBytes))) {
						const now = await this.repo.project(projectId, tx);
						if (!now || now.status === "deleted") throw NotFound("Project");
						if (now.status === "archived")
							throw Conflict("The project is archived; unarchive it to commit", "PROJECT_ARCHIVED");
						project.headVersion = now.headVersion;
						throw stale();
					}
					await this.storeBlobs(tx, newBlobs);
					const created = await this.repo.insertVersion(tx, {
						projectId,
						number: baseVersion + 1,
						manifest,
						message: input.message,
						authorId: userId,
						taskId: input.taskId,
						idempotencyKey,
						fileCount,
						totalBytes
					});
					await this.repo.addBlobRefs(tx, projectId, [...newBlobs.keys()]);
					const d = manifestDiff(parent, manifest);
					const event: VersionCreatedEvent = {
						projectId,
						version: created.number,
						parentVersion: baseVersion,
						authorId: userId,
						taskId: input.taskId,
						message: input.message,
						fileCount,
						totalBytes,
						changes: {
							added: d.added.length,
							removed: d.removed.length,
							modified: d.modified.length,
							renamed: d.renamed.length
						},
						createdAt: iso(created.createdAt)!
					};
					await this.publishDurable(tx, VERSION_CREATED, event);
					return created;
				});
			} catch (err) {
				// A unique violation on the key is handled by commit(); on the number, another commit won.
				if (idempotencyKey && isUniqueViolation(err)) throw err;
				if (isUniqueViolation(err)) throw stale();
				throw err;
			}
			await this.cacheSet(`projects.manifest:${projectId}:${version.number}`, Object.entries(manifest));
			return version;
		},

		async applySandbox(
			this: ProjectsThis,
			projectId: string,
			request: { to: SandboxState; actor: SandboxActor; version?: number; reason?: string }
		) {
			// A concurrent transition moves the generation; plan again from what it left.
			for (let attempt = 0; attempt < 3; attempt++) {
				const current = await this.repo.sandbox(projectId);
				if (!current) throw NotFound("Project");
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
				const updated = await withTransaction(this.sequelize, async tx => {
					const row = await this.repo.updateSandbox(tx, projectId, current.generation, result.next);
					if (!row) return null;
					const event: SandboxChangedEvent = {
						projectId,
						from: current.state,
						to: row.state,
						version: row.version,
						actor: request.actor,
						failureReason: row.failureReason,
						generation: row.generation,
						at: iso(row.stateChangedAt)!
					};
					await this.publishDurable(tx, SANDBOX_CHANGED, event);
					return row;
				});
				if (updated) return updated;
			}
			throw Conflict("The sandbox is changing state concurrently; try again", "SANDBOX_BUSY");
		},

		async sweepOnce(this: ProjectsThis) {
			const { heartbeatTimeoutS, provisionTimeoutS } = this.cfg.sandbox;
			const failed = await withTransaction(this.sequelize, async tx => {
				const rows = await this.repo.failTimedOutSandboxes(tx, heartbeatTimeoutS, provisionTimeoutS);
				for (const row of rows) {
					const event: SandboxChangedEvent = {
						projectId: row.projectId,
						from: row.from,
						to: row.state,
						version: row.version,
						actor: "sweep",
						failureReason: row.failureReason,
						generation: row.generation,
						at: iso(row.stateChangedAt)!
					};
					await this.publishDurable(tx, SANDBOX_CHANGED, event);
				}
				return rows.length;
			});
			const purged = await this.repo.purge({ deletedBefore: new Date(Date.now() - this.cfg.purgeAfterS * 1000) });
			if (failed || purged.length)
				this.logger.info(
					`Sweep: ${failed} sandbox(es) failed on timeout, ${purged.length} deleted project(s) purged`
				);
			return { failedSandboxes: failed, purgedProjects: purged.length };
		},

		scheduleSweep(this: ProjectsThis) {
			const every = this.cfg.sandbox.sweepMs;
			if (!every) return;
			// Jitter spreads the nodes' sweeps; the conditional UPDATEs make overlapping ones harmless anyway.
			this.sweepTimer = setTimeout(
				() => {
					this.sweeping = this.sweepOnce()
						.catch(err => this.logger.warn("projects sweep failed", (err as Error).message))
						.finally(() => {
							this.sweeping = null;
							if (this.sweepTimer) this.scheduleSweep();
						});
				},
				Math.round(every * (0.75 + Math.random() * 0.5))
			);
			this.sweepTimer.unref();
		},

		async runGc(this: ProjectsThis, opts: { dryRun: boolean; graceS: number }) {
			const olderThan = new Date(Date.now() - opts.graceS * 1000);
			const store = this.blobs;
			const result = await collectGarbage<Transaction>(
				{
					store,
					exclusive: fn =>
						withTransaction(this.sequelize, async tx => {
							await this.repo.lockForGc(tx);
							return fn(tx);
						}),
					referenced: (shas, tx) => this.repo.referencedBlobs(shas, tx),
					deleteBlobs: (shas, tx) =>
						store instanceof PgBlobStore ? store.delete(shas, { transaction: tx }) : store.delete(shas)
				},
				{ olderThan, dryRun: opts.dryRun }
			);
			const removedTempFiles =
				store instanceof FsBlobStore && !opts.dryRun ? await store.removeStaleTempFiles(olderThan) : 0;
			this.logger.info(
				`Blob GC${opts.dryRun ? " (dry run)" : ""}: scanned ${result.scanned}, deleted ${result.deleted}, spared ${result.spared}`
			);
			return { ...result, removedTempFiles };
		}
	},

	created(this: ProjectsThis) {
		const rt = runtimeOf(this.broker);
		this.config = rt.config;
		this.cfg = rt.config.projects;
		this.sequelize = rt.sequelize;
		this.repo = new ProjectsRepository(this.sequelize);
		this.blobs =
			this.cfg.blobStore === "fs"
				? new FsBlobStore(this.cfg.blobDir ?? path.join(rt.config.dataDir, "blobs"), {
						fsync: this.cfg.blobFsync
					})
				: new PgBlobStore(this.sequelize);
		this.sweepTimer = null;
		this.sweeping = null;
		this.hotManifests = new Map();
	},

	started(this: ProjectsThis) {
		this.scheduleSweep();
	},

	async stopped(this: ProjectsThis) {
		if (this.sweepTimer) clearTimeout(this.sweepTimer);
		this.sweepTimer = null;
		await this.sweeping;
	}
};

export default ProjectsService as unknown as ServiceSchema;
