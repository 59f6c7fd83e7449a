import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Errors } from "moleculer";
import { OutcomeSpool } from "../../../src/ai/outcome-spool";
import { replaySpool, reportDurably } from "../../../src/ai/report";

const quiet = { warn: () => undefined, info: () => undefined, error: () => undefined };
const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
const outcome = (n: number) => ({
	taskId: uuid(n),
	leaseId: uuid(1000 + n),
	result: { text: `done ${n}` },
	usage: { promptTokens: 1, completionTokens: 2 },
	costCredits: 3
});
const leaseLost = () => new Errors.MoleculerClientError("This lease is no longer valid", 409, "LEASE_LOST");
const down = () =>
	new Errors.MoleculerError("A dependency of this service is unavailable", 503, "DEPENDENCY_UNAVAILABLE");

let dir: string;
beforeEach(() => {
	dir = fs.mkdtempSync(path.join(os.tmpdir(), "outcome-spool-"));
});
afterEach(() => {
	jest.restoreAllMocks();
	fs.rmSync(dir, { recursive: true, force: true });
});
const files = () => fs.readdirSync(dir).sort();

test("an outcome put is on disk as one file, read back whole, replaced by a second put, gone after remove", async () => {
	const spool = new OutcomeSpool(dir, "ns");
	await spool.put("tasks.complete", outcome(1));
	expect(files()).toEqual([path.basename(spool.fileOf(outcome(1)))]);
	const { outcomes, corrupt } = await spool.list();
	expect(corrupt).toEqual([]);
	expect(outcomes).toEqual([{ action: "tasks.complete", params: outcome(1), at: expect.any(Number) }]);
	await spool.put("tasks.fail", { ...outcome(1), error: { code: "X", message: "x" } });
	expect(files()).toHaveLength(1);
	expect((await spool.list()).outcomes[0].action).toBe("tasks.fail");
	await spool.remove(outcome(1));
	await spool.remove(outcome(1)); // missing is fine
	expect(files()).toEqual([]);
	expect((await spool.list()).outcomes).toEqual([]);
});

test("a directory that does not exist yet lists nothing; put creates it", async () => {
	const spool = new OutcomeSpool(path.join(dir, "a", "b"), "ns");
	expect(await spool.list()).toEqual({ outcomes: [], corrupt: [] });
	await spool.put("tasks.complete", outcome(1));
	expect((await spool.list()).outcomes).toHaveLength(1);
});

test("a crash between write and rename leaves no outcome: the temporary file is skipped, and removed once stale", async () => {
	let now = Date.now();
	const spool = new OutcomeSpool(dir, "ns", { staleTmpMs: 60_000, now: () => now });
	// What a put that died after its fsync but before its rename leaves behind.
	const tmp = `${spool.fileOf(outcome(1))}.4242.0f0f.tmp`;
	fs.writeFileSync(tmp, JSON.stringify({ action: "tasks.complete", params: outcome(1), at: now }));
	await spool.put("tasks.complete", outcome(2));
	expect((await spool.list()).outcomes.map(o => o.params.taskId)).toEqual([uuid(2)]);
	expect(fs.existsSync(tmp)).toBe(true); // a put of another process may still be about to rename it
	now += 61_000;
	expect((await spool.list()).outcomes.map(o => o.params.taskId)).toEqual([uuid(2)]);
	expect(fs.existsSync(tmp)).toBe(false);
});

test("a put whose rename fails rejects (the outcome is not durable) and leaves nothing behind", async () => {
	const spool = new OutcomeSpool(dir, "ns");
	jest.spyOn(fsp, "rename").mockRejectedValueOnce(Object.assign(new Error("EIO"), { code: "EIO" }));
	await expect(spool.put("tasks.complete", outcome(1))).rejects.toThrow("EIO");
	expect(files()).toEqual([]);
	expect((await spool.list()).outcomes).toEqual([]);
});

