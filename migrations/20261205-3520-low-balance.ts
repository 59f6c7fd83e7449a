import type { MigrationParams } from "../src/db/migrate";

/**
 * Low-balance notices (issue 19 part 5): a payer's own threshold (NULL = BILLING_LOW_BALANCE_CREDITS)
 * and where its balance stood at the last check: under the threshold or not, the newest ledger
 * transaction seen then, and how many crossings were noticed (the `billing_notices` key).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE billing_alerts (
			payer_id TEXT PRIMARY KEY,
			low_balance_credits BIGINT CHECK (low_balance_credits IS NULL OR low_balance_credits >= 0),
			below BOOLEAN NOT NULL DEFAULT false,
			seen_transaction_id BIGINT NOT NULL DEFAULT 0,
			crossings INTEGER NOT NULL DEFAULT 0,
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS billing_alerts;`);
}
