import type { MigrationParams } from "../src/db/migrate";

/** Passkeys (WebAuthn credentials) and sessions that began with one. */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE user_passkeys (
			credential_id TEXT PRIMARY KEY CHECK (credential_id ~ '^[A-Za-z0-9_-]+$' AND length(credential_id) BETWEEN 16 AND 1366),
			user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			public_key BYTEA NOT NULL,
			counter BIGINT NOT NULL DEFAULT 0,
			transports TEXT[] NOT NULL DEFAULT '{}',
			name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			last_used_at TIMESTAMPTZ
		);
		CREATE INDEX user_passkeys_user ON user_passkeys (user_id, created_at);
		ALTER TABLE user_sessions DROP CONSTRAINT IF EXISTS user_sessions_method_check;
		ALTER TABLE user_sessions ADD CONSTRAINT user_sessions_method_check CHECK (method IN ('password', 'siwe', 'passkey'));
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS user_passkeys;`);
}