test("the content is fsynced before the rename", async () => {
	const order: string[] = [];
	const realOpen = fsp.open.bind(fsp);
	jest.spyOn(fsp, "open").mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
		const fh = await realOpen(...args);
		const sync = fh.sync.bind(fh);
		fh.sync = async () => {
			order.push(`sync ${String(args[0]).endsWith(".tmp") ? "file" : "dir"}`);
			return sync();
		};
		return fh;
	});
	const realRename = fsp.rename.bind(fsp);
	jest.spyOn(fsp, "rename").mockImplementation(async (a, b) => {
		order.push("rename");
		return realRename(a, b);
	});
	await new OutcomeSpool(dir, "ns").put("tasks.complete", outcome(1));
	expect(order).toEqual(["sync file", "rename", "sync dir"]);
});

test("corrupt files (torn JSON, wrong shape, content of another name) are moved aside and do not hide the others", async () => {
	const spool = new OutcomeSpool(dir, "ns");
	await spool.put("tasks.complete", outcome(1));
	const torn = spool.fileOf(outcome(2));
	fs.writeFileSync(torn, '{"action":"tasks.complete","params":{"taskId":"');
	const shape = spool.fileOf(outcome(3));
	fs.writeFileSync(shape, JSON.stringify({ action: "tasks.delete", params: outcome(3) }));
	const misnamed = spool.fileOf(outcome(4));
	fs.writeFileSync(misnamed, JSON.stringify({ action: "tasks.complete", params: outcome(5), at: 1 }));
	const { outcomes, corrupt } = await spool.list();
	expect(outcomes.map(o => o.params.taskId)).toEqual([uuid(1)]);
	expect(corrupt.sort()).toEqual([torn, shape, misnamed].map(f => path.basename(f)).sort());
	for (const f of [torn, shape, misnamed]) {
		expect(fs.existsSync(f)).toBe(false);
		expect(fs.existsSync(`${f}.corrupt`)).toBe(true);
	}
	expect((await spool.list()).corrupt).toEqual([]); // moved aside once
});

test("each namespace sees only its own outcomes in a shared directory", async () => {
	const a = new OutcomeSpool(dir, "cluster-a");
	const b = new OutcomeSpool(dir, "cluster~b/../x");
	await a.put("tasks.complete", outcome(1));
	await b.put("tasks.complete", outcome(2));
	expect((await a.list()).outcomes.map(o => o.params.taskId)).toEqual([uuid(1)]);
	expect((await b.list()).outcomes.map(o => o.params.taskId)).toEqual([uuid(2)]);
	expect(files().every(f => !f.includes("/"))).toBe(true);
});

test("concurrent puts, removes and lists (two spools on one directory) lose nothing and read nothing torn", async () => {
	const a = new OutcomeSpool(dir, "ns");
	const b = new OutcomeSpool(dir, "ns");
	const ids = Array.from({ length: 60 }, (_, i) => i + 1);
	const seen: number[] = [];
	let listing = true;
	const lister = (async () => {
		while (listing) {
			const { corrupt } = await b.list();
			seen.push(corrupt.length);
		}
	})();
	// The same outcome put by both at once, and others put then removed, in parallel.
	await Promise.all([
		...ids.map(n => (n % 2 ? a : b).put("tasks.complete", outcome(n))),
		...ids.map(n => (n % 2 ? b : a).put("tasks.complete", outcome(n))),
		...ids.map(async n => {
			await a.put("tasks.fail", outcome(100 + n));
			await b.remove(outcome(100 + n));
		})
	]);
	listing = false;
	await lister;
	expect(seen.every(n => n === 0)).toBe(true);
	const { outcomes, corrupt } = await a.list();
	expect(corrupt).toEqual([]);
	expect(outcomes.map(o => o.params.taskId).sort()).toEqual(ids.map(uuid).sort());
	expect(files().filter(f => f.endsWith(".tmp"))).toEqual([]);
});

