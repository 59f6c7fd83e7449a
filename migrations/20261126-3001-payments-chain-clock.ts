import type { MigrationParams } from "../src/db/migrate";

/** The time of the last indexed block: stake holding periods are measured on the chain's clock. */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`ALTER TABLE chain_cursors ADD COLUMN block_time TIMESTAMPTZ`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`ALTER TABLE chain_cursors DROP COLUMN IF EXISTS block_time`);
}
