/** The task event stream's batching: the first delta of a turn leaves at once, the rest of that turn is coalesced. */
import { streamPublisher } from "../../../src/ai/task-runner";

const nextTurn = () => new Promise<void>(r => setImmediate(r));

describe("streamPublisher", () => {
	test("a delta on an idle stream is sent synchronously; later deltas of the same turn go out together on the next turn", async () => {
		const sent: Array<Record<string, unknown>> = [];
		const s = streamPublisher(ev => sent.push(ev));
		s.delta("a");
		expect(sent).toEqual([{ seq: 0, type: "delta", text: "a" }]);
		s.delta("b");
		s.delta("c");
		expect(sent).toHaveLength(1);
		await nextTurn();
		expect(sent).toEqual([
			{ seq: 0, type: "delta", text: "a" },
			{ seq: 1, type: "delta", text: "bc" }
		]);
		// The stream is idle again: the next delta leaves at once.
		await nextTurn();
		s.delta("d");
		expect(sent.at(-1)).toEqual({ seq: 2, type: "delta", text: "d" });
	});

	test("paced deltas (one per turn) are each sent at once, none is merged or lost", async () => {
		const sent: Array<Record<string, unknown>> = [];
		const s = streamPublisher(ev => sent.push(ev));
		for (const t of ["x", "y", "z"]) {
			s.delta(t);
			expect(sent.at(-1)?.text).toBe(t);
			await nextTurn();
		}
		expect(sent.map(e => e.seq)).toEqual([0, 1, 2]);
	});

	test("other events and a model change flush pending text first, so seq order is arrival order", async () => {
		const sent: Array<Record<string, unknown>> = [];
		const s = streamPublisher(ev => sent.push(ev));
		s.delta("a", "m1");
		s.delta("b", "m1");
		s.delta("c", "m2");
		s.delta("d", "m2");
		s.event({ type: "fallback", from: "m1", to: "m2" });
		s.delta("e", "m2");
		await nextTurn();
		expect(sent).toEqual([
			{ seq: 0, type: "delta", text: "a", model: "m1" },
			{ seq: 1, type: "delta", text: "b", model: "m1" },
			{ seq: 2, type: "delta", text: "cd", model: "m2" },
			{ seq: 3, type: "fallback", from: "m1", to: "m2" },
			{ seq: 4, type: "delta", text: "e", model: "m2" }
		]);
		const text = sent
			.filter(e => e.type === "delta")
			.map(e => e.text)
			.join("");
		expect(text).toBe("abcde");
	});

	test("flush() sends what is pending (the runner calls it before the final event)", () => {
		const sent: Array<Record<string, unknown>> = [];
		const s = streamPublisher(ev => sent.push(ev));
		s.delta("a");
		s.delta("b");
		s.flush();
		expect(sent.map(e => e.text)).toEqual(["a", "b"]);
	});
});
