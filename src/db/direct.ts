/**
 * A statement straight on a pooled pg connection, without Sequelize's handling of a query (parameter
 * formatting, hooks, logging, a query object and id per call, result mapping), for the autocommit
 * statements of the hot paths (a task's submit → lease → complete → settle). The connection is
 * Sequelize's pool's, so rows come back through the same type parsers as `sequelize.query`, and the
 * pool's size, acquire timeout and statement timeout apply alike.
 *
 * `name`: a named prepared statement, parsed and planned once per connection (pg remembers which
 * names a connection has). Null: unnamed, parsed every time (poolers in transaction mode hand each
 * statement any server connection, where a name may not exist: DB_NAMED_STATEMENTS=false).
 */
import { createHash } from "node:crypto";
import type { Client as PgClient } from "pg";
import { UniqueConstraintError, type Sequelize } from "sequelize";

export async function directQuery<T extends object>(
	sequelize: Sequelize,
	text: string,
	values: unknown[],
	name: string | null = null
): Promise<T[]> {
	const pool = sequelize.connectionManager;
	const conn = (await pool.getConnection({ type: "write" })) as PgClient & { _invalid?: boolean };
	try {
		return (await conn.query<T>(name ? { name, text, values } : { text, values })).rows;
	} catch (err) {
		const code = (err as { code?: unknown }).code;
		// Not the server's refusal (an SQLSTATE): the connection itself failed, so the pool drops it
		// (what Sequelize's own query does on a reset connection).
		if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) conn._invalid = true;
		// The error Sequelize would have raised, where callers tell it apart (an idempotent twin's insert).
		if (code === "23505")
			throw new UniqueConstraintError({
				parent: Object.assign(err as Error, { sql: text }),
				message: (err as Error).message
			});
		throw err;
	} finally {
		pool.releaseConnection(conn);
	}
}

/** Stable prepared-statement names per statement text (a name is bound to one text per connection). */
export class StatementNames {
	private readonly names = new Map<string, string>();

	constructor(private readonly prefix: string) {}

	of(text: string): string {
		let name = this.names.get(text);
		if (!name) {
			name = `${this.prefix}_${createHash("sha1").update(text).digest("hex").slice(0, 20)}`;
			this.names.set(text, name);
		}
		return name;
	}
}
