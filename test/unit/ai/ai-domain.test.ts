/** Pure parts of the ai service: catalogue prices, prepare rules, the code output format, the router, the config. */
import { loadConfig } from "../../../src/config";
import { CATALOG, affordableOutputTokens, costCredits, findModel } from "../../../src/ai/catalog";
import { parseCodeOutput, toChangeOps } from "../../../src/ai/code-output";
import { PrepareError, SYSTEM_PROMPTS, buildMessages, estimateTokens, prepareTask } from "../../../src/ai/prompt";
import { parseRetryAfterMs, classify } from "../../../src/ai/providers";
import { DeploymentRouter } from "../../../src/ai/router";
import { modelPrices as paymentsModelPrices } from "../../../src/payments/prices";

const cfg = (env: Record<string, string> = {}) => loadConfig({ OPENAI_API_KEY: "sk-test", ...env }).ai;

describe("catalogue", () => {
	test("prices are integers per 1M tokens; cost rounds up once", () => {
		for (const m of CATALOG)
			expect([Number.isInteger(m.inputPricePer1M), Number.isInteger(m.outputPricePer1M)]).toEqual([true, true]);
		const mini = findModel("gpt-4o-mini")!;
		expect(costCredits(mini, 1_000_000, 0)).toBe(150);
		expect(costCredits(mini, 1, 0)).toBe(1);
		expect(costCredits(mini, 0, 0)).toBe(0);
		expect(costCredits(mini, 1000, 1000)).toBe(1); // 0.75 credits → 1
	});

	test("affordable output keeps the cost within the budget", () => {
		const m = findModel("claude-sonnet")!;
		const n = affordableOutputTokens(m, 1000, 10);
		expect(costCredits(m, 1000, n)).toBeLessThanOrEqual(10);
		expect(costCredits(m, 1000, n + 1)).toBeGreaterThan(10 - 1);
		expect(affordableOutputTokens(m, 10_000_000, 10)).toBe(0);
	});

	test("payments serves the catalogue's prices", () => {
		expect(paymentsModelPrices().map(p => p.id)).toEqual(CATALOG.map(m => m.id));
		expect(paymentsModelPrices().find(p => p.id === "gpt-4o-mini")).toMatchObject({
			provider: "openai",
			group: "small",
			inputPricePer1M: 150,
			outputPricePer1M: 600
		});
	});
});

describe("prepareTask", () => {
	test("default model: the cheapest served model of the tier", () => {
		const p = prepareTask(cfg(), { tier: "free", kind: "chat", prompt: "hi" });
		expect(p.models.map(m => m.model)).toEqual(["dev-echo"]);
		const p2 = prepareTask(cfg({ AI_DEV_PROVIDER: "false" }), { tier: "free", kind: "chat", prompt: "hi" });
		expect(p2.models.map(m => m.model)).toEqual(["gpt-4o-mini"]);
	});

	test("worst case = (prompt + context budget) × input + max output × output", () => {
		const p = prepareTask(cfg(), {
			tier: "pro",
			kind: "chat",
			prompt: "hello world",
			model: "gpt-4o",
			maxOutputTokens: 2000
		});
		const m = findModel("gpt-4o")!;
		expect(p.promptTokens).toBe(estimateTokens(SYSTEM_PROMPTS.chat) + estimateTokens("hello world"));
		expect(p.contextTokensBudget).toBe(16_000);
		expect(p.maxCostCredits).toBe(costCredits(m, p.promptTokens + 16_000, 2000));
	});

	test("max output is capped by the model; the context budget shrinks to fit the window", () => {
		const p = prepareTask(cfg({ LOCAL_LLM_BASE_URL: "http://127.0.0.1:1/v1" }), {
			tier: "free",
			kind: "chat",
			prompt: "x".repeat(3000),
			model: "local-small",
			maxOutputTokens: 100_000
		});
		expect(p.maxOutputTokens).toBe(4096);
		expect(p.contextTokensBudget).toBe(8192 - 4096 - p.promptTokens - 256);
	});

	test.each([
		[{ prompt: "" }, "VALIDATION_ERROR", 422],
		[{ model: "nope" }, "UNKNOWN_MODEL", 422],
		[{ model: "o3-mini", tier: "pro" }, "MODEL_NOT_ALLOWED", 403],
		[{ model: "claude-haiku" }, "MODEL_UNAVAILABLE", 422],
		[{ model: "gpt-4o-mini", prompt: "x".repeat(400_000) }, "PROMPT_TOO_LONG", 422],
		[{ kind: "compare", models: ["gpt-4o-mini", "gpt-4o-mini"] }, "VALIDATION_ERROR", 422]
	] as const)("refuses %j with %s", (p, code, status) => {
		try {
			prepareTask(cfg(), { tier: "free", kind: "chat", prompt: "hi", ...p } as Parameters<typeof prepareTask>[1]);
			throw new Error("accepted");
		} catch (err) {
			expect(err).toBeInstanceOf(PrepareError);
			expect([(err as PrepareError).code, (err as PrepareError).status]).toEqual([code, status]);
		}
	});

	test("prompt building keeps files within the budget and names the rest", () => {
		const files = [
			{ path: "a.ts", content: "a".repeat(300) },
			{ path: "big.ts", content: "b".repeat(3000) },
			{ path: "c.ts", content: "c".repeat(30) }
		];
		const { messages, contextTokens } = buildMessages("chat", "Q", files, 200);
		expect(contextTokens).toBeLessThanOrEqual(200);
		expect(messages[1].content).toContain("--- a.ts ---");
		expect(messages[1].content).toContain("--- c.ts ---");
		expect(messages[1].content).not.toContain("--- big.ts ---");
		expect(messages[1].content).toContain("Files not shown for lack of room: big.ts");
	});
});

