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
import { TIERS, TIER_ORDER, boostCeilingMs, type TierName, type TierTable } from "../../../src/domain/tiers";
import { orderQueue, pickNext, type QueuedTask, type RunningSummary } from "../../../src/tasks/scheduling";
import { TaskStore } from "../../../src/tasks/store";
import { createTestDatabase, type TestDatabase } from "../../support/env";
import { newTaskRow } from "../../support/task-store-node";

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
	await store.insert(
		newTaskRow({
			id: t.id,
			userId: t.userId,
			projectId: "p",
			tier: t.tier,
			boostMs: t.boostMs,
			enqueuedAt: t.enqueuedAt,
			notBefore: t.notBefore ?? null
		})
	);
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
				byUser: running.reduce(
					(m, t) => m.set(t.userId, (m.get(t.userId) ?? 0) + 1),
					new Map<string, number>()
				),
				byTier: running.reduce<Partial<Record<TierName, number>>>(
					(m, t) => ({ ...m, [t.tier]: (m[t.tier] ?? 0) + 1 }),
					{}
				),
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
				await sequelize.query(
					`UPDATE tasks SET state = 'succeeded', lease_id = NULL, lease_expires_at = NULL WHERE id = $1`,
					{ bind: [done.id] }
				);
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
		expect(got.every(r => r.state === "running" && r.attempts === 1 && r.node_id === "n1" && r.lease_id)).toBe(
			true
		);
	});
});

/**
 * Shapes that stress the head's candidate bound (it reads only each user's first tasks, then the
 * ranks the bound cannot exclude): many users with mixed tiers, backlogs with a heavily boosted task
 * deep behind unboosted ones, users whose first tasks wait for notBefore, ties, out-of-range boosts.
 */
function boundMix(seed: number): QueuedTask[] {
	const rnd = seeded(seed);
	const tasks: QueuedTask[] = [];
	const add = (
		userId: string,
		tier: TierName,
		enqueuedAt: number,
		boostMs: number,
		notBefore: number | null = null
	) => tasks.push({ id: randomUUID(), userId, tier, enqueuedAt, boostMs, attempts: 0, notBefore, estimatedRunMs: 1 });
	// Users each with a backlog, a task every 5 s, tiers alternating per task (as the benchmark's).
	for (let i = 0; i < 160; i++) add(`b-${i % 16}`, TIER_ORDER[i % 4], NOW - 500_000 + i * 1_000, (i % 4) * 30_000);
	// A flooder whose 12th task carries the largest boost: it must reach the head through its rank.
	for (let k = 0; k < 14; k++)
		add("deep", k === 11 ? "enterprise" : "free", NOW - 499_000 + k * 2_000, k === 11 ? 999_999 : 0);
	// Users whose first tasks are not eligible yet, and single-task users, on a coarse grid (ties).
	for (let k = 0; k < 6; k++) add("later", "pro", NOW - 480_000 + k * 10_000, 30_000, k < 3 ? NOW + 60_000 : null);
	for (let i = 0; i < 20; i++) {
		const r = rnd();
		add(
			`one-${i}`,
			TIER_ORDER[i % 4],
			NOW - 500_000 + Math.floor(rnd() * 20) * 10_000,
			r < 0.2 ? -5_000 : r < 0.3 ? 999_999 : Math.floor(rnd() * 4) * 30_000,
			rnd() < 0.15 ? NOW + 1_000 : null
		);
	}
	return tasks;
}

