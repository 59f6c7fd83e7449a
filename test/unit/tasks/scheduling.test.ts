import {
	TIERS,
	TIER_ORDER,
	type AdmissionThresholds,
	type TierName,
	boostCeilingMs,
	priorityBoostMs
} from "../../../src/domain/tiers";
import {
	FAIRNESS_QUANTUM_MS,
	MAX_RETRY_AFTER_S,
	type QueuedTask,
	type RunningSummary,
	USER_RANK_SQL,
	admissionDecision,
	expectedWaitMs,
	maxJumpMs,
	orderQueue,
	pickNext,
	queuePositions,
	rankQueue,
	retryBackoffMs,
	surelyAcceptedBacklog,
	tierBacklogWaitMs,
	virtualStartTime,
	vstSql
} from "../../../src/tasks/scheduling";

const NOW = 1_800_000_000_000;
const Q = FAIRNESS_QUANTUM_MS;

function task(
	id: string,
	userId: string,
	tier: TierName,
	enqueuedAt: number,
	extra: Partial<QueuedTask> = {}
): QueuedTask {
	return {
		id,
		userId,
		tier,
		enqueuedAt,
		boostMs: priorityBoostMs(tier),
		attempts: 0,
		estimatedRunMs: 30_000,
		...extra
	};
}

function running(
	byUser: Record<string, number> = {},
	byTier: Partial<Record<TierName, number>> = {},
	totalWorkers = 1_000
): RunningSummary {
	return { byUser: new Map(Object.entries(byUser)), byTier, totalWorkers };
}

const ids = (tasks: readonly QueuedTask[]) => tasks.map(t => t.id);

/** mulberry32: small seeded PRNG so the random mix is the same on every run. */
function seededRandom(seed: number): () => number {
	let state = seed >>> 0;
	return () => {
		state = (state + 0x6d2b79f5) >>> 0;
		let x = state;
		x = Math.imul(x ^ (x >>> 15), x | 1);
		x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
		return ((x ^ (x >>> 14)) >>> 0) / 4_294_967_296;
	};
}

describe("virtualStartTime", () => {
	it("subtracts the bounded boost and adds the fairness penalty", () => {
		expect(Q).toBe(10_000);
		const pro = task("a", "u", "pro", NOW);
		expect(virtualStartTime(pro, 0)).toBe(NOW - 30_000);
		expect(virtualStartTime(pro, 2)).toBe(NOW - 30_000 + 20_000);
		expect(virtualStartTime(task("f", "u", "free", NOW), 0)).toBe(NOW);
		expect(virtualStartTime(pro, 1, { fairnessQuantumMs: 500 })).toBe(NOW - 29_500);
	});

	it("re-bounds a stored boost to the tier ceiling and never below zero", () => {
		expect(virtualStartTime(task("a", "u", "pro", NOW, { boostMs: 3_600_000 }), 0)).toBe(NOW - 90_000);
		expect(virtualStartTime(task("b", "u", "free", NOW, { boostMs: 3_600_000 }), 0)).toBe(NOW - 60_000);
		expect(virtualStartTime(task("c", "u", "enterprise", NOW, { boostMs: 3_600_000 }), 0)).toBe(NOW - 180_000);
		expect(virtualStartTime(task("d", "u", "team", NOW, { boostMs: -50_000 }), 0)).toBe(NOW);
	});

	it("states the jump bound per tier", () => {
		expect(TIER_ORDER.map(t => maxJumpMs(t))).toEqual([60_000, 90_000, 120_000, 180_000]);
		expect(maxJumpMs("enterprise", 2)).toBe(200_000);
	});
});