describe("code output format", () => {
	test("writes, deletes, last write wins, unclosed blocks dropped, plain fences ignored", () => {
		const text = [
			"Explanation.",
			"```ts path=src/a.ts",
			"one",
			"```",
			"```js",
			"console.log('example, not a file')",
			"```",
			'````md path="docs/b c.md"',
			"```inner```",
			"````",
			"```delete path=old.txt",
			"```",
			"```ts path=src/a.ts",
			"two",
			"```",
			"```ts path=src/cut.ts",
			"half a file"
		].join("\n");
		const parsed = parseCodeOutput(text);
		expect(parsed.files).toEqual([
			{ path: "docs/b c.md", action: "write", content: "```inner```\n" },
			{ path: "old.txt", action: "delete", content: "" },
			{ path: "src/a.ts", action: "write", content: "two\n" }
		]);
		expect(parsed.unclosed).toEqual(["src/cut.ts"]);
		const existing = new Set(["src/a.ts", "old.txt"]);
		expect(toChangeOps(parsed.files, p => existing.has(p))).toEqual([
			{ op: "add", path: "docs/b c.md", content: "```inner```\n" },
			{ op: "delete", path: "old.txt" },
			{ op: "modify", path: "src/a.ts", content: "two\n" }
		]);
		expect(toChangeOps([{ path: "gone", action: "delete", content: "" }], () => false)).toEqual([]);
	});
});

