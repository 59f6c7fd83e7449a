import type { MigrationParams } from "../src/db/migrate";

/**
 * An organisation's own monthly spend cap on its wallet (issue 19 part 2), set by its owners and
 * admins (PATCH /orgs/:id); NULL: none. Enforced at the hold by payments (src/payments/spend-caps.ts).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(
		`ALTER TABLE orgs ADD COLUMN monthly_cap_credits BIGINT CHECK (monthly_cap_credits IS NULL OR monthly_cap_credits >= 0)`
	);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`ALTER TABLE orgs DROP COLUMN IF EXISTS monthly_cap_credits`);
}
