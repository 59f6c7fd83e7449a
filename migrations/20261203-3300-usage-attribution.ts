import type { MigrationParams } from "../src/db/migrate";

/**
 * The usage report (issue 19 part 5): who ran each held task and with what, kept by payments beside
 * the hold. One row per task id (the hold's cause), written when the hold is taken and completed with
 * the tokens when it is settled. The report's credits come from the ledger's settle transactions, never
 * from here, so its totals equal the ledger; this table only says which group a settlement belongs to.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE usage_attributions (
			task_id TEXT PRIMARY KEY,
			payer_id TEXT NOT NULL,          -- as ledger_transactions.user_id (a user id or org:<uuid>)
			member_id TEXT,                  -- the user who submitted the work
			key_id TEXT,                     -- the API key it came with (NULL for a session)
			project_id TEXT,
			model TEXT,                      -- the model asked for; the one used once settled
			source TEXT NOT NULL DEFAULT 'task' CHECK (source IN ('task', 'chat')),
			input_tokens BIGINT CHECK (input_tokens IS NULL OR input_tokens >= 0),
			output_tokens BIGINT CHECK (output_tokens IS NULL OR output_tokens >= 0),
			created_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX ledger_transactions_settled ON ledger_transactions (user_id, created_at)
			WHERE kind = 'settle' AND cause_type = 'task';

		-- One notice per payer, kind and crossing (low balance, cap reached): the key names the crossing.
		CREATE TABLE billing_notices (
			payer_id TEXT NOT NULL,
			kind TEXT NOT NULL,
			crossing TEXT NOT NULL,
			details JSONB NOT NULL DEFAULT '{}'::jsonb,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (payer_id, kind, crossing)
		);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP TABLE IF EXISTS billing_notices;
		DROP INDEX IF EXISTS ledger_transactions_settled;
		DROP TABLE IF EXISTS usage_attributions;
	`);
}