describe("orderQueue", () => {
	it("serves ascending vst across tiers: premium jumps ahead by at most its boost", () => {
		const tasks = [
			task("free-0", "u1", "free", NOW - 100_000), // vst −100 s
			task("pro-20", "u2", "pro", NOW - 80_000), // vst −110 s: jumps the free task
			task("pro-40", "u3", "pro", NOW - 60_000), // vst −90 s: does not
			task("ent-110", "u4", "enterprise", NOW + 10_000) // vst −110 s, younger than pro-20
		];
		expect(ids(orderQueue(tasks, running(), NOW + 10_000))).toEqual(["pro-20", "ent-110", "free-0", "pro-40"]);
	});

	it("breaks vst ties by enqueue time, then by id", () => {
		const tasks = [
			task("b", "u1", "free", NOW),
			task("a", "u2", "free", NOW),
			task("c", "u3", "pro", NOW + 30_000) // same vst as a/b, enqueued later
		];
		expect(ids(orderQueue(tasks, running(), NOW + 30_000))).toEqual(["a", "b", "c"]);
	});

	it("leaves out tasks whose notBefore is still ahead, and does not rank them", () => {
		const tasks = [
			task("backoff", "u1", "pro", NOW - 50_000, { notBefore: NOW + 1 }),
			task("due", "u1", "pro", NOW - 40_000, { notBefore: NOW }),
			task("other", "u2", "pro", NOW - 35_000)
		];
		const ranked = rankQueue(tasks, NOW);
		expect(ranked.map(r => [r.task.id, r.userRank, r.vstMs])).toEqual([
			["due", 0, NOW - 70_000],
			["other", 0, NOW - 65_000]
		]);
		// once due, the older task takes rank 0 and pushes "due" back by one quantum
		expect(rankQueue(tasks, NOW + 1).map(r => [r.task.id, r.userRank, r.vstMs])).toEqual([
			["backoff", 0, NOW - 80_000],
			["other", 0, NOW - 65_000],
			["due", 1, NOW - 60_000]
		]);
		expect(ids(orderQueue(tasks, running(), NOW + 1))).toEqual(["backoff", "other", "due"]);
	});

	it("drops users at their concurrency cap and tiers at their worker share", () => {
		const tasks = [
			task("f1", "free-user", "free", NOW - 3),
			task("f2", "free-other", "free", NOW - 2),
			task("p1", "pro-user", "pro", NOW - 1)
		];
		expect(ids(orderQueue(tasks, running({ "free-user": 1 }), NOW))).toEqual(["p1", "f2"]);
		// 10 workers: free may hold 5 of them
		expect(ids(orderQueue(tasks, running({}, { free: 5 }, 10), NOW))).toEqual(["p1"]);
		expect(ids(orderQueue(tasks, running({}, { free: 4 }, 10), NOW))).toEqual(["p1", "f1", "f2"]);
	});
});

describe("pickNext", () => {
	it("takes up to capacity tasks in order", () => {
		const tasks = [task("a", "u1", "pro", NOW), task("b", "u2", "pro", NOW + 1), task("c", "u3", "pro", NOW + 2)];
		expect(ids(pickNext(tasks, running(), NOW + 2, 2))).toEqual(["a", "b"]);
		expect(ids(pickNext(tasks, running(), NOW + 2, 10))).toEqual(["a", "b", "c"]);
		expect(pickNext(tasks, running(), NOW + 2, 0)).toEqual([]);
	});

	it("updates the per-user cap as it picks", () => {
		const tasks = [
			...Array.from({ length: 6 }, (_, i) => task(`p${i}`, "pro-user", "pro", NOW + i)),
			task("other", "other-user", "pro", NOW + 100_000)
		];
		// pro users run 4 at once; 2 already run
		expect(ids(pickNext(tasks, running({ "pro-user": 2 }), NOW + 100_000, 10))).toEqual(["p0", "p1", "other"]);
		// orderQueue applies only the caps as they stand, so it lists every task of the user
		expect(orderQueue(tasks, running({ "pro-user": 2 }), NOW + 100_000)).toHaveLength(7);
	});

	it("updates the per-tier cap as it picks and skips past capped tasks", () => {
		const tasks = [
			task("f0", "a", "free", NOW),
			task("f1", "b", "free", NOW + 1),
			task("f2", "c", "free", NOW + 2),
			task("p0", "d", "pro", NOW + 40_000) // vst NOW + 10 s: last in order
		];
		// 4 workers: free may hold 2; one free task runs already
		expect(ids(pickNext(tasks, running({}, { free: 1 }, 4), NOW + 40_000, 4))).toEqual(["f0", "p0"]);
	});
});

