import { Sequelize, Transaction } from "sequelize";

/** One Sequelize instance per node, shared by every service on it (one pool, one set of models). */
export function createSequelize(databaseUrl: string, opts: { poolMax?: number; logging?: (sql: string) => void } = {}) {
	return new Sequelize(databaseUrl, {
		dialect: "postgres",
		logging: opts.logging ?? false,
		pool: { max: opts.poolMax ?? 10, min: 0, idle: 10_000, acquire: 30_000 },
		dialectOptions: { application_name: "forgefluid" },
		define: { underscored: true, timestamps: true, createdAt: "created_at", updatedAt: "updated_at" }
	});
}

/**
 * Runs `fn` in a transaction; commits when it resolves, rolls back when it throws.
 * `afterCommit` callbacks run only once the data is durable (e.g. to wake the outbox relay).
 */
export async function withTransaction<T>(
	sequelize: Sequelize,
	fn: (tx: Transaction) => Promise<T>,
	opts: { isolationLevel?: Transaction.ISOLATION_LEVELS } = {}
): Promise<T> {
	return sequelize.transaction({ isolationLevel: opts.isolationLevel }, fn);
}
