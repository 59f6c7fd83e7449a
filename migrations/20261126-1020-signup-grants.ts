import type { MigrationParams } from "../src/db/migrate";

/**
 * The welcome grant (src/users/signup-grant.ts): one row per proven identity (a hashed e-mail
 * address or a wallet) and per account. The row outlives the account (no foreign key): a re-created
 * account with the same address gets no second grant.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE signup_grants (
			identity TEXT PRIMARY KEY CHECK (identity ~ '^(email:[0-9a-f]{64}|wallet:0x[0-9a-f]{40})$'),
			user_id UUID NOT NULL UNIQUE,
			credits BIGINT NOT NULL CHECK (credits > 0),
			expires_at TIMESTAMPTZ NOT NULL,
			ip TEXT,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS signup_grants;`);
}
