/**
 * The projects service's SQL: one function per query, raw SQL with bind parameters, every write
 * inside the caller's transaction. Rows are mapped to plain objects here, so the service never
 * sees column names.
 */
import { QueryTypes } from "sequelize";
import { directQuery } from "../db/direct";
import type { Sequelize, Transaction } from "sequelize";
import type { OrgRoleOfMember, ProjectRole } from "./access";
import type { Manifest, ManifestEntry } from "./manifest";
import { manifestFromEntries } from "./manifest";
import type { SandboxState, SandboxStatus } from "./sandbox";
import { UUID_PATTERN } from "../kit/uuid";

/** Fixed key of the advisory lock that commits take shared and GC takes exclusive ("forgefluid projects gc"). */
const BLOB_GC_LOCK_KEY = 7_263_420_002;

/** Whether `id` can name a project at all (anything else would be a cast error in SQL, not a 404). */
export function isProjectId(id: string): boolean {
	return UUID_PATTERN.test(id);
}

export type ProjectStatus = "active" | "archived" | "deleted";

export interface ProjectRecord {
	id: string;
	seq: number;
	ownerId: string;
	/** The organisation that owns the project, null for a user's own. */
	orgId: string | null;
	name: string;
	description: string;
	status: ProjectStatus;
	headVersion: number;
	fileCount: number;
	totalBytes: number;
	createdAt: Date;
	updatedAt: Date;
	archivedAt: Date | null;
	deletedAt: Date | null;
}

export interface MemberRecord {
	userId: string;
	role: ProjectRole;
	addedBy: string | null;
	createdAt: Date;
	updatedAt: Date;
}

export interface VersionRecord {
	projectId: string;
	number: number;
	parentNumber: number | null;
	message: string;
	authorId: string;
	taskId: string | null;
	fileCount: number;
	totalBytes: number;
	createdAt: Date;
}

export interface SandboxRecord extends SandboxStatus {
	projectId: string;
	generation: number;
}

interface ProjectRow {
	id: string;
	seq: string;
	owner_id: string;
	org_id: string | null;
	name: string;
	description: string;
	status: ProjectStatus;
	head_version: number;
	file_count: number;
	total_bytes: string;
	created_at: Date;
	updated_at: Date;
	archived_at: Date | null;
	deleted_at: Date | null;
}

interface VersionRow {
	project_id: string;
	number: number;
	parent_number: number | null;
	message: string;
	author_id: string;
	task_id: string | null;
	file_count: number;
	total_bytes: string;
	created_at: Date;
}

interface SandboxRow {
	project_id: string;
	state: SandboxState;
	version: number | null;
	state_changed_at: Date;
	started_at: Date | null;
	stopped_at: Date | null;
	last_heartbeat_at: Date | null;
	failure_reason: string | null;
	generation: string;
}

const PROJECT_COLUMNS =
	"p.id, p.seq, p.owner_id, p.org_id, p.name, p.description, p.status, p.head_version, p.file_count, p.total_bytes, p.created_at, p.updated_at, p.archived_at, p.deleted_at";
const VERSION_COLUMNS =
	"project_id, number, parent_number, message, author_id, task_id, file_count, total_bytes, created_at";
const SANDBOX_COLUMNS =
	"project_id, state, version, state_changed_at, started_at, stopped_at, last_heartbeat_at, failure_reason, generation";

function toProject(row: ProjectRow): ProjectRecord {
	return {
		id: row.id,
		seq: Number(row.seq),
		ownerId: row.owner_id,
		orgId: row.org_id,
		name: row.name,
		description: row.description,
		status: row.status,
		headVersion: row.head_version,
		fileCount: row.file_count,
		totalBytes: Number(row.total_bytes),
		createdAt: row.created_at,
		updatedAt: row.updated_at,
		archivedAt: row.archived_at,
		deletedAt: row.deleted_at
	};
}

function toVersion(row: VersionRow): VersionRecord {
	return {
		projectId: row.project_id,
		number: row.number,
		parentNumber: row.parent_number,
		message: row.message,
		authorId: row.author_id,
		taskId: row.task_id,
		fileCount: row.file_count,
		totalBytes: Number(row.total_bytes),
		createdAt: row.created_at
	};
}

function toSandbox(row: SandboxRow): SandboxRecord {
	return {
		projectId: row.project_id,
		state: row.state,
		version: row.version,
		stateChangedAt: row.state_changed_at,
		startedAt: row.started_at,
		stoppedAt: row.stopped_at,
		lastHeartbeatAt: row.last_heartbeat_at,
		failureReason: row.failure_reason,
		generation: Number(row.generation)
	};
}

