import { LeasePump } from "../../../src/ai/lease-pump";

/** A lease call the test answers by hand. */
function harness(slots: number) {
	const calls: Array<{ slots: number; answer: (tasks: string[]) => void; fail: (err: Error) => void }> = [];
	const running = new Set<string>();
	const errors: unknown[] = [];
	let canLease = true;
	const pump = new LeasePump<string>({
		free: () => slots - running.size,
		canLease: () => canLease,
		lease: n => new Promise((resolve, reject) => calls.push({ slots: n, answer: resolve, fail: reject })),
		start: t => void running.add(t),
		onError: err => errors.push(err)
	});
	const settle = () => new Promise(r => setImmediate(r));
	return { pump, calls, running, errors, settle, stopLeasing: () => (canLease = false) };
}

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

	test("a failed lease ends the round and reports; no lease when leasing is off or no slot is free", async () => {
		const h = harness(1);
		const p = h.pump.pump();
		h.calls[0].fail(new Error("down"));
		await p;
		expect(h.errors).toHaveLength(1);
		expect(h.pump.busy).toBe(false);
		h.running.add("busy");
		await h.pump.pump();
		h.running.clear();
		h.stopLeasing();
		await h.pump.pump();
		expect(h.calls).toHaveLength(1);
	});
});
