import type { MigrationParams } from "../src/db/migrate";

/**
 * A lease per compatible (/v1) request in flight: written before its credit hold (`chat:<id>`) and
 * its key-budget hold are taken, renewed by the ai node while the request streams, deleted once both
 * holds are settled. A row whose lease expired belongs to a node that died (or lost touch): the
 * users service's sweeper settles its holds at `cost` when the node had recorded it, else releases
 * them, and deletes the row (docs/compat.md).
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE chat_hold_leases (
			hold_id TEXT PRIMARY KEY,
			user_id TEXT NOT NULL,
			key_id TEXT,
			node_id TEXT NOT NULL,
			cost BIGINT CHECK (cost >= 0),
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			expires_at TIMESTAMPTZ NOT NULL
		);
		CREATE INDEX chat_hold_leases_expires ON chat_hold_leases (expires_at);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS chat_hold_leases`);
}
