import type { MigrationParams } from "../src/db/migrate";

/**
 * What a reorg reversal of a FORGE payment could not take back (the user had spent it), and how
 * much of that a later credit of the same invoice has recovered: a re-mined payment settles its
 * reversal's shortfall before it credits the rest, so one payment is never credited twice.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		ALTER TABLE crypto_payments
			ADD COLUMN shortfall BIGINT NOT NULL DEFAULT 0,
			ADD COLUMN shortfall_recovered BIGINT NOT NULL DEFAULT 0,
			ADD CONSTRAINT crypto_payments_shortfall CHECK (shortfall >= 0 AND shortfall_recovered >= 0 AND shortfall_recovered <= shortfall);
		CREATE INDEX crypto_payments_open_shortfall ON crypto_payments (invoice_id) WHERE shortfall > shortfall_recovered;
		-- Reversals made before this column existed recorded their shortfall on the ledger transaction only.
		UPDATE crypto_payments p SET shortfall = (t.metadata->>'shortfall')::bigint
		FROM ledger_transactions t
		WHERE p.status = 'reversed' AND t.kind = 'crypto_reversal' AND t.cause_type = 'crypto_payment' AND t.cause_id = p.id::text
			AND COALESCE((t.metadata->>'shortfall')::bigint, 0) > 0;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP INDEX IF EXISTS crypto_payments_open_shortfall;
		ALTER TABLE crypto_payments DROP CONSTRAINT IF EXISTS crypto_payments_shortfall,
			DROP COLUMN IF EXISTS shortfall_recovered, DROP COLUMN IF EXISTS shortfall;
	`);
}
