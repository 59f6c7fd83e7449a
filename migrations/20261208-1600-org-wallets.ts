import type { MigrationParams } from "../src/db/migrate";

/**
 * Wallets of organisations (issue 19: an organisation's tier from its plan or its stake). An owner or
 * admin links a wallet with a SIWE proof; payments then attributes that wallet's indexed stake to the
 * organisation's payer `org:<uuid>` (users.walletOwner). Such a wallet is not a way to sign in. An
 * address belongs to one holder at a time, an account (user_wallets) or an organisation (here): every
 * claim of an address takes the same transaction-scoped advisory lock on it first (src/users/store.ts).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE org_wallets (
			address TEXT PRIMARY KEY CHECK (address ~ '^0x[0-9a-f]{40}$'),
			org_id UUID NOT NULL,
			chain_id BIGINT NOT NULL,
			kind TEXT NOT NULL CHECK (kind IN ('eoa', 'contract', 'counterfactual')),
			linked_by UUID NOT NULL,
			linked_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX org_wallets_org ON org_wallets (org_id, linked_at);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS org_wallets`);
}
