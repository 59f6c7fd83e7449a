/**
 * The dispatch order from PostgreSQL (ranking CTE + vstSql + SKIP LOCKED + caps) against the pure
 * rule (orderQueue / pickNext), with a fixed clock and a seeded mix of tiers, boosts, backoffs and
 * ties; and the starvation bound measured on the database's own dispatch order.
 */
import { QueryTypes } from "sequelize";
import { randomUUID } from "node:crypto";
import type { Sequelize } from "sequelize";
import { createSequelize } from "../../../src/db/sequelize";
import { migrate } from "../../../src/db/migrate";
import { TIER_ORDER, boostCeilingMs, type TierName } from "../../../src/domain/tiers";
import { orderQueue, pickNext, type QueuedTask, type RunningSummary } from "../../../src/tasks/scheduling";
import { TaskStore } from "../../../src/tasks/store";
import { createTestDatabase, type TestDatabase } from "../../support/env";

jest.setTimeout(60_000);

let db: TestDatabase;
let sequelize: Sequelize;
let store: TaskStore;
const NOW = 1_900_000_000_000;

function seeded(seed: number) {
	let s = seed >>> 0;
	return () => {
		s = (s * 1664525 + 1013904223) >>> 0;
		return s / 2 ** 32;
	};
}

beforeAll(async () => {
	db = await createTestDatabase();
	sequelize = createSequelize(db.url);
	await migrate(db.url, sequelize);
	store = new TaskStore(sequelize);
});

afterAll(async () => {
	await sequelize?.close();
	await db?.drop();
});

beforeEach(async () => {
	await sequelize.query("DELETE FROM tasks");
});

async function insert(t: QueuedTask) {
	await store.insert({
		id: t.id,
		userId: t.userId,
		projectId: "p",
		tier: t.tier,
		kind: "chat",
		prompt: "x",
		request: {},
		prepared: { models: [], promptTokens: 0, contextTokensBudget: 0, maxOutputTokens: 1, maxCostCredits: 1 },
		requestHash: "h",
		idempotencyKey: null,
		maxCostCredits: 1,
		boostMs: t.boostMs,
		maxAttempts: 3,
		enqueuedAt: t.enqueuedAt,
		notBefore: t.notBefore ?? null
	});
}

/** Users with fixed tiers; enqueue times on a coarse grid so ties (same ms, same vst) happen. */
function seededMix(seed: number, n: number): QueuedTask[] {
	const rnd = seeded(seed);
	const users = Array.from({ length: 12 }, (_, i) => ({ id: `user-${i}`, tier: TIER_ORDER[i % 4] as TierName }));
	return Array.from({ length: n }, () => {
		const u = users[Math.floor(rnd() * users.length)];
		const r = rnd();
		return {
			id: randomUUID(),
			userId: u.id,
			tier: u.tier,
			enqueuedAt: NOW - 400_000 + Math.floor(rnd() * 40) * 10_000,
			// Mostly the tier's own boost, some purchases, some out-of-range rows the rule re-bounds.
			boostMs: r < 0.1 ? 999_999 : r < 0.15 ? -5_000 : Math.floor(rnd() * 4) * 30_000,
			attempts: 0,
			notBefore: rnd() < 0.1 ? NOW + 60_000 : rnd() < 0.1 ? NOW - 1_000 : null,
			estimatedRunMs: 1_000
		};
	});
}

const ids = (xs: ReadonlyArray<{ id: string }>) => xs.map(x => x.id);

