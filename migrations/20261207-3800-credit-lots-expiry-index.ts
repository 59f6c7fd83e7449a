import type { MigrationParams } from "../src/db/migrate";

/**
 * The expiry sweep (Ledger.sweepExpired) finds the lots whose expiry passed lately. `expires_at` never
 * changes after a lot is made, so this index keeps the lots' `remaining` updates HOT (an index whose
 * predicate named `remaining` would not; see migration 20261206-3600).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`CREATE INDEX credit_lots_expiring ON credit_lots (expires_at) WHERE expires_at IS NOT NULL`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP INDEX IF EXISTS credit_lots_expiring`);
}
