import type { Transaction } from "sequelize";
import { settleTask, sweepOnce, type SweepDeps } from "../../../src/tasks/sweep";
import type { TaskRow } from "../../../src/tasks/store";
import { T0, taskRow } from "./rows";

const tx = {} as Transaction;
const coded = (type: string) => Object.assign(new Error(type), { type });

/** The sweeper's world in memory: rows by id, hold intents, what payments was asked, and the warnings. */
function world(rows: TaskRow[] = [], intents: Array<{ task_id: string; user_id: string }> = []) {
	const byId = new Map(rows.map(r => [r.id, r]));
	const calls: string[] = [];
	const warnings: string[] = [];
	const marks = new Map<string, string>();
	const dropped: string[] = [];
	const fail: { settle?: unknown; release?: unknown; mark?: unknown } = {};
	const alive = new Set<string>();
	const expiredSeen: TaskRow[] = [];
	const update = (id: string, over: Partial<TaskRow>) => {
		const next = { ...byId.get(id)!, ...over, version: byId.get(id)!.version + 1 };
		byId.set(id, next);
		return next;
	};
	const deps: SweepDeps = {
		store: {
			transaction: (fn => fn(tx)) as SweepDeps["store"]["transaction"],
			lockExpired: async now =>
				[...byId.values()].filter(
					r => r.state === "running" && r.lease_expires_at && r.lease_expires_at.getTime() < now
				),
			requeue: async (id, p) => update(id, { state: "queued", error: p.error as TaskRow["error"] }),
			finish: async (id, p) =>
				update(id, {
					state: p.state,
					settlement: "pending",
					cost_credits: String(p.costCredits ?? 0),
					error: p.error as TaskRow["error"]
				}),
			lockPendingSettlements: async () => [...byId.values()].filter(r => r.settlement === "pending"),
			markSettlement: async (id, s) => {
				if (fail.mark) throw fail.mark;
				marks.set(id, s);
			},
			lockStaleHoldIntents: async () => intents,
			dropHoldIntent: async id => {
				dropped.push(id);
			}
		},
		payments: {
			settle: async ({ taskId, actualCost, usage }) => {
				calls.push(`settle ${taskId} ${actualCost}${usage ? ` ${JSON.stringify(usage)}` : ""}`);
				if (fail.settle) throw fail.settle;
			},
			release: async ({ taskId }) => {
				calls.push(`release ${taskId}`);
				if (fail.release) throw fail.release;
			}
		},
		warn: m => warnings.push(m),
		holderAlive: id => !!id && alive.has(id),
		onExpired: async rows => {
			expiredSeen.push(...rows);
		},
		graceMs: { lease: 1_000, settlement: 5_000, holdIntent: 60_000 }
	};
	return { deps, byId, calls, warnings, marks, dropped, fail, alive, expiredSeen };
}

const finished = (over: Partial<TaskRow> = {}) =>
	taskRow({ state: "succeeded", settlement: "pending", cost_credits: "40", spent_credits: "0", ...over });

