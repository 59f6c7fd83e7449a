import type { MigrationParams } from "../src/db/migrate";

/**
 * Accounts a real platform needs (issue 18): verified e-mail, one-time tokens (verification, reset,
 * the second step of a sign-in), TOTP with hashed backup codes, and account deletion (a tombstone row
 * keeps the id that payments' ledger entries name, with nothing personal left on it).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		ALTER TABLE users
			ADD COLUMN email_verified_at TIMESTAMPTZ,
			ADD COLUMN deleted_at TIMESTAMPTZ;

		-- Every one-time token of the accounts flows. Only SHA-256 of the token is kept; a token is
		-- spent by one conditional UPDATE (used_at IS NULL AND not expired), so of two uses one wins.
		CREATE TABLE user_tokens (
			token_hash BYTEA PRIMARY KEY,
			user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			kind TEXT NOT NULL CHECK (kind IN ('email_verify', 'password_reset', 'mfa_login')),
			-- email_verify: the address being proven (the account's own, or the one it changes to).
			email TEXT CHECK (email = lower(email) AND length(email) <= 254),
			-- mfa_login: how the first step signed in ('password' or 'siwe'), for the session it ends in.
			session_method TEXT CHECK (session_method IN ('password', 'siwe')),
			attempts INT NOT NULL DEFAULT 0,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			expires_at TIMESTAMPTZ NOT NULL,
			used_at TIMESTAMPTZ
		);
		CREATE INDEX user_tokens_user ON user_tokens (user_id, kind, created_at DESC);

		-- confirmed_at NULL: enrolment started, not yet proven with a code (not enforced at sign-in).
		-- last_step: the RFC 6238 time step of the last accepted code; a code of that step or an
		-- earlier one is a replay.
		CREATE TABLE user_totp (
			user_id UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
			secret TEXT NOT NULL,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			confirmed_at TIMESTAMPTZ,
			last_step BIGINT
		);
		CREATE TABLE user_backup_codes (
			code_hash BYTEA PRIMARY KEY,
			user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			used_at TIMESTAMPTZ
		);
		CREATE INDEX user_backup_codes_user ON user_backup_codes (user_id);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP TABLE IF EXISTS user_backup_codes, user_totp, user_tokens;
		ALTER TABLE users DROP COLUMN IF EXISTS email_verified_at, DROP COLUMN IF EXISTS deleted_at;
	`);
}
