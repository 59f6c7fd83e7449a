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

function deps(selectAnswers: Array<() => unknown>, timeoutMs = 1000) {
	const selects: Array<{ timeout?: number }> = [];
	const d: ContextSourceDeps = {
		timeoutMs,
		logger: { warn: () => undefined },
		async call<T>(action: string, _params: unknown, opts?: { timeout?: number }): Promise<T> {
			if (action === "projects.access") return { headVersion: 3 } as T;
			if (action === "projects.readContext") return { version: 3, files: [], omitted: [] } as T;
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
