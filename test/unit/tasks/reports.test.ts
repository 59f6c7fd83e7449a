import type { Transaction } from "sequelize";
import { cancelTask, requeueTask, type CancelStore } from "../../../src/tasks/cancel";
import { completeTask, failTask, type ReportDeps } from "../../../src/tasks/reports";
import type { TaskRow } from "../../../src/tasks/store";
import { T0, taskRow } from "./rows";

const tx = {} as Transaction;

/** One task row in memory behind the store methods reports and cancels use; what was published, in order. */
function world(row: TaskRow) {
	let cur = row;
	const published: Array<{ topic: string; payload: Record<string, unknown> }> = [];
	const contexts: unknown[] = [];
	let kicks = 0;
	const set = (over: Partial<TaskRow>) => (cur = { ...cur, ...over, version: cur.version + 1 });
	const store = {
		transaction: (fn => fn(tx)) as ReportDeps["store"]["transaction"],
		lockLeased: async (id: string, leaseId: string) => (cur.id === id && cur.lease_id === leaseId ? cur : null),
		lockById: async (id: string) => (cur.id === id ? cur : null),
		saveContext: async (_id: string, _attempt: number, c: unknown) => {
			contexts.push(c);
		},
		finish: async (_id: string, p: Parameters<CancelStore["finish"]>[1]) =>
			set({
				state: p.state,
				cost_credits: String(p.costCredits ?? 0),
				spent_credits: String(p.spentCredits),
				settlement: "pending",
				lease_id: null
			}),
		requeue: async (_id: string, p: Parameters<CancelStore["requeue"]>[1]) =>
			set({
				state: "queued",
				not_before: p.notBefore === null ? null : new Date(p.notBefore),
				spent_credits: String(p.spentCredits ?? cur.spent_credits),
				lease_id: null
			}),
		requestCancel: async () => set({ cancel_requested: true }),
		// The folded completion's contract (its SQL is tested against the transactional rules on PostgreSQL
		// in test/integration/tasks/complete-fold.test.ts).
		completeLeased: async (p: Parameters<ReportDeps["store"]["completeLeased"]>[0]) => {
			if (cur.id !== p.taskId || cur.lease_id !== p.leaseId) return null;
			if (p.context) contexts.push(p.context);
			const cost = Math.min(Number(cur.spent_credits) + p.costCredits, Number(cur.max_cost_credits));
			const done = set({ state: "succeeded", cost_credits: String(cost), settlement: "pending", lease_id: null });
			published.push({ topic: "tasks.finished", payload: { state: done.state, costCredits: cost } });
			return done;
		}
	};
	const deps: ReportDeps = {
		store,
		publish: async (_tx, topic, payload) => {
			published.push({ topic, payload: payload as Record<string, unknown> });
		},
		published: () => kicks++,
		retry: { baseMs: 1_000, maxMs: 10_000 },
		now: () => T0,
		random: () => 0.5
	};
	return { deps, store: store as CancelStore, published, contexts, row: () => cur, kicks: () => kicks };
}

const leased = (over: Partial<TaskRow> = {}) =>
	taskRow({ state: "running", attempts: 1, lease_id: "l1", max_cost_credits: "100", ...over });

describe("completeTask", () => {
	test("finishes the task at its cost capped by the hold, records the context, publishes tasks.finished", async () => {
		const w = world(leased({ spent_credits: "30" }));
		const context = { state: "selected", tokenizer: "t", version: 1, frames: [] };
		const done = await completeTask(w.deps, {
			taskId: "t1",
			leaseId: "l1",
			result: { text: "ok" },
			usage: { promptTokens: 1 },
			costCredits: 90,
			context
		});
		expect(done).toMatchObject({ state: "succeeded", cost_credits: "100" });
		expect(w.contexts).toEqual([context]);
		expect(w.published).toEqual([
			{ topic: "tasks.finished", payload: expect.objectContaining({ state: "succeeded", costCredits: 100 }) }
		]);
		expect(w.kicks()).toBe(1);
	});

	test("a stale lease is 409 LEASE_LOST and changes nothing", async () => {
		const w = world(leased());
		const report = { taskId: "t1", leaseId: "other", result: {}, usage: {}, costCredits: 1 };
		await expect(completeTask(w.deps, report)).rejects.toMatchObject({ status: 409, code: "LEASE_LOST" });
		expect(w.published).toEqual([]);
		expect(w.kicks()).toBe(0);
		expect(w.row().state).toBe("running");
	});
});

describe("failTask", () => {
	const error = { code: "PROVIDER_TIMEOUT", message: "slow" };

	test("retryable with attempts left: back to the queue after a backoff, what it spent counted, nothing published", async () => {
		const w = world(leased());
		const row = await failTask(w.deps, { taskId: "t1", leaseId: "l1", error, retryable: true, costCredits: 5 });
		expect(row.state).toBe("queued");
		expect(row.not_before!.getTime()).toBeGreaterThan(T0);
		expect(row.spent_credits).toBe("5");
		expect(w.published).toEqual([]);
	});

	test("not retryable: failed, the spent credits are its cost, tasks.finished names the error", async () => {
		const w = world(leased({ spent_credits: "10" }));
		const row = await failTask(w.deps, { taskId: "t1", leaseId: "l1", error, retryable: false, costCredits: 5 });
		expect(row).toMatchObject({ state: "failed", cost_credits: "15" });
		expect(w.published[0].payload).toMatchObject({ state: "failed", costCredits: 15, error: { attempt: 1 } });
	});

	test("the last attempt, or a task asked to stop, finishes instead of retrying", async () => {
		const last = world(leased({ attempts: 3, max_attempts: 3 }));
		expect((await failTask(last.deps, { taskId: "t1", leaseId: "l1", error, retryable: true })).state).toBe(
			"failed"
		);
		const stop = world(leased({ cancel_requested: true }));
		const cancelled = { code: "CANCELLED", message: "stopped" };
		const row = await failTask(stop.deps, { taskId: "t1", leaseId: "l1", error: cancelled, retryable: false });
		expect(row.state).toBe("cancelled");
	});
});

describe("cancelTask and requeueTask", () => {
	test("a queued task is cancelled at once; a running one is asked to stop; twice is no change", async () => {
		const q = world(taskRow());
		expect(await cancelTask(q.store, "u1", "t1", T0)).toMatchObject({ changed: true, row: { state: "cancelled" } });
		expect(await cancelTask(q.store, "u1", "t1", T0)).toMatchObject({ changed: false });
		const r = world(leased());
		expect(await cancelTask(r.store, "u1", "t1", T0)).toMatchObject({
			changed: true,
			row: { state: "running", cancel_requested: true }
		});
	});

	test("someone else's task is 404; a finished one is 409 TASK_FINISHED", async () => {
		const w = world(taskRow());
		await expect(cancelTask(w.store, "u2", "t1", T0)).rejects.toMatchObject({ status: 404 });
		const done = world(taskRow({ state: "succeeded" }));
		await expect(cancelTask(done.store, "u1", "t1", T0)).rejects.toMatchObject({
			status: 409,
			code: "TASK_FINISHED"
		});
		await expect(requeueTask(done.store, "t1", T0)).rejects.toMatchObject({ code: "TASK_FINISHED" });
	});

	test("an operator's requeue revokes a running lease and skips any backoff", async () => {
		const w = world(leased({ not_before: new Date(T0 + 60_000) }));
		expect(await requeueTask(w.store, "t1", T0)).toMatchObject({
			state: "queued",
			not_before: null,
			lease_id: null
		});
		await expect(requeueTask(w.store, "missing", T0)).rejects.toMatchObject({ status: 404 });
	});
});
