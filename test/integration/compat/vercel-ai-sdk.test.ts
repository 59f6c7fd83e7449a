/**
 * An agent framework against the gateway's /v1: the Vercel AI SDK (`ai`) with its
 * OpenAI-compatible provider (`@ai-sdk/openai-compatible`), the fake upstreams behind it.
 * Streaming and not, a multi-step tool loop run by the framework (it calls the tool and sends the
 * result back itself), structured output, usage, and refusals raised as its APICallError with the
 * status and the retry decision.
 */
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { APICallError, generateText, jsonSchema, Output, stepCountIs, streamText, tool } from "ai";
import { DEFAULT_CHUNKS } from "../../support/fake-llm-server";
import { eventually } from "../../support/env";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(60_000);

let w: CompatWorld;
let u: { id: string; token: string; key: string };
const ANSWER = DEFAULT_CHUNKS.join("");
const last = (s: { requests: Array<{ body: Record<string, unknown> }> }) => s.requests[s.requests.length - 1].body;

const providerFor = (key: string) =>
	createOpenAICompatible({
		name: "forgefluid",
		apiKey: key,
		baseURL: `${w.node.baseUrl}/v1`,
		includeUsage: true,
		supportsStructuredOutputs: true
	});

beforeAll(async () => {
	w = await startCompatWorld({ AI_CONCURRENCY: "1", AI_COMPAT_MAX_WAIT_MS: "10000" });
	u = await w.user(100_000, ["ai:use"], {}, "team");
});
afterAll(() => w?.close());

test("generateText: the text, the usage, and the hold settled at the catalogue price", async () => {
	const before = await w.balance(u.token);
	const r = await generateText({
		model: providerFor(u.key)("gpt-4o-mini"),
		system: "Be brief.",
		prompt: "Say hello",
		temperature: 0.2,
		maxOutputTokens: 50,
		maxRetries: 0
	});
	expect(r.text).toBe(ANSWER);
	expect(r.finishReason).toBe("stop");
	expect(r.usage.outputTokens).toBe(DEFAULT_CHUNKS.length);
	expect(r.usage.inputTokens).toBeGreaterThan(0);
	expect(last(w.openai)).toMatchObject({ temperature: 0.2, max_tokens: 50 });
	const after = await w.settled(u.token);
	expect(before.available - after.available).toBe(
		Math.ceil((r.usage.inputTokens! * 150 + r.usage.outputTokens! * 600) / 1e6)
	);
});

test("streamText on a Claude model: every delta, the finish reason, the usage from the stream", async () => {
	const r = streamText({ model: providerFor(u.key)("claude-haiku"), prompt: "Stream it", maxRetries: 0 });
	const parts: string[] = [];
	for await (const t of r.textStream) parts.push(t);
	expect(parts.join("")).toBe(ANSWER);
	expect(parts.length).toBe(DEFAULT_CHUNKS.length);
	expect(await r.finishReason).toBe("stop");
	expect((await r.usage).outputTokens).toBe(DEFAULT_CHUNKS.length);
	// include_usage reached the gateway, which asked Anthropic (its usage always comes).
	expect(w.anthropic.requests.length).toBeGreaterThan(0);
	await w.settled(u.token);
});

test("tool loop: the framework runs both tool calls and sends their results back", async () => {
	w.openai.enqueue(
		{
			kind: "tools",
			calls: [
				{ id: "call_p", name: "getWeather", arguments: '{"city":"Paris"}' },
				{ id: "call_o", name: "getWeather", arguments: '{"city":"Oslo"}' }
			]
		},
		{ kind: "ok", chunks: ["Paris 20C", ", Oslo 5C"] }
	);
	const seen: string[] = [];
	const r = streamText({
		model: providerFor(u.key)("gpt-4o-mini"),
		prompt: "Weather in Paris and Oslo?",
		maxRetries: 0,
		stopWhen: stepCountIs(3),
		tools: {
			getWeather: tool({
				description: "Weather in a city",
				inputSchema: jsonSchema<{ city: string }>({
					type: "object",
					properties: { city: { type: "string" } },
					required: ["city"],
					additionalProperties: false
				}),
				execute: async ({ city }) => {
					seen.push(city);
					return city === "Paris" ? "20C" : "5C";
				}
			})
		}
	});
	let text = "";
	for await (const t of r.textStream) text += t;
	expect(seen.sort()).toEqual(["Oslo", "Paris"]);
	expect(text).toBe("Paris 20C, Oslo 5C");
	const steps = await r.steps;
	expect(steps).toHaveLength(2);
	expect(steps[0].finishReason).toBe("tool-calls");
	const back = last(w.openai).messages as Array<Record<string, unknown>>;
	expect(back.filter(m => m.role === "tool").map(m => m.tool_call_id)).toEqual(["call_p", "call_o"]);
	expect(JSON.stringify(back)).toContain("20C");
	// Both steps are billed; nothing stays held.
	expect((await r.totalUsage).outputTokens).toBeGreaterThan(0);
	await w.settled(u.token);
});

