import type { MigrationParams } from "../src/db/migrate";

/**
 * Auto top-up (issue 19 part 4): a payer's setting (threshold, pack, on/off and why it was turned
 * off), and since when its window runs. A top-up is a `stripe_checkouts` row with `origin =
 * 'auto_topup'` and no session: its PaymentIntent carries the row's id in its metadata, so
 * `payment_intent.succeeded` credits it through the same locked row and ledger cause as a Checkout.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE auto_topups (
			payer_id TEXT PRIMARY KEY,
			threshold_credits BIGINT NOT NULL CHECK (threshold_credits >= 0),
			pack_id TEXT NOT NULL,
			enabled BOOLEAN NOT NULL DEFAULT true,
			disabled_reason TEXT,
			disabled_message TEXT,
			disabled_at TIMESTAMPTZ,
			-- the last purchase attempt: no other starts before last_triggered_at + the window
			last_triggered_at TIMESTAMPTZ,
			last_checkout_id UUID,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		ALTER TABLE stripe_checkouts
			ADD COLUMN origin TEXT NOT NULL DEFAULT 'checkout' CHECK (origin IN ('checkout', 'auto_topup'));
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		ALTER TABLE stripe_checkouts DROP COLUMN IF EXISTS origin;
		DROP TABLE IF EXISTS auto_topups;
	`);
}
