/**
 * The official Anthropic SDK for Node against the gateway's /v1 (and the openai SDK on the
 * crossed paths): either protocol reaches either provider, tool calls and usage translate both
 * ways, cache_control reaches Anthropic and cached tokens are billed at the cached price, a cut
 * stream continues on the next deployment, and a stream failing after its first byte ends with the
 * protocol's error event.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { DEFAULT_CHUNKS } from "../../support/fake-llm-server";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(60_000);

let w: CompatWorld;
let u: { id: string; token: string; key: string };
let claude: Anthropic;
let openai: OpenAI;
const ANSWER = DEFAULT_CHUNKS.join("");
const last = (s: { requests: Array<{ body: Record<string, unknown> }> }) => s.requests[s.requests.length - 1].body;

beforeAll(async () => {
	w = await startCompatWorld();
	u = await w.user(100_000, ["ai:use"], {}, "team");
	claude = new Anthropic({ apiKey: u.key, baseURL: w.node.baseUrl, maxRetries: 0 });
	openai = new OpenAI({ apiKey: u.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 0 });
});
afterAll(() => w?.close());

test("non-streaming message; cache_control passed through; cached tokens billed at the cached price", async () => {
	w.anthropic.enqueue({ kind: "ok", usageExtra: { cachedTokens: 1000, cacheWriteTokens: 200 } });
	const before = await w.balance(u.token);
	const m = await claude.messages.create({
		model: "claude-haiku",
		max_tokens: 100,
		system: [{ type: "text", text: "A long, cached preamble.", cache_control: { type: "ephemeral" } }],
		messages: [{ role: "user", content: "Say hello" }],
		stop_sequences: ["END"],
		// This SDK's types no longer list temperature (newer models ignore it); the API still takes it.
		...({ temperature: 0.5 } as object)
	});
	expect(m.type).toBe("message");
	expect(m.content).toEqual([{ type: "text", text: ANSWER }]);
	expect(m.stop_reason).toBe("end_turn");
	expect(last(w.anthropic)).toMatchObject({
		model: "claude-3-5-haiku-latest",
		max_tokens: 100,
		system: [{ type: "text", text: "A long, cached preamble.", cache_control: { type: "ephemeral" } }],
		messages: [{ role: "user", content: [{ type: "text", text: "Say hello" }] }],
		stop_sequences: ["END"],
		// This SDK's types no longer list temperature (newer models ignore it); the API still takes it.
		...({ temperature: 0.5 } as object)
	});
	expect(m.usage.cache_read_input_tokens).toBe(1000);
	expect(m.usage.cache_creation_input_tokens).toBe(200);
	expect(m.usage.output_tokens).toBe(DEFAULT_CHUNKS.length);
	const after = await w.settled(u.token);
	// claude-haiku: input 800, cache read 80, cache write 1000, output 4000 credits per 1M.
	const u2 = m.usage;
	expect(before.available - after.available).toBe(
		Math.ceil((u2.input_tokens * 800 + 1000 * 80 + 200 * 1000 + u2.output_tokens * 4000) / 1e6)
	);
});

test("streaming message: Anthropic's event sequence and the final message", async () => {
	const res = await fetch(`${w.node.baseUrl}/v1/messages`, {
		method: "POST",
		headers: { "x-api-key": u.key, "anthropic-version": "2023-06-01", "content-type": "application/json" },
		body: JSON.stringify({
			model: "claude-haiku",
			max_tokens: 50,
			stream: true,
			messages: [{ role: "user", content: "hi" }]
		})
	});
	expect(res.headers.get("content-type")).toContain("text/event-stream");
	const names = [...(await res.text()).matchAll(/^event: (\w+)$/gm)].map(x => x[1]);
	expect(names).toEqual([
		"message_start",
		"ping",
		"content_block_start",
		...DEFAULT_CHUNKS.map(() => "content_block_delta"),
		"content_block_stop",
		"message_delta",
		"message_stop"
	]);
	const stream = claude.messages.stream({
		model: "claude-haiku",
		max_tokens: 50,
		messages: [{ role: "user", content: "hi" }]
	});
	let text = "";
	stream.on("text", t => (text += t));
	const final = await stream.finalMessage();
	expect(text).toBe(ANSWER);
	expect(final.stop_reason).toBe("end_turn");
	expect(final.usage.output_tokens).toBe(DEFAULT_CHUNKS.length);
	await w.settled(u.token);
});

test("Anthropic request for a GPT model and OpenAI request for a Claude model", async () => {
	const m = await claude.messages.create({
		model: "gpt-4o-mini",
		max_tokens: 64,
		system: "Be brief.",
		messages: [{ role: "user", content: "hi" }]
	});
	expect(m.content).toEqual([{ type: "text", text: ANSWER }]);
	expect(last(w.openai)).toMatchObject({
		model: "gpt-4o-mini",
		max_tokens: 64,
		messages: [
			{ role: "system", content: "Be brief." },
			{ role: "user", content: "hi" }
		]
	});
	const r = await openai.chat.completions.create({
		model: "claude-haiku",
		max_tokens: 64,
		messages: [
			{ role: "system", content: "Be brief." },
			{ role: "user", content: "hi" }
		],
		response_format: { type: "json_object" }
	});
	expect(r.choices[0].message.content).toBe(ANSWER);
	expect(r.usage!.completion_tokens).toBe(DEFAULT_CHUNKS.length);
	const up = last(w.anthropic);
	expect(up.system).toEqual([
		{ type: "text", text: "Be brief." },
		{ type: "text", text: "Respond with one JSON object and nothing else: no prose, no code fences." }
	]);
	expect(up.messages).toEqual([{ role: "user", content: [{ type: "text", text: "hi" }] }]);
	await w.settled(u.token);
});

test("tool round trip on Claude through the Anthropic SDK, and through the OpenAI SDK", async () => {
	const tools: Anthropic.Tool[] = [
		{
			name: "lookup",
			description: "Look up",
			input_schema: { type: "object", properties: { q: { type: "string" } }, required: ["q"] }
		}
	];
	w.anthropic.enqueue({
		kind: "tools",
		text: ["Let me check."],
		calls: [{ id: "toolu_1", name: "lookup", arguments: '{"q":"moleculer"}' }]
	});
	const first = await claude.messages.create({
		model: "claude-haiku",
		max_tokens: 200,
		tools,
		tool_choice: { type: "auto" },
		messages: [{ role: "user", content: "What is moleculer?" }]
	});
	expect(first.stop_reason).toBe("tool_use");
	expect(first.content).toEqual([
		{ type: "text", text: "Let me check." },
		{ type: "tool_use", id: "toolu_1", name: "lookup", input: { q: "moleculer" } }
	]);
	const second = await claude.messages.create({
		model: "claude-haiku",
		max_tokens: 200,
		tools,
		messages: [
			{ role: "user", content: "What is moleculer?" },
			{ role: "assistant", content: first.content },
			{
				role: "user",
				content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "A Node.js microservices framework" }]
			}
		]
	});
	expect(second.content[0]).toEqual({ type: "text", text: ANSWER });
	expect((last(w.anthropic).messages as unknown[]).slice(1)).toEqual([
		{
			role: "assistant",
			content: [
				{ type: "text", text: "Let me check." },
				{ type: "tool_use", id: "toolu_1", name: "lookup", input: { q: "moleculer" } }
			]
		},
		{
			role: "user",
			content: [
				{
					type: "tool_result",
					tool_use_id: "toolu_1",
					content: [{ type: "text", text: "A Node.js microservices framework" }]
				}
			]
		}
	]);

	// The same round trip spoken in OpenAI's protocol to Claude: tool_use ⇄ tool_calls.
	w.anthropic.enqueue({ kind: "tools", calls: [{ id: "toolu_2", name: "lookup", arguments: '{"q":"nats"}' }] });
	const oaTools: OpenAI.ChatCompletionTool[] = [
		{ type: "function", function: { name: "lookup", parameters: tools[0].input_schema as Record<string, unknown> } }
	];
	const s = openai.chat.completions.stream({
		model: "claude-haiku",
		tools: oaTools,
		tool_choice: { type: "function", function: { name: "lookup" } },
		parallel_tool_calls: false,
		messages: [{ role: "user", content: "nats?" }]
	});
	const c = await s.finalChatCompletion();
	expect(c.choices[0].finish_reason).toBe("tool_calls");
	expect(c.choices[0].message.tool_calls).toEqual([
		{ id: "toolu_2", type: "function", function: { name: "lookup", arguments: '{"q":"nats"}' } }
	]);
	expect(last(w.anthropic).tool_choice).toEqual({ type: "tool", name: "lookup", disable_parallel_tool_use: true });
	await openai.chat.completions.create({
		model: "claude-haiku",
		tools: oaTools,
		messages: [
			{ role: "user", content: "nats?" },
			c.choices[0].message as OpenAI.ChatCompletionMessageParam,
			{ role: "tool", tool_call_id: "toolu_2", content: "a message bus" }
		]
	});
	expect((last(w.anthropic).messages as unknown[]).slice(1)).toEqual([
		{ role: "assistant", content: [{ type: "tool_use", id: "toolu_2", name: "lookup", input: { q: "nats" } }] },
		{
			role: "user",
			content: [
				{ type: "tool_result", tool_use_id: "toolu_2", content: [{ type: "text", text: "a message bus" }] }
			]
		}
	]);
	await w.settled(u.token);
});

test("JSON-schema output the Anthropic way: a forced tool whose input is the object", async () => {
	const schema = {
		type: "object",
		properties: { name: { type: "string" }, age: { type: "integer" } },
		required: ["name", "age"]
	};
	w.anthropic.enqueue({
		kind: "tools",
		calls: [{ id: "toolu_j", name: "person", arguments: '{"name":"Ada","age":36}' }]
	});
	const m = await claude.messages.create({
		model: "claude-haiku",
		max_tokens: 200,
		tools: [{ name: "person", input_schema: schema as Anthropic.Tool.InputSchema }],
		tool_choice: { type: "tool", name: "person" },
		messages: [{ role: "user", content: "Who?" }]
	});
	expect(m.content).toEqual([{ type: "tool_use", id: "toolu_j", name: "person", input: { name: "Ada", age: 36 } }]);
	expect(last(w.anthropic)).toMatchObject({
		tool_choice: { type: "tool", name: "person" },
		tools: [{ name: "person", input_schema: schema }]
	});
});

test("count_tokens and models (the tier decides the list)", async () => {
	const n = await claude.messages.countTokens({
		model: "claude-haiku",
		messages: [{ role: "user", content: "hello there" }]
	});
	expect(n.input_tokens).toBeGreaterThan(0);
	const list = await openai.models.list();
	const ids = list.data.map(m => m.id).sort();
	// Team tier, served models only (the fakes serve gpt-4o-mini, o3-mini, claude-haiku).
	expect(ids).toEqual(["claude-haiku", "gpt-4o-mini", "o3-mini"]);
	expect((await openai.models.retrieve("gpt-4o-mini")).id).toBe("gpt-4o-mini");
	await expect(openai.models.retrieve("gpt-4o")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
	const free = await w.user(10);
	const freeIds = (await new OpenAI({ apiKey: free.key, baseURL: `${w.node.baseUrl}/v1` }).models.list()).data
		.map(m => m.id)
		.sort();
	expect(freeIds).toEqual(["claude-haiku", "gpt-4o-mini"]);
	const page = await new Anthropic({ apiKey: free.key, baseURL: w.node.baseUrl }).models.list();
	expect(page.data.map(m => m.id).sort()).toEqual(["claude-haiku", "gpt-4o-mini"]);
});

test("a stream cut by the upstream continues on the next deployment", async () => {
	w.openai.enqueue({ kind: "cut", after: 3 }, { kind: "ok" });
	const before = w.openai.requests.length;
	const stream = await openai.chat.completions.create({
		model: "gpt-4o-mini",
		stream: true,
		messages: [{ role: "user", content: "hi" }]
	});
	let text = "";
	for await (const ch of stream) text += ch.choices[0]?.delta?.content ?? "";
	expect(text).toBe(ANSWER);
	const reqs = w.openai.requests.slice(before);
	expect(reqs).toHaveLength(2);
	expect(reqs.map(r => r.headers.authorization).sort()).toEqual(["Bearer sk-1", "Bearer sk-2"]);
	expect((reqs[1].body.messages as Array<{ role: string; content: string }>).slice(-2)[0]).toEqual({
		role: "assistant",
		content: DEFAULT_CHUNKS.slice(0, 3).join("")
	});
	await w.settled(u.token);
});

test("a stream that fails after its first byte ends with the protocol's error event", async () => {
	// Every attempt is cut after two chunks: continuation cannot finish the answer.
	w.anthropic.enqueue(...Array.from({ length: 4 }, () => ({ kind: "overloaded" as const, after: 2 })));
	const before = await w.balance(u.token);
	const stream = claude.messages.stream({
		model: "claude-haiku",
		max_tokens: 50,
		messages: [{ role: "user", content: "hi" }]
	});
	let text = "";
	stream.on("text", t => (text += t));
	const err = await stream.finalMessage().catch(e => e);
	expect(err).toBeInstanceOf(Anthropic.APIError);
	expect(String(err.message)).toMatch(/overloaded_error/);
	expect(text.startsWith(DEFAULT_CHUNKS.slice(0, 2).join(""))).toBe(true);
	w.openai.enqueue(...Array.from({ length: 4 }, () => ({ kind: "cut" as const, after: 1 })));
	const oa = await openai.chat.completions.create({
		model: "gpt-4o-mini",
		stream: true,
		max_tokens: 50,
		messages: [{ role: "user", content: "hi" }]
	});
	let oaText = "";
	const oaErr = await (async () => {
		for await (const ch of oa) oaText += ch.choices[0]?.delta?.content ?? "";
	})().catch(e => e);
	expect(oaErr).toBeInstanceOf(OpenAI.APIError);
	expect(oaText.startsWith(DEFAULT_CHUNKS[0])).toBe(true);
	// Delivered output is charged; nothing stays held.
	const after = await w.settled(u.token);
	expect(after.available).toBeLessThanOrEqual(before.available);
});

describe("errors raise the Anthropic SDK's exception classes", () => {
	const create = (c: Anthropic, body: Record<string, unknown> = {}) =>
		c.messages.create({
			model: "claude-haiku",
			max_tokens: 10,
			messages: [{ role: "user", content: "hi" }],
			...body
		} as never);

	test("401, 403, 404, 400, 402", async () => {
		expect(
			await create(
				new Anthropic({ apiKey: "ff_nope_0123456789abcdefghij", baseURL: w.node.baseUrl, maxRetries: 0 })
			).catch(e => e)
		).toBeInstanceOf(Anthropic.AuthenticationError);
		const noScope = await w.newKey(u.token, ["tasks:read"]);
		expect(
			await create(new Anthropic({ apiKey: noScope, baseURL: w.node.baseUrl, maxRetries: 0 })).catch(e => e)
		).toBeInstanceOf(Anthropic.PermissionDeniedError);
		const nf = await create(claude, { model: "claude-9" }).catch(e => e);
		expect(nf).toBeInstanceOf(Anthropic.NotFoundError);
		expect(nf.error).toMatchObject({ type: "error", error: { type: "not_found_error" } });
		for (const body of [
			{ messages: [{ role: "system", content: "x" }] },
			{ max_tokens: undefined },
			{ top_k: 5 },
			{ nonsense: true },
			{ tools: [{ name: "t", input_schema: { type: "object", required: "x" } }] }
		]) {
			const e = await create(claude, body).catch(x => x);
			expect(e).toBeInstanceOf(Anthropic.BadRequestError);
			expect(e.error.error.type).toBe("invalid_request_error");
		}
		const poor = await w.user(0);
		const p = await create(new Anthropic({ apiKey: poor.key, baseURL: w.node.baseUrl, maxRetries: 2 })).catch(
			e => e
		);
		expect(p).toBeInstanceOf(Anthropic.PaymentRequiredError);
		expect(p.error.error.type).toBe("billing_error");
	});

	test("529 overloaded when no deployment can answer before the first byte", async () => {
		w.anthropic.enqueue(...Array.from({ length: 4 }, () => ({ kind: "status" as const, status: 500 })));
		const e = await create(claude).catch(x => x);
		expect(e).toBeInstanceOf(Anthropic.OverloadedError);
		expect(e.error.error.type).toBe("overloaded_error");
		await w.settled(u.token);
	});
});
