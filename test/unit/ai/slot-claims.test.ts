import type { LeasedTask } from "../../../src/tasks/contract";
import { SlotClaims } from "../../../src/ai/slot-claims";

function worker(slots: number) {
	const running: string[] = [];
	const events: string[] = [];
	let stopping = false;
	const claims: SlotClaims = new SlotClaims({
		nodeId: "w1",
		free: () => slots - running.length - claims.count,
		canClaim: () => !stopping,
		start: task => void running.push(task.taskId),
		released: () => void events.push("released"),
		newLeaseId: () => `lease-${events.push("lease")}`
	});
	return { claims, running, events, stop: () => (stopping = true) };
}

const task = (id: string) => ({ taskId: id, leaseId: "l" }) as LeasedTask;

describe("SlotClaims", () => {
	test("a claimed slot is not free to anyone else until it is started or given back", () => {
		const w = worker(2);
		const a = w.claims.claim();
		const b = w.claims.claim();
		expect(a && b).toBeTruthy();
		expect(w.claims.claim()).toBeNull();
		expect(w.claims.count).toBe(2);
		a!.start(task("t1"));
		expect(w.running).toEqual(["t1"]);
		expect(w.claims.count).toBe(1);
		expect(w.claims.claim()).toBeNull();
		b!.release();
		expect(w.events).toContain("released");
		expect(w.claims.count).toBe(0);
		expect(w.claims.claim()).not.toBeNull();
	});

	test("only the first of start / release counts: a slot is never freed twice nor a task started twice", () => {
		const w = worker(1);
		const a = w.claims.claim()!;
		a.start(task("t1"));
		a.release();
		a.start(task("t1"));
		expect(w.running).toEqual(["t1"]);
		expect(w.claims.count).toBe(0);
		expect(w.events.filter(e => e === "released")).toEqual([]);
		const w2 = worker(1);
		const b = w2.claims.claim()!;
		b.release();
		b.release();
		b.start(task("t2"));
		expect(w2.running).toEqual([]);
		expect(w2.claims.count).toBe(0);
		expect(w2.events.filter(e => e === "released")).toHaveLength(1);
	});

	test("each claim has its own lease id; a stopping worker offers none", () => {
		const w = worker(4);
		const a = w.claims.claim()!;
		const b = w.claims.claim()!;
		expect(a.leaseId).not.toBe(b.leaseId);
		expect(w.claims.nodeId).toBe("w1");
		w.stop();
		expect(w.claims.claim()).toBeNull();
	});
});
