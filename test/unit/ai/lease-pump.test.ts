import { LeasePump, type Leased } from "../../../src/ai/lease-pump";
import { sentNowhere } from "../../../src/runtime/call-errors";

interface Call {
	slots: number;
	leaseId: string;
	recover: string[];
	/** Answers with these task ids under this call's lease id, plus `back` (tasks of earlier lease ids). */
	answer: (tasks: string[], back?: Leased[]) => void;
	fail: (err: Error) => void;
}

/** A lease call the test answers by hand. */
function harness(slots: number, opts: { now?: () => number; recoverForMs?: number } = {}) {
	const calls: Call[] = [];
	const running = new Set<string>();
	const started: string[] = [];
	const errors: unknown[] = [];
	let canLease = true;
	let n = 0;
	const pump = new LeasePump<Leased>({
		free: () => slots - running.size,
		canLease: () => canLease,
		lease: (count, call) =>
			new Promise((resolve, reject) =>
				calls.push({
					slots: count,
					...call,
					answer: (tasks, back = []) =>
						resolve([...back, ...tasks.map(taskId => ({ taskId, leaseId: call.leaseId }))]),
					fail: reject
				})
			),
		start: t => {
			running.add(t.taskId);
			started.push(t.taskId);
		},
		isRunning: taskId => running.has(taskId),
		mayHaveLeased: err => !sentNowhere(err),
		onError: err => errors.push(err),
		newLeaseId: () => `lease-${++n}`,
		...opts
	});
	const settle = () => new Promise(r => setImmediate(r));
	return { pump, calls, running, started, errors, settle, stopLeasing: () => (canLease = false) };
}

const timeout = () => Object.assign(new Error("Request timed out"), { type: "REQUEST_TIMEOUT" });