describe("round-robin within a tier", () => {
	it("interleaves users who flood at the same moment", () => {
		const tasks = ["alice", "bob", "carol"].flatMap(user =>
			[0, 1, 2].map(k => task(`${user}-${k}`, user, "team", NOW))
		);
		expect(ids(orderQueue(tasks, running(), NOW))).toEqual([
			"alice-0",
			"bob-0",
			"carol-0",
			"alice-1",
			"bob-1",
			"carol-1",
			"alice-2",
			"bob-2",
			"carol-2"
		]);
	});

	it("lets a latecomer in after ceil(delay / quantum) of a flooder's tasks", () => {
		const flood = Array.from({ length: 10 }, (_, k) => task(`A${k}`, "flooder", "pro", NOW + k));
		const late = [0, 1, 2].map(k => task(`B${k}`, "late", "pro", NOW + 25_000 + k));
		const order = ids(orderQueue([...flood, ...late], running(), NOW + 30_000));
		expect(order).toEqual(["A0", "A1", "A2", "B0", "A3", "B1", "A4", "B2", "A5", "A6", "A7", "A8", "A9"]);
	});
});

describe("starvation bound", () => {
	it("starts a free task before every enterprise task enqueued more than maxJumpMs after it", () => {
		const random = seededRandom(7);
		const freeTask = task("free", "free-user", "free", NOW);
		const flood: QueuedTask[] = [];
		for (let user = 0; user < 40; user++) {
			for (let k = 0; k < 5; k++) {
				const enqueuedAt = NOW + Math.floor(random() * 400_000);
				// purchased boost far above what is allowed: the bound must still hold
				flood.push(
					task(`e${user}-${k}`, `ent-${user}`, "enterprise", enqueuedAt, {
						boostMs: priorityBoostMs("enterprise", 10_000_000)
					})
				);
			}
		}
		// serve one task at a time with everything already queued, as a busy single worker would
		let queue = [freeTask, ...flood];
		const served: QueuedTask[] = [];
		while (queue.length > 0) {
			const [next] = pickNext(queue, running(), NOW + 400_000, 1);
			served.push(next);
			queue = queue.filter(t => t !== next);
		}
		const freeAt = served.indexOf(freeTask);
		const jump = maxJumpMs("enterprise");
		expect(jump).toBe(180_000);
		const after = served.slice(freeAt + 1);
		const before = served.slice(0, freeAt);
		expect(after.length + before.length).toBe(200);
		for (const t of before) expect(t.enqueuedAt - freeTask.enqueuedAt).toBeLessThan(jump);
		// and some enterprise work did jump ahead, so the test exercises the boost
		expect(before.length).toBeGreaterThan(0);
		expect(after.some(t => t.enqueuedAt - NOW >= jump)).toBe(true);
	});

	it("is exact at the boundary", () => {
		const freeTask = task("free", "f", "free", NOW);
		const ceiling = boostCeilingMs("enterprise");
		const atBound = task("at", "e1", "enterprise", NOW + ceiling, { boostMs: ceiling });
		const inside = task("inside", "e2", "enterprise", NOW + ceiling - 1, { boostMs: ceiling });
		expect(ids(orderQueue([atBound, freeTask, inside], running(), NOW + ceiling))).toEqual([
			"inside",
			"free",
			"at"
		]);
	});

	it("keeps a task ahead of anything with a later vst, whatever its tier", () => {
		const tasks = TIER_ORDER.map((tier, i) => task(tier, `u${i}`, tier, NOW + TIERS[tier].maxBoostMs));
		// every vst equals NOW: ties resolve by enqueue time, so free (oldest) goes first
		expect(ids(orderQueue(tasks, running(), NOW + 120_000))).toEqual(["free", "pro", "team", "enterprise"]);
	});
});

