/**
 * src/db/direct.ts against sequelize.query, which it replaces on the task path's autocommit statements:
 * the same rows (through the same type parsers), named and unnamed, the same error where callers tell
 * errors apart (a unique violation), and a pool that stays usable after a refused statement.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes, UniqueConstraintError, type Sequelize } from "sequelize";
import { createSequelize } from "../../../src/db/sequelize";
import { directQuery, StatementNames } from "../../../src/db/direct";
import { createTestDatabase, type TestDatabase } from "../../support/env";

let db: TestDatabase;
let sequelize: Sequelize;

beforeAll(async () => {
	db = await createTestDatabase();
	sequelize = createSequelize(db.url, { poolMax: 2 });
	await sequelize.query(
		`CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT, at TIMESTAMPTZ, doc JSONB, flag BOOLEAN, tags TEXT[])`
	);
});
afterAll(async () => {
	await sequelize?.close();
	await db?.drop();
});

const INSERT = `INSERT INTO t (id, n, at, doc, flag, tags) VALUES ($1, $2, $3, $4::jsonb, $5, $6) RETURNING *`;

test("the same rows as sequelize.query, named and unnamed", async () => {
	const names = new StatementNames("ff_test");
	const at = new Date("2026-12-03T10:00:00.123Z");
	const row = (id: string) => [id, "9007199254740993", at, JSON.stringify({ a: [1, "x"] }), true, ["p", "q"]];
	const viaSequelize = await sequelize.query(INSERT, { bind: row("s"), type: QueryTypes.SELECT });
	const unnamed = await directQuery(sequelize, INSERT, row("u"));
	// Three times under one name on a pool of two: a connection parses it once, then reuses it.
	const named = [];
	for (const id of ["n1", "n2", "n3"])
		named.push(...(await directQuery(sequelize, INSERT, row(id), names.of(INSERT))));
	const strip = (rows: object[]) => rows.map(r => ({ ...r, id: undefined }));
	expect(strip(unnamed)).toEqual(strip(viaSequelize));
	expect(strip(named)).toEqual(strip([...viaSequelize, ...viaSequelize, ...viaSequelize]));
	expect(viaSequelize[0]).toMatchObject({
		n: "9007199254740993",
		at,
		doc: { a: [1, "x"] },
		flag: true,
		tags: ["p", "q"]
	});
	expect(names.of(INSERT)).toBe(names.of(`${INSERT}`));
	expect(names.of(INSERT)).not.toBe(names.of(`${INSERT} `));
});

test("a unique violation is Sequelize's UniqueConstraintError; other refusals pass through; the pool stays usable", async () => {
	const id = randomUUID();
	await directQuery(sequelize, INSERT, [id, 1, null, null, null, null]);
	const dup = await directQuery(sequelize, INSERT, [id, 2, null, null, null, null]).catch((e: unknown) => e);
	expect(dup).toBeInstanceOf(UniqueConstraintError);
	const bad = await directQuery(sequelize, `SELECT 1/0 AS x`, []).catch((e: unknown) => e);
	expect(bad).toMatchObject({ code: "22012" });
	for (let i = 0; i < 5; i++)
		expect(await directQuery(sequelize, `SELECT $1::int AS x`, [i], "ff_test_x")).toEqual([{ x: i }]);
});
