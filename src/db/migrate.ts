/**
 * Schema changes are migrations (umzug over Sequelize's query interface), applied at node start under
 * a PostgreSQL advisory lock so that many nodes starting at once apply each migration exactly once.
 * Never `sync()`.
 */
import path from "node:path";
import { Client } from "pg";
import { Sequelize } from "sequelize";
import { SequelizeStorage, Umzug } from "umzug";

const MIGRATION_LOCK_KEY = 7_263_410_001; // arbitrary, fixed: "forgefluid migrations"

export function migrationsGlob(): string {
	// Works from the TypeScript sources and from the compiled dist/ tree alike.
	return path.join(__dirname, "..", "..", "migrations", "*.{ts,js}").replace(/\\/g, "/");
}

export function createMigrator(sequelize: Sequelize) {
	return new Umzug({
		migrations: {
			glob: [migrationsGlob(), { ignore: ["**/*.d.ts"] }],
			resolve: ({ name, path: file, context }) => {
				// eslint-disable-next-line @typescript-eslint/no-require-imports
				const mod = require(file!) as {
					up: (c: unknown) => Promise<void>;
					down?: (c: unknown) => Promise<void>;
				};
				return {
					name: name.replace(/\.(ts|js)$/, ""),
					up: () => mod.up({ context, sequelize }),
					down: () => (mod.down ? mod.down({ context, sequelize }) : Promise.resolve())
				};
			}
		},
		context: sequelize.getQueryInterface(),
		storage: new SequelizeStorage({ sequelize, tableName: "schema_migrations" }),
		logger: undefined
	});
}

/**
 * Applies pending migrations; returns the names applied. Safe to call from many nodes at once: a
 * connection of its own holds a transaction open with the transaction-scoped advisory lock while the
 * migrations run on the pool, and commits to let go. A lock that lives in one transaction stays on
 * one server connection behind a transaction-mode pooler too (a session lock's unlock could reach
 * another one there and leave the lock held).
 */
export async function migrate(databaseUrl: string, sequelize: Sequelize): Promise<string[]> {
	const lock = new Client({ connectionString: databaseUrl });
	await lock.connect();
	try {
		await lock.query("BEGIN");
		await lock.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
		const applied = await createMigrator(sequelize).up();
		return applied.map(m => m.name);
	} finally {
		await lock.query("COMMIT").catch(() => undefined);
		await lock.end();
	}
}

/** A migration module's argument. */
export interface MigrationParams {
	context: import("sequelize").QueryInterface;
	sequelize: Sequelize;
}
