/**
 * GroupCommit (src/payments/group-commit.ts): a lone operation goes at once; what arrives while
 * batches are in flight goes together next; at most maxInFlight batches and maxBatch operations; with
 * keyOf, a key is never in two batches in flight and keeps its order.
 */
import { GroupCommit } from "../../../src/payments/group-commit";

interface Op {
	key: string;
	n: number;
}

/** A GroupCommit whose batches finish when the test says so; records each batch's operations. */
function harness(o: { maxBatch?: number; maxInFlight?: number; keyed: boolean }) {
	const batches: Op[][] = [];
	const finish: Array<() => void> = [];
	const flying = new Map<string, number>();
	let sharedKeys = 0;
	const gc = new GroupCommit<Op, number>({
		maxBatch: o.maxBatch ?? 64,
		maxInFlight: o.maxInFlight ?? 2,
		keyOf: o.keyed ? op => op.key : undefined,
		run: ops => {
			batches.push(ops);
			const keys = [...new Set(ops.map(op => op.key))];
			for (const k of keys) {
				if (flying.has(k)) sharedKeys++;
				flying.set(k, (flying.get(k) ?? 0) + 1);
			}
			return new Promise(resolve =>
				finish.push(() => {
					for (const k of keys) {
						const n = flying.get(k)! - 1;
						if (n) flying.set(k, n);
						else flying.delete(k);
					}
					resolve(ops.map(op => ({ status: "fulfilled" as const, value: op.n })));
				})
			);
		}
	});
	const settleNext = async () => {
		finish.shift()!();
		await new Promise(r => setImmediate(r));
	};
	/** Batches that went out while another batch with one of their keys was in flight. */
	return { gc, batches, settleNext, inFlight: () => finish.length, sharedKeys: () => sharedKeys };
}

const ns = (b: Op[]) => b.map(o => o.n);

test("a lone operation goes at once; what arrives meanwhile goes together, two batches in flight at most", async () => {
	const h = harness({ keyed: false });
	const all = Array.from({ length: 10 }, (_, n) => h.gc.submit({ key: `u${n}`, n }));
	expect(h.batches.map(ns)).toEqual([[0], [1]]);
	await h.settleNext();
	expect(h.batches.map(ns)).toEqual([[0], [1], [2, 3, 4, 5, 6, 7, 8, 9]]);
	await h.settleNext();
	await h.settleNext();
	expect(await Promise.all(all)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
	expect(h.gc.pending).toBe(0);
});

test("maxBatch caps a batch", async () => {
	const h = harness({ keyed: false, maxBatch: 3, maxInFlight: 1 });
	const all = Array.from({ length: 7 }, (_, n) => h.gc.submit({ key: "u", n }));
	expect(h.batches.map(ns)).toEqual([[0]]);
	await h.settleNext();
	expect(h.batches.map(ns)).toEqual([[0], [1, 2, 3]]);
	await h.settleNext();
	await h.settleNext();
	expect(h.batches.map(ns)).toEqual([[0], [1, 2, 3], [4, 5, 6]]);
	expect(await Promise.all(all)).toEqual([0, 1, 2, 3, 4, 5, 6]);
});

test("keyed: one hot key's burst is two batches, not three; the second waits for the first", async () => {
	const unkeyed = harness({ keyed: false });
	const keyed = harness({ keyed: true });
	for (const h of [unkeyed, keyed]) for (let n = 0; n < 50; n++) void h.gc.submit({ key: "hot", n });
	// Arrival order alone: the second operation goes alone behind the first one's lock.
	expect(unkeyed.batches.map(b => b.length)).toEqual([1, 1]);
	expect(keyed.batches.map(b => b.length)).toEqual([1]);
	expect(keyed.inFlight()).toBe(1);
	await unkeyed.settleNext();
	await keyed.settleNext();
	expect(unkeyed.batches.map(b => b.length)).toEqual([1, 1, 48]);
	expect(keyed.batches.map(b => b.length)).toEqual([1, 49]);
	expect(ns(keyed.batches[1])).toEqual(Array.from({ length: 49 }, (_, i) => i + 1));
	// Unkeyed, the second and third batches each went out beside another batch of the same key.
	expect([unkeyed.sharedKeys(), keyed.sharedKeys()]).toEqual([2, 0]);
});

test("keyed: other keys pass a waiting key, a key keeps its order, and a key is never in two batches in flight", async () => {
	const h = harness({ keyed: true, maxBatch: 2 });
	const out: number[] = [];
	const sub = (key: string, n: number) => h.gc.submit({ key, n }).then(v => void out.push(v));
	const all = [sub("a", 0), sub("a", 1), sub("b", 2), sub("a", 3), sub("b", 4), sub("c", 5)];
	// a0 goes at once; a1 waits for it; b2 passes it into the second slot; a3, b4 and c5 wait.
	expect(h.batches.map(ns)).toEqual([[0], [2]]);
	await h.settleNext(); // [a0] done: a1 and a3 go (a in order; the batch is full at 2); b4 waits for b2
	expect(h.batches.map(ns)).toEqual([[0], [2], [1, 3]]);
	await h.settleNext(); // [b2] done: b4, then c5
	expect(h.batches.map(ns)).toEqual([[0], [2], [1, 3], [4, 5]]);
	await h.settleNext();
	await h.settleNext();
	await Promise.all(all);
	for (const key of ["a", "b"]) {
		const mine = h.batches.flat().filter(o => o.key === key);
		expect(ns(mine)).toEqual([...ns(mine)].sort((x, y) => x - y));
	}
	expect(out.sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5]);
	expect(h.sharedKeys()).toBe(0);
	expect(h.gc.pending).toBe(0);
});

test("a failed batch rejects each of its operations; the next batch still goes", async () => {
	let calls = 0;
	const gc = new GroupCommit<Op, number>({
		maxBatch: 8,
		maxInFlight: 1,
		keyOf: op => op.key,
		run: async ops => {
			if (calls++ === 0) throw new Error("connection lost");
			return ops.map(op => ({ status: "fulfilled" as const, value: op.n }));
		}
	});
	const first = gc.submit({ key: "a", n: 0 });
	const second = gc.submit({ key: "a", n: 1 });
	await expect(first).rejects.toThrow("connection lost");
	await expect(second).resolves.toBe(1);
	expect(gc.pending).toBe(0);
});
