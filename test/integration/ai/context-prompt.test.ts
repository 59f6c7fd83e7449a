/**
 * The prompt of a task built from `context.select`, through the real gateway, tasks, projects,
 * payments and ai services, with a TS stand-in for the context service (test/support/fake-context.ts)
 * and a local server speaking OpenAI's protocol that records every prompt: the frames and their line
 * ranges, include/exclude, the task view's `context`, and the degraded path (no context node, a node
 * that never answers, one that fails) that still runs the task, within the timeout.
 */
import type { ServiceBroker } from "moleculer";
import { createTestDatabase, eventually, type TestDatabase } from "../../support/env";
import { startFakeOpenAI } from "../../support/fake-openai";
import type { FakeServer } from "../../support/fake-llm-server";
import { fakeContextService, fakeTokens, type FakeContextState } from "../../support/fake-context";
import { selectBudget } from "../../../src/ai/context-source";
import AiService from "../../../services/ai.service";
import { api, makeUser, startTasksNode, type TestNode, type TestUser } from "../tasks/helpers";

jest.setTimeout(60_000);

const CONTEXT_TIMEOUT_MS = 700;
let db: TestDatabase;
let node: TestNode;
let broker: ServiceBroker;
let openai: FakeServer;
let ctxState: FakeContextState;
let ctxSchema: ReturnType<typeof fakeContextService>["schema"];
let user: TestUser;

const BIG = Array.from({ length: 400 }, (_, i) => `export const value${i} = ${i}; // line ${i + 1}`).join("\n") + "\n";
const FILES: Record<string, string> = {
	"src/billing/invoice.ts":
		"export function invoiceTotal(lines: number[]) {\n\treturn lines.reduce((a, b) => a + b, 0);\n}\n",
	"src/billing/tax.ts": "export const TAX = 0.2;\n",
	"src/big/values.ts": BIG,
	"docs/guide.md": "# Guide\nHow invoices work.\n",
	"test/invoice.test.ts": "test('total', () => {});\n",
	LICENSE: "MIT licence text\n"
};

beforeAll(async () => {
	db = await createTestDatabase();
	openai = await startFakeOpenAI();
	openai.setDefault({ kind: "ok", chunks: ["The", " answer."], usage: true });
	const fake = fakeContextService();
	ctxState = fake.state;
	ctxSchema = fake.schema;
	node = await startTasksNode(db, [fake.schema], {
		AI_DEV_PROVIDER: "false",
		AI_POLL_MS: "50",
		TASK_HEARTBEAT_MS: "200",
		OPENAI_API_KEY: "sk-test",
		OPENAI_BASE_URL: openai.url,
		// Small enough that the big file does not fit whole: it comes as a "definitions" frame.
		AI_MAX_CONTEXT_TOKENS: "1500",
		CONTEXT_TIMEOUT_MS: String(CONTEXT_TIMEOUT_MS)
	});
	// The ai service runs in the node too (startTasksNode hosts the queue side only).
	node.broker.createService(AiService);
	await eventually(() => !!node.broker.getLocalService("ai"), 10_000);
	broker = node.broker;
	user = await makeUser(node, "team");
	const v = await api(node, "POST", `/projects/${user.projectId}/versions`, user.token, {
		baseVersion: 0,
		message: "initial",
		changes: Object.entries(FILES).map(([path, content]) => ({ op: "add", path, content }))
	});
	expect(v.status).toBe(201);
});

afterAll(async () => {
	await node?.stop();
	await openai?.close();
	await db?.drop();
});

beforeEach(() => {
	ctxState.mode = "ok";
	ctxState.selects.length = 0;
	openai.requests.length = 0;
});

async function runTask(body: Record<string, unknown>) {
	const started = Date.now();
	const submit = await api(node, "POST", "/tasks", user.token, {
		projectId: user.projectId,
		kind: "chat",
		model: "gpt-4o-mini",
		...body
	});
	expect(submit.status).toBe(202);
	const id: string = submit.body.task.id;
	let view: Record<string, any> = {}; // the task view, checked field by field
	await eventually(async () => {
		view = (await api(node, "GET", `/tasks/${id}`, user.token)).body;
		return ["succeeded", "failed", "cancelled"].includes(view.state);
	}, 30_000);
	const prompt = String(
		(openai.requests.at(-1)?.body.messages as Array<{ content: string }> | undefined)?.[1]?.content ?? ""
	);
	return { id, view, prompt, ms: Date.now() - started };
}

const contextMetric = (state: string, reason: string) =>
	Number(broker.metrics.getMetric("ai.context.total")?.get({ state, reason })?.value ?? 0);