describe("queue positions and expected wait", () => {
	it("numbers time-eligible tasks from 1 in queue order", () => {
		const tasks = [
			task("late", "u1", "free", NOW),
			task("early", "u2", "pro", NOW),
			task("sleeping", "u3", "enterprise", NOW, { notBefore: NOW + 5_000 })
		];
		expect([...queuePositions(tasks, NOW)]).toEqual([
			["early", 1],
			["late", 2]
		]);
		expect([...queuePositions(tasks, NOW + 5_000)]).toEqual([
			["sleeping", 1],
			["early", 2],
			["late", 3]
		]);
	});

	it("estimates waits in whole waves of p50 run time", () => {
		expect(expectedWaitMs({ position: 1, capacity: 4, p50RunMs: 20_000 })).toBe(20_000);
		expect(expectedWaitMs({ position: 4, capacity: 4, p50RunMs: 20_000 })).toBe(20_000);
		expect(expectedWaitMs({ position: 5, capacity: 4, p50RunMs: 20_000 })).toBe(40_000);
		expect(expectedWaitMs({ position: 2, capacity: 4, p50RunMs: 20_000, idleWorkers: 2 })).toBe(0);
		expect(expectedWaitMs({ position: 3, capacity: 4, p50RunMs: 20_000, idleWorkers: 2 })).toBe(20_000);
		expect(expectedWaitMs({ position: 1, capacity: 0, p50RunMs: 20_000 })).toBe(Number.POSITIVE_INFINITY);
		expect(() => expectedWaitMs({ position: 0, capacity: 1, p50RunMs: 1 })).toThrow(RangeError);
	});

	it("gives each tier the wait a new submission of that tier would see", () => {
		// 100 free tasks queued over the last 100 s, one per second: vst = enqueuedAt
		const backlog = Array.from({ length: 100 }, (_, i) =>
			task(`f${i}`, `u${i}`, "free", NOW - 100_000 + i * 1_000)
		);
		const waits = tierBacklogWaitMs(backlog, NOW, { capacity: 10, p50RunMs: 60_000 });
		expect(waits).toEqual({
			free: 11 * 60_000, // behind all 100
			pro: 8 * 60_000, // vst now − 30 s: behind 71 tasks (vst ≤ now − 30 s), position 72
			team: 5 * 60_000, // behind 41, position 42
			enterprise: 60_000 // nothing at or before now − 120 s, position 1
		});
	});
});

describe("admissionDecision", () => {
	const free = TIERS.free.admission;

	it("accepts up to the defer threshold, defers up to the reject threshold, rejects above", () => {
		expect(admissionDecision({ tier: "free", expectedWaitMs: free.deferAboveMs })).toEqual({ action: "accept" });
		expect(admissionDecision({ tier: "free", expectedWaitMs: free.deferAboveMs + 1 })).toEqual({
			action: "defer",
			retryAfterS: 1
		});
		expect(admissionDecision({ tier: "free", expectedWaitMs: free.deferAboveMs + 90_500 })).toEqual({
			action: "defer",
			retryAfterS: 91
		});
		expect(admissionDecision({ tier: "free", expectedWaitMs: free.rejectAboveMs })).toEqual({
			action: "defer",
			retryAfterS: (free.rejectAboveMs - free.deferAboveMs) / 1000
		});
		expect(admissionDecision({ tier: "free", expectedWaitMs: free.rejectAboveMs + 1 })).toEqual({
			action: "reject",
			retryAfterS: (free.rejectAboveMs - free.deferAboveMs) / 1000 + 1
		});
		expect(admissionDecision({ tier: "free", expectedWaitMs: Number.POSITIVE_INFINITY })).toEqual({
			action: "reject",
			retryAfterS: MAX_RETRY_AFTER_S
		});
	});

	it("honours explicit thresholds", () => {
		const thresholds = { deferAboveMs: 1_000, rejectAboveMs: 2_000 };
		expect(admissionDecision({ tier: "enterprise", expectedWaitMs: 1_500, thresholds })).toEqual({
			action: "defer",
			retryAfterS: 1
		});
		expect(admissionDecision({ tier: "enterprise", expectedWaitMs: 4_001, thresholds })).toEqual({
			action: "reject",
			retryAfterS: 4
		});
	});

	it("sheds lower tiers first as the same backlog grows", () => {
		const firstAt = (action: "defer" | "reject") =>
			TIER_ORDER.map(tier => {
				for (let wait = 0; wait <= 10 * 3_600_000; wait += 60_000) {
					if (admissionDecision({ tier, expectedWaitMs: wait }).action === action) return wait;
				}
				return Number.POSITIVE_INFINITY;
			});
		expect(firstAt("defer")).toEqual([6, 16, 31, 61].map(m => m * 60_000));
		expect(firstAt("reject")).toEqual([21, 46, 121, 241].map(m => m * 60_000));
	});

	it("sheds free while still accepting enterprise for a real backlog", () => {
		const backlog = Array.from({ length: 600 }, (_, i) =>
			task(`t${i}`, `u${i % 300}`, "pro", NOW - 600_000 + i * 1_000)
		);
		const waits = tierBacklogWaitMs(backlog, NOW, { capacity: 20, p50RunMs: 60_000 });
		const decisions = TIER_ORDER.map(tier => admissionDecision({ tier, expectedWaitMs: waits[tier] }).action);
		expect(decisions).toEqual(["reject", "defer", "accept", "accept"]);
	});
});

