import type { MigrationParams } from "../src/db/migrate";

/**
 * Organisation-owned projects (docs/projects.md, docs/orgs.md): `org_id` names the organisation that
 * owns the project (NULL for a user's own). Access to such a project comes from the organisation role
 * (asked of the orgs service per request) combined with the project role. Who pays for the project's
 * tasks does not change yet (the user who starts them; issue 19 part 2).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		ALTER TABLE projects ADD COLUMN org_id UUID;
		CREATE INDEX projects_org ON projects (org_id, seq) WHERE org_id IS NOT NULL;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP INDEX IF EXISTS projects_org; ALTER TABLE projects DROP COLUMN IF EXISTS org_id;`);
}
