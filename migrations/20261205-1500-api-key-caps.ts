import type { MigrationParams } from "../src/db/migrate";

/**
 * An API key's monthly spend cap (issue 19 part 2): enforced at the ledger's hold for every task and
 * /v1 request made with the key (src/payments/spend-caps.ts), set at creation or by
 * PATCH /users/me/api-keys/:id; NULL: none. Not the /v1 `monthly_budget_credits` of migration
 * 20261126-1700, which only the compatible endpoints hold against.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(
		`ALTER TABLE api_keys ADD COLUMN monthly_cap_credits BIGINT CHECK (monthly_cap_credits IS NULL OR monthly_cap_credits >= 0)`
	);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`ALTER TABLE api_keys DROP COLUMN IF EXISTS monthly_cap_credits`);
}
