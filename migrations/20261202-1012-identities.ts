import type { MigrationParams } from "../src/db/migrate";

/** Single sign-on identities (OpenID Connect issuers, GitHub) and sessions that began with one. */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE user_identities (
			id UUID PRIMARY KEY,
			user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			provider TEXT NOT NULL CHECK (provider ~ '^[a-z0-9-]{1,32}$'),
			subject TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
			email TEXT CHECK (length(email) <= 320),
			email_verified BOOLEAN NOT NULL DEFAULT false,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			last_used_at TIMESTAMPTZ,
			UNIQUE (provider, subject)
		);
		CREATE INDEX user_identities_user ON user_identities (user_id, created_at);
		ALTER TABLE user_sessions DROP CONSTRAINT IF EXISTS user_sessions_method_check;
		ALTER TABLE user_sessions ADD CONSTRAINT user_sessions_method_check CHECK (method IN ('password', 'siwe', 'passkey', 'sso'));
		ALTER TABLE user_tokens DROP CONSTRAINT IF EXISTS user_tokens_session_method_check;
		ALTER TABLE user_tokens ADD CONSTRAINT user_tokens_session_method_check CHECK (session_method IN ('password', 'siwe', 'sso'));
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS user_identities;`);
}
