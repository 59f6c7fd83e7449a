/**
 * The task's context source with a fake transporter call: a selection whose node went away is asked
 * of another node within the same deadline; a timeout or another failure degrades at once.
 */
import { taskContext, type ContextSourceDeps } from "../../../src/ai/context-source";

const SELECTION = {
	frames: [{ kind: "file", path: "a.ts", lines: [1, 1], text: "x", tokens: 1 }],
	usedTokens: 1,
	tokenizer: "fake"
};
const rejected = () => Object.assign(new Error("Request is rejected"), { type: "REQUEST_REJECTED" });
const timedOut = () => Object.assign(new Error("Request is timed out"), { type: "REQUEST_TIMEOUT" });

const CONTENT: Record<string, string> = {
	LICENSE: "MIT\n",
	"src/billing/invoice.ts": "export const invoiceTotal = 1;\n",
	"src/other.ts": "export const x = 1;\n"
};
// more paths than one manifest page holds, so the degraded path pages through them
const PATHS = [...Object.keys(CONTENT), ...Array.from({ length: 6_000 }, (_, i) => `gen/file${i}.txt`)].sort();
const manifestPages: number[] = [];
function manifestPage({ offset, limit }: { offset: number; limit: number }) {
	manifestPages.push(offset);
	const files = PATHS.slice(offset, offset + limit).map(path => ({ path, sha256: "0".repeat(64), size: 40 }));
	return { total: PATHS.length, files };
}
const reads: string[][] = [];

function deps(selectAnswers: Array<() => unknown>, timeoutMs = 1000) {
	const selects: Array<{ timeout?: number }> = [];
	const d: ContextSourceDeps = {
		timeoutMs,
		logger: { warn: () => undefined },
		async call<T>(action: string, _params: unknown, opts?: { timeout?: number }): Promise<T> {
			if (action === "projects.access") return { headVersion: 3 } as T;
			if (action === "projects.contextManifest")
				return manifestPage(_params as { offset: number; limit: number }) as T;
			if (action === "projects.readContext") {
				reads.push((_params as { paths: string[] }).paths);
				const files = (_params as { paths: string[] }).paths.map(p => ({ path: p, content: CONTENT[p] }));
				return { version: 3, files, omitted: [] } as T;
			}
			if (action !== "context.select") throw new Error(`unexpected ${action}`);
			selects.push({ timeout: opts?.timeout });
			const next = selectAnswers.shift();
			if (!next) throw new Error("no more answers");
			return next() as T;
		}
	};
	return { d, selects };
}

const req = { taskId: "t1", projectId: "p1", userId: "u1", prompt: "where is a?" };

test("a node that went away with the request: the selection is asked again, within the time left", async () => {
	const { d, selects } = deps([
		() => {
			throw rejected();
		},
		() => SELECTION
	]);
	const ctx = await taskContext(d, req, 4000);
	expect(ctx.state).toBe("selected");
	expect(selects).toHaveLength(2);
	expect(selects[0].timeout).toBe(1000);
	expect(selects[1].timeout).toBeLessThanOrEqual(1000);
});

test("a second lost node degrades with CONTEXT_UNAVAILABLE, after two tries only", async () => {
	const { d, selects } = deps([
		() => {
			throw rejected();
		},
		() => {
			throw rejected();
		},
		() => SELECTION
	]);
	const ctx = await taskContext(d, req, 4000);
	expect(ctx).toMatchObject({ state: "degraded", reason: "CONTEXT_UNAVAILABLE" });
	expect(selects).toHaveLength(2);
});

test("a timeout has spent the deadline: degraded at once, not asked again", async () => {
	const { d, selects } = deps([
		() => {
			throw timedOut();
		},
		() => SELECTION
	]);
	const ctx = await taskContext(d, req, 4000);
	expect(ctx).toMatchObject({ state: "degraded", reason: "CONTEXT_TIMEOUT" });
	expect(selects).toHaveLength(1);
});

test("an error of the selection itself is not retried", async () => {
	const { d, selects } = deps([
		() => {
			throw Object.assign(new Error("boom"), { type: "INTERNAL_ERROR" });
		},
		() => SELECTION
	]);
	expect(await taskContext(d, req, 4000)).toMatchObject({ state: "degraded", reason: "CONTEXT_ERROR" });
	expect(selects).toHaveLength(1);
});

test("degraded: the manifest is paged, the files the prompt names are read whole, the map lists the rest", async () => {
	manifestPages.length = 0;
	reads.length = 0;
	const { d } = deps([
		() => {
			throw timedOut();
		}
	]);
	const ctx = await taskContext(d, { ...req, prompt: "Fix the invoice total", exclude: ["LICENSE"] }, 4000);
	expect(ctx.state).toBe("degraded");
	expect(manifestPages).toEqual([0, 5000]);
	expect(reads).toEqual([["src/billing/invoice.ts"]]);
	expect(ctx.frames.map(f => [f.kind, f.path])).toEqual([
		["file", "src/billing/invoice.ts"],
		["map", undefined]
	]);
	expect(ctx.frames[0].text).toBe(CONTENT["src/billing/invoice.ts"]);
	expect(ctx.frames[1].text).toContain("src/: other.ts");
	expect(ctx.frames[1].text).toContain("gen/: (6000 files)");
	expect(ctx.frames[1].text).not.toContain("LICENSE");
});

test("a task whose submission checked access moments before (leased at insert): no second check, its head version is read", async () => {
	const { d } = deps([() => SELECTION, () => SELECTION]);
	const actions: string[] = [];
	const call = d.call.bind(d);
	const counted: ContextSourceDeps = {
		...d,
		call: <T>(action: string, params: unknown, opts?: { timeout?: number }) => {
			actions.push(action);
			return call<T>(action, params, opts);
		}
	};
	const ctx = await taskContext(counted, { ...req, checkedHeadVersion: 7 }, 4000);
	expect(ctx).toMatchObject({ state: "selected", version: 7 });
	expect(actions).toEqual(["context.select"]);
	// An empty project (version 0) as the submission saw it: nothing is asked at all.
	actions.length = 0;
	const empty = await taskContext(counted, { ...req, checkedHeadVersion: 0 }, 4000);
	expect(empty).toMatchObject({ state: "selected", version: 0, frames: [] });
	expect(actions).toEqual([]);
	// Without it, projects is asked as before.
	await taskContext(counted, req, 4000);
	expect(actions).toEqual(["projects.access", "context.select"]);
});