describe("the database orders the queue exactly as the pure rule", () => {
	test.each([11, 23, 37])("queue order (seed %i)", async seed => {
		const tasks = seededMix(seed, 120);
		for (const t of tasks) await insert(t);
		const empty: RunningSummary = { byUser: new Map(), byTier: {}, totalWorkers: 1_000 };
		expect(ids(await store.queueOrder(NOW, 1_000))).toEqual(ids(orderQueue(tasks, empty, NOW)));
	});

	test.each([5, 8])("dispatch order, one lease at a time with caps and completions (seed %i)", async seed => {
		const rnd = seeded(seed * 7);
		let queued = seededMix(seed, 90);
		for (const t of queued) await insert(t);
		const running: QueuedTask[] = [];
		const WORKERS = 6;
		let steps = 0;
		for (;;) {
			const summary: RunningSummary = {
				byUser: running.reduce((m, t) => m.set(t.userId, (m.get(t.userId) ?? 0) + 1), new Map<string, number>()),
				byTier: running.reduce<Partial<Record<TierName, number>>>((m, t) => ({ ...m, [t.tier]: (m[t.tier] ?? 0) + 1 }), {}),
				totalWorkers: WORKERS
			};
			const expected = pickNext(queued, summary, NOW, 1);
			const got = await store.lease({ nodeId: "n1", slots: 1, now: NOW, leaseMs: 60_000, totalWorkers: WORKERS });
			expect(ids(got)).toEqual(ids(expected));
			if (got.length) {
				running.push(queued.find(t => t.id === got[0].id)!);
				queued = queued.filter(t => t.id !== got[0].id);
			}
			if (!got.length && !running.length) break;
			// Finish some running work (at random), as workers would; when nothing could start, finish one.
			if (running.length && (rnd() < 0.4 || !got.length)) {
				const done = running.splice(Math.floor(rnd() * running.length), 1)[0];
				await sequelize.query(`UPDATE tasks SET state = 'succeeded', lease_id = NULL, lease_expires_at = NULL WHERE id = $1`, { bind: [done.id] });
			}
			steps++;
		}
		expect(steps).toBeGreaterThan(50);
		// What is left waits for notBefore.
		expect(queued.every(t => (t.notBefore ?? 0) > NOW)).toBe(true);
	});

	test("a batch lease takes what pickNext takes, caps counting earlier picks", async () => {
		const tasks = seededMix(99, 80);
		for (const t of tasks) await insert(t);
		const running: RunningSummary = { byUser: new Map(), byTier: {}, totalWorkers: 10 };
		const got = await store.lease({ nodeId: "n1", slots: 10, now: NOW, leaseMs: 60_000, totalWorkers: 10 });
		expect(ids(got)).toEqual(ids(pickNext(tasks, running, NOW, 10)));
		expect(got.every(r => r.state === "running" && r.attempts === 1 && r.node_id === "n1" && r.lease_id)).toBe(true);
	});
});

test("starvation bound: a free task starts before every enterprise task enqueued more than the enterprise ceiling after it", async () => {
	const t0 = NOW - 600_000;
	const free: QueuedTask = { id: randomUUID(), userId: "free-user", tier: "free", enqueuedAt: t0, boostMs: 0, attempts: 0, estimatedRunMs: 1 };
	const flood: QueuedTask[] = Array.from({ length: 60 }, (_, i) => ({
		id: randomUUID(),
		userId: `ent-${i % 3}`,
		tier: "enterprise" as const,
		enqueuedAt: t0 + 1_000 + i * 5_000,
		boostMs: 180_000,
		attempts: 0,
		estimatedRunMs: 1
	}));
	for (const t of [free, ...flood]) await insert(t);
	const order: string[] = [];
	for (;;) {
		const got = await store.lease({ nodeId: "n1", slots: 1, now: NOW, leaseMs: 60_000, totalWorkers: 1_000 });
		if (!got.length) break;
		order.push(got[0].id);
		await sequelize.query(`UPDATE tasks SET state = 'succeeded', lease_id = NULL, lease_expires_at = NULL WHERE id = $1`, { bind: [got[0].id] });
	}
	expect(order).toHaveLength(61);
	const freeAt = order.indexOf(free.id);
	const ceiling = boostCeilingMs("enterprise");
	const later = flood.filter(t => t.enqueuedAt - t0 > ceiling);
	expect(later.length).toBeGreaterThan(10);
	for (const t of later) expect(order.indexOf(t.id)).toBeGreaterThan(freeAt);
	// And the flood did jump ahead of it, within the bound (premium gets lower latency).
	expect(freeAt).toBeGreaterThan(0);
});

test("two leasers at once never take the same task (SKIP LOCKED)", async () => {
	const tasks = seededMix(3, 200).map(t => ({ ...t, notBefore: null }));
	for (const t of tasks) await insert(t);
	const seen = new Map<string, number>();
	const stores = [store, new TaskStore(createSequelize(db.url)), new TaskStore(createSequelize(db.url))];
	const runs = stores.map(async (s, i) => {
		for (let k = 0; k < 40; k++) {
			const got = await s.lease({ nodeId: `n${i}`, slots: 3, now: NOW, leaseMs: 60_000, totalWorkers: 10_000 });
			for (const r of got) seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
		}
	});
	await Promise.all(runs);
	await Promise.all(stores.slice(1).map(s => s.sequelize.close()));
	expect([...seen.values()].every(n => n === 1)).toBe(true);
	const [{ n }] = (await sequelize.query(`SELECT count(*)::int AS n FROM tasks WHERE state = 'running'`, { type: QueryTypes.SELECT })) as unknown as Array<{ n: number }>;
	expect(n).toBe(seen.size);
	expect(seen.size).toBeGreaterThan(50);
});
