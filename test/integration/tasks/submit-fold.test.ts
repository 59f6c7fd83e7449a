/**
 * The folded submission statements (issue #16) against the rules they replace, on real PostgreSQL:
 *   - TaskStore.admit (the hold intent's insert, the eligible and running counts, and the per-tier
 *     ranking only above `rankAbove`) against the separate intent insert and `backlog`;
 *   - the admission decision made from admit with `surelyAcceptedBacklog` as the gate, against the
 *     decision made from `backlog`'s exact counts;
 *   - TaskStore.insertWithPosition (insert, intent delete and queue position in one statement) against
 *     `insert` followed by `positionOf`.
 * Each case is a seeded adversarial queue: few users with many tasks each (user ranks), equal enqueue
 * times (id ties), boosts past every ceiling and negative ones, retry backoffs in the past and the
 * future, running and finished rows; the new task often joins a user who already has tasks queued,
 * before, between and after theirs.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { TIERS, TIER_ORDER, type TierName } from "../../../src/domain/tiers";
import { admissionDecision, expectedWaitMs, surelyAcceptedBacklog } from "../../../src/tasks/scheduling";
import { type TaskStore, type NewTask } from "../../../src/tasks/store";
import { newTaskRow, taskStoreNode, type TaskStoreNode } from "../../support/task-store-node";
import { prng } from "../../support/fuzz";

jest.setTimeout(120_000);

const harness = taskStoreNode();
let node: TaskStoreNode["node"];
let store: TaskStore;
beforeAll(() => ({ node, store } = harness));

const NOW = Date.parse("2026-12-03T10:00:00.000Z");
const PROJECT = "fold";

function task(p: Partial<NewTask> & Pick<NewTask, "userId" | "tier" | "enqueuedAt">): NewTask {
	return newTaskRow({ projectId: PROJECT, ...p });
}

/** A seeded adversarial queue, written to the table (which is emptied first). */
async function queue(rand: () => number) {
	await node.runtime.sequelize.query(`DELETE FROM tasks WHERE project_id = $1`, { bind: [PROJECT] });
	await node.runtime.sequelize.query(`DELETE FROM task_hold_intents`);
	const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
	const users = Array.from({ length: 1 + Math.floor(rand() * 4) }, (_, i) => `u${i}`);
	// Few distinct times, so (enqueued_at, id) ties are common; some after NOW (another node's clock).
	const times = [-90_000, -30_000, -10_000, -1, 0, 0, 0, 5, 4_000].map(d => NOW + d);
	// Boosts a few seconds apart, inside the 10 s fairness quantum: a rank one off changes the order.
	const boosts = [0, 0, 3_000, 7_000, 15_000, 30_000, 120_000, 10_000_000, -5];
	const n = Math.floor(rand() * 40);
	for (let i = 0; i < n; i++) {
		const r = rand();
		const notBefore = r < 0.15 ? NOW - 1_000 : r < 0.3 ? NOW + 60_000 : r < 0.35 ? NOW : null;
		const t = task({
			userId: pick(users),
			tier: pick(TIER_ORDER),
			enqueuedAt: pick(times),
			boostMs: pick(boosts),
			notBefore
		});
		await store.insert(t);
		const s = rand();
		if (s < 0.12)
			await node.runtime.sequelize.query(
				`UPDATE tasks SET state = 'running', lease_id = gen_random_uuid(), lease_expires_at = $2 WHERE id = $1`,
				{
					// Far ahead of the real clock: the node's sweeper must not take these leases back mid-case.
					bind: [t.id, new Date(Date.now() + 3_600_000)]
				}
			);
		else if (s < 0.2)
			await node.runtime.sequelize.query(`UPDATE tasks SET state = 'succeeded', finished_at = $2 WHERE id = $1`, {
				bind: [t.id, new Date(NOW)]
			});
	}
	const newcomer = task({
		userId: rand() < 0.75 ? pick(users) : "newcomer",
		tier: pick(TIER_ORDER),
		enqueuedAt: NOW,
		boostMs: pick(boosts.filter(b => b >= 0)),
		notBefore: null
	});
	return { newcomer, pick };
}

async function eligibleQueued(): Promise<number> {
	const [r] = await node.runtime.sequelize.query<{ n: string }>(
		`SELECT count(*) AS n FROM tasks WHERE state = 'queued' AND (not_before IS NULL OR not_before <= $1)`,
		{ bind: [new Date(NOW)], type: QueryTypes.SELECT }
	);
	return Number(r.n);
}