describe("settleTask", () => {
	test("a succeeded task is settled at its cost and marked settled", async () => {
		const w = world();
		await settleTask(w.deps, finished());
		expect(w.calls).toEqual(["settle t1 40"]);
		expect(w.marks.get("t1")).toBe("settled");
	});

	test("the settlement carries the tokens and the models the task ran on (a fallback's, not the asked one)", async () => {
		const w = world();
		const usage = { promptTokens: 120, completionTokens: 30, byModel: { "gpt-4o": { promptTokens: 120 } } };
		await settleTask(w.deps, finished({ usage }));
		expect(w.calls).toEqual([`settle t1 40 {"inputTokens":120,"outputTokens":30,"models":["gpt-4o"]}`]);
	});

	test("a failed task that spent nothing is released", async () => {
		const w = world();
		await settleTask(w.deps, finished({ state: "failed", cost_credits: "0" }));
		expect(w.calls).toEqual(["release t1"]);
		expect(w.marks.get("t1")).toBe("released");
	});

	test("only a pending settlement is tried", async () => {
		const w = world();
		await settleTask(w.deps, finished({ settlement: "settled" }));
		expect(w.calls).toEqual([]);
	});

	test("payments settled or released it before (a lost answer): that is recorded", async () => {
		const w = world();
		w.fail.settle = coded("HOLD_ALREADY_SETTLED");
		await settleTask(w.deps, finished());
		expect(w.marks.get("t1")).toBe("settled");
		w.fail.settle = coded("HOLD_RELEASED");
		await settleTask(w.deps, finished({ id: "t2" }));
		expect(w.marks.get("t2")).toBe("released");
		expect(w.warnings).toEqual([]);
	});

	test("payments down: nothing is marked, the sweeper retries, it never rejects", async () => {
		const w = world();
		w.fail.settle = new Error("down");
		await expect(settleTask(w.deps, finished())).resolves.toBeUndefined();
		expect(w.marks.size).toBe(0);
		expect(w.warnings).toEqual(["settlement of task t1 failed; the sweeper retries"]);
	});

	test("the mark itself failing after a known answer is logged, not thrown", async () => {
		const w = world();
		w.fail.settle = coded("HOLD_ALREADY_SETTLED");
		w.fail.mark = new Error("db down");
		await expect(settleTask(w.deps, finished())).resolves.toBeUndefined();
		expect(w.warnings).toEqual(["settlement mark of task t1 failed; the sweeper retries"]);
	});
});

describe("sweepOnce", () => {
	const running = (over: Partial<TaskRow> = {}) =>
		taskRow({
			state: "running",
			attempts: 1,
			node_id: "n1",
			lease_id: "l1",
			lease_expires_at: new Date(T0 - 10_000),
			...over
		});

	test("an expired lease of a dead holder goes back to the queue; a live holder's within the grace stays", async () => {
		const w = world([running(), running({ id: "t2", node_id: "n2", lease_expires_at: new Date(T0 - 500) })]);
		w.alive.add("n2");
		const out = await sweepOnce(w.deps, T0);
		expect(out).toEqual({ expired: 1, settled: 0, orphansReleased: 0 });
		expect(w.byId.get("t1")).toMatchObject({ state: "queued", error: { code: "LEASE_EXPIRED" } });
		expect(w.byId.get("t2")!.state).toBe("running");
		expect(w.expiredSeen.map(r => r.id)).toEqual(["t1"]);
	});

	test("no attempt left: the task fails and its settlement is pending, then retried in the same sweep", async () => {
		const w = world([running({ attempts: 3, max_attempts: 3 })]);
		const out = await sweepOnce(w.deps, T0);
		expect(w.expiredSeen.map(r => r.state)).toEqual(["failed"]);
		expect(out).toMatchObject({ expired: 1, settled: 1 });
		expect(w.calls).toEqual(["release t1"]);
	});

	test("orphaned holds are released and their intents dropped; 404 (no hold) drops it too; other errors keep it", async () => {
		const intents = [
			{ task_id: "o1", user_id: "u1" },
			{ task_id: "o2", user_id: "u1" }
		];
		const w = world([], intents);
		expect(await sweepOnce(w.deps, T0)).toMatchObject({ orphansReleased: 2 });
		expect(w.dropped).toEqual(["o1", "o2"]);

		const gone = world([], intents);
		gone.fail.release = coded("NOT_FOUND");
		expect(await sweepOnce(gone.deps, T0)).toMatchObject({ orphansReleased: 0 });
		expect(gone.dropped).toEqual(["o1", "o2"]);

		const down = world([], intents);
		down.fail.release = new Error("payments down");
		expect(await sweepOnce(down.deps, T0)).toMatchObject({ orphansReleased: 0 });
		expect(down.dropped).toEqual([]);
		expect(down.warnings).toHaveLength(2);
	});
});