describe("router", () => {
	const deps = cfg({
		AI_DEV_PROVIDER: "false",
		OPENAI_API_KEY: "",
		AI_DEPLOYMENTS: JSON.stringify([
			{ id: "a", model: "gpt-4o-mini", weight: 1 },
			{ id: "b", model: "gpt-4o-mini", weight: 3 }
		])
	}).deployments;

	test("least-busy by in-flight per weight; untried first", () => {
		const r = new DeploymentRouter(deps, { balancing: "least-busy", circuitFailures: 2, circuitCooldownMs: 1000 });
		const l1 = r.acquire("gpt-4o-mini")!;
		expect(l1.deployment.id).toBe("b"); // equal load, higher weight
		const l2 = r.acquire("gpt-4o-mini")!;
		expect(l2.deployment.id).toBe("a"); // a: 0/1 < b: 1/3
		expect(r.acquire("gpt-4o-mini", new Set(["b"]))!.deployment.id).toBe("a");
		expect(r.acquire("gpt-4o-mini", new Set(["a", "b"]), true)).toBeNull();
	});

	test("weighted draws by weight", () => {
		let x = 0;
		const seq = [0.1, 0.3, 0.6, 0.9];
		const r = new DeploymentRouter(deps, {
			balancing: "weighted",
			circuitFailures: 2,
			circuitCooldownMs: 1000,
			random: () => seq[x++ % 4]
		});
		const ids = seq.map(() => {
			const l = r.acquire("gpt-4o-mini")!;
			l.neutral();
			return l.deployment.id;
		});
		expect(ids).toEqual(["a", "b", "b", "b"]);
	});

	test("circuit: open after N failures, half-open after cooldown with one trial, closes on success, reopens on failure", () => {
		let now = 1000;
		const r = new DeploymentRouter(deps.slice(0, 1), {
			balancing: "least-busy",
			circuitFailures: 2,
			circuitCooldownMs: 500,
			now: () => now
		});
		r.acquire("gpt-4o-mini")!.failure("x");
		expect(r.health()[0].circuit).toBe("closed");
		r.acquire("gpt-4o-mini")!.failure("y");
		expect(r.health()[0]).toMatchObject({ circuit: "open", availableAt: 1500, lastError: "y" });
		expect(r.acquire("gpt-4o-mini")).toBeNull();
		expect(r.nextAvailableAt("gpt-4o-mini")).toBe(1500);
		now = 1500;
		const trial = r.acquire("gpt-4o-mini")!;
		expect(r.health()[0].circuit).toBe("half-open");
		expect(r.acquire("gpt-4o-mini")).toBeNull(); // one trial at a time
		trial.failure("z");
		expect(r.health()[0].circuit).toBe("open");
		now = 2000;
		r.acquire("gpt-4o-mini")!.success();
		expect(r.health()[0]).toMatchObject({ circuit: "closed", consecutiveFailures: 0 });
	});

	test("Retry-After cools a deployment down without opening its circuit", () => {
		let now = 0;
		const r = new DeploymentRouter(deps.slice(0, 1), {
			balancing: "least-busy",
			circuitFailures: 5,
			circuitCooldownMs: 500,
			now: () => now
		});
		r.acquire("gpt-4o-mini")!.failure("429", 2000);
		expect(r.health()[0]).toMatchObject({ circuit: "closed", availableAt: 2000 });
		expect(r.acquire("gpt-4o-mini")).toBeNull();
		now = 2000;
		expect(r.acquire("gpt-4o-mini")).not.toBeNull();
	});

	test("shared cooldowns: a cooldown or an opened circuit is reported once as durations; plain failures are not", () => {
		const now = 10_000;
		const shared: unknown[] = [];
		const r = new DeploymentRouter(deps.slice(0, 1), {
			balancing: "least-busy",
			circuitFailures: 2,
			circuitCooldownMs: 500,
			now: () => now,
			onShare: c => shared.push(c)
		});
		r.acquire("gpt-4o-mini")!.failure("500");
		expect(shared).toEqual([]);
		r.acquire("gpt-4o-mini")!.failure("500");
		expect(shared).toEqual([{ id: "a", coolForMs: 0, openForMs: 500 }]);
		r.reset();
		r.acquire("gpt-4o-mini")!.failure("429", 3000);
		expect(shared[1]).toEqual({ id: "a", coolForMs: 3000, openForMs: 0 });
	});

	test("applyShared takes in another node's cooldown or open circuit for a known deployment, and only ever extends it", () => {
		let now = 0;
		const changes: string[] = [];
		const r = new DeploymentRouter(deps, {
			balancing: "least-busy",
			circuitFailures: 5,
			circuitCooldownMs: 500,
			now: () => now,
			onChange: h => changes.push(`${h.id}:${h.circuit}`)
		});
		expect(r.applyShared({ id: "unknown", coolForMs: 1000, openForMs: 0 })).toBe(false);
		expect(r.applyShared({ id: "b", coolForMs: 2000, openForMs: 0 })).toBe(true);
		expect(r.acquire("gpt-4o-mini")!.deployment.id).toBe("a"); // b is cooling down here too
		expect(r.applyShared({ id: "b", coolForMs: 1000, openForMs: 0 })).toBe(false); // shorter: ignored
		expect(r.applyShared({ id: "a", coolForMs: 0, openForMs: 700 })).toBe(true);
		expect(r.health().find(h => h.id === "a")).toMatchObject({ circuit: "open", availableAt: 700 });
		expect(r.acquire("gpt-4o-mini")).toBeNull();
		expect(changes).toEqual(["b:closed", "a:open"]);
		now = 700;
		const trial = r.acquire("gpt-4o-mini")!; // a half-open after the shared time, one trial
		expect(trial.deployment.id).toBe("a");
		trial.success();
		expect(r.health().find(h => h.id === "a")?.circuit).toBe("closed");
		now = 2000;
		expect(r.nextAvailableAt("gpt-4o-mini")).toBe(2000);
	});
});

