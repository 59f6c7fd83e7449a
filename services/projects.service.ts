/**
 * The projects service: project metadata and membership, immutable versions of a project's files
 * over a content-addressed blob store, diffs, and the sandbox status a runner reports. A shell: the
 * rules and use cases live in src/projects/ (role checks in guard.ts, commits, diffs and checks in
 * versions.ts, caches.ts, sandboxes.ts, GC in gc.ts, answers in views.ts). See docs/projects.md.
 */
import { Readable } from "node:stream";
import { Errors } from "moleculer";
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { durableEvents } from "../mixins/durable-events.mixin";
import { Conflict } from "../src/errors";
import { pageOf, readCursor } from "../src/http/cursor";
import { currentUser, INTERNAL } from "../src/kit/service";
import { orgOfKey, orgOfRequest, requireInKeyOrg } from "../src/auth/org-key";
import type { Ctx } from "../src/kit/service";
import { runtimeOf } from "../src/runtime/runtime";
import { memberListRank, PROJECT_ROLES } from "../src/projects/access";
import type { OrgRoleOfMember, ProjectRole } from "../src/projects/access";
import { resolveVersion } from "../src/projects/guard";
import type { SandboxRecord } from "../src/projects/repository";
import { SANDBOX_STATES } from "../src/projects/sandbox";
import type { SandboxState } from "../src/projects/sandbox";
import { projectsUseCases } from "../src/projects/use-cases";
import { commitVersion, diffManifests, fileAt } from "../src/projects/versions";
import { filesView, memberView, projectView, sandboxView, versionView } from "../src/projects/views";
import { internalActions } from "./projects/internal.mixin";
import { commitParams, idParam, userIdParam, versionParam } from "./projects/this";
import type { Commit, ProjectsThis } from "./projects/this";

const LIST_MAX = 100;
const STREAM_CHUNK_BYTES = 64 * 1024;

