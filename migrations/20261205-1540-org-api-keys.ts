import type { MigrationParams } from "../src/db/migrate";

/**
 * Organisation API keys (issue 19, docs/orgs.md "API keys"): a key made for an organisation carries
 * its id. Such a key acts as its creator within that organisation only; the creator's membership is
 * asked of the orgs service on every verification. No foreign key: the organisations table belongs
 * to the orgs service.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		ALTER TABLE api_keys ADD COLUMN org_id UUID;
		CREATE INDEX api_keys_org ON api_keys (org_id, created_at DESC) WHERE org_id IS NOT NULL;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP INDEX IF EXISTS api_keys_org;
		ALTER TABLE api_keys DROP COLUMN IF EXISTS org_id;
	`);
}
