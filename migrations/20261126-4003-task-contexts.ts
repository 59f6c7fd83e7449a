import type { MigrationParams } from "../src/db/migrate";

/**
 * What the model was shown for a task's latest attempt (GET /tasks/:id `context`): which files and
 * line ranges, their tokens, and whether the context came from the context service or was degraded.
 * A table of its own rather than a column of `tasks`: the lease function returns `SETOF tasks`, and
 * this record is read only by the task view, never by the queue.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE task_contexts (
			task_id UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
			attempt INTEGER NOT NULL,
			context JSONB NOT NULL,
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS task_contexts`);
}