function* chunksOf(data: Buffer, size: number): Generator<Buffer> {
	for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const pageParams = {
	limit: { type: "number", integer: true, min: 1, max: LIST_MAX, default: 20, convert: true },
	cursor: { type: "string", max: 2048, optional: true }
} as const;

type Page = { limit: number; cursor?: string };
const ProjectsService: ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	ProjectsThis
> = {
	name: "projects",
	mixins: [durableEvents({ group: "projects" }), internalActions],

	actions: {
		create: {
			auth: "required",
			orgKey: true,
			scope: "projects:write",
			params: {
				$$strict: "remove",
				name: { type: "string", min: 1, max: 200, trim: true },
				description: { type: "string", max: 5000, optional: true, default: "" },
				orgId: {
					type: "uuid",
					optional: true,
					description: "The organisation that owns the new project (you must be its owner or admin)"
				}
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ name: string; description: string; orgId?: string }>) {
				const project = await this.lifecycle.create(currentUser(ctx).id, ctx.params);
				ctx.meta.$location = `/api/v1/projects/${project.id}`;
				return projectView(project, "owner");
			}
		},

		transfer: {
			auth: "required",
			scope: "projects:write",
			params: {
				$$strict: "remove",
				id: idParam,
				orgId: { type: "uuid", description: "The organisation that takes the project over" }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; orgId: string }>) {
				const { project, role } = await this.lifecycle.transfer(
					currentUser(ctx).id,
					ctx.params.id,
					ctx.params.orgId
				);
				return projectView(project, role);
			}
		},

		list: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: {
				$$strict: "remove",
				...pageParams,
				scope: { type: "enum", values: ["all", "own", "shared"], default: "all" },
				includeArchived: { type: "boolean", default: false, convert: true },
				orgId: { type: "uuid", optional: true, description: "Only this organisation's projects" }
			},
			async handler(
				this: ProjectsThis,
				ctx: Ctx<Page & { scope: "all" | "own" | "shared"; includeArchived: boolean; orgId?: string }>
			) {
				const [beforeSeq = null] = readCursor(ctx.params.cursor, ["int"] as const) ?? [];
				const { limit, scope, includeArchived, orgId } = ctx.params;
				const userId = currentUser(ctx).id;
				const orgs = await this.orgMemberships(ctx, userId);
				const opts = { scope, includeArchived, beforeSeq, limit: limit + 1, orgs, orgId };
				const page = pageOf(await this.repo.listForMember(userId, opts), limit, r => [r.project.seq]);
				return { items: page.items.map(r => projectView(r.project, r.role)), nextCursor: page.nextCursor };
			}
		},

		get: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				const { project, role } = await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				return projectView(project, role);
			}
		},

		update: {
			auth: "required",
			orgKey: true,
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
				const { id, ...patch } = ctx.params;
				const { project, role } = await this.lifecycle.update(currentUser(ctx).id, id, patch);
				return projectView(project, role);
			}
		},

		remove: {
			auth: "required",
			orgKey: true,
			scope: "projects:write",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				const project = await this.lifecycle.remove(currentUser(ctx).id, ctx.params.id);
				const purgeAt = project.deletedAt!.getTime() + this.cfg.purgeAfterS * 1000;
				return { ...projectView(project, "owner"), purgeAfter: new Date(purgeAt).toISOString() };
			}
		},

		restore: {
			auth: "required",
			orgKey: true,
			scope: "projects:write",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				const { project, role } = await this.lifecycle.restore(currentUser(ctx).id, ctx.params.id);
				return projectView(project, role);
			}
		},

		members: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: { $$strict: "remove", id: idParam, ...pageParams },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string } & Page>) {
				const after = readCursor(ctx.params.cursor, ["int", "text"] as const) ?? null;
				await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				const rows = await this.repo.members(ctx.params.id, undefined, { after, limit: ctx.params.limit + 1 });
				const page = pageOf(rows, ctx.params.limit, m => [memberListRank(m.role), m.userId]);
				return { items: page.items.map(memberView), nextCursor: page.nextCursor };
			}
		},

		setMember: {
			auth: "required",
			orgKey: true,
			scope: "projects:write",
			params: {
				$$strict: "remove",
				id: idParam,
				userId: userIdParam,
				role: { type: "enum", values: [...PROJECT_ROLES] }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; userId: string; role: ProjectRole }>) {
				const { id, userId, role } = ctx.params;
				const exist = await ctx.call<{ known: string[] }, { userIds: string[] }>("users.exist", {
					userIds: [userId]
				});
				const accountExists = exist.known.includes(userId);
				await this.lifecycle.setMember(currentUser(ctx).id, id, { userId, role, accountExists });
				return { projectId: id, userId, role };
			}
		},

		removeMember: {
			auth: "required",
			orgKey: true,
			scope: "projects:write",
			params: { id: idParam, userId: userIdParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; userId: string }>) {
				const { id, userId } = ctx.params;
				await this.lifecycle.removeMember(currentUser(ctx).id, id, userId);
				return { projectId: id, userId, removed: true };
			}
		},

		versions: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: { $$strict: "remove", id: idParam, ...pageParams },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string } & Page>) {
				const [before = null] = readCursor(ctx.params.cursor, ["int"] as const) ?? [];
				await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				const rows = await this.repo.versions(ctx.params.id, before, ctx.params.limit + 1);
				const page = pageOf(rows, ctx.params.limit, v => [v.number]);
				return { items: page.items.map(versionView), nextCursor: page.nextCursor };
			}
		},

		version: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: { id: idParam, n: versionParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; n: number }>) {
				const { project } = await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				const number = resolveVersion(project, ctx.params.n);
				const [version, manifest] = await Promise.all([
					this.repo.version(project.id, number),
					this.caches.manifest(project.id, number)
				]);
				return { ...versionView(version!), files: filesView(manifest) };
			}
		},

		commit: {
			auth: "required",
			orgKey: true,
			scope: "projects:write",
			params: { $$strict: "remove", id: idParam, ...commitParams },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string } & Commit>) {
				const { id: projectId, baseVersion, message, changes } = ctx.params;
				const userId = currentUser(ctx).id;
				await this.guard.require(projectId, userId, "editor");
				const idempotencyKey = ctx.meta.idempotencyKey ?? null;
				const input = { projectId, userId, baseVersion, message, changes, taskId: null, idempotencyKey };
				const version = await commitVersion(this.commitDeps, input);
				ctx.meta.$location = `/api/v1/projects/${projectId}/versions/${version.number}`;
				return versionView(version);
			}
		},

		tree: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: {
				$$strict: "remove",
				id: idParam,
				version: { ...versionParam, optional: true },
				prefix: { type: "string", max: 1024, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; version?: number; prefix?: string }>) {
				const { project } = await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				const number = resolveVersion(project, ctx.params.version);
				const prefix = ctx.params.prefix ? `${ctx.params.prefix.replace(/\/+$/, "")}/` : "";
				const files = filesView(await this.caches.manifest(project.id, number), prefix);
				return { projectId: project.id, version: number, files };
			}
		},

		file: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: {
				id: idParam,
				path: { type: "string", min: 1, max: 8192 },
				version: { ...versionParam, optional: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; path: string; version?: number }>) {
				const { project } = await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				const file = await fileAt(this.caches, project, ctx.params.path, ctx.params.version);
				ctx.meta.$responseType = file.contentType;
				ctx.meta.$responseHeaders = file.headers;
				// A stream, not a Buffer: across nodes Moleculer sends it in chunks, where one Buffer
				// would be a single transporter message (NATS refuses those over max_payload, 1 MB by default).
				return Readable.from(chunksOf(file.data, STREAM_CHUNK_BYTES));
			}
		},

		diff: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: {
				$$strict: "remove",
				id: idParam,
				from: versionParam,
				to: versionParam,
				patches: { type: "boolean", default: true, convert: true }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; from: number; to: number; patches: boolean }>) {
				const { project } = await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				const from = resolveVersion(project, ctx.params.from);
				const to = resolveVersion(project, ctx.params.to);
				const [a, b] = await Promise.all([
					this.caches.manifest(project.id, from),
					this.caches.manifest(project.id, to)
				]);
				const opts = { ...this.cfg.diff, patches: ctx.params.patches };
				const diff = await diffManifests(a, b, e => this.caches.blob(e), opts);
				return { projectId: project.id, from, to, ...diff };
			}
		},

		sandbox: {
			auth: "required",
			orgKey: true,
			scope: "projects:read",
			params: { id: idParam },
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string }>) {
				await this.guard.require(ctx.params.id, currentUser(ctx).id, "viewer");
				return this.sandboxOut(await this.sandboxes.status(ctx.params.id));
			}
		},

		setSandbox: {
			auth: "required",
			orgKey: true,
			scope: "projects:write",
			params: {
				$$strict: "remove",
				id: idParam,
				state: { type: "enum", values: [...SANDBOX_STATES] },
				version: { ...versionParam, optional: true, convert: false }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ id: string; state: SandboxState; version?: number }>) {
				const { project } = await this.guard.require(ctx.params.id, currentUser(ctx).id, "editor");
				const starting = ctx.params.state === "provisioning";
				if (starting && project.status !== "active")
					throw Conflict("An archived project's sandbox cannot be started", "PROJECT_ARCHIVED");
				const version = starting ? resolveVersion(project, ctx.params.version) : undefined;
				return this.sandboxOut(
					await this.sandboxes.apply(project.id, { to: ctx.params.state, actor: "user", version })
				);
			}
		},

		// ---- Internal (services/projects/internal.mixin.ts has the others) ----

		// The context service's reads (context/, Python): a version's file list, then its blobs in
		// batches the caller sizes under the transporter's message limit. With userId, the caller's
		// access is checked (viewer); without it (indexing on projects.version.created) only a live project.
		contextManifest: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: {
				projectId: idParam,
				userId: { ...userIdParam, optional: true },
				version: { ...versionParam, optional: true },
				// pages in manifest order, so a 10,000-file version never becomes one oversized message
				offset: { type: "number", integer: true, min: 0, default: 0 },
				limit: { type: "number", integer: true, min: 1, max: 5000, default: 2000 }
			},
			async handler(
				this: ProjectsThis,
				ctx: Ctx<{ projectId: string; userId?: string; version?: number; offset: number; limit: number }>
			) {
				const { offset, limit } = ctx.params;
				const project = await this.guard.live(ctx.params.projectId, ctx.params.userId);
				const version = resolveVersion(project, ctx.params.version);
				const entries = Object.entries(await this.caches.manifest(project.id, version));
				const files = entries
					.slice(offset, offset + limit)
					.map(([p, e]) => ({ path: p, sha256: e.sha256, size: e.size }));
				return {
					projectId: project.id,
					version,
					headVersion: project.headVersion,
					total: entries.length,
					files
				};
			}
		},

		contextBlobs: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: {
				projectId: idParam,
				version: versionParam,
				sha256: { type: "array", items: { type: "string", length: 64 }, min: 1, max: 1000 }
			},
			async handler(this: ProjectsThis, ctx: Ctx<{ projectId: string; version: number; sha256: string[] }>) {
				const project = await this.guard.live(ctx.params.projectId);
				const manifest = await this.caches.manifest(project.id, resolveVersion(project, ctx.params.version));
				// Only blobs of that version: a blob hash is no capability by itself.
				const byHash = new Map(Object.values(manifest).map(e => [e.sha256, e]));
				const blobs = [];
				for (const sha of new Set(ctx.params.sha256)) {
					const entry = byHash.get(sha);
					if (entry) blobs.push({ sha256: sha, base64: (await this.caches.blob(entry)).toString("base64") });
				}
				return { blobs };
			}
		}
	},

	hooks: {
		before: { "*": "keepOrgKeyInOrg" }
	},

	methods: {
		/**
		 * An organisation API key reaches only its organisation's projects (src/auth/org-key.ts): it
		 * creates and lists the organisation's, and any other project (the creator's own, another
		 * organisation's) is 404. Runs for the internal actions too (access, readContext, …), which other
		 * services call on behalf of the same request. The role inside is the creator's, as for a session.
		 */
		async keepOrgKeyInOrg(this: ProjectsThis, ctx: Ctx<{ id?: unknown; projectId?: unknown; orgId?: string }>) {
			const user = ctx.meta.user;
			if (!orgOfKey(user) || !ctx.action) return;
			// Hooks run before the permissions middleware, which refuses the key on the gateway's actions
			// that do not declare `orgKey`; internal actions are checked here, on behalf of the request.
			if (!ctx.action.orgKey && ctx.action.visibility !== INTERNAL) return;
			const action = ctx.action.name;
			if (action === "projects.create" || action === "projects.list")
				ctx.params.orgId = orgOfRequest(user, ctx.params.orgId);
			const projectId = ctx.params.projectId ?? ctx.params.id;
			if (typeof projectId === "string")
				requireInKeyOrg(user, (await this.guard.existing(projectId)).orgId, "Project");
		},

		/** The user's organisations and roles; none where the orgs service is not deployed. */
		async orgMemberships(this: ProjectsThis, ctx: Ctx<object>, userId: string) {
			try {
				const r = await ctx.call<
					{ items: Array<{ orgId: string; role: OrgRoleOfMember }> },
					{ userId: string }
				>("orgs.membershipsOf", { userId });
				return r.items;
			} catch (err) {
				if (err instanceof Errors.ServiceNotFoundError) return [];
				throw err;
			}
		},

		sandboxOut(this: ProjectsThis, s: SandboxRecord) {
			return sandboxView(s, this.cfg.sandbox.heartbeatTimeoutS);
		},

		async sweepOnce(this: ProjectsThis) {
			const r = await this.sandboxes.sweep();
			if (r.failedSandboxes || r.purgedProjects)
				this.logger.info(
					`Sweep: ${r.failedSandboxes} sandbox(es) failed on timeout, ${r.purgedProjects} deleted project(s) purged`
				);
			return r;
		},

		scheduleSweep(this: ProjectsThis) {
			const every = this.cfg.sandbox.sweepMs;
			if (!every) return;
			// Jitter spreads the nodes' sweeps; the conditional UPDATEs make overlapping ones harmless anyway.
			const next = () => {
				this.sweeping = this.sweepOnce()
					.catch(err => this.logger.warn("projects sweep failed", (err as Error).message))
					.finally(() => {
						this.sweeping = null;
						if (this.sweepTimer) this.scheduleSweep();
					});
			};
			this.sweepTimer = setTimeout(next, Math.round(every * (0.75 + Math.random() * 0.5)));
			this.sweepTimer.unref();
		}
	},

	created(this: ProjectsThis) {
		const rt = runtimeOf(this.broker);
		this.cfg = rt.config.projects;
		const wired = projectsUseCases({
			sequelize: rt.sequelize,
			cfg: this.cfg,
			dataDir: rt.config.dataDir,
			cacher: this.broker.cacher ?? null,
			namedStatements: rt.config.dbNamedStatements,
			warn: (message, detail) => this.logger.warn(message, detail),
			orgRole: async (orgId, userId) => {
				const r = await this.broker.call<{ role: OrgRoleOfMember } | null, { orgId: string; userId: string }>(
					"orgs.roleOf",
					{ orgId, userId }
				);
				return r?.role ?? null;
			},
			publish: (tx, topic, payload) => this.publishDurable(tx, topic, payload)
		});
		Object.assign(this, wired);
		this.sweepTimer = null;
		this.sweeping = null;
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
