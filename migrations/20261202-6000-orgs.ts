import type { MigrationParams } from "../src/db/migrate";

/**
 * Organisations (services/orgs.service.ts, docs/orgs.md): the organisation, its members with one role
 * each, and e-mail invitations (only the SHA-256 of the token is stored; single use; expiry).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE orgs (
			id UUID PRIMARY KEY,
			name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
			created_by UUID NOT NULL,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE TABLE org_members (
			org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
			user_id UUID NOT NULL,
			role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'billing', 'member')),
			monthly_cap_credits BIGINT CHECK (monthly_cap_credits >= 0),
			added_by UUID,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (org_id, user_id)
		);
		CREATE INDEX org_members_user ON org_members (user_id, org_id);
		CREATE TABLE org_invitations (
			id UUID PRIMARY KEY,
			org_id UUID NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
			email TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
			role TEXT NOT NULL CHECK (role IN ('admin', 'billing', 'member')),
			token_hash BYTEA NOT NULL UNIQUE,
			invited_by UUID NOT NULL,
			expires_at TIMESTAMPTZ NOT NULL,
			accepted_at TIMESTAMPTZ,
			accepted_by UUID,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX org_invitations_org ON org_invitations (org_id, created_at DESC);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(
		`DROP TABLE IF EXISTS org_invitations; DROP TABLE IF EXISTS org_members; DROP TABLE IF EXISTS orgs;`
	);
}
