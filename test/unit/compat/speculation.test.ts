import { Speculation } from "../../../src/compat/speculation";

const flush = () => new Promise(r => setImmediate(r));

describe("Speculation", () => {
	const make = (balance: () => number, over: Partial<ConstructorParameters<typeof Speculation>[0]> = {}) => {
		let now = 10_000;
		let reads = 0;
		const s = new Speculation({
			read: async () => (reads++, balance()),
			cover: 3,
			maxAgeMs: 30_000,
			refreshMs: 1_000,
			backoffMs: 5_000,
			now: () => now,
			...over
		});
		return { s, tick: (ms: number) => (now += ms), reads: () => reads };
	};

	it("never speculates on a payer whose balance it has not read, and reads it in the background", async () => {
		const { s, reads } = make(() => 1_000);
		const t = s.track("u", 10, true);
		expect(t.speculate).toBe(false);
		await flush();
		expect(reads()).toBe(1);
		expect(s.known("u")?.available).toBe(1_000);
		t.done(0);
		expect(s.track("u", 10, true).speculate).toBe(true);
	});

	it("speculates only while the balance covers `cover` times everything in flight, this request included", async () => {
		const { s } = make(() => 90);
		s.track("u", 1, true).done(0);
		await flush();
		const a = s.track("u", 10, true); // 90 >= 3 × 10
		const b = s.track("u", 21, true); // 90 <  3 × 31
		expect([a.speculate, b.speculate]).toEqual([true, false]);
		b.done(0);
		a.done(0);
		expect(s.track("u", 30, true).speculate).toBe(true);
		expect(s.track("u", 1, false).speculate).toBe(false); // the caller's own reasons
	});

	it("lowers the estimate by what this node settled, trusts a read for maxAgeMs, and backs off after a refusal", async () => {
		const { s, reads } = make(() => 100, { refreshMs: 60_000 });
		s.track("u", 1, true).done(0);
		await flush();
		s.track("u", 1, true).done(80); // 20 left in the estimate
		expect(s.track("u", 10, true).speculate).toBe(false);
		expect(reads()).toBe(1);
		const { s: s2, tick: tick2 } = make(() => 100, { refreshMs: 60_000 });
		s2.track("p", 1, true).done(0);
		await flush();
		tick2(30_001);
		expect(s2.track("p", 1, true).speculate).toBe(false); // too old
		const { s: s3, tick: tick3 } = make(() => 100);
		s3.track("q", 1, true).done(0);
		await flush();
		const r = s3.track("q", 1, true);
		r.refused();
		r.done(0);
		expect(s3.track("q", 1, true).speculate).toBe(false);
		tick3(5_000);
		await flush();
		expect(s3.track("q", 1, true).speculate).toBe(true);
	});

	it("cover 0 never speculates", async () => {
		const { s } = make(() => 1e9, { cover: 0 });
		s.track("u", 1, true).done(0);
		await flush();
		expect(s.track("u", 1, true).speculate).toBe(false);
	});
});