describe("the queue head's candidate bound leaves nothing out", () => {
	test.each([4, 19])("every prefix of the queue order (seed %i)", async seed => {
		const tasks = boundMix(seed);
		for (const t of tasks) await insert(t);
		const empty: RunningSummary = { byUser: new Map(), byTier: {}, totalWorkers: 1_000 };
		const expected = ids(orderQueue(tasks, empty, NOW));
		expect(expected.length).toBeGreaterThan(180);
		for (const limit of [1, 2, 3, 5, 8, 13, 40, 72, 150, expected.length, expected.length + 10]) {
			expect(ids(await store.queueOrder(NOW, limit))).toEqual(expected.slice(0, limit));
		}
	});

	test.each([4, 16])(
		"a task exactly on the bound is read: rank K = (V* + B − enqueued_at) / quantum = %i, vst = V*",
		async rank => {
			// User d queued rank + 1 tasks at e, unboosted but for the last, whose 180 s boost (B) gives it
			// vst = e − 180 s + rank × 10 s. User h's one task, enqueued 10 s after e, is boosted to the
			// same vst and holds V*; d's task is older, so it comes first (rank 4 is the first rank past
			// the four the head reads of each user, rank 16 the last its bound lets it read).
			const e = NOW - 300_000;
			const dIds = Array.from({ length: rank + 1 }, () => randomUUID()).sort();
			const d: QueuedTask[] = dIds.map((id, k) => ({
				id,
				userId: "d",
				tier: k === rank ? "enterprise" : "free",
				enqueuedAt: e,
				boostMs: k === rank ? 999_999 : 0,
				attempts: 0,
				estimatedRunMs: 1
			}));
			const h: QueuedTask = {
				id: randomUUID(),
				userId: "h",
				tier: "enterprise",
				enqueuedAt: e + 10_000,
				boostMs: 190_000 - rank * 10_000,
				attempts: 0,
				estimatedRunMs: 1
			};
			for (const t of [...d, h]) await insert(t);
			const empty: RunningSummary = { byUser: new Map(), byTier: {}, totalWorkers: 1_000 };
			expect(ids(orderQueue([...d, h], empty, NOW)).slice(0, 2)).toEqual([dIds[rank], h.id]);
			expect(ids(await store.queueOrder(NOW, 1))).toEqual([dIds[rank]]);
			expect(
				ids(await store.lease({ nodeId: "n1", slots: 1, now: NOW, leaseMs: 60_000, totalWorkers: 1_000 }))
			).toEqual([dIds[rank]]);
		}
	);

	test("the ceilings and the quantum are arguments: another tier table, and a quantum of 0, order exactly too", async () => {
		const tasks = boundMix(7);
		for (const t of tasks) await insert(t);
		const empty: RunningSummary = { byUser: new Map(), byTier: {}, totalWorkers: 1_000 };
		// Enterprise keeps almost no head start of its own; pro gets the most.
		const tiers: TierTable = {
			...TIERS,
			enterprise: { ...TIERS.enterprise, maxBoostMs: 0 },
			pro: { ...TIERS.pro, maxBoostMs: 115_000 }
		};
		const other = new TaskStore(sequelize, tiers);
		const expected = ids(orderQueue(tasks, empty, NOW, { tiers }));
		expect(expected).not.toEqual(ids(orderQueue(tasks, empty, NOW)));
		for (const limit of [1, 6, 72])
			expect(ids(await other.queueOrder(NOW, limit))).toEqual(expected.slice(0, limit));
		const noQuantum = (
			await sequelize.query<{ id: string }>(
				`SELECT id FROM tasks_queue_head($1::timestamptz, 20, $2::text[], $3::integer[], 0)`,
				{
					bind: [new Date(NOW), [...TIER_ORDER], TIER_ORDER.map(t => boostCeilingMs(t))],
					type: QueryTypes.SELECT
				}
			)
		).map(r => r.id);
		expect(noQuantum).toEqual(ids(orderQueue(tasks, empty, NOW, { fairnessQuantumMs: 0 })).slice(0, 20));
	});

	test("many users with a task or two each: the one-pass ranking (more than 64 users) orders exactly too", async () => {
		const rnd = seeded(5);
		const tasks = boundMix(23);
		for (let i = 0; i < 90; i++) {
			for (let k = 0; k < 1 + (i % 2); k++) {
				tasks.push({
					id: randomUUID(),
					userId: `many-${i}`,
					tier: TIER_ORDER[i % 4],
					enqueuedAt: NOW - 450_000 + Math.floor(rnd() * 30) * 10_000,
					boostMs: Math.floor(rnd() * 4) * 30_000,
					attempts: 0,
					notBefore: rnd() < 0.1 ? NOW + 5_000 : null,
					estimatedRunMs: 1
				});
			}
		}
		for (const t of tasks) await insert(t);
		const empty: RunningSummary = { byUser: new Map(), byTier: {}, totalWorkers: 1_000 };
		const expected = ids(orderQueue(tasks, empty, NOW));
		for (const limit of [1, 4, 72, expected.length])
			expect(ids(await store.queueOrder(NOW, limit))).toEqual(expected.slice(0, limit));
		let queued = tasks;
		for (let k = 0; k < 10; k++) {
			const got = await store.lease({ nodeId: "n1", slots: 1, now: NOW, leaseMs: 60_000, totalWorkers: 100_000 });
			expect(ids(got)).toEqual(ids(pickNext(queued, { ...empty, totalWorkers: 100_000 }, NOW, 1)));
			queued = queued.filter(t => t.id !== got[0].id);
			await sequelize.query(
				`UPDATE tasks SET state = 'succeeded', lease_id = NULL, lease_expires_at = NULL WHERE id = $1`,
				{ bind: [got[0].id] }
			);
		}
	});

	test("one-slot leases drain it in the pure order", async () => {
		let queued = boundMix(31);
		for (const t of queued) await insert(t);
		const none: RunningSummary = { byUser: new Map(), byTier: {}, totalWorkers: 100_000 };
		for (let k = 0; k < 60; k++) {
			const expected = pickNext(queued, none, NOW, 1);
			const got = await store.lease({ nodeId: "n1", slots: 1, now: NOW, leaseMs: 60_000, totalWorkers: 100_000 });
			expect(ids(got)).toEqual(ids(expected));
			queued = queued.filter(t => t.id !== got[0].id);
			await sequelize.query(
				`UPDATE tasks SET state = 'succeeded', lease_id = NULL, lease_expires_at = NULL WHERE id = $1`,
				{ bind: [got[0].id] }
			);
		}
	});
});

