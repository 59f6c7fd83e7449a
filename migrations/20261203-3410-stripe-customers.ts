import type { MigrationParams } from "../src/db/migrate";

/**
 * Self-serve billing (issue 19 part 4): one Stripe Customer per payer (a user id or `org:<uuid>`),
 * made on the payer's first Checkout or portal visit, and what the subscription events say beyond
 * the status: the item a plan change updates, cancellation at period end, the period's end, and
 * since when the subscription is `past_due` (the grace period runs from there).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE stripe_customers (
			payer_id TEXT PRIMARY KEY,
			customer_id TEXT NOT NULL UNIQUE,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		ALTER TABLE stripe_subscriptions
			ADD COLUMN customer_id TEXT,
			ADD COLUMN item_id TEXT,
			ADD COLUMN cancel_at_period_end BOOLEAN NOT NULL DEFAULT false,
			ADD COLUMN current_period_end TIMESTAMPTZ,
			ADD COLUMN past_due_since TIMESTAMPTZ;
		CREATE INDEX stripe_subscriptions_past_due ON stripe_subscriptions (past_due_since) WHERE status = 'past_due';
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP INDEX IF EXISTS stripe_subscriptions_past_due;
		ALTER TABLE stripe_subscriptions
			DROP COLUMN IF EXISTS customer_id,
			DROP COLUMN IF EXISTS item_id,
			DROP COLUMN IF EXISTS cancel_at_period_end,
			DROP COLUMN IF EXISTS current_period_end,
			DROP COLUMN IF EXISTS past_due_since;
		DROP TABLE IF EXISTS stripe_customers;
	`);
}
