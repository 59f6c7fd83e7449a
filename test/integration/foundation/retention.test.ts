/**
 * Retention of the bookkeeping tables (src/events/retention.ts, src/users/retention.ts) against
 * PostgreSQL: what is past its retention goes in bounded batches, what is alive, unpublished or not
 * yet old enough stays, a run stops after its batch budget and the next goes on, and a dry run counts
 * without deleting. Plus the in-memory key-value store's sweep of expired entries (SIWE nonces).
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { loadConfig } from "../../../src/config";
import { deleteRule, runPrune } from "../../../src/db/retention";
import { eventPruneRules } from "../../../src/events/retention";
import { MemoryKeyValueStore } from "../../../src/runtime/kv";
import { usersPruneRules } from "../../../src/users/retention";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: Awaited<ReturnType<typeof startTestNode>>;

beforeAll(async () => {
	db = await createTestDatabase();
	// Only the migrations are needed: a node with no services that use the timers' tables.
	node = await startTestNode({ db, services: ["projects"], env: { RETENTION_EVERY_MS: "86400000" } });
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

const days = loadConfig({}).retention.days;
const rules = [...eventPruneRules(days), ...usersPruneRules(days)];
const opts = { now: Date.now(), batchRows: 2, maxBatches: 100, pauseMs: 0 };

async function seed() {
	// Outbox: published 8 days ago (goes), published yesterday (stays), unpublished 8 days old (stays: still owed).
	for (const [published, created] of [
		["8 days", "8 days"],
		["8 days", "9 days"],
		["8 days", "9 days"],
		["1 day", "1 day"],
		[null, "8 days"]
	] as const)
		await sql(
			`INSERT INTO outbox_events (event_id, topic, payload, created_at, published_at)
			 VALUES ($1, 't', '{}', now() - $2::interval, now() - $3::interval)`,
			[randomUUID(), created, published]
		);
	for (const age of ["31 days", "31 days", "29 days"])
		await sql(
			`INSERT INTO inbox_events (consumer, event_id, processed_at) VALUES ('c', $1, now() - $2::interval)`,
			[randomUUID(), age]
		);
	for (const age of ["91 days", "10 days"])
		await sql(
			`INSERT INTO event_dead_letters (consumer, event_id, topic, payload, attempts, created_at) VALUES ('c', $1, 't', '{}', 5, now() - $2::interval)`,
			[randomUUID(), age]
		);
	const userId = randomUUID();
	await sql(`INSERT INTO users (id, email) VALUES ($1, $2)`, [userId, `${userId}@example.test`]);
	const session = async (expires: string, revoked: string | null) => {
		const id = randomUUID();
		await sql(
			`INSERT INTO user_sessions (id, user_id, method, expires_at, revoked_at) VALUES ($1, $2, 'password', now() + $3::interval, now() - $4::interval)`,
			[id, userId, expires, revoked]
		);
		return id;
	};
	const expired = await session("-8 days", null);
	const revoked = await session("20 days", "8 days");
	const live = await session("20 days", null);
	await session("-1 day", null); // ended yesterday: stays for now
	const token = async (sessionId: string, expires: string) =>
		sql(`INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, now() + $3::interval)`, [
			Buffer.from(randomUUID()),
			sessionId,
			expires
		]);
	await token(expired, "-8 days"); // goes with its session
	await token(revoked, "20 days"); // goes with its session
	await token(live, "-8 days"); // expired inside a live family: goes
	await token(live, "20 days"); // stays
	const oneTime = async (expires: string, used: string | null) =>
		sql(
			`INSERT INTO user_tokens (token_hash, user_id, kind, expires_at, used_at) VALUES ($1, $2, 'password_reset', now() + $3::interval, now() - $4::interval)`,
			[Buffer.from(randomUUID()), userId, expires, used]
		);
	await oneTime("-8 days", null);
	await oneTime("1 hour", "8 days");
	await oneTime("1 hour", null);
	const mail = (failed: string | null) =>
		sql(
			`INSERT INTO mail_outbox (to_address, mail, failed_at) VALUES ('a@example.test', '{}', now() - $1::interval)`,
			[failed]
		);
	await mail("31 days");
	await mail("1 day");
	await mail(null);
	return { live };
}

const counts = async () => {
	const out: Record<string, number> = {};
	for (const t of rules.map(r => r.table))
		out[t] = Number((await sql<{ n: string }>(`SELECT count(*) AS n FROM ${t}`))[0].n);
	return out;
};

test("bookkeeping past its retention is pruned in bounded batches; the rest stays; a dry run deletes nothing", async () => {
	const { live } = await seed();
	const before = await counts();
	expect(before).toEqual({
		outbox_events: 5,
		inbox_events: 3,
		event_dead_letters: 2,
		user_sessions: 4,
		refresh_tokens: 4,
		user_tokens: 3,
		mail_outbox: 3
	});

	const due = {
		outbox_events: 3,
		inbox_events: 2,
		event_dead_letters: 1,
		user_sessions: 2,
		refresh_tokens: 2, // of the expired session and of the live one (the revoked session's goes by cascade)
		user_tokens: 2,
		mail_outbox: 1
	};
	const dry = await runPrune(node.runtime.sequelize, "bookkeeping-test", rules, { ...opts, dryRun: true });
	expect(dry).toEqual({ dryRun: true, tables: due, unfinished: [] });
	expect(await counts()).toEqual(before);

	// A budget of one batch of two rows: the outbox (three due) is left unfinished, the next run ends
	// it; a table whose one batch was full is reported too (more may be due).
	const pruned: Array<[string, number]> = [];
	const first = await runPrune(node.runtime.sequelize, "bookkeeping-test", rules, {
		...opts,
		maxBatches: 1,
		onPruned: (t, n) => pruned.push([t, n])
	});
	expect(first?.unfinished).toEqual(["outbox_events", "inbox_events", "user_sessions", "user_tokens"]);
	expect(first?.tables.outbox_events).toBe(2);
	expect(pruned.every(([, n]) => n <= 2)).toBe(true);
	const second = await runPrune(node.runtime.sequelize, "bookkeeping-test", rules, opts);
	expect(second?.tables.outbox_events).toBe(1);
	expect(second?.unfinished).toEqual([]);

	expect(await counts()).toEqual({
		outbox_events: 2,
		inbox_events: 1,
		event_dead_letters: 1,
		user_sessions: 2,
		refresh_tokens: 1,
		user_tokens: 1,
		mail_outbox: 2
	});
	// What stays: the unpublished event, the live family and its live token, the unused token, mail not given up on.
	// (The node's relay may have published the owed event since: then just now, so it stays either way.)
	expect(await sql(`SELECT 1 FROM outbox_events WHERE created_at < now() - interval '7 days'`)).toHaveLength(1);
	expect(await sql(`SELECT 1 FROM refresh_tokens WHERE session_id = $1 AND expires_at > now()`, [live])).toHaveLength(
		1
	);
	expect(await sql(`SELECT 1 FROM mail_outbox WHERE failed_at IS NULL`)).toHaveLength(1);

	// Nothing left to do.
	const third = await runPrune(node.runtime.sequelize, "bookkeeping-test", rules, opts);
	expect(Object.values(third?.tables ?? {}).every(n => n === 0)).toBe(true);

	// Retention 0 keeps rows forever.
	await seed();
	const kept = await counts();
	const forever = await runPrune(
		node.runtime.sequelize,
		"bookkeeping-test",
		[
			...eventPruneRules({ ...days, outbox: 0, inbox: 0, deadLetters: 0 }),
			...usersPruneRules({ ...days, sessions: 0, userTokens: 0, mailOutbox: 0 })
		],
		opts
	);
	expect(Object.values(forever?.tables ?? {}).every(n => n === 0)).toBe(true);
	expect(await counts()).toEqual(kept);
});

test("the in-memory key-value store sweeps expired entries nobody reads again (unused SIWE nonces)", async () => {
	const kv = new MemoryKeyValueStore();
	for (let i = 0; i < 500; i++) await kv.set(`nonce:${i}`, "x", 1);
	await new Promise(r => setTimeout(r, 5));
	for (let i = 0; i < 500; i++) await kv.set(`live:${i}`, "y", 60_000);
	expect(kv.size).toBe(500);
	expect(await kv.get("live:1")).toBe("y");
});

test("the run's lock lives only as long as each batch's transaction (safe behind a transaction-mode pooler)", async () => {
	await sql(`CREATE TABLE scratch_prune (id serial PRIMARY KEY, at timestamptz NOT NULL)`);
	await sql(
		`INSERT INTO scratch_prune (at) SELECT now() - interval '10 days' FROM generate_series(1, 12) RETURNING id`
	);
	const rule = deleteRule({ table: "scratch_prune", retentionDays: 1, key: "id", where: "at < $1" });
	const advisoryLocks = async () =>
		(
			await sql<{ n: number }>(
				`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database
				 WHERE l.locktype = 'advisory' AND d.datname = current_database()`
			)
		)[0].n;
	// Four batches of 3 with 250 ms between them: between batches no lock is held.
	let done = false;
	const run = runPrune(node.runtime.sequelize, "scratch", [rule], { ...opts, batchRows: 3, pauseMs: 250 }).finally(
		() => (done = true)
	);
	const seen: number[] = [];
	while (!done) {
		seen.push(await advisoryLocks());
		await new Promise(r => setTimeout(r, 20));
	}
	expect((await run)?.tables).toEqual({ scratch_prune: 12 });
	expect(seen.length).toBeGreaterThan(10);
	expect(seen.filter(n => n === 0).length).toBeGreaterThan(seen.length / 2);
	expect(await advisoryLocks()).toBe(0);

	// Another node inside a batch (its transaction holds the lock): this run is skipped.
	const other = (await node.runtime.sequelize.connectionManager.getConnection({ type: "write" })) as unknown as {
		query(q: string): Promise<unknown>;
	};
	try {
		await other.query("BEGIN");
		await other.query(`SELECT pg_advisory_xact_lock(hashtext('forgefluid retention'), hashtext('scratch'))`);
		expect(await runPrune(node.runtime.sequelize, "scratch", [rule], opts)).toBeNull();
	} finally {
		await other.query("ROLLBACK");
		node.runtime.sequelize.connectionManager.releaseConnection(other as never);
	}
	expect(await runPrune(node.runtime.sequelize, "scratch", [rule], opts)).toMatchObject({
		tables: { scratch_prune: 0 }
	});
});
