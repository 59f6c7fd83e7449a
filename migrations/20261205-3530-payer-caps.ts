import type { MigrationParams } from "../src/db/migrate";

/**
 * A user's own monthly spend cap on their wallet (issue 19 part 2, PUT /billing/cap): the payer cap of
 * a user payer; an organisation's is `orgs.monthly_cap_credits` (PATCH /orgs/:id). Read beside the tier
 * facts at each reserve and enforced in the hold's statement like the others (src/payments/spend-caps.ts).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE payer_caps (
			payer_id TEXT PRIMARY KEY,
			monthly_cap_credits BIGINT NOT NULL CHECK (monthly_cap_credits >= 0),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS payer_caps`);
}