async function intentOf(taskId: string): Promise<string | null> {
	const rows = await node.runtime.sequelize.query<{ user_id: string }>(
		`SELECT user_id FROM task_hold_intents WHERE task_id = $1`,
		{ bind: [taskId], type: QueryTypes.SELECT }
	);
	return rows[0]?.user_id ?? null;
}

const CASES = 100;

test("admit: the intent is written, the counts are backlog's, the ranking is skipped exactly at or below rankAbove", async () => {
	const rand = prng(1607);
	let ranked = 0;
	let skipped = 0;
	for (let c = 0; c < CASES; c++) {
		const { newcomer, pick } = await queue(rand);
		const reference = await store.backlog(NOW);
		const queued = await eligibleQueued();
		const rankAbove = pick([-1, 0, queued - 1, queued, queued + 1, Number.POSITIVE_INFINITY]);
		const got = await store.admit({ now: NOW, rankAbove, intent: { taskId: newcomer.id, payerId: "payer-1" } });
		expect({ c, queued: got.queued, running: got.running }).toEqual({ c, queued, running: reference.running });
		if (queued > rankAbove) {
			ranked++;
			expect({ c, ahead: got.ahead }).toEqual({ c, ahead: reference.ahead });
		} else {
			skipped++;
			expect({ c, ahead: got.ahead }).toEqual({ c, ahead: null });
		}
		expect(await intentOf(newcomer.id)).toBe("payer-1");
	}
	expect(ranked).toBeGreaterThan(20);
	expect(skipped).toBeGreaterThan(20);
});

test("the admission decision from admit with the surelyAcceptedBacklog gate is the decision from backlog's exact counts", async () => {
	const rand = prng(4242);
	const decisions = new Map<string, number>();
	for (let c = 0; c < CASES; c++) {
		const { newcomer, pick } = await queue(rand);
		const reference = await store.backlog(NOW);
		const tier: TierName = newcomer.tier;
		// Loads around the thresholds of the tiers, so every decision comes up.
		const capacity = pick([0, 1, 2, 3, 8]);
		const p50RunMs = pick([1, 1_000, 7_000, 30_000, 60_000, 240_000]);
		// The tier table's (minutes to hours) and tighter ones, so that short queues defer and reject too.
		const deferAboveMs = pick([0, 20_000, 60_000, 300_000]);
		const thresholds = pick([
			TIERS[tier].admission,
			{ deferAboveMs, rejectAboveMs: deferAboveMs + pick([0, 60_000, 600_000]) }
		]);
		const decide = (ahead: number, running: number) =>
			admissionDecision({
				tier,
				thresholds,
				expectedWaitMs: expectedWaitMs({
					position: ahead + 1,
					capacity,
					p50RunMs,
					idleWorkers: Math.max(0, capacity - running)
				})
			});
		const expected = decide(reference.ahead[tier], reference.running);
		const got = await store.admit({
			now: NOW,
			rankAbove: surelyAcceptedBacklog({ capacity, p50RunMs, thresholds }),
			intent: { taskId: newcomer.id, payerId: "p" }
		});
		const actual = decide(got.ahead ? got.ahead[tier] : got.queued, got.running);
		expect({ c, decision: actual }).toEqual({ c, decision: expected });
		decisions.set(expected.action, (decisions.get(expected.action) ?? 0) + 1);
		if (got.ahead === null) decisions.set("unranked", (decisions.get("unranked") ?? 0) + 1);
	}
	const seen = Object.fromEntries(["accept", "defer", "reject", "unranked"].map(a => [a, decisions.get(a) ?? 0]));
	for (const n of Object.values(seen)) expect({ seen, enough: n >= 3 }).toEqual({ seen, enough: true });
});

