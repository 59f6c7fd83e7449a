import type { MigrationParams } from "../src/db/migrate";

/**
 * The users service's tables: accounts, linked wallets, sessions (refresh-token families) with their
 * hashed refresh tokens, hashed API keys, the tier facts reported by payments, and an admin audit log.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE users (
			id UUID PRIMARY KEY,
			email TEXT UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
			password_hash TEXT,
			display_name TEXT CHECK (length(display_name) <= 80),
			role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'operator')),
			tier_override TEXT CHECK (tier_override IN ('free', 'pro', 'team', 'enterprise')),
			disabled_at TIMESTAMPTZ,
			last_login_at TIMESTAMPTZ,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX users_created_order ON users (created_at DESC, id DESC);
		-- Admin search is by e-mail prefix (LIKE 'q%'), which this index serves.
		CREATE INDEX users_email_prefix ON users (email text_pattern_ops);

		-- An address belongs to at most one account: stored lower-case, primary key.
		CREATE TABLE user_wallets (
			address TEXT PRIMARY KEY CHECK (address ~ '^0x[0-9a-f]{40}$'),
			user_id UUID NOT NULL REFERENCES users (id),
			chain_id BIGINT NOT NULL,
			kind TEXT NOT NULL CHECK (kind IN ('eoa', 'contract', 'counterfactual')),
			linked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			last_sign_in_at TIMESTAMPTZ
		);
		CREATE INDEX user_wallets_user ON user_wallets (user_id);

		CREATE TABLE user_sessions (
			id UUID PRIMARY KEY,
			user_id UUID NOT NULL REFERENCES users (id),
			method TEXT NOT NULL CHECK (method IN ('password', 'siwe')),
			ip TEXT,
			user_agent TEXT,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			last_refreshed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			expires_at TIMESTAMPTZ NOT NULL,
			revoked_at TIMESTAMPTZ,
			revoked_reason TEXT
		);
		CREATE INDEX user_sessions_user ON user_sessions (user_id, created_at DESC);

		-- Only SHA-256 of each refresh token is kept; rotated rows stay until the family expires, so a
		-- replayed old token is recognised (and revokes the family).
		CREATE TABLE refresh_tokens (
			token_hash BYTEA PRIMARY KEY,
			session_id UUID NOT NULL REFERENCES user_sessions (id) ON DELETE CASCADE,
			issued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			expires_at TIMESTAMPTZ NOT NULL,
			rotated_at TIMESTAMPTZ
		);
		CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

		CREATE TABLE api_keys (
			id TEXT PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9]{1,64}$'),
			user_id UUID NOT NULL REFERENCES users (id),
			name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
			secret_hash BYTEA NOT NULL,
			scopes TEXT[] NOT NULL,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			expires_at TIMESTAMPTZ,
			last_used_at TIMESTAMPTZ,
			revoked_at TIMESTAMPTZ
		);
		CREATE INDEX api_keys_user ON api_keys (user_id, created_at DESC);

		-- Facts reported by payments (durable events); each kind keeps the time of the event it came
		-- from so a late, older event never overwrites a newer one.
		CREATE TABLE user_tier_facts (
			user_id UUID PRIMARY KEY,
			plan_tier TEXT CHECK (plan_tier IN ('free', 'pro', 'team', 'enterprise')),
			plan_as_of TIMESTAMPTZ,
			stake_as_of TIMESTAMPTZ
		);
		CREATE TABLE user_stake_positions (
			id BIGSERIAL PRIMARY KEY,
			user_id UUID NOT NULL,
			amount_wei NUMERIC(78, 0) NOT NULL CHECK (amount_wei >= 0),
			since TIMESTAMPTZ NOT NULL
		);
		CREATE INDEX user_stake_positions_user ON user_stake_positions (user_id);

		CREATE TABLE user_audit_events (
			id BIGSERIAL PRIMARY KEY,
			user_id UUID NOT NULL,
			actor_id TEXT NOT NULL,
			action TEXT NOT NULL,
			details JSONB NOT NULL DEFAULT '{}'::jsonb,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX user_audit_events_user ON user_audit_events (user_id, id DESC);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP TABLE IF EXISTS user_audit_events, user_stake_positions, user_tier_facts, api_keys,
			refresh_tokens, user_sessions, user_wallets, users;
	`);
}