test("starvation bound: a free task starts before every enterprise task enqueued more than the enterprise ceiling after it", async () => {
	const t0 = NOW - 600_000;
	const free: QueuedTask = {
		id: randomUUID(),
		userId: "free-user",
		tier: "free",
		enqueuedAt: t0,
		boostMs: 0,
		attempts: 0,
		estimatedRunMs: 1
	};
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
		await sequelize.query(
			`UPDATE tasks SET state = 'succeeded', lease_id = NULL, lease_expires_at = NULL WHERE id = $1`,
			{ bind: [got[0].id] }
		);
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

test("two leasers at once never take the same task (SKIP LOCKED); named and unnamed lease statements alike", async () => {
	const tasks = seededMix(3, 200).map(t => ({ ...t, notBefore: null }));
	for (const t of tasks) await insert(t);
	const seen = new Map<string, number>();
	// The third leases with unnamed statements (DB_NAMED_STATEMENTS=false, for transaction-mode poolers).
	const stores = [
		store,
		new TaskStore(createSequelize(db.url)),
		new TaskStore(createSequelize(db.url), TIERS, false)
	];
	const perStore = [0, 0, 0];
	const runs = stores.map(async (s, i) => {
		for (let k = 0; k < 40; k++) {
			const got = await s.lease({ nodeId: `n${i}`, slots: 3, now: NOW, leaseMs: 60_000, totalWorkers: 10_000 });
			for (const r of got) seen.set(r.id, (seen.get(r.id) ?? 0) + 1);
			perStore[i] += got.length;
		}
	});
	await Promise.all(runs);
	expect(perStore.every(n => n > 0)).toBe(true);
	await Promise.all(stores.slice(1).map(s => s.sequelize.close()));
	expect([...seen.values()].every(n => n === 1)).toBe(true);
	const [{ n }] = (await sequelize.query(`SELECT count(*)::int AS n FROM tasks WHERE state = 'running'`, {
		type: QueryTypes.SELECT
	})) as unknown as Array<{ n: number }>;
	expect(n).toBe(seen.size);
	expect(seen.size).toBeGreaterThan(50);
});