describe("LeasePump", () => {
	test("leases the free slots, and again while a full batch comes back; stops on a short one", async () => {
		const h = harness(4);
		const done = h.pump.pump();
		expect(h.calls.map(c => c.slots)).toEqual([4]);
		h.calls[0].answer(["a", "b"]);
		await done;
		expect([...h.running]).toEqual(["a", "b"]);
		expect(h.calls).toHaveLength(1); // fewer than asked: the queue had nothing more

		h.running.clear();
		const again = h.pump.pump();
		h.calls[1].answer(["c", "d", "e", "f"]);
		await again;
		expect(h.calls).toHaveLength(2); // all slots full: nothing more to ask for
	});

	test("a slot freed while a lease is in flight is filled right after it, not at the next poll", async () => {
		const h = harness(2);
		h.running.add("x");
		const first = h.pump.pump();
		expect(h.calls.map(c => c.slots)).toEqual([1]);
		// "x" finishes while the lease for one slot is in flight; its pump must not be lost.
		h.running.delete("x");
		await h.pump.pump();
		expect(h.calls).toHaveLength(1);
		h.calls[0].answer([]); // nothing queued at the time of that call
		await h.settle();
		expect(h.calls.map(c => c.slots)).toEqual([1, 2]);
		h.calls[1].answer(["y", "z"]);
		await first;
		expect([...h.running].sort()).toEqual(["y", "z"]);
		expect(h.pump.busy).toBe(false);
	});

	test("one lease call at a time, however many pumps are asked for", async () => {
		const h = harness(8);
		const all = [h.pump.pump(), h.pump.pump(), h.pump.pump()];
		await h.settle();
		expect(h.calls).toHaveLength(1);
		h.calls[0].answer(["a"]);
		await h.settle();
		// The two asks during the call collapse into one more round.
		expect(h.calls).toHaveLength(2);
		h.calls[1].answer([]);
		await Promise.all(all);
		expect(h.calls).toHaveLength(2);
	});

	test("each call names a fresh lease id; no lease when leasing is off or no slot is free", async () => {
		const h = harness(1);
		const p = h.pump.pump();
		h.calls[0].answer([]);
		await p;
		const q = h.pump.pump();
		h.calls[1].answer([]);
		await q;
		expect(h.calls.map(c => c.leaseId)).toEqual(["lease-1", "lease-2"]);
		expect(h.calls.every(c => c.recover.length === 0)).toBe(true);
		h.running.add("busy");
		await h.pump.pump();
		h.running.clear();
		h.stopLeasing();
		await h.pump.pump();
		expect(h.calls).toHaveLength(2);
	});

	test("a failed call's lease id is asked about in the next calls, also with no free slot; its tasks start once", async () => {
		const h = harness(2);
		const p = h.pump.pump();
		h.calls[0].fail(timeout());
		await p;
		expect(h.errors).toHaveLength(1);
		expect(h.pump.busy).toBe(false);
		expect(h.pump.lost).toEqual(["lease-1"]);
		// Both slots are taken by other work now: the next pump still asks, for no new task.
		h.running.add("other-1");
		h.running.add("other-2");
		const q = h.pump.pump();
		expect(h.calls[1]).toMatchObject({ slots: 0, recover: ["lease-1"] });
		h.calls[1].answer(
			[],
			[
				{ taskId: "t1", leaseId: "lease-1" },
				{ taskId: "t2", leaseId: "lease-1" }
			]
		);
		await q;
		expect(h.started).toEqual(["t1", "t2"]);
		expect(h.pump.lost).toEqual([]); // the id brought its tasks back: dropped
		expect(h.calls).toHaveLength(2); // a call for no slot is not followed by another
	});

	test("a fresh lease of a task whose previous attempt is still winding down here is started", async () => {
		const h = harness(2);
		h.running.add("t1"); // attempt 1 reported a retryable failure and is still in its finally
		const p = h.pump.pump();
		h.calls[0].answer(["t1"]);
		await h.settle();
		h.calls[1]?.answer([]); // the harness's slot count did not change: one more round, empty
		await p;
		expect(h.started).toEqual(["t1"]);
	});

	test("a recovered task already running here is not started again", async () => {
		const h = harness(2);
		const p = h.pump.pump();
		h.calls[0].fail(timeout());
		await p;
		h.running.add("t1");
		const q = h.pump.pump();
		h.calls[1].answer([], [{ taskId: "t1", leaseId: "lease-1" }]);
		await q;
		expect(h.started).toEqual([]);
	});

	test("the answer of a recovering call lost too: both ids are asked about next", async () => {
		const h = harness(2);
		const p = h.pump.pump();
		h.calls[0].fail(timeout());
		await p;
		const q = h.pump.pump();
		expect(h.calls[1]).toMatchObject({ slots: 2, recover: ["lease-1"] });
		h.calls[1].fail(timeout());
		await q;
		expect(h.pump.lost).toEqual(["lease-1", "lease-2"]);
		const r = h.pump.pump();
		h.calls[2].answer(
			[],
			[
				{ taskId: "t1", leaseId: "lease-1" },
				{ taskId: "t3", leaseId: "lease-2" }
			]
		);
		await r;
		expect(h.started).toEqual(["t1", "t3"]);
		expect(h.pump.lost).toEqual([]);
	});

	test("an id that brings nothing back is kept until recoverForMs passed; a call never sent is not kept", async () => {
		let now = 1_000;
		const h = harness(1, { now: () => now, recoverForMs: 5_000 });
		const p = h.pump.pump();
		h.calls[0].fail(timeout());
		await p;
		now += 4_000;
		const q = h.pump.pump();
		expect(h.calls[1].recover).toEqual(["lease-1"]);
		h.calls[1].answer([]);
		await q;
		expect(h.pump.lost).toEqual(["lease-1"]);
		now += 2_000;
		const r = h.pump.pump();
		expect(h.calls[2].recover).toEqual([]);
		h.calls[2].fail(Object.assign(new Error("no tasks"), { type: "SERVICE_NOT_AVAILABLE" }));
		await r;
		expect(h.pump.lost).toEqual([]);
	});

	test("at most 64 lost ids are kept, the oldest dropped first", async () => {
		const h = harness(1);
		for (let i = 0; i < 70; i++) {
			const p = h.pump.pump();
			h.calls[i].fail(timeout());
			await p;
		}
		expect(h.pump.lost).toHaveLength(64);
		expect(h.pump.lost[0]).toBe("lease-7");
	});
});
