import { Sequelize, Transaction } from "sequelize";
import type { DependencyPolicy } from "../runtime/dependency-policy";

const DEFAULT_POLICY: DependencyPolicy["postgres"] = {
	connectTimeoutMs: 2000,
	statementTimeoutMs: 30_000,
	acquireTimeoutMs: 3000,
	retries: 0
};

/** Sequelize's names for connection failures, the only ones worth retrying outside the caller. */
const CONNECTION_ERRORS = [/SequelizeConnectionRefusedError/, /SequelizeConnectionError/, /ECONNREFUSED/];

/**
 * One Sequelize instance per node, shared by every service on it (one pool, one set of models),
 * under the PostgreSQL policy: a connect that takes longer than the connect timeout fails, a
 * statement longer than the statement timeout is cancelled by the server, a free connection is
 * waited for no longer than the acquire timeout.
 */
export function createSequelize(
	databaseUrl: string,
	opts: { poolMax?: number; logging?: (sql: string) => void; policy?: DependencyPolicy["postgres"] } = {}
) {
	const policy = opts.policy ?? DEFAULT_POLICY;
	return new Sequelize(databaseUrl, {
		dialect: "postgres",
		logging: opts.logging ?? false,
		pool: { max: opts.poolMax ?? 10, min: 0, idle: 10_000, acquire: policy.acquireTimeoutMs },
		// retry-as-promised counts tries: 1 = no retry.
		retry: { max: 1 + policy.retries, match: CONNECTION_ERRORS },
		dialectOptions: {
			application_name: "forgefluid",
			connectionTimeoutMillis: policy.connectTimeoutMs,
			statement_timeout: policy.statementTimeoutMs,
			// The client gives up a little after the server would have cancelled (a cut connection never answers).
			query_timeout: policy.statementTimeoutMs + 1000
		},
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