describe("reportDurably", () => {
	test("the outcome is on disk before the first send and deleted once the tasks service accepts it", async () => {
		const spool = new OutcomeSpool(dir, "ns");
		const onDisk: boolean[] = [];
		const answers: Array<Error | "ok"> = [down(), "ok"];
		const r = await reportDurably(
			{
				spool,
				call: async () => {
					onDisk.push(fs.existsSync(spool.fileOf(outcome(1))));
					const a = answers.shift()!;
					if (a !== "ok") throw a;
					return { ok: true };
				},
				stopping: () => false,
				logger: quiet,
				sleep: async () => undefined
			},
			"tasks.complete",
			outcome(1)
		);
		expect(r).toBe("accepted");
		expect(onDisk).toEqual([true, true]);
		expect(files()).toEqual([]);
	});

	test("LEASE_LOST deletes it; a stopping worker keeps it for the next start; a refusal moves it aside", async () => {
		const spool = new OutcomeSpool(dir, "ns");
		const deps = (err: Error, stopping = false) => ({
			spool,
			call: async () => {
				throw err;
			},
			stopping: () => stopping,
			logger: quiet,
			sleep: async () => undefined
		});
		await expect(reportDurably(deps(leaseLost()), "tasks.complete", outcome(1))).resolves.toBe("lost");
		await expect(reportDurably(deps(down(), true), "tasks.complete", outcome(2))).resolves.toBe("abandoned");
		const bad = new Errors.ValidationError("bad", "VALIDATION_ERROR", []);
		await expect(reportDurably(deps(bad), "tasks.complete", outcome(3))).rejects.toBe(bad);
		expect((await spool.list()).outcomes.map(o => o.params.taskId)).toEqual([uuid(2)]);
		expect(fs.existsSync(`${spool.fileOf(outcome(3))}.rejected`)).toBe(true);
	});

	test("a spool that cannot be written costs durability only: the outcome is still reported", async () => {
		const file = path.join(dir, "not-a-dir");
		fs.writeFileSync(file, "");
		const warnings: string[] = [];
		const r = await reportDurably(
			{
				spool: new OutcomeSpool(file, "ns"),
				call: async () => ({ ok: true }),
				stopping: () => false,
				logger: { warn: (m: unknown) => void warnings.push(String(m)) }
			},
			"tasks.complete",
			outcome(1)
		);
		expect(r).toBe("accepted");
		expect(warnings.join()).toMatch(/could not be spooled/);
	});
});

describe("replaySpool", () => {
	test("sends every outcome left by a previous run with backoff, deletes the ones that ended, keeps the abandoned", async () => {
		const before = new OutcomeSpool(dir, "ns");
		for (const n of [1, 2, 3, 4]) await before.put(n === 4 ? "tasks.fail" : "tasks.complete", outcome(n));
		fs.writeFileSync(path.join(dir, "ns~garbage~x.json"), "{");
		// The worker that starts: tasks is unreachable at first (not discovered yet, then PostgreSQL down).
		const spool = new OutcomeSpool(dir, "ns");
		const calls: Array<{ action: string; taskId: string }> = [];
		const tries = new Map<string, number>();
		let stopping = false;
		const summary = await replaySpool(
			{
				call: async (action, p) => {
					const { taskId } = p as { taskId: string };
					calls.push({ action, taskId });
					const n = (tries.get(taskId) ?? 0) + 1;
					tries.set(taskId, n);
					if (n === 1) throw new Errors.ServiceNotFoundError({ action } as never);
					if (n === 2) throw down();
					if (taskId === uuid(2)) throw leaseLost();
					if (taskId === uuid(3)) {
						stopping = true;
						throw down();
					}
					return { ok: true };
				},
				stopping: () => stopping,
				logger: quiet,
				sleep: async () => undefined
			},
			spool
		);
		expect(summary).toEqual({ found: 4, accepted: 2, lost: 1, abandoned: 1, rejected: 0, corrupt: 1 });
		expect(calls.filter(c => c.taskId === uuid(4)).every(c => c.action === "tasks.fail")).toBe(true);
		expect([...tries.values()].every(n => n === 3)).toBe(true);
		expect((await spool.list()).outcomes.map(o => o.params.taskId)).toEqual([uuid(3)]);
	});
});