export class ProjectsRepository {
	constructor(
		private readonly sequelize: Sequelize,
		/** false: the access read goes unnamed (poolers in transaction mode; DB_NAMED_STATEMENTS=false). */
		private readonly namedStatements = false
	) {}

	private select<T extends object>(sql: string, bind: unknown[], tx?: Transaction): Promise<T[]> {
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx });
	}

	async createProject(
		tx: Transaction,
		p: { id: string; ownerId: string; orgId?: string | null; name: string; description: string }
	): Promise<ProjectRecord> {
		const [row] = await this.select<ProjectRow>(
			`INSERT INTO projects AS p (id, owner_id, org_id, name, description) VALUES ($1, $2, $3, $4, $5) RETURNING ${PROJECT_COLUMNS}`,
			[p.id, p.ownerId, p.orgId ?? null, p.name, p.description],
			tx
		);
		// One statement per query: the extended protocol (bind parameters) refuses several.
		const q = (sql: string) => this.sequelize.query(sql, { bind: [p.id, p.ownerId], transaction: tx });
		await q(`INSERT INTO project_members (project_id, user_id, role, added_by) VALUES ($1, $2, 'owner', $2)`);
		await q(
			`INSERT INTO project_versions (project_id, number, parent_number, manifest, message, author_id, file_count, total_bytes)
			 VALUES ($1, 0, NULL, '{}'::jsonb, 'Project created', $2, 0, 0)`
		);
		await this.sequelize.query(`INSERT INTO project_sandboxes (project_id) VALUES ($1)`, {
			bind: [p.id],
			transaction: tx
		});
		return toProject(row);
	}

	/**
	 * The project and the user's own role in it (null when not a project member); null when the
	 * project does not exist. The role that counts also depends on the organisation (guard.ts).
	 */
	async projectForMember(
		projectId: string,
		userId: string,
		tx?: Transaction,
		lock = false
	): Promise<{ project: ProjectRecord; role: ProjectRole | null } | null> {
		if (!isProjectId(projectId)) return null;
		const sql = `SELECT ${PROJECT_COLUMNS}, m.role FROM projects p LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2
			 WHERE p.id = $1${lock ? " FOR UPDATE OF p" : ""}`;
		// Outside a transaction (every access check: each task submission asks one) straight on a pooled
		// pg connection as a named prepared statement (src/db/direct.ts), not through Sequelize.
		const rows = tx
			? await this.select<ProjectRow & { role: ProjectRole | null }>(sql, [projectId, userId], tx)
			: await directQuery<ProjectRow & { role: ProjectRole | null }>(
					this.sequelize,
					sql,
					[projectId, userId],
					this.namedStatements ? `ff_projects_member${lock ? "_lock" : ""}` : null
				);
		return rows.length ? { project: toProject(rows[0]), role: rows[0].role } : null;
	}

	/** Moves a user's project into an organisation (the caller holds the project row lock). */
	async setOrg(tx: Transaction, projectId: string, orgId: string): Promise<ProjectRecord> {
		const [row] = await this.select<ProjectRow>(
			`UPDATE projects AS p SET org_id = $2, updated_at = now() WHERE p.id = $1 RETURNING ${PROJECT_COLUMNS}`,
			[projectId, orgId],
			tx
		);
		return toProject(row);
	}

	async project(projectId: string, tx?: Transaction): Promise<ProjectRecord | null> {
		if (!isProjectId(projectId)) return null;
		const rows = await this.select<ProjectRow>(
			`SELECT ${PROJECT_COLUMNS} FROM projects p WHERE p.id = $1`,
			[projectId],
			tx
		);
		return rows.length ? toProject(rows[0]) : null;
	}

	/**
	 * The user's projects: their own and shared ones (by project membership), and the projects of
	 * the organisations in `orgs` (their memberships, as the orgs service reports them), each with the
	 * role that counts (`effectiveRole` in access.ts, here in SQL so that filters and pages hold).
	 * An organisation's project is listed only through a current membership of that organisation.
	 */
	async listForMember(
		userId: string,
		opts: {
			scope: "all" | "own" | "shared";
			includeArchived: boolean;
			beforeSeq: number | null;
			limit: number;
			orgs?: ReadonlyArray<{ orgId: string; role: OrgRoleOfMember }>;
			orgId?: string | null;
		}
	): Promise<Array<{ project: ProjectRecord; role: ProjectRole }>> {
		const orgs = opts.orgs ?? [];
		const rows = await this.select<ProjectRow & { role: ProjectRole }>(
			`WITH o AS (SELECT * FROM unnest($6::uuid[], $7::text[]) AS o (org_id, role)),
			 candidates AS (
			   SELECT project_id AS id FROM project_members WHERE user_id = $1
			   UNION SELECT p.id FROM projects p JOIN o ON o.org_id = p.org_id
			 ),
			 ranked AS (
			   SELECT ${PROJECT_COLUMNS},
			     CASE WHEN p.org_id IS NULL THEN m.role
			          WHEN o.role IS NULL THEN NULL
			          WHEN o.role IN ('owner', 'admin') THEN 'owner'
			          WHEN o.role = 'billing' THEN 'viewer'
			          ELSE COALESCE(m.role, 'viewer') END AS role
			   FROM candidates c JOIN projects p ON p.id = c.id
			   LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $1
			   LEFT JOIN o ON o.org_id = p.org_id
			 )
			 SELECT * FROM ranked p
			 WHERE p.role IS NOT NULL AND p.status <> 'deleted' AND ($2::boolean OR p.status = 'active')
			   AND ($3 = 'all' OR ($3 = 'own' AND p.role = 'owner') OR ($3 = 'shared' AND p.role <> 'owner'))
			   AND ($4::bigint IS NULL OR p.seq < $4::bigint)
			   AND ($8::uuid IS NULL OR p.org_id = $8::uuid)
			 ORDER BY p.seq DESC LIMIT $5`,
			[
				userId,
				opts.includeArchived,
				opts.scope,
				opts.beforeSeq,
				opts.limit,
				orgs.map(o => o.orgId),
				orgs.map(o => o.role),
				opts.orgId ?? null
			]
		);
		return rows.map(row => ({ project: toProject(row), role: row.role }));
	}

	async updateProject(
		tx: Transaction,
		projectId: string,
		patch: { name?: string; description?: string; status?: ProjectStatus }
	): Promise<ProjectRecord> {
		const [row] = await this.select<ProjectRow>(
			`UPDATE projects AS p SET
			   name = COALESCE($2, p.name),
			   description = COALESCE($3, p.description),
			   status = COALESCE($4, p.status),
			   archived_at = CASE WHEN $4 IS NULL THEN p.archived_at WHEN $4 = 'archived' THEN COALESCE(p.archived_at, now()) ELSE NULL END,
			   deleted_at = CASE WHEN $4 IS NULL THEN p.deleted_at WHEN $4 = 'deleted' THEN COALESCE(p.deleted_at, now()) ELSE NULL END,
			   updated_at = now()
			 WHERE p.id = $1 RETURNING ${PROJECT_COLUMNS}`,
			[projectId, patch.name ?? null, patch.description ?? null, patch.status ?? null],
			tx
		);
		return toProject(row);
	}

	/**
	 * Members in list order: owners, editors, viewers (`memberListRank`), then by user id. With `page`,
	 * at most `limit` of them after the member whose key is `after` (keyset pagination).
	 */
	async members(
		projectId: string,
		tx?: Transaction,
		page?: { after: readonly [number, string] | null; limit: number }
	): Promise<MemberRecord[]> {
		const rows = await this.select<{
			user_id: string;
			role: ProjectRole;
			added_by: string | null;
			created_at: Date;
			updated_at: Date;
		}>(
			`SELECT user_id, role, added_by, created_at, updated_at FROM (
			   SELECT *, CASE role WHEN 'owner' THEN 0 WHEN 'editor' THEN 1 ELSE 2 END AS rank FROM project_members WHERE project_id = $1
			 ) m
			 WHERE $2::int IS NULL OR (rank, user_id) > ($2::int, $3::text)
			 ORDER BY rank, user_id LIMIT $4`,
			[projectId, page?.after?.[0] ?? null, page?.after?.[1] ?? null, page?.limit ?? null],
			tx
		);
		return rows.map(r => ({
			userId: r.user_id,
			role: r.role,
			addedBy: r.added_by,
			createdAt: r.created_at,
			updatedAt: r.updated_at
		}));
	}

	async setMember(
		tx: Transaction,
		projectId: string,
		userId: string,
		role: ProjectRole,
		addedBy: string
	): Promise<void> {
		await this.sequelize.query(
			`INSERT INTO project_members (project_id, user_id, role, added_by) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (project_id, user_id) DO UPDATE SET role = EXCLUDED.role, updated_at = now()`,
			{ bind: [projectId, userId, role, addedBy], transaction: tx }
		);
	}

	async removeMember(tx: Transaction, projectId: string, userId: string): Promise<void> {
		await this.sequelize.query(`DELETE FROM project_members WHERE project_id = $1 AND user_id = $2`, {
			bind: [projectId, userId],
			transaction: tx
		});
	}

	async manifest(projectId: string, number: number): Promise<Manifest | null> {
		const rows = await this.select<{ manifest: Record<string, ManifestEntry> }>(
			`SELECT manifest FROM project_versions WHERE project_id = $1 AND number = $2`,
			[projectId, number]
		);
		// JSONB does not keep key order; the manifest is rebuilt in path order.
		return rows.length ? manifestFromEntries(Object.entries(rows[0].manifest)) : null;
	}

	async version(projectId: string, number: number, tx?: Transaction): Promise<VersionRecord | null> {
		const rows = await this.select<VersionRow>(
			`SELECT ${VERSION_COLUMNS} FROM project_versions WHERE project_id = $1 AND number = $2`,
			[projectId, number],
			tx
		);
		return rows.length ? toVersion(rows[0]) : null;
	}

	async versions(projectId: string, beforeNumber: number | null, limit: number): Promise<VersionRecord[]> {
		const rows = await this.select<VersionRow>(
			`SELECT ${VERSION_COLUMNS} FROM project_versions WHERE project_id = $1 AND ($2::int IS NULL OR number < $2::int)
			 ORDER BY number DESC LIMIT $3`,
			[projectId, beforeNumber, limit]
		);
		return rows.map(toVersion);
	}

	async versionByIdempotencyKey(projectId: string, authorId: string, key: string): Promise<VersionRecord | null> {
		const rows = await this.select<VersionRow>(
			`SELECT ${VERSION_COLUMNS} FROM project_versions WHERE project_id = $1 AND author_id = $2 AND idempotency_key = $3`,
			[projectId, authorId, key]
		);
		return rows.length ? toVersion(rows[0]) : null;
	}

	/** Commits take the GC lock shared: many commit at once, none while GC deletes a batch. */
	async lockOutGc(tx: Transaction): Promise<void> {
		await this.sequelize.query(`SELECT pg_advisory_xact_lock_shared($1)`, {
			bind: [BLOB_GC_LOCK_KEY],
			transaction: tx
		});
	}

	async lockForGc(tx: Transaction): Promise<void> {
		await this.sequelize.query(`SELECT pg_advisory_xact_lock($1)`, { bind: [BLOB_GC_LOCK_KEY], transaction: tx });
	}

	/**
	 * Moves the head from `base` to `base + 1` if it is still at `base` and the project accepts
	 * commits. A concurrent commit on the same base waits for the winner's row lock, then finds the
	 * head moved and gets false.
	 */
	async advanceHead(
		tx: Transaction,
		projectId: string,
		base: number,
		fileCount: number,
		totalBytes: number
	): Promise<boolean> {
		const rows = await this.select<{ head_version: number }>(
			`UPDATE projects SET head_version = head_version + 1, file_count = $3, total_bytes = $4, updated_at = now()
			 WHERE id = $1 AND head_version = $2 AND status = 'active' RETURNING head_version`,
			[projectId, base, fileCount, totalBytes],
			tx
		);
		return rows.length === 1;
	}

	async insertVersion(
		tx: Transaction,
		v: {
			projectId: string;
			number: number;
			manifest: Manifest;
			message: string;
			authorId: string;
			taskId: string | null;
			idempotencyKey: string | null;
			fileCount: number;
			totalBytes: number;
		}
	): Promise<VersionRecord> {
		const [row] = await this.select<VersionRow>(
			`INSERT INTO project_versions (project_id, number, parent_number, manifest, message, author_id, task_id, idempotency_key, file_count, total_bytes)
			 VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10) RETURNING ${VERSION_COLUMNS}`,
			[
				v.projectId,
				v.number,
				v.number - 1,
				JSON.stringify(v.manifest),
				v.message,
				v.authorId,
				v.taskId,
				v.idempotencyKey,
				v.fileCount,
				v.totalBytes
			],
			tx
		);
		return toVersion(row);
	}

	async addBlobRefs(tx: Transaction, projectId: string, shas: readonly string[]): Promise<void> {
		if (shas.length === 0) return;
		await this.sequelize.query(
			`INSERT INTO project_blob_refs (project_id, sha256) SELECT $1, unnest($2::bpchar[]) ON CONFLICT DO NOTHING`,
			{ bind: [projectId, [...shas]], transaction: tx }
		);
	}

	/** Which of `shas` any project references. */
	async referencedBlobs(shas: readonly string[], tx?: Transaction): Promise<Set<string>> {
		if (shas.length === 0) return new Set();
		const rows = await this.select<{ sha256: string }>(
			`SELECT DISTINCT sha256 FROM project_blob_refs WHERE sha256 = ANY($1::bpchar[])`,
			[[...shas]],
			tx
		);
		return new Set(rows.map(r => r.sha256));
	}

	async sandbox(projectId: string, tx?: Transaction): Promise<SandboxRecord | null> {
		if (!isProjectId(projectId)) return null;
		const rows = await this.select<SandboxRow>(
			`SELECT ${SANDBOX_COLUMNS} FROM project_sandboxes WHERE project_id = $1`,
			[projectId],
			tx
		);
		return rows.length ? toSandbox(rows[0]) : null;
	}

	/** Writes `next` if the row is still at `generation`; null when another transition got there first. */
	async updateSandbox(
		tx: Transaction,
		projectId: string,
		generation: number,
		next: SandboxStatus
	): Promise<SandboxRecord | null> {
		const rows = await this.select<SandboxRow>(
			`UPDATE project_sandboxes SET state = $3, version = $4, state_changed_at = $5, started_at = $6, stopped_at = $7,
			   last_heartbeat_at = $8, failure_reason = $9, generation = generation + 1
			 WHERE project_id = $1 AND generation = $2 RETURNING ${SANDBOX_COLUMNS}`,
			[
				projectId,
				generation,
				next.state,
				next.version,
				next.stateChangedAt,
				next.startedAt,
				next.stoppedAt,
				next.lastHeartbeatAt,
				next.failureReason
			],
			tx
		);
		return rows.length ? toSandbox(rows[0]) : null;
	}

	async heartbeat(projectId: string, version: number | null): Promise<SandboxRecord | null> {
		if (!isProjectId(projectId)) return null;
		const rows = await this.select<SandboxRow>(
			`UPDATE project_sandboxes SET last_heartbeat_at = now()
			 WHERE project_id = $1 AND state = 'running' AND ($2::int IS NULL OR version = $2::int) RETURNING ${SANDBOX_COLUMNS}`,
			[projectId, version]
		);
		return rows.length ? toSandbox(rows[0]) : null;
	}

	/**
	 * Fails sandboxes whose heartbeats stopped (running) or that never came up (provisioning), in
	 * one conditional UPDATE: on many nodes each sandbox fails once, and rows a heartbeat is
	 * updating right now are skipped until the next sweep.
	 */
	async failTimedOutSandboxes(
		tx: Transaction,
		heartbeatTimeoutS: number,
		provisionTimeoutS: number,
		limit = 100
	): Promise<Array<SandboxRecord & { from: SandboxState }>> {
		const rows = await this.select<SandboxRow & { from_state: SandboxState }>(
			`WITH expired AS (
			   SELECT project_id, state AS from_state FROM project_sandboxes
			   WHERE (state = 'running' AND COALESCE(last_heartbeat_at, state_changed_at) < now() - make_interval(secs => $1))
			      OR (state = 'provisioning' AND state_changed_at < now() - make_interval(secs => $2))
			   ORDER BY project_id LIMIT $3 FOR UPDATE SKIP LOCKED
			 )
			 UPDATE project_sandboxes s SET state = 'failed', state_changed_at = now(), stopped_at = now(), generation = s.generation + 1,
			   failure_reason = CASE expired.from_state WHEN 'running' THEN 'heartbeat timeout' ELSE 'provisioning timeout' END
			 FROM expired WHERE s.project_id = expired.project_id
			 RETURNING s.project_id, s.state, s.version, s.state_changed_at, s.started_at, s.stopped_at, s.last_heartbeat_at, s.failure_reason, s.generation, expired.from_state`,
			[heartbeatTimeoutS, provisionTimeoutS, limit],
			tx
		);
		return rows.map(row => ({ ...toSandbox(row), from: row.from_state }));
	}

	/** Hard-deletes soft-deleted projects (one, or all deleted before `deletedBefore`); cascades to every row of theirs. */
	async purge(opts: { projectId?: string; deletedBefore: Date }): Promise<string[]> {
		const rows = await this.select<{ id: string }>(
			`DELETE FROM projects WHERE status = 'deleted' AND deleted_at <= $2 AND ($1::uuid IS NULL OR id = $1::uuid) RETURNING id`,
			[opts.projectId ?? null, opts.deletedBefore]
		);
		return rows.map(r => r.id);
	}
}