test("insertWithPosition: the row insert's, the intent gone, the position positionOf counts right after", async () => {
	const rand = prng(77);
	let positions = 0;
	for (let c = 0; c < CASES; c++) {
		const { newcomer } = await queue(rand);
		// Deferred now and then: then no position (and no ranking).
		const deferred = rand() < 0.15;
		const t = deferred ? { ...newcomer, enqueuedAt: NOW + 30_000, notBefore: NOW + 30_000 } : newcomer;
		await store.admit({ now: NOW, rankAbove: -1, intent: { taskId: t.id, payerId: "p" } });
		const { row, position } = await store.insertWithPosition(t);
		const reference = deferred ? null : await store.positionOf(t.id, NOW);
		expect({ c, position }).toEqual({ c, position: reference });
		if (!deferred) {
			expect(reference).not.toBeNull();
			positions++;
		}
		expect(row).toMatchObject({ id: t.id, user_id: t.userId, tier: t.tier, state: "queued", boost_ms: t.boostMs });
		expect(row.enqueued_at.getTime()).toBe(t.enqueuedAt);
		expect(row).not.toHaveProperty("queue_position");
		expect(await intentOf(t.id)).toBeNull();
	}
	expect(positions).toBeGreaterThan(70);
});

test("insertWithPosition with a worker slot: leased in the insert exactly when no eligible task is queued and tasks_lease would pick it", async () => {
	const outcomes = new Map<string, number>();
	for (let c = 0; c < CASES; c++) {
		// The same queue twice (one seed per case): once for the reference, once for the lease at insert.
		const seed = 9100 + c;
		const setting = prng(seed * 7 + 1);
		const totalWorkers = [1, 2, 4, 64][Math.floor(setting() * 4)];
		const drained = setting() < 0.1;
		// Often nothing eligible is left queued (only finished, running and deferred rows): the lease at
		// insert is then decided by the caps and the drain alone.
		const emptyQueue = setting() < 0.6;
		const deferred = setting() < 0.1;
		const build = async () => {
			const { newcomer } = await queue(prng(seed));
			await node.runtime.sequelize.query(`DELETE FROM task_drained_nodes`);
			if (drained) await node.runtime.sequelize.query(`INSERT INTO task_drained_nodes (node_id) VALUES ('w1')`);
			if (emptyQueue)
				await node.runtime.sequelize.query(`UPDATE tasks SET not_before = $1 WHERE state = 'queued'`, {
					bind: [new Date(NOW + 60_000)]
				});
			const t = deferred ? { ...newcomer, enqueuedAt: NOW + 30_000, notBefore: NOW + 30_000 } : newcomer;
			await store.admit({ now: NOW, rankAbove: -1, intent: { taskId: t.id, payerId: "p" } });
			return t;
		};

		// Reference: the plain insert, then a one-slot lease by the same node.
		const ref = await build();
		const eligibleBefore = await eligibleQueued();
		await store.insertWithPosition(ref);
		const picked = await store.lease({ nodeId: "w1", slots: 1, now: NOW, leaseMs: 60_000, totalWorkers });
		const expectLeased = !deferred && eligibleBefore === 0 && picked[0]?.id === ref.id;

		const t = await build();
		const leaseId = randomUUID();
		const { row, position } = await store.insertWithPosition(t, {
			nodeId: "w1",
			leaseId,
			leaseMs: 60_000,
			totalWorkers
		});
		expect({ c, leased: row.state === "running" }).toEqual({ c, leased: expectLeased });
		if (expectLeased) {
			expect(row).toMatchObject({ id: t.id, state: "running", lease_id: leaseId, node_id: "w1", attempts: 1 });
			expect(row.lease_expires_at!.getTime()).toBe(row.created_at.getTime() + 60_000);
			expect(row.started_at!.getTime()).toBe(row.created_at.getTime());
			expect(position).toBeNull();
		} else {
			// As without the offer.
			expect(row).toMatchObject({ id: t.id, state: "queued", lease_id: null, node_id: null, attempts: 0 });
			expect({ c, position }).toEqual({ c, position: deferred ? null : await store.positionOf(t.id, NOW) });
		}
		expect(await intentOf(t.id)).toBeNull();
		const why = expectLeased
			? "leased"
			: deferred
				? "deferred"
				: drained && eligibleBefore === 0
					? "drained"
					: eligibleBefore > 0
						? "queue"
						: "cap";
		outcomes.set(why, (outcomes.get(why) ?? 0) + 1);
	}
	const seen = Object.fromEntries(
		["leased", "deferred", "drained", "queue", "cap"].map(k => [k, outcomes.get(k) ?? 0])
	);
	for (const n of Object.values(seen)) expect({ seen, enough: n >= 3 }).toEqual({ seen, enough: true });
});
