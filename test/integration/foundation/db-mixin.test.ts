/**
 * The db mixin: moleculer-db over the Sequelize adapter on the node's shared Sequelize instance —
 * no sync() (tables come from migrations), no generic CRUD actions exposed, the shared pool survives
 * a service stopping, and the adapter reads and writes the real PostgreSQL.
 */
import { DataTypes, QueryTypes, Sequelize } from "sequelize";
import type { Context, ServiceSchema } from "moleculer";
import { dbMixin, DbThis } from "../../../mixins/db.mixin";
import type { ForgeNode } from "../../../app/node";
import { createTestDatabase, startTestNode, TestDatabase } from "../../support/env";

let db: TestDatabase;
let node: ForgeNode;

const defineNote = (sequelize: Sequelize) =>
	sequelize.define(
		"note",
		{
			id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
			body: { type: DataTypes.TEXT, allowNull: false }
		},
		{ tableName: "fixture_notes" }
	);
const defineGhost = (sequelize: Sequelize) =>
	sequelize.define("ghost", { id: { type: DataTypes.INTEGER, primaryKey: true } }, { tableName: "fixture_ghosts" });

const Notes: ServiceSchema = {
	name: "notes",
	mixins: [dbMixin(defineNote)],
	actions: {
		add: {
			params: { body: "string" },
			async handler(this: DbThis, ctx: Context<{ body: string }>) {
				const saved = await this.transaction(tx =>
					this.model.create({ body: ctx.params.body }, { transaction: tx })
				);
				return saved.get({ plain: true });
			}
		},
		count(this: DbThis) {
			return (this as unknown as { adapter: { count(): Promise<number> } }).adapter.count();
		}
	}
} as unknown as ServiceSchema;

const Ghosts: ServiceSchema = { name: "ghosts", mixins: [dbMixin(defineGhost)] } as ServiceSchema;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({ db, services: [], extraServices: [Notes, Ghosts] });
	// The table comes from a migration in real services; here the test creates it after start,
	// which also proves the mixin did not need (or create) it.
	await node.runtime.sequelize.query(
		`CREATE TABLE fixture_notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ)`
	);
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

test("no sync(): a model without a migration gets no table", async () => {
	const rows = await node.runtime.sequelize.query<{ n: string }>(
		`SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('fixture_ghosts', 'ghosts')`,
		{
			type: QueryTypes.SELECT
		}
	);
	expect(rows[0].n).toBe("0");
});

test("reads and writes through the adapter on the shared instance, in transactions", async () => {
	await node.broker.call("notes.add", { body: "first" });
	await node.broker.call("notes.add", { body: "second" });
	expect(await node.broker.call("notes.count")).toBe(2);
	const svc = node.broker.getLocalService("notes") as unknown as DbThis;
	expect(svc.sequelize).toBe(node.runtime.sequelize);
});

test("moleculer-db's generic CRUD actions are not registered", () => {
	const names = (node.broker.registry.getActionList({}) as Array<{ name: string }>).map(a => a.name);
	for (const a of ["find", "count", "list", "create", "insert", "get", "update", "remove"])
		expect(names).not.toContain(`ghosts.${a}`);
	expect(names).toContain("notes.count"); // the service's own action of that name
});

test("a service stopping does not close the shared pool", async () => {
	await node.broker.destroyService(node.broker.getLocalService("ghosts")!);
	const [row] = await node.runtime.sequelize.query<{ one: number }>("SELECT 1 AS one", { type: QueryTypes.SELECT });
	expect(row.one).toBe(1);
	expect(await node.broker.call("notes.count")).toBe(2);
});
