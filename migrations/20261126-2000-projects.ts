import type { MigrationParams } from "../src/db/migrate";
import { PROJECT_BLOBS_DDL } from "../src/projects/pg-blob-store";

/**
 * The projects service's tables. Versions are immutable rows keyed (project_id, number): two commits
 * on one base version cannot both insert the next number, and the head moves only by a conditional
 * UPDATE on the base it was read at. `project_blob_refs` records which blobs each project references
 * (any version), so GC asks an index instead of scanning manifests; purging a project cascades.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`${PROJECT_BLOBS_DDL};
		CREATE INDEX IF NOT EXISTS project_blobs_created ON project_blobs (created_at);

		CREATE TABLE projects (
			id UUID PRIMARY KEY,
			seq BIGSERIAL NOT NULL UNIQUE,
			owner_id TEXT NOT NULL,
			name TEXT NOT NULL,
			description TEXT NOT NULL DEFAULT '',
			status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived', 'deleted')),
			head_version INTEGER NOT NULL DEFAULT 0 CHECK (head_version >= 0),
			file_count INTEGER NOT NULL DEFAULT 0,
			total_bytes BIGINT NOT NULL DEFAULT 0,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			archived_at TIMESTAMPTZ,
			deleted_at TIMESTAMPTZ
		);
		CREATE INDEX projects_deleted ON projects (deleted_at) WHERE status = 'deleted';

		CREATE TABLE project_members (
			project_id UUID NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
			user_id TEXT NOT NULL,
			role TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
			added_by TEXT,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (project_id, user_id)
		);
		CREATE INDEX project_members_user ON project_members (user_id, project_id);

		CREATE TABLE project_versions (
			project_id UUID NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
			number INTEGER NOT NULL CHECK (number >= 0),
			parent_number INTEGER,
			manifest JSONB NOT NULL,
			message TEXT NOT NULL,
			author_id TEXT NOT NULL,
			task_id TEXT,
			idempotency_key TEXT,
			file_count INTEGER NOT NULL,
			total_bytes BIGINT NOT NULL,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (project_id, number),
			CHECK (parent_number IS NULL OR parent_number = number - 1)
		);
		CREATE UNIQUE INDEX project_versions_idempotency ON project_versions (project_id, author_id, idempotency_key)
			WHERE idempotency_key IS NOT NULL;

		CREATE TABLE project_blob_refs (
			project_id UUID NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
			sha256 CHAR(64) NOT NULL,
			PRIMARY KEY (project_id, sha256)
		);
		CREATE INDEX project_blob_refs_sha ON project_blob_refs (sha256);

		CREATE TABLE project_sandboxes (
			project_id UUID PRIMARY KEY REFERENCES projects (id) ON DELETE CASCADE,
			state TEXT NOT NULL DEFAULT 'none' CHECK (state IN ('none', 'provisioning', 'running', 'stopped', 'failed')),
			version INTEGER,
			state_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			started_at TIMESTAMPTZ,
			stopped_at TIMESTAMPTZ,
			last_heartbeat_at TIMESTAMPTZ,
			failure_reason TEXT,
			-- Bumped by every transition: a transition applies only to the generation it was planned from.
			generation BIGINT NOT NULL DEFAULT 0
		);
		CREATE INDEX project_sandboxes_running ON project_sandboxes (last_heartbeat_at) WHERE state = 'running';
		CREATE INDEX project_sandboxes_provisioning ON project_sandboxes (state_changed_at) WHERE state = 'provisioning';
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(
		`DROP TABLE IF EXISTS project_sandboxes, project_blob_refs, project_versions, project_members, projects, project_blobs;`
	);
}
