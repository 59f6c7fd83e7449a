import type { MigrationParams } from "../src/db/migrate";

/**
 * Whose wallet pays for a task (issue 19 part 2): decided once at submission (the organisation,
 * `org:<uuid>`, for a task in an organisation's project; else the submitting user) and stored, so the
 * settlement, the release and the sweeper always use the payer the hold was taken on, even after the
 * member left the organisation. NULL on tasks from before: their payer is `user_id`.
 * `task_hold_intents.user_id` holds the payer of the intended hold from now on (the sweeper releases
 * an orphaned hold on it).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`ALTER TABLE tasks ADD COLUMN payer_id TEXT`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`ALTER TABLE tasks DROP COLUMN IF EXISTS payer_id`);
}
