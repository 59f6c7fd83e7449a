/**
 * The ai worker end to end: a fake tasks service (the contract's tasks side, in memory) hands out
 * leases; the real projects and payments services hold the files, versions and credits; the
 * providers are local servers speaking OpenAI's and Anthropic's wire protocols.
 */
import { randomUUID } from "node:crypto";
import type { ServiceBroker } from "moleculer";
import { TestDatabase, bearerFor, createTestDatabase, eventually, startTestNode } from "../../support/env";
import { startFakeOpenAI } from "../../support/fake-openai";
import { startFakeAnthropic } from "../../support/fake-anthropic";
import type { FakeServer } from "../../support/fake-llm-server";
import { FakeTasksState, fakeTasksService } from "../../support/fake-tasks";
import { fakeContextService } from "../../support/fake-context";
import { costCredits, findModel } from "../../../src/ai/catalog";

type Node = Awaited<ReturnType<typeof startTestNode>>;

let db: TestDatabase;
let node: Node;
let broker: ServiceBroker;
let tasks: FakeTasksState;
let oa: FakeServer, oa2: FakeServer, an: FakeServer, local: FakeServer;
const userId = `u-${randomUUID()}`;
const user = { id: userId, role: "user", scopes: ["*"] };
let projectId: string;
const GRANT = 1_000_000;

const CODE_ANSWER = [
	"I changed the greeting and removed the old file.\n",
	"```ts path=src/hello.ts\n",
	'export const hello = "hi from the model";\n',
	"```\n",
	"```ts path=src/new.ts\n",
	"export const added = 1;\n",
	"```\n",
	"```delete path=old.txt\n",
	"```\n"
];

