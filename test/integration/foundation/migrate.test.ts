/**
 * Migrations from many nodes at once (src/db/migrate.ts): each is applied exactly once, and the lock
 * that orders the nodes lives inside one open transaction (so a transaction-mode pooler keeps it on
 * one server connection), never as a session lock on an idle connection.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { Client } from "pg";
import { QueryTypes } from "sequelize";
import { createTestDatabase, type TestDatabase } from "../../support/env";
import { createSequelize } from "../../../src/db/sequelize";
import { createMigrator, migrate } from "../../../src/db/migrate";

jest.setTimeout(120_000);

let db: TestDatabase;
beforeAll(async () => {
	db = await createTestDatabase();
});
afterAll(async () => {
	await db?.drop();
});

test("three nodes at once: every migration applied once; the lock's holder is inside a transaction", async () => {
	const nodes = [1, 2, 3].map(() => createSequelize(db.url, { poolMax: 2 }));
	const watcher = new Client({ connectionString: db.url });
	await watcher.connect();
	try {
		let done = false;
		const runs = Promise.all(nodes.map(s => migrate(db.url, s))).finally(() => (done = true));
		const holders: Array<{ in_transaction: boolean }> = [];
		while (!done) {
			const { rows } = await watcher.query<{ in_transaction: boolean }>(
				`SELECT a.xact_start IS NOT NULL AS in_transaction
				 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
				 WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()`
			);
			holders.push(...rows);
			await new Promise(r => setTimeout(r, 10));
		}
		const applied = await runs;
		const all = (await createMigrator(nodes[0]).executed()).map(m => m.name);
		const files = readdirSync(path.join(__dirname, "../../../migrations")).filter(f => /^\d.*\.ts$/.test(f));
		expect(all).toHaveLength(files.length);
		expect(applied.flat().sort()).toEqual([...all].sort());
		expect(applied.filter(a => a.length > 0)).toHaveLength(1);
		const [{ n }] = await nodes[0].query<{ n: string }>(`SELECT count(*) AS n FROM schema_migrations`, {
			type: QueryTypes.SELECT
		});
		expect(Number(n)).toBe(all.length);
		expect(holders.length).toBeGreaterThan(0);
		expect(holders.every(h => h.in_transaction)).toBe(true);
		const { rows: left } = await watcher.query(
			`SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND a.datname = current_database()`
		);
		expect(left).toEqual([]);
	} finally {
		await watcher.end();
		await Promise.all(nodes.map(s => s.close()));
	}
});
