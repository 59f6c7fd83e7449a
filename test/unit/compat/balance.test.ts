import { LoadAnnouncer, LoadBoard, type NodeLoad } from "../../../src/compat/balance";

const load = (nodeID: string, slots: number, busy: number, waiting = 0): NodeLoad => ({ nodeID, slots, busy, waiting });

describe("LoadBoard", () => {
	test("picks the node with the most free slots, counting its own picks until the next announcement", () => {
		const b = new LoadBoard({ staleMs: 5_000, now: () => 0, random: () => 0 });
		b.update(load("a", 1, 0));
		b.update(load("b", 3, 0));
		const picks = [0, 1, 2, 3].map(() => b.pick(["a", "b"]));
		expect(picks.filter(p => p === "a")).toHaveLength(1);
		expect(picks.filter(p => p === "b")).toHaveLength(3);
		// A fresh announcement replaces the counted picks.
		b.update(load("b", 3, 0));
		expect(b.pick(["a", "b"])).toBe("b");
	});

	test("with every slot busy: the shortest line per slot", () => {
		const b = new LoadBoard({ staleMs: 5_000, now: () => 0, random: () => 0 });
		b.update(load("a", 2, 2, 4)); // 2 waiting per slot
		b.update(load("b", 8, 8, 8)); // 1 waiting per slot
		expect(b.pick(["a", "b"])).toBe("b");
		b.update(load("c", 1, 0));
		expect(b.pick(["a", "b", "c"])).toBe("c"); // a free slot beats any line
	});

	test("only candidates, only fresh announcements; nothing known → null (Moleculer balances)", () => {
		let now = 0;
		const b = new LoadBoard({ staleMs: 1_000, now: () => now, random: () => 0 });
		expect(b.pick(["a"])).toBeNull();
		b.update(load("a", 4, 0));
		expect(b.pick(["b"])).toBeNull(); // a is not available (not a candidate)
		now = 1_001;
		expect(b.pick(["a"])).toBeNull(); // stale
		b.update(load("a", 4, 0));
		expect(b.pick(["a"])).toBe("a");
		b.forget("a");
		expect(b.pick(["a"])).toBeNull();
	});

	test("ties are broken at random; malformed announcements are ignored", () => {
		let r = 0;
		const b = new LoadBoard({ staleMs: 5_000, now: () => 0, random: () => r });
		b.update(load("a", 2, 0));
		b.update(load("b", 2, 0));
		r = 0.99;
		expect(b.pick(["a", "b"])).toBe("b");
		for (const bad of [
			{ nodeID: "", slots: 1, busy: 0, waiting: 0 },
			{ nodeID: "x", slots: -1, busy: 0, waiting: 0 },
			{ nodeID: "x", slots: 1, busy: Number.NaN, waiting: 0 },
			{ nodeID: 3, slots: 1, busy: 0, waiting: 0 },
			null
		])
			b.update(bad as unknown as NodeLoad);
		expect(b.pick(["x"])).toBeNull();
	});
});

describe("LoadAnnouncer", () => {
	beforeEach(() => jest.useFakeTimers());
	afterEach(() => jest.useRealTimers());

	test("announces at start, after changes at most once per throttle, and every period", () => {
		const sent: NodeLoad[] = [];
		let busy = 0;
		const a = new LoadAnnouncer({
			read: () => load("n", 4, busy),
			send: l => sent.push(l),
			throttleMs: 20,
			everyMs: 1_000
		});
		a.changed(); // before start: nothing
		a.start();
		expect(sent).toHaveLength(1);
		busy = 1;
		a.changed();
		busy = 2;
		a.changed();
		jest.advanceTimersByTime(20);
		expect(sent.map(s => s.busy)).toEqual([0, 2]);
		jest.advanceTimersByTime(1_000);
		expect(sent).toHaveLength(3);
		a.stop();
		a.changed();
		jest.advanceTimersByTime(5_000);
		expect(sent).toHaveLength(3);
	});

	test("a send that throws is not fatal: the next one goes", () => {
		let fail = true;
		const sent: NodeLoad[] = [];
		const a = new LoadAnnouncer({
			read: () => load("n", 1, 0),
			send: l => {
				if (fail) throw new Error("no transporter");
				sent.push(l);
			},
			throttleMs: 10,
			everyMs: 100
		});
		a.start();
		fail = false;
		jest.advanceTimersByTime(100);
		expect(sent).toHaveLength(1);
		a.stop();
	});
});
