import type { MigrationParams } from "../src/db/migrate";

/**
 * A row per hold being taken for a task that does not exist yet. Written before payments.reserve and
 * deleted in the transaction that inserts the task: a row that outlives its grace period marks a hold
 * that no task will ever settle (the node died between reserve and insert, or reserve committed after
 * its caller gave up), and the sweeper releases it.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE task_hold_intents (
			task_id UUID PRIMARY KEY,
			user_id TEXT NOT NULL, -- as tasks.user_id
			created_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX task_hold_intents_created ON task_hold_intents (created_at);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS task_hold_intents`);
}