beforeAll(async () => {
	[oa, oa2, an, local] = await Promise.all([
		startFakeOpenAI(),
		startFakeOpenAI(),
		startFakeAnthropic(),
		startFakeOpenAI()
	]);
	db = await createTestDatabase();
	const fake = fakeTasksService({ maxAttempts: 2 });
	tasks = fake.state;
	node = await startTestNode({
		db,
		services: ["api", "projects", "payments", "ai"],
		// The prompt's files come from context.select (test/integration/ai/context-prompt.test.ts covers it).
		extraServices: [fake.schema, fakeContextService().schema],
		env: {
			AI_DEV_PROVIDER: "false",
			AI_POLL_MS: "50",
			TASK_HEARTBEAT_MS: "50",
			AI_STALL_TIMEOUT_MS: "300",
			AI_CONCURRENCY: "8",
			AI_MAX_RETRY_WAIT_MS: "0",
			AI_DEPLOYMENTS: JSON.stringify([
				{ id: "oa-1", model: "gpt-4o-mini", provider: "openai", baseUrl: oa.url, apiKey: "k" },
				{ id: "oa-2", model: "gpt-4o-mini", provider: "openai", baseUrl: oa2.url, apiKey: "k" },
				{ id: "an-1", model: "claude-sonnet", provider: "anthropic", baseUrl: an.url, apiKey: "k" },
				{ id: "local-1", model: "local-small", provider: "local", baseUrl: local.url }
			])
		}
	});
	broker = node.broker;
	const project = await broker.call<{ id: string }, unknown>("projects.create", { name: "demo" }, { meta: { user } });
	projectId = project.id;
	await broker.call(
		"projects.commit",
		{
			id: projectId,
			baseVersion: 0,
			message: "initial",
			changes: [
				{ op: "add", path: "src/hello.ts", content: 'export const hello = "hi";\n' },
				{ op: "add", path: "old.txt", content: "old\n" },
				{ op: "add", path: "README.md", content: "# Demo\n" }
			]
		},
		{ meta: { user } }
	);
	await broker.call("payments.grant", {
		userId,
		credits: GRANT,
		operator: "test",
		reason: "test credits",
		source: "paid"
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
	await Promise.all([oa, oa2, an, local].map(s => s?.close()));
});

beforeEach(async () => {
	await broker.call("ai.resetDeployment", {});
	for (const s of [oa, oa2, an, local]) {
		s.requests.length = 0;
		s.setDefault({ kind: "ok" });
	}
});

const balance = async () => {
	const b = await broker.call<{ available: string | number; held: string | number }, unknown>("payments.userLedger", {
		userId,
		limit: 1
	});
	return { available: Number(b.available), held: Number(b.held) };
};

async function submit(p: Record<string, unknown>) {
	return broker.call<{ taskId: string; maxCostCredits: number }, unknown>("tasks.submit", {
		userId,
		tier: "team",
		projectId,
		kind: "chat",
		prompt: "Say hello",
		...p
	});
}

describe("happy paths", () => {
	test("chat on OpenAI: deltas in order, usage and cost recorded, settled once", async () => {
		const before = await balance();
		const { taskId, maxCostCredits } = await submit({ model: "gpt-4o-mini" });
		const t = await tasks.waitFinal(taskId);
		expect(t.state).toBe("succeeded");
		expect(t.result).toMatchObject({
			text: "Hello from the fake model.",
			finishReason: "stop",
			model: "gpt-4o-mini"
		});
		const deltas = t.events.filter(e => e.type === "delta");
		expect(deltas.map(e => e.text).join("")).toBe("Hello from the fake model.");
		expect(deltas.map(e => e.seq)).toEqual(deltas.map((_, i) => i));
		expect(deltas.every(e => e.userId === userId)).toBe(true);
		const usage = t.usage as { promptTokens: number; completionTokens: number };
		expect(usage.completionTokens).toBe(6);
		expect(t.costCredits).toBe(costCredits(findModel("gpt-4o-mini")!, usage.promptTokens, 6));
		expect(t.costCredits).toBeLessThanOrEqual(maxCostCredits);
		expect(t.settleCalls).toBe(1);
		// The tokens-per-minute count was settled from the worst case down to what the run used.
		const limiter = (
			broker.getLocalService("ai") as unknown as {
				limiter: { tokensCounted(u: string, t: string): Promise<number> };
			}
		).limiter;
		expect(await limiter.tokensCounted(userId, "team")).toBe(usage.promptTokens + usage.completionTokens);
		// The prompt carried the project's files.
		const sent = JSON.stringify(oa.requests[0]?.body ?? oa2.requests[0]?.body);
		expect(sent).toContain("--- src/hello.ts (lines 1-1) ---");
		const after = await balance();
		expect(after.held).toBe(before.held);
		expect(before.available - after.available).toBe(t.costCredits);
	});

	test("code on Anthropic: the change set becomes a project version with the task id", async () => {
		an.setDefault({ kind: "ok", chunks: CODE_ANSWER });
		const { taskId } = await submit({
			kind: "code",
			model: "claude-sonnet",
			prompt: "Change the greeting, add new.ts, delete old.txt"
		});
		const t = await tasks.waitFinal(taskId);
		expect(t.state).toBe("succeeded");
		expect(t.result).toMatchObject({
			version: 2,
			changeSet: [
				{ op: "modify", path: "src/hello.ts", bytes: 42 },
				{ op: "add", path: "src/new.ts", bytes: 24 },
				{ op: "delete", path: "old.txt" }
			]
		});
		const inspect = await broker.call<{ versions: Array<{ number: number; taskId: string | null }> }, unknown>(
			"projects.inspect",
			{ projectId }
		);
		expect(inspect.versions.find(v => v.number === 2)?.taskId).toBe(taskId);
		const ctx = await broker.call<
			{ files: Array<{ path: string; content: string }>; omitted: Array<{ path: string; reason: string }> },
			unknown
		>("projects.readContext", {
			projectId,
			userId,
			maxBytes: 100_000,
			paths: ["src/hello.ts", "src/new.ts", "old.txt"]
		});
		expect(ctx.files.map(f => [f.path, f.content])).toEqual([
			["src/hello.ts", 'export const hello = "hi from the model";\n'],
			["src/new.ts", "export const added = 1;\n"]
		]);
		expect(ctx.omitted).toEqual([{ path: "old.txt", size: 0, reason: "not-found" }]);
		expect(t.settleCalls).toBe(1);
	});

	test("chat on a local OpenAI-compatible server", async () => {
		const { taskId } = await submit({ model: "local-small", tier: "free" });
		const t = await tasks.waitFinal(taskId);
		expect(t.state).toBe("succeeded");
		expect(t.result?.text).toBe("Hello from the fake model.");
		expect(local.requests).toHaveLength(1);
	});

	test("compare fans out to two models and keeps both results", async () => {
		const { taskId, maxCostCredits } = await submit({ kind: "compare", models: ["gpt-4o-mini", "claude-sonnet"] });
		const t = await tasks.waitFinal(taskId);
		expect(t.state).toBe("succeeded");
		const candidates = t.result?.candidates as Array<{ model: string; text: string; costCredits: number }>;
		expect(candidates.map(c => [c.model, c.text])).toEqual([
			["gpt-4o-mini", "Hello from the fake model."],
			["claude-sonnet", "Hello from the fake model."]
		]);
		expect(Object.keys((t.usage as { byModel: object }).byModel).sort()).toEqual(["claude-sonnet", "gpt-4o-mini"]);
		expect(t.costCredits).toBeLessThanOrEqual(maxCostCredits);
		expect(t.events.filter(e => e.type === "delta").every(e => typeof e.model === "string")).toBe(true);
	});
});

describe("faults", () => {
	test("a stream cut mid-way continues on the other deployment; the task succeeds with the whole answer", async () => {
		oa.setDefault({ kind: "cut", after: 3 });
		oa2.setDefault({ kind: "cut", after: 3 });
		oa.enqueue({ kind: "cut", after: 3 });
		oa2.enqueue({ kind: "ok", chunks: [" fake", " model", "."] });
		const { taskId } = await submit({ model: "gpt-4o-mini" });
		const t = await tasks.waitFinal(taskId);
		expect(t.state).toBe("succeeded");
		expect(t.result?.text).toBe("Hello from the fake model.");
		expect(t.events.filter(e => e.type === "fallback")).toHaveLength(1);
	});

	test("every deployment failing: the task fails with a clear reason, never a truncated success", async () => {
		oa.setDefault({ kind: "cut", after: 2 });
		oa2.setDefault({ kind: "cut", after: 2 });
		local.setDefault({ kind: "status", status: 500 });
		const before = await balance();
		const { taskId } = await submit({ model: "gpt-4o-mini" });
		const t = await tasks.waitFinal(taskId);
		expect(t.state).toBe("failed");
		expect(t.error?.code).toBe("PROVIDER_FAILED");
		expect(t.error?.message).toMatch(/last failure: [\w-]+: (server 500|truncated|connection)/);
		expect(t.result).toBeUndefined();
		expect(t.attempt).toBe(2); // retried once by the tasks side, then dead-lettered
		const after = await balance();
		expect(after.held).toBe(before.held);
		expect(before.available - after.available).toBe(t.costCredits);
		await broker.call("ai.resetDeployment", {});
	});
});

describe("cancel", () => {
	test("cancel mid-stream aborts the upstream request and releases the unused reservation", async () => {
		oa.setDefault({ kind: "endless", chunkDelayMs: 5 });
		oa2.setDefault({ kind: "endless", chunkDelayMs: 5 });
		const before = await balance();
		const { taskId, maxCostCredits } = await submit({ model: "gpt-4o-mini", maxOutputTokens: 100_000 });
		while ((tasks.tasks.get(taskId)?.events.length ?? 0) < 5) await new Promise(r => setTimeout(r, 10));
		expect((await balance()).held - before.held).toBe(maxCostCredits);
		await broker.call("tasks.cancel", { taskId });
		const t = await tasks.waitFinal(taskId);
		expect(t.state).toBe("cancelled");
		expect(t.error?.code).toBe("CANCELLED");
		const req = [...oa.requests, ...oa2.requests];
		expect(req).toHaveLength(1);
		await eventually(() => req[0].aborted === true);
		const sent = req[0].chunksSent;
		await new Promise(r => setTimeout(r, 60));
		expect(req[0].chunksSent).toBe(sent);
		const after = await balance();
		expect(after.held).toBe(before.held);
		expect(t.costCredits).toBeLessThan(maxCostCredits);
		expect(before.available - after.available).toBe(t.costCredits);
	});
});

describe("budgets under concurrency", () => {
	test("N parallel tasks of one user, with a provider that ignores max_tokens, never spend more than their reservations", async () => {
		// Every deployment ignores max_tokens: on a loaded machine a 300 ms stall can move a task to
		// another deployment or (group fallback) another model, and that one must not answer honestly.
		for (const s of [oa, oa2, an, local]) s.setDefault({ kind: "endless", chunkDelayMs: 1 });
		const before = await balance();
		const subs = await Promise.all(
			Array.from({ length: 6 }, () => submit({ model: "gpt-4o-mini", maxOutputTokens: 300 }))
		);
		const done = await Promise.all(subs.map(s => tasks.waitFinal(s.taskId)));
		for (const [i, t] of done.entries()) {
			expect([t.state, t.error]).toEqual(["succeeded", undefined]);
			expect(t.result?.finishReason).toBe("budget");
			expect(t.costCredits).toBeLessThanOrEqual(subs[i].maxCostCredits);
		}
		const after = await balance();
		expect(after.held).toBe(before.held);
		const spent = before.available - after.available;
		expect(spent).toBe(done.reduce((n, t) => n + (t.costCredits ?? 0), 0));
		expect(spent).toBeLessThanOrEqual(subs.reduce((n, s) => n + s.maxCostCredits, 0));
	});
});

describe("ai.prepare refuses bad inputs with the contract's 4xx", () => {
	const prepare = (p: Record<string, unknown>) =>
		broker.call("ai.prepare", { userId, tier: "free", projectId, kind: "chat", prompt: "hi", ...p }).then(
			() => null,
			(e: { code: number; type: string; data: unknown }) => ({ code: e.code, type: e.type, data: e.data })
		);

	test.each([
		["empty prompt", { prompt: "   " }, 422, "VALIDATION_ERROR", "prompt"],
		["unknown model", { model: "gpt-99" }, 422, "UNKNOWN_MODEL", "model"],
		["model not allowed for the tier", { model: "claude-sonnet" }, 403, "MODEL_NOT_ALLOWED", null],
		[
			"prompt over the context budget",
			{ model: "local-small", prompt: "x".repeat(30_000) },
			422,
			"PROMPT_TOO_LONG",
			"prompt"
		],
		["compare with one model", { kind: "compare", models: ["gpt-4o-mini"] }, 422, "VALIDATION_ERROR", "models"],
		["dev model when the dev provider is off", { model: "dev-echo" }, 422, "UNKNOWN_MODEL", "model"]
	])("%s", async (_n, p, code, type, field) => {
		const err = await prepare(p);
		expect(err).toMatchObject({ code, type });
		if (field) expect(err!.data).toEqual([expect.objectContaining({ field, type })]);
	});

	test("a valid task: models, tokens, budget and the worst-case cost", async () => {
		const r = await broker.call<Record<string, unknown>, unknown>("ai.prepare", {
			userId: `u-${randomUUID()}`,
			tier: "pro",
			projectId,
			kind: "compare",
			prompt: "hi",
			models: ["gpt-4o-mini", "claude-sonnet"],
			maxOutputTokens: 500
		});
		const m1 = findModel("gpt-4o-mini")!;
		const m2 = findModel("claude-sonnet")!;
		const pt = r.promptTokens as number;
		const budget = r.contextTokensBudget as number;
		expect(r).toMatchObject({
			maxOutputTokens: 500,
			models: [
				{ model: "gpt-4o-mini", group: "small", provider: "openai" },
				{ model: "claude-sonnet", group: "large", provider: "anthropic" }
			]
		});
		expect(budget).toBe(16_000);
		expect(r.maxCostCredits).toBe(costCredits(m1, pt + budget, 500) + costCredits(m2, pt + budget, 500));
	});
});

describe("GET /ai/models", () => {
	test("anonymous: the catalogue with prices and tiers, no allowed flags", async () => {
		const res = await fetch(`${node.baseUrl}/api/v1/ai/models`);
		expect(res.status).toBe(200);
		const body = (await res.json()) as { tier: null; models: Array<Record<string, unknown>> };
		expect(body.tier).toBeNull();
		const mini = body.models.find(m => m.id === "gpt-4o-mini")!;
		expect(mini).toMatchObject({
			provider: "openai",
			group: "small",
			prices: { input: 150, output: 600 },
			tiers: ["free", "pro", "team", "enterprise"],
			available: true
		});
		expect(mini.allowed).toBeUndefined();
		expect(body.models.find(m => m.id === "dev-echo")).toBeUndefined();
		expect(body.models.find(m => m.id === "o3-mini")).toMatchObject({
			available: false,
			tiers: ["team", "enterprise"]
		});
	});

	test("a tier marks what it may use", async () => {
		const res = await fetch(`${node.baseUrl}/api/v1/ai/models?tier=free`);
		const body = (await res.json()) as { tier: string; models: Array<{ id: string; allowed: boolean }> };
		expect(body.tier).toBe("free");
		expect(Object.fromEntries(body.models.map(m => [m.id, m.allowed]))).toMatchObject({
			"gpt-4o-mini": true,
			"local-small": true,
			"claude-sonnet": false,
			"o3-mini": false,
			"claude-haiku": false
		});
	});

	test("operators see deployment health; users get 403", async () => {
		const op = await fetch(`${node.baseUrl}/api/v1/ai/deployments`, {
			headers: { authorization: `Bearer ${bearerFor(node.config, "op-1", "operator")}` }
		});
		expect(op.status).toBe(200);
		const body = (await op.json()) as { deployments: Array<{ id: string; circuit: string }> };
		expect(body.deployments.map(d => d.id).sort()).toEqual(["an-1", "local-1", "oa-1", "oa-2"]);
		const u = await fetch(`${node.baseUrl}/api/v1/ai/deployments`, {
			headers: { authorization: `Bearer ${bearerFor(node.config, userId)}` }
		});
		expect(u.status).toBe(403);
	});
});
