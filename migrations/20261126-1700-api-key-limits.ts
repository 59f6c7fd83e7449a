import type { MigrationParams } from "../src/db/migrate";

/**
 * API keys gain limits of their own (the compatible /v1 endpoints enforce them): a model allow-list,
 * a monthly budget in credits, requests and tokens per minute. The budget is kept per key and UTC
 * month as `reserved` (worst cases of requests in flight) + `spent` (settled charges); a request
 * holds its worst case with one conditional UPDATE (`spent + reserved + cost <= budget`), so
 * concurrent requests on any number of nodes can never pass it together. Each hold has a row, which
 * makes its settlement happen once.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		ALTER TABLE api_keys
			ADD COLUMN allowed_models TEXT[],
			ADD COLUMN monthly_budget_credits BIGINT CHECK (monthly_budget_credits > 0),
			ADD COLUMN rpm INTEGER CHECK (rpm > 0),
			ADD COLUMN tpm INTEGER CHECK (tpm > 0);
		CREATE TABLE api_key_spend (
			key_id TEXT NOT NULL REFERENCES api_keys (id),
			month DATE NOT NULL,
			reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
			spent BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
			PRIMARY KEY (key_id, month)
		);
		CREATE TABLE api_key_holds (
			hold_id TEXT PRIMARY KEY,
			key_id TEXT NOT NULL,
			month DATE NOT NULL,
			amount BIGINT NOT NULL CHECK (amount >= 0),
			charged BIGINT,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			settled_at TIMESTAMPTZ
		);
		CREATE INDEX api_key_holds_open ON api_key_holds (created_at) WHERE settled_at IS NULL;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP TABLE IF EXISTS api_key_holds, api_key_spend;
		ALTER TABLE api_keys DROP COLUMN IF EXISTS allowed_models, DROP COLUMN IF EXISTS monthly_budget_credits,
			DROP COLUMN IF EXISTS rpm, DROP COLUMN IF EXISTS tpm;
	`);
}