describe("provider errors", () => {
	const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n] ?? null });
	test("Retry-After in seconds, as a date, and retry-after-ms", () => {
		expect(parseRetryAfterMs(headers({ "retry-after": "3" }))).toBe(3000);
		expect(parseRetryAfterMs(headers({ "retry-after-ms": "250" }))).toBe(250);
		expect(parseRetryAfterMs(headers({ "retry-after": new Date(10_000).toUTCString() }), 4_000)).toBe(6000);
		expect(parseRetryAfterMs(headers({}))).toBeNull();
	});
	test("classification", () => {
		expect(classify({ status: 429, headers: headers({ "retry-after": "1" }), message: "x" })).toMatchObject({
			kind: "rate_limited",
			retryAfterMs: 1000,
			retryable: true
		});
		expect(classify({ status: 503, message: "x" })).toMatchObject({ kind: "server", retryable: true });
		expect(classify({ status: 401, message: "x" })).toMatchObject({ kind: "client", retryable: false });
		expect(
			classify({
				status: undefined,
				error: { type: "error", error: { type: "overloaded_error" } },
				message: "Overloaded"
			})
		).toMatchObject({ kind: "overloaded" });
		expect(classify(new SyntaxError("Unexpected end of JSON input"))).toMatchObject({ kind: "malformed" });
		expect(classify(Object.assign(new Error("socket hang up"), { name: "APIConnectionError" }))).toMatchObject({
			kind: "connection"
		});
	});
});

describe("config", () => {
	test("embedded default: the dev provider only; cluster: not without AI_DEV_PROVIDER=true", () => {
		expect(loadConfig({}).ai.deployments.map(d => d.id)).toEqual(["dev:dev-echo"]);
		const cluster = {
			TRANSPORTER: "nats://n:4222",
			DATABASE_URL: "postgres://d/x",
			REDIS_URL: "redis://r",
			AMQP_URL: "amqp://a",
			JWT_KEYS: "k:" + "s".repeat(40)
		};
		expect(loadConfig(cluster).ai.deployments).toEqual([]);
		expect(loadConfig({ ...cluster, AI_DEV_PROVIDER: "true" }).ai.devProvider).toBe(true);
	});

	test("shortcuts and AI_DEPLOYMENTS", () => {
		const c = loadConfig({
			AI_DEV_PROVIDER: "false",
			ANTHROPIC_API_KEY: "a",
			ANTHROPIC_BASE_URL: "http://x",
			AI_DEPLOYMENTS: '[{"id":"o","model":"gpt-4o","apiKeyEnv":"MY_KEY","weight":2}]',
			MY_KEY: "secret"
		}).ai;
		expect(c.deployments.map(d => [d.id, d.model, d.provider, d.apiKey, d.baseUrl, d.weight])).toEqual([
			["o", "gpt-4o", "openai", "secret", null, 2],
			["anthropic:claude-haiku", "claude-haiku", "anthropic", "a", "http://x", 1],
			["anthropic:claude-sonnet", "claude-sonnet", "anthropic", "a", "http://x", 1],
			["anthropic:claude-opus", "claude-opus", "anthropic", "a", "http://x", 1]
		]);
	});

	test.each([
		['{"x":1}', "AI_DEPLOYMENTS must be a JSON array"],
		['[{"model":"nope"}]', "AI_DEPLOYMENTS[0].model must be a catalogue model id"],
		['[{"model":"gpt-4o","weight":0}]', "AI_DEPLOYMENTS[0].weight"],
		['[{"id":"a","model":"gpt-4o"},{"id":"a","model":"gpt-4o"}]', "the id 'a' twice"]
	])("bad AI_DEPLOYMENTS %s is refused naming the variable", (raw, msg) => {
		expect(() => loadConfig({ AI_DEPLOYMENTS: raw })).toThrow(msg);
	});
});