describe("surelyAcceptedBacklog (the admission read's gate)", () => {
	const decide = (
		queued: number,
		ahead: number,
		idle: number,
		capacity: number,
		p50RunMs: number,
		t: AdmissionThresholds
	) =>
		admissionDecision({
			tier: "free",
			thresholds: t,
			expectedWaitMs: expectedWaitMs({
				position: Math.min(ahead, queued) + 1,
				capacity,
				p50RunMs,
				idleWorkers: idle
			})
		}).action;

	it("at or below the bound every count ahead and every idle share accepts; one above, all queued ahead and none idle does not", () => {
		const rand = seededRandom(91);
		const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
		for (let i = 0; i < 5_000; i++) {
			const capacity = pick([0, 1, 2, 3, 7, 8, 32, 100]);
			const p50RunMs = pick([0, 1, 999, 1_000, 1_001, 60_000, 333_333]);
			const deferAboveMs = pick([0, 1, 999, 1_000, 60_000, 300_000, 1_800_000]);
			const t = { deferAboveMs, rejectAboveMs: deferAboveMs * 4 };
			const bound = surelyAcceptedBacklog({ capacity, p50RunMs, thresholds: t });
			const c = { capacity, p50RunMs, deferAboveMs, bound };
			if (bound === Number.POSITIVE_INFINITY) {
				for (const q of [0, 1, 10_000, 1e9])
					expect({ ...c, q, d: decide(q, q, 0, capacity, p50RunMs, t) }).toEqual({ ...c, q, d: "accept" });
				continue;
			}
			if (bound >= 0) {
				const ahead = Math.floor(rand() * (bound + 1));
				const idle = Math.floor(rand() * (capacity + 1));
				expect({ ...c, d: decide(bound, bound, 0, capacity, p50RunMs, t) }).toEqual({ ...c, d: "accept" });
				expect({ ...c, d: decide(bound, ahead, idle, capacity, p50RunMs, t) }).toEqual({ ...c, d: "accept" });
			}
			// Tight: one more queued, all of them ahead and no worker idle, is not sure to be accepted.
			expect({ ...c, d: decide(bound + 1, bound + 1, 0, capacity, p50RunMs, t) }).not.toEqual({
				...c,
				d: "accept"
			});
		}
	});
});

describe("retryBackoffMs", () => {
	const options = (jitter: number) => ({ baseMs: 1_000, maxMs: 60_000, jitter: () => jitter });

	it("grows exponentially with full jitter below the ceiling", () => {
		expect([1, 2, 3, 4, 5, 6, 7, 8].map(a => retryBackoffMs(a, options(0.5)))).toEqual([
			500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000
		]);
		expect(retryBackoffMs(3, options(0))).toBe(0);
		expect(retryBackoffMs(3, options(0.999_999))).toBe(3_999);
		expect(retryBackoffMs(3, options(1))).toBe(3_999); // clamped below the ceiling
		expect(retryBackoffMs(3, options(-2))).toBe(0);
		expect(retryBackoffMs(2_000, options(0.25))).toBe(15_000); // no overflow past maxMs
	});

	it("stays within [0, min(maxMs, base·2^(n−1))) for a seeded jitter", () => {
		const random = seededRandom(42);
		for (let attempt = 1; attempt <= 30; attempt++) {
			const delay = retryBackoffMs(attempt, { baseMs: 250, maxMs: 45_000, jitter: random });
			expect(Number.isInteger(delay)).toBe(true);
			expect(delay).toBeGreaterThanOrEqual(0);
			expect(delay).toBeLessThan(Math.min(45_000, 250 * 2 ** (attempt - 1)));
		}
	});

	it("rejects attempts below one", () => {
		expect(() => retryBackoffMs(0, options(0.5))).toThrow(RangeError);
		expect(() => retryBackoffMs(1.5, options(0.5))).toThrow(RangeError);
	});
});

