/** The per-node SSE relay: per-user stream counting and delta replay. */
import { TaskStreamHub } from "../../../src/tasks/stream-hub";

describe("TaskStreamHub", () => {
	test("openStream counts per user up to the cap; release is idempotent and frees exactly one place", () => {
		const hub = new TaskStreamHub();
		const a1 = hub.openStream("a", 2)!;
		const a2 = hub.openStream("a", 2)!;
		expect(hub.openStream("a", 2)).toBeNull();
		expect(hub.openStream("b", 2)).not.toBeNull();
		a1();
		a1();
		expect(hub.openStreams("a")).toBe(1);
		const a3 = hub.openStream("a", 2);
		expect(a3).not.toBeNull();
		expect(hub.openStream("a", 2)).toBeNull();
		a2();
		a3!();
		expect(hub.openStreams("a")).toBe(0);
	});

	test("missed() replays the deltas of the current run after a seq, nothing from another run", () => {
		const hub = new TaskStreamHub();
		hub.onState({ taskId: "t", userId: "u", state: "running", version: 3 });
		for (let seq = 0; seq < 4; seq++)
			hub.onStream({ taskId: "t", userId: "u", seq, type: "delta", text: `d${seq}` });
		expect(hub.missed("t", 3, 1).map(d => d.seq)).toEqual([2, 3]);
		expect(hub.missed("t", 2, -1)).toEqual([]);
		hub.onState({ taskId: "t", userId: "u", state: "succeeded", version: 4 });
		expect(hub.missed("t", 3, -1)).toEqual([]);
	});
});