describe("prompt from context.select", () => {
	test("each frame names its file and line range; the task view shows path, lines and tokens", async () => {
		const { view, prompt } = await runTask({ prompt: "How is the invoice total computed?" });
		expect(view.state).toBe("succeeded");
		expect(ctxState.selects).toHaveLength(1);
		const sel = ctxState.selects[0];
		expect(sel).toMatchObject({
			projectId: user.projectId,
			version: 1,
			userId: user.id,
			query: "How is the invoice total computed?"
		});
		expect(sel.budgetTokens).toBe(selectBudget(1500));
		expect(sel.include).toBeUndefined();

		expect(view.contextState).toBe("selected");
		expect(view.contextReason).toBeNull();
		const ctx = view.context as Array<{ kind: string; path?: string; lines?: [number, number]; tokens: number }>;
		// Ranked by the fake (query words in the path): the two invoice files first, whole, then the rest.
		expect(ctx[0]).toEqual({
			kind: "file",
			path: "src/billing/invoice.ts",
			lines: [1, 3],
			tokens: fakeTokens(FILES["src/billing/invoice.ts"])
		});
		expect(ctx[1]).toMatchObject({ kind: "file", path: "test/invoice.test.ts", lines: [1, 1] });
		const big = ctx.find(c => c.path === "src/big/values.ts")!;
		expect(big.kind).toBe("definitions");
		expect(big.lines![0]).toBe(1);
		expect(big.lines![1]).toBeLessThan(400);
		for (const c of ctx)
			expect(Object.keys(c).sort()).toEqual(
				c.kind === "map" ? ["kind", "tokens"] : ["kind", "lines", "path", "tokens"]
			);

		expect(prompt.startsWith("How is the invoice total computed?\n\nProject context:")).toBe(true);
		expect(prompt).toContain(`--- src/billing/invoice.ts (lines 1-3) ---\n${FILES["src/billing/invoice.ts"]}`);
		expect(prompt).toContain(
			`--- src/big/values.ts definitions (lines 1-${big.lines![1]}) ---\nexport const value0 = 0;`
		);
		expect(prompt).not.toContain(`value${big.lines![1]} =`);
		// What the view lists is exactly what the prompt holds, in the same order.
		const headers = [...prompt.matchAll(/^--- (.+?)(?: definitions)?(?: \(lines \d+-\d+\))? ---$/gm)].map(
			m => m[1]
		);
		expect(headers).toEqual(ctx.map(c => c.path ?? "repository map"));
		const used = ctx.reduce((n, c) => n + c.tokens, 0);
		expect(used).toBeLessThanOrEqual(1500);
	});

	test("include comes first and exclude wins; both reach context.select and are kept with the task", async () => {
		const { view, prompt } = await runTask({
			prompt: "Explain the invoice",
			include: ["docs/**", "src/billing/tax.ts"],
			exclude: ["test/**", "LICENSE"]
		});
		expect(view.state).toBe("succeeded");
		expect(ctxState.selects[0]).toMatchObject({
			include: ["docs/**", "src/billing/tax.ts"],
			exclude: ["test/**", "LICENSE"]
		});
		const paths = (view.context as Array<{ path?: string }>).map(c => c.path);
		expect(paths.slice(0, 2)).toEqual(["docs/guide.md", "src/billing/tax.ts"]);
		expect(paths).not.toContain("test/invoice.test.ts");
		expect(prompt).not.toContain("--- test/invoice.test.ts");
		expect(prompt).not.toContain("MIT licence text");
	});

	test("bad globs are refused with 422 naming the field; globs that match nothing give an empty context", async () => {
		for (const [body, field] of [
			[{ include: ["../etc/passwd"] }, "include[0]"],
			[{ exclude: ["src", "/abs"] }, "exclude[1]"],
			[{ include: ["a/**b"] }, "include[0]"]
		] as const) {
			const r = await api(node, "POST", "/tasks", user.token, {
				projectId: user.projectId,
				kind: "chat",
				prompt: "x",
				...body
			});
			expect(r.status).toBe(422);
			expect(r.body.error.code).toBe("VALIDATION_ERROR");
			expect(r.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
		}
		const tooMany = await api(node, "POST", "/tasks", user.token, {
			projectId: user.projectId,
			kind: "chat",
			prompt: "x",
			include: Array.from({ length: 51 }, (_, i) => `f${i}`)
		});
		expect(tooMany.status).toBe(422);
		const notString = await api(node, "POST", "/tasks", user.token, {
			projectId: user.projectId,
			kind: "chat",
			prompt: "x",
			include: "src"
		});
		expect(notString.status).toBe(422);

		const { view } = await runTask({ prompt: "anything", include: ["nothing/**"], exclude: ["**"] });
		expect(view.state).toBe("succeeded");
		expect(view.context).toEqual([]);
		expect(view.contextState).toBe("selected");
	});
});

describe("degraded context", () => {
	test("a context node that never answers: the task runs after CONTEXT_TIMEOUT_MS on the included paths and the map", async () => {
		ctxState.mode = "hang";
		const before = contextMetric("degraded", "CONTEXT_TIMEOUT");
		const { view, prompt } = await runTask({
			prompt: "Explain the tax",
			include: ["src/billing/tax.ts"],
			exclude: ["LICENSE"]
		});
		expect(view.state).toBe("succeeded");
		expect(ctxState.selects).toHaveLength(1);
		expect(view.contextState).toBe("degraded");
		expect(view.contextReason).toBe("CONTEXT_TIMEOUT");
		const ctx = view.context as Array<{ kind: string; path?: string; tokens: number }>;
		expect(ctx.map(c => c.kind)).toEqual(["file", "map"]);
		expect(ctx[0]).toEqual({
			kind: "file",
			path: "src/billing/tax.ts",
			lines: [1, 1],
			tokens: Math.ceil(Buffer.byteLength(FILES["src/billing/tax.ts"]) / 3)
		});
		expect(prompt).toContain(`--- src/billing/tax.ts (lines 1-1) ---\n${FILES["src/billing/tax.ts"]}`);
		expect(prompt).toContain("--- repository map ---\n");
		expect(prompt).toContain("src/billing/: invoice.ts tax.ts");
		expect(prompt).not.toContain("LICENSE");
		expect(prompt).not.toContain("invoiceTotal");
		expect(contextMetric("degraded", "CONTEXT_TIMEOUT")).toBe(before + 1);
		ctxState.releaseHangs();
	});

	test("no context node at all: degraded (CONTEXT_UNAVAILABLE) without asking anyone", async () => {
		await broker.destroyService(broker.getLocalService("context")!);
		try {
			const { view, prompt } = await runTask({ prompt: "What is here?" });
			expect(view.state).toBe("succeeded");
			expect(view.contextState).toBe("degraded");
			expect(view.contextReason).toBe("CONTEXT_UNAVAILABLE");
			// No include: the repository map only, every path listed.
			expect((view.context as Array<{ kind: string }>).map(c => c.kind)).toEqual(["map"]);
			for (const p of ["docs/: guide.md", "src/big/: values.ts", "./: LICENSE"]) expect(prompt).toContain(p);
			expect(ctxState.selects).toHaveLength(0);
		} finally {
			broker.createService(ctxSchema);
			await eventually(() => !!broker.getLocalService("context"));
		}
	});

	test("no context node: the files the prompt's words name come whole from the manifest, within the budget", async () => {
		await broker.destroyService(broker.getLocalService("context")!);
		try {
			const { view, prompt } = await runTask({
				prompt: "How is the invoice total computed?",
				exclude: ["LICENSE"]
			});
			expect(view.state).toBe("succeeded");
			expect(view.contextState).toBe("degraded");
			expect(view.contextReason).toBe("CONTEXT_UNAVAILABLE");
			const ctx = view.context as Array<{ kind: string; path?: string; tokens: number }>;
			// the two files named by "invoice" (the subject first: its stem), whole; the big file is not named
			expect(ctx.map(c => c.path ?? c.kind)).toEqual(["src/billing/invoice.ts", "test/invoice.test.ts", "map"]);
			expect(prompt).toContain(`--- src/billing/invoice.ts (lines 1-3) ---\n${FILES["src/billing/invoice.ts"]}`);
			expect(prompt).toContain("src/big/: values.ts");
			expect(prompt).not.toContain("value0 =");
			expect(prompt).not.toContain("LICENSE");
			expect(ctx.reduce((n, c) => n + c.tokens, 0)).toBeLessThanOrEqual(1500);
		} finally {
			broker.createService(ctxSchema);
			await eventually(() => !!broker.getLocalService("context"));
		}
	});

	test("a context node that fails: degraded (CONTEXT_ERROR), and the next task is selected again", async () => {
		ctxState.mode = "error";
		const failed = await runTask({ prompt: "q" });
		expect(failed.view.state).toBe("succeeded");
		expect(failed.view.contextState).toBe("degraded");
		expect(failed.view.contextReason).toBe("CONTEXT_ERROR");
		ctxState.mode = "ok";
		const ok = await runTask({ prompt: "q" });
		expect(ok.view.contextState).toBe("selected");
	});
});