describe("SQL ordering matches the rule", () => {
	it("builds the vst expression from the same table and quantum", () => {
		const ceilings =
			"CASE t.tier WHEN 'free' THEN 60000 WHEN 'pro' THEN 90000 WHEN 'team' THEN 120000 WHEN 'enterprise' THEN 180000 ELSE 0 END";
		expect(vstSql()).toBe(
			`(t.enqueued_at - LEAST(GREATEST(t.boost_ms, 0), ${ceilings}) * interval '1 millisecond' + r.user_rank * interval '10000 milliseconds')`
		);
		expect(vstSql({ enqueuedAt: "q.enqueued_ms", tier: "t.tier", enqueuedAtType: "epoch_ms" })).toBe(
			`(q.enqueued_ms - LEAST(GREATEST(t.boost_ms, 0), ${ceilings}) + r.user_rank * 10000)`
		);
		expect(USER_RANK_SQL).toBe("(row_number() OVER (PARTITION BY user_id ORDER BY enqueued_at, id) - 1)");
	});

	it("orders a seeded random mix exactly by the documented key", () => {
		const random = seededRandom(20260115);
		const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)];
		const users = Array.from({ length: 25 }, (_, i) => ({ id: `user-${i}`, tier: pick(TIER_ORDER) }));
		const tasks: QueuedTask[] = Array.from({ length: 400 }, (_, i) => {
			const user = pick(users);
			return {
				id: `task-${String(Math.floor(random() * 1e6)).padStart(6, "0")}-${i}`,
				userId: user.id,
				tier: user.tier,
				enqueuedAt: NOW - Math.floor(random() * 20) * 5_000, // coarse, so ties happen
				boostMs: pick([0, 15_000, 30_000, 90_000, 500_000, -1]),
				attempts: Math.floor(random() * 3),
				notBefore:
					random() < 0.15 ? NOW + 1 + Math.floor(random() * 60_000) : random() < 0.5 ? NOW - 1 : undefined,
				estimatedRunMs: 1_000 + Math.floor(random() * 60_000)
			};
		});

		// the documented key, computed independently of the implementation
		const ceiling: Record<TierName, number> = { free: 60_000, pro: 90_000, team: 120_000, enterprise: 180_000 };
		const eligible = tasks.filter(t => t.notBefore == null || t.notBefore <= NOW);
		const userRank = new Map<string, number>();
		for (const userId of new Set(eligible.map(t => t.userId))) {
			eligible
				.filter(t => t.userId === userId)
				.sort((a, b) => a.enqueuedAt - b.enqueuedAt || (a.id < b.id ? -1 : 1))
				.forEach((t, k) => userRank.set(t.id, k));
		}
		const key = (t: QueuedTask) =>
			t.enqueuedAt - Math.min(Math.max(t.boostMs, 0), ceiling[t.tier]) + userRank.get(t.id)! * 10_000;
		const expected = [...eligible].sort(
			(a, b) => key(a) - key(b) || a.enqueuedAt - b.enqueuedAt || (a.id < b.id ? -1 : 1)
		);

		expect(eligible.length).toBeGreaterThan(300);
		expect(new Set(eligible.map(key)).size).toBeLessThan(eligible.length); // ties are exercised
		expect(ids(orderQueue(tasks, running({}, {}, 10_000), NOW))).toEqual(ids(expected));
		expect(rankQueue(tasks, NOW).map(r => r.vstMs)).toEqual(expected.map(key));

		// with caps in force, orderQueue is the same order minus capped users and tiers
		const busy = running({ [users[0].id]: 1_000, [users[1].id]: 1_000 }, { free: 5 }, 10);
		const allowed = expected.filter(t => t.userId !== users[0].id && t.userId !== users[1].id && t.tier !== "free");
		expect(ids(orderQueue(tasks, busy, NOW))).toEqual(ids(allowed));

		// pickNext takes a subsequence of that order that respects every cap
		const picked = pickNext(tasks, running({}, {}, 8), NOW, 1_000);
		const order = ids(expected);
		const positions = picked.map(t => order.indexOf(t.id));
		expect(positions).toEqual([...positions].sort((a, b) => a - b));
		const perUser = new Map<string, number>();
		const perTier = new Map<TierName, number>();
		for (const t of picked) {
			perUser.set(t.userId, (perUser.get(t.userId) ?? 0) + 1);
			perTier.set(t.tier, (perTier.get(t.tier) ?? 0) + 1);
		}
		for (const [userId, count] of perUser) {
			expect(count).toBeLessThanOrEqual(TIERS[users.find(u => u.id === userId)!.tier].perUserConcurrency);
		}
		expect(perTier.get("free") ?? 0).toBeLessThanOrEqual(4);
		expect(perTier.get("pro") ?? 0).toBeLessThanOrEqual(6);
	});
});
