import type { MigrationParams } from "../src/db/migrate";

/**
 * Tasks: the durable queue of AI work (state machine queued → running → succeeded | failed |
 * cancelled), and the nodes an operator drained. Queue metadata in Redis is derived from this table.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE tasks (
			id UUID PRIMARY KEY,
			user_id TEXT NOT NULL,
			project_id TEXT NOT NULL,
			tier TEXT NOT NULL,
			kind TEXT NOT NULL CHECK (kind IN ('chat', 'code', 'compare')),
			prompt TEXT NOT NULL,
			-- What the client asked for (model, models, maxOutputTokens, priorityBoost) and what ai.prepare answered.
			request JSONB NOT NULL,
			prepared JSONB NOT NULL,
			request_hash TEXT NOT NULL,
			idempotency_key TEXT,
			max_cost_credits BIGINT NOT NULL CHECK (max_cost_credits >= 0),
			boost_ms INTEGER NOT NULL DEFAULT 0,
			state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
			-- Bumped on every transition: SSE event ids and optimistic checks derive from it.
			version INTEGER NOT NULL DEFAULT 1,
			attempts INTEGER NOT NULL DEFAULT 0,
			max_attempts INTEGER NOT NULL,
			-- Original submission time at millisecond precision (kept across retries; the scheduler's key).
			enqueued_at TIMESTAMPTZ NOT NULL,
			not_before TIMESTAMPTZ,
			lease_id UUID,
			lease_expires_at TIMESTAMPTZ,
			node_id TEXT,
			cancel_requested BOOLEAN NOT NULL DEFAULT false,
			started_at TIMESTAMPTZ,
			last_started_at TIMESTAMPTZ,
			finished_at TIMESTAMPTZ,
			result JSONB,
			usage JSONB,
			cost_credits BIGINT,
			-- Credits used by failed attempts that were retried; charged with the final settlement.
			spent_credits BIGINT NOT NULL DEFAULT 0,
			error JSONB,
			-- pending until payments has settled or released the hold (the sweeper retries).
			settlement TEXT NOT NULL DEFAULT 'none' CHECK (settlement IN ('none', 'pending', 'settled', 'released')),
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			CONSTRAINT tasks_idempotency UNIQUE (user_id, idempotency_key),
			CONSTRAINT tasks_running_has_lease CHECK (state <> 'running' OR (lease_id IS NOT NULL AND lease_expires_at IS NOT NULL))
		);
		CREATE INDEX tasks_queued ON tasks (user_id, enqueued_at, id) WHERE state = 'queued';
		CREATE INDEX tasks_running ON tasks (lease_expires_at) WHERE state = 'running';
		CREATE INDEX tasks_user_created ON tasks (user_id, created_at DESC, id DESC);
		CREATE INDEX tasks_finished ON tasks (finished_at DESC) WHERE state = 'succeeded';
		CREATE INDEX tasks_started ON tasks (tier, last_started_at DESC) WHERE last_started_at IS NOT NULL;
		CREATE INDEX tasks_settlement_pending ON tasks (finished_at) WHERE settlement = 'pending';

		CREATE TABLE task_drained_nodes (
			node_id TEXT PRIMARY KEY,
			drained_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			drained_by TEXT
		);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS task_drained_nodes; DROP TABLE IF EXISTS tasks;`);
}
