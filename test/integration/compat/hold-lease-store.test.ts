/**
 * The hold leases' writes on a request's path (open, record the cost, drop), group-committed by
 * HoldLeaseStore, on real PostgreSQL: concurrent calls share statements and each answers what it
 * would have answered alone; the same hold twice in one batch ends as one by one would; a batch
 * that fails as a whole is retried one operation at a time, so only the bad one fails.
 */
import { randomBytes } from "node:crypto";
import { QueryTypes, type Sequelize } from "sequelize";
import { HoldLeaseStore } from "../../../src/compat/hold-leases";
import { createSequelize } from "../../../src/db/sequelize";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { countStatements } from "../../support/statement-counter";

jest.setTimeout(120_000);

let db: TestDatabase;
let node: Awaited<ReturnType<typeof startTestNode>>;
let seq: Sequelize;
let store: HoldLeaseStore;
/** The store's own statements on the lease table, by kind. */
let sent: ReturnType<typeof countStatements<"open" | "cost" | "drop">>;
beforeAll(async () => {
	db = await createTestDatabase();
	// The users node applies the migrations; the store under test gets a pool of its own, so only its
	// statements are counted.
	node = await startTestNode({ db, services: ["users"], env: { LOG_LEVEL: "error" } });
	seq = createSequelize(db.url, { poolMax: 10 });
	sent = countStatements(seq, text =>
		text.startsWith("INSERT INTO chat_hold_leases")
			? "open"
			: text.startsWith("UPDATE chat_hold_leases l SET cost")
				? "cost"
				: text.startsWith("DELETE FROM chat_hold_leases")
					? "drop"
					: null
	);
	store = new HoldLeaseStore(seq, true);
});

afterAll(async () => {
	await seq?.close();
	await node?.stop();
	await db?.drop();
});

const holdId = () => `chat:${randomBytes(16).toString("hex")}`;

const rowsOf = (ids: string[]) =>
	seq.query<{
		hold_id: string;
		user_id: string;
		key_id: string | null;
		node_id: string;
		cost: string | null;
		live: boolean;
	}>(
		`SELECT hold_id, user_id, key_id, node_id, cost::text AS cost, expires_at > now() AS live
		 FROM chat_hold_leases WHERE hold_id = ANY($1) ORDER BY hold_id`,
		{ bind: [ids], type: QueryTypes.SELECT }
	);

const reset = () => sent.reset();

test("40 concurrent opens, costs and drops: every lease right, far fewer statements than calls", async () => {
	const ids = Array.from({ length: 40 }, holdId);
	reset();
	await Promise.all(
		ids.map((id, i) =>
			store.open({ holdId: id, userId: `u${i}`, keyId: i % 2 ? `k${i}` : null, nodeId: "n1", ttlMs: 60_000 })
		)
	);
	const opened = await rowsOf(ids);
	expect(opened).toHaveLength(40);
	for (const r of opened) {
		const i = ids.indexOf(r.hold_id);
		expect(r).toEqual({
			hold_id: ids[i],
			user_id: `u${i}`,
			key_id: i % 2 ? `k${i}` : null,
			node_id: "n1",
			cost: null,
			live: true
		});
	}
	// A lease that is gone answers false, in the same batch as the ones that are there.
	const gone = Array.from({ length: 10 }, holdId);
	const recorded = await Promise.all([...ids, ...gone].map((id, i) => store.recordCost(id, 1000 + i)));
	expect(recorded).toEqual([...ids.map(() => true), ...gone.map(() => false)]);
	expect((await rowsOf(ids)).map(r => Number(r.cost))).toEqual([...ids].sort().map(id => 1000 + ids.indexOf(id)));
	await Promise.all(ids.map(id => store.drop(id)));
	expect(await rowsOf(ids)).toEqual([]);
	// One by one would be 40 + 50 + 40 statements; a lone call goes at once, one batch at a time.
	for (const kind of ["open", "cost", "drop"] as const) {
		expect(sent.counts[kind]).toBeGreaterThanOrEqual(1);
		expect(sent.counts[kind]).toBeLessThan(10);
	}
});

test("a lone call goes out at once as its own statement", async () => {
	const id = holdId();
	reset();
	await store.open({ holdId: id, userId: "u", keyId: null, nodeId: "n1", ttlMs: 60_000 });
	expect(await store.recordCost(id, 7)).toBe(true);
	await store.drop(id);
	expect(sent.counts).toEqual({ open: 1, cost: 1, drop: 1 });
	expect(await rowsOf([id])).toEqual([]);
});

test("one hold twice in a batch: the later call is what stays, as one by one", async () => {
	// A call in flight first, so the ones after it are taken together as the next batch.
	const busy = [holdId(), holdId()];
	const id = holdId();
	await Promise.all([
		...busy.map(b => store.open({ holdId: b, userId: "u", keyId: null, nodeId: "n1", ttlMs: 60_000 })),
		store.open({ holdId: id, userId: "u", keyId: null, nodeId: "n1", ttlMs: 1_000 }),
		store.open({ holdId: id, userId: "u", keyId: null, nodeId: "n2", ttlMs: 60_000 })
	]);
	// A retried open renews (ON CONFLICT): the first open's node stays, the later expiry counts.
	const [row] = await rowsOf([id]);
	expect(row).toMatchObject({ node_id: "n1", live: true });
	const [age] = await seq.query<{ s: number }>(
		`SELECT extract(epoch FROM expires_at - now())::float8 AS s FROM chat_hold_leases WHERE hold_id = $1`,
		{ bind: [id], type: QueryTypes.SELECT }
	);
	expect(age.s).toBeGreaterThan(30);
	const answers = await Promise.all([
		...busy.map(b => store.recordCost(b, 1)),
		store.recordCost(id, 5),
		store.recordCost(id, 9)
	]);
	expect(answers).toEqual([true, true, true, true]);
	expect((await rowsOf([id]))[0].cost).toBe("9");
	await Promise.all([...busy, id, id].map(h => store.drop(h)));
	expect(await rowsOf([...busy, id])).toEqual([]);
});

test("a batch that fails as a whole is retried one by one: only the bad call fails", async () => {
	const ids = Array.from({ length: 12 }, holdId);
	await Promise.all(ids.map(id => store.open({ holdId: id, userId: "u", keyId: null, nodeId: "n1", ttlMs: 60_000 })));
	// 1.5 is no BIGINT: the statement carrying it is refused whole.
	const out = await Promise.allSettled(ids.map((id, i) => store.recordCost(id, i === 5 ? 1.5 : i)));
	expect(out.filter(o => o.status === "rejected")).toHaveLength(1);
	expect(out[5].status).toBe("rejected");
	const costs = (await rowsOf(ids)).map(r => [r.hold_id, r.cost]);
	expect(costs).toEqual([...ids].sort().map(id => [id, ids.indexOf(id) === 5 ? null : String(ids.indexOf(id))]));
	await Promise.all(ids.map(id => store.drop(id)));
});