test("structured output: the JSON schema goes upstream and the framework parses the object", async () => {
	w.openai.enqueue({ kind: "ok", chunks: ['{"name":', '"Ada",', '"age":36}'] });
	const r = await generateText({
		model: providerFor(u.key)("gpt-4o-mini"),
		prompt: "Who?",
		maxRetries: 0,
		output: Output.object({
			schema: jsonSchema<{ name: string; age: number }>({
				type: "object",
				properties: { name: { type: "string" }, age: { type: "integer" } },
				required: ["name", "age"],
				additionalProperties: false
			})
		})
	});
	expect(r.output).toEqual({ name: "Ada", age: 36 });
	expect(last(w.openai).response_format).toMatchObject({ type: "json_schema" });
});

describe("refusals: APICallError with the status and the retry decision", () => {
	const ask = (key: string, model = "gpt-4o-mini", maxRetries = 0) =>
		generateText({ model: providerFor(key)(model), prompt: "hi", maxOutputTokens: 20, maxRetries }).catch(e => e);
	/** The framework wraps the last attempt's error in a RetryError after retries. */
	const callError = (e: unknown): APICallError => {
		const inner = (e as { lastError?: unknown }).lastError ?? e;
		expect(APICallError.isInstance(inner)).toBe(true);
		return inner as APICallError;
	};

	test("401, 403, 404, 400, insufficient credits", async () => {
		const bad = callError(await ask("ff_nope_0123456789abcdefghij"));
		expect(bad.statusCode).toBe(401);
		expect(bad.isRetryable).toBe(false);
		expect(callError(await ask(await w.newKey(u.token, ["projects:read"]))).statusCode).toBe(403);
		const nf = callError(await ask(u.key, "gpt-17"));
		expect(nf.statusCode).toBe(404);
		expect(nf.responseBody).toContain("model_not_found");
		const br = callError(
			await generateText({
				model: providerFor(u.key)("gpt-4o-mini"),
				prompt: "hi",
				maxRetries: 0,
				providerOptions: { forgefluid: { n: 2 } }
			}).catch(e => e)
		);
		expect(br.statusCode).toBe(400);
		expect(br.responseBody).toContain("invalid_request_error");
		const poor = await w.user(0);
		const n0 = w.openai.requests.length;
		const q = callError(await ask(poor.key));
		expect(q.statusCode).toBe(429);
		expect(q.responseBody).toContain("insufficient_quota");
		expect(w.openai.requests.length).toBe(n0);
	});

	test("429 when the line is full; the framework's retry then succeeds", async () => {
		const free = await w.user(10_000);
		let letGo!: () => void;
		w.openai.enqueue({ kind: "ok", until: new Promise<void>(r => (letGo = r)) });
		const n0 = w.openai.requests.length;
		// The first holds the only slot until let go, the second waits in the line of one.
		const first = ask(free.key);
		await w.openai.waitForRequests(n0 + 1);
		const second = ask(free.key);
		const gate = (
			w.node.broker.getLocalService("ai") as unknown as {
				gate: { queued: number; acquire: (...a: unknown[]) => Promise<unknown> };
			}
		).gate;
		await eventually(() => gate.queued === 1);
		const acquire = gate.acquire;
		let refusals = 0;
		gate.acquire = (...a: unknown[]) => {
			const p = acquire.apply(gate, a);
			p.catch(() => refusals++);
			return p;
		};
		try {
			const refused = callError(await ask(free.key));
			expect(refused.statusCode).toBe(429);
			expect(refused.isRetryable).toBe(true);
			expect(Number(refused.responseHeaders?.["retry-after"])).toBeGreaterThanOrEqual(1);
			// With retries: its first attempt is refused, then the line clears and a retry gets in.
			const before = refusals;
			const retried = ask(free.key, "gpt-4o-mini", 4);
			await eventually(() => refusals > before);
			letGo();
			expect((await retried).text).toBe(ANSWER);
		} finally {
			letGo();
			gate.acquire = acquire;
		}
		expect((await first).text).toBe(ANSWER);
		expect((await second).text).toBe(ANSWER);
		await w.settled(free.token);
	});
});
