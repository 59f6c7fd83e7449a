/**
 * The translation tables of the compatible endpoints, both ways: OpenAI and Anthropic requests
 * into the neutral form, the neutral form into each provider's body, each provider's stream into
 * neutral events, and neutral events into each protocol's frames and responses.
 */
import { findModel } from "../../../src/ai/catalog";
import { readAnthropicRequest } from "../../../src/compat/anthropic-in";
import { CompatError, errorResponse, fromPlatformError, toWire } from "../../../src/compat/errors";
import { PaymentRequired, TooManyRequests } from "../../../src/errors";
import { toMoleculerError } from "../../../src/middlewares/domain-errors";
import { readOpenAIRequest } from "../../../src/compat/openai-in";
import type { ChatEvent, UpstreamEvent } from "../../../src/compat/types";
import {
	ANTHROPIC_STOP,
	OPENAI_FINISH,
	readAnthropicStream,
	readOpenAIStream,
	toAnthropicBody,
	toOpenAIBody
} from "../../../src/compat/upstream";
import {
	ANTHROPIC_STOP_OF,
	AnthropicStreamWriter,
	OpenAIStreamWriter,
	anthropicResponse,
	collect,
	openAIResponse
} from "../../../src/compat/writers";

const gpt = findModel("gpt-4o-mini")!;
const o3 = findModel("o3-mini")!;

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
	const out: T[] = [];
	for await (const x of it) out.push(x);
	return out;
}
async function* from<T>(xs: T[]) {
	for (const x of xs) yield x;
}

describe("OpenAI request → neutral → each provider", () => {
	const body = {
		model: "gpt-4o-mini",
		messages: [
			{ role: "developer", content: "rules" },
			{
				role: "user",
				content: [
					{ type: "text", text: "look" },
					{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "low" } }
				]
			},
			{
				role: "assistant",
				content: null,
				tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: '{"a":1}' } }]
			},
			{ role: "tool", tool_call_id: "c1", content: "42" },
			{ role: "user", content: "and?" }
		],
		tools: [
			{
				type: "function",
				function: { name: "f", parameters: { type: "object", properties: { a: { type: "integer" } } } }
			}
		],
		tool_choice: "required",
		parallel_tool_calls: false,
		temperature: 0.3,
		stop: "END",
		max_completion_tokens: 77,
		stream: true,
		stream_options: { include_usage: true }
	};
	const req = readOpenAIRequest(body);

	test("read", () => {
		expect(req.messages.map(m => m.role)).toEqual(["system", "user", "assistant", "tool", "user"]);
		expect(req).toMatchObject({
			toolChoice: "required",
			parallelToolCalls: false,
			stop: ["END"],
			maxTokens: 77,
			includeUsage: true
		});
	});

	test("to an OpenAI upstream: the same conversation; reasoning models get developer + max_completion_tokens", () => {
		const b = toOpenAIBody(req, gpt, "gpt-4o-mini", 77, "");
		expect(b.messages).toEqual([
			{ role: "system", content: "rules" },
			{
				role: "user",
				content: [
					{ type: "text", text: "look" },
					{ type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "low" } }
				]
			},
			{
				role: "assistant",
				content: null,
				tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: '{"a":1}' } }]
			},
			{ role: "tool", tool_call_id: "c1", content: "42" },
			{ role: "user", content: "and?" }
		]);
		expect(b).toMatchObject({
			max_tokens: 77,
			tool_choice: "required",
			parallel_tool_calls: false,
			stop: ["END"],
			stream_options: { include_usage: true }
		});
		const r = toOpenAIBody(req, o3, "o3-mini", 77, "");
		expect(r.max_completion_tokens).toBe(77);
		expect(r.max_tokens).toBeUndefined();
		expect((r.messages as Array<{ role: string }>)[0].role).toBe("developer");
	});

	test("to an Anthropic upstream: system lifted, tool calls as tool_use, results as tool_result, images as sources", () => {
		const b = toAnthropicBody(req, "claude-x", 77, "");
		expect(b.system).toEqual([{ type: "text", text: "rules" }]);
		expect(b.messages).toEqual([
			{
				role: "user",
				content: [
					{ type: "text", text: "look" },
					{ type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } }
				]
			},
			{ role: "assistant", content: [{ type: "tool_use", id: "c1", name: "f", input: { a: 1 } }] },
			{
				role: "user",
				content: [
					{ type: "tool_result", tool_use_id: "c1", content: [{ type: "text", text: "42" }] },
					{ type: "text", text: "and?" }
				]
			}
		]);
		expect(b).toMatchObject({
			max_tokens: 77,
			stop_sequences: ["END"],
			tool_choice: { type: "any", disable_parallel_tool_use: true },
			tools: [{ name: "f", input_schema: { type: "object", properties: { a: { type: "integer" } } } }]
		});
	});

	test("tool_choice table", () => {
		const base = { model: "m", messages: [{ role: "user", content: "x" }], tools: body.tools };
		const anth = (tc: unknown) =>
			toAnthropicBody(readOpenAIRequest({ ...base, tool_choice: tc }), "c", 10, "").tool_choice;
		expect(anth("auto")).toEqual({ type: "auto" });
		expect(anth("none")).toEqual({ type: "none" });
		expect(anth("required")).toEqual({ type: "any" });
		expect(anth({ type: "function", function: { name: "f" } })).toEqual({ type: "tool", name: "f" });
		const oa = (tc: unknown) =>
			toOpenAIBody(
				readAnthropicRequest({
					...base,
					max_tokens: 5,
					messages: [{ role: "user", content: "x" }],
					tools: [{ name: "f", input_schema: { type: "object" } }],
					tool_choice: tc
				}),
				gpt,
				"g",
				5,
				""
			).tool_choice;
		expect(oa({ type: "auto" })).toBe("auto");
		expect(oa({ type: "any" })).toBe("required");
		expect(oa({ type: "none" })).toBe("none");
		expect(oa({ type: "tool", name: "f" })).toEqual({ type: "function", function: { name: "f" } });
	});

	test("continuation: OpenAI gets the partial answer and a continue turn; Anthropic a trimmed prefill", () => {
		const simple = readOpenAIRequest({ model: "m", messages: [{ role: "user", content: "x" }] });
		const o = toOpenAIBody(simple, gpt, "g", 5, "partial ");
		expect((o.messages as unknown[]).slice(-2)).toEqual([
			{ role: "assistant", content: "partial " },
			{ role: "user", content: expect.stringMatching(/cut off/) }
		]);
		const a = toAnthropicBody(simple, "c", 5, "partial ");
		expect((a.messages as unknown[]).slice(-1)).toEqual([
			{ role: "assistant", content: [{ type: "text", text: "partial" }] }
		]);
	});
});

describe("Anthropic request → neutral", () => {
	test("tool_result blocks become tool messages before the turn's text; cache_control is kept", () => {
		const r = readAnthropicRequest({
			model: "claude-haiku",
			max_tokens: 10,
			system: [{ type: "text", text: "S", cache_control: { type: "ephemeral" } }],
			messages: [
				{ role: "user", content: "q" },
				{ role: "assistant", content: [{ type: "tool_use", id: "t1", name: "f", input: { x: 1 } }] },
				{
					role: "user",
					content: [
						{ type: "tool_result", tool_use_id: "t1", content: "r", is_error: true },
						{ type: "text", text: "more" }
					]
				}
			],
			tools: [{ name: "f", input_schema: { type: "object" }, cache_control: { type: "ephemeral" } }],
			metadata: { user_id: "u-1" }
		});
		expect(r.messages).toEqual([
			{ role: "system", content: [{ type: "text", text: "S", cacheControl: { type: "ephemeral" } }] },
			{ role: "user", content: [{ type: "text", text: "q" }] },
			{ role: "assistant", content: [], toolCalls: [{ id: "t1", name: "f", arguments: '{"x":1}' }] },
			{ role: "tool", toolCallId: "t1", content: [{ type: "text", text: "r" }], isError: true },
			{ role: "user", content: [{ type: "text", text: "more" }] }
		]);
		expect(r.tools![0].cacheControl).toEqual({ type: "ephemeral" });
		expect(r.endUser).toBe("u-1");
		const b = toAnthropicBody(r, "c", 10, "");
		expect(b.system).toEqual([{ type: "text", text: "S", cache_control: { type: "ephemeral" } }]);
		expect((b.tools as unknown[])[0]).toEqual({
			name: "f",
			input_schema: { type: "object" },
			cache_control: { type: "ephemeral" }
		});
		const o = toOpenAIBody(r, gpt, "g", 10, "");
		expect((o.messages as unknown[]).slice(3)).toEqual([
			{ role: "tool", tool_call_id: "t1", content: "Error: r" },
			{ role: "user", content: "more" }
		]);
	});

	test("refusals by name", () => {
		const base = { model: "m", max_tokens: 5, messages: [{ role: "user", content: "x" }] };
		const param = (b: unknown) => {
			try {
				readAnthropicRequest(b);
			} catch (e) {
				return (e as CompatError).param;
			}
			return null;
		};
		expect(param({ ...base, thinking: { type: "enabled", budget_tokens: 1000 } })).toBe("thinking");
		expect(param({ ...base, top_k: 3 })).toBe("top_k");
		expect(param({ ...base, extra: 1 })).toBe("extra");
		expect(param({ ...base, messages: [{ role: "system", content: "x" }] })).toBe("messages[0].role");
		expect(param({ ...base, max_tokens: undefined })).toBe("max_tokens");
		expect(param({ ...base, tools: [{ type: "web_search_20250305", name: "web_search" }] })).toBe("tools[0].type");
	});
});

describe("OpenAI refusals by name", () => {
	const base = { model: "m", messages: [{ role: "user", content: "x" }] };
	const param = (extra: Record<string, unknown>) => {
		try {
			readOpenAIRequest({ ...base, ...extra });
		} catch (e) {
			return [(e as CompatError).kind, (e as CompatError).param];
		}
		return null;
	};
	test.each([
		[{ n: 3 }, "n"],
		[{ logprobs: true }, "logprobs"],
		[{ audio: { voice: "x" } }, "audio"],
		[{ functions: [] }, "functions"],
		[{ modalities: ["text", "audio"] }, "modalities"],
		[{ presence_penalty: 1 }, "presence_penalty"],
		[{ max_tokens: 5, max_completion_tokens: 5 }, "max_tokens"],
		[{ stream_options: { include_usage: true } }, "stream_options"],
		[{ messages: [{ role: "function", content: "x", name: "f" }] }, "messages[0].role"],
		[
			{ messages: [{ role: "user", content: [{ type: "input_audio", input_audio: {} }] }] },
			"messages[0].content[0].type"
		],
		[{ tool_choice: "required" }, "tool_choice"],
		[
			{ response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "nope" } } } },
			"response_format.json_schema.schema"
		]
	])("%j → 400 on %s", (extra, p) => {
		expect(param(extra)).toEqual(["invalid_request", p]);
	});
	test("n = 1 and empty logit_bias are accepted", () => {
		expect(param({ n: 1, logit_bias: {} })).toBeNull();
	});
});

describe("provider streams → neutral events", () => {
	test("OpenAI chunks: text, interleaved tool deltas, finish, usage with cached and reasoning tokens", async () => {
		const evs = await all(
			readOpenAIStream(
				from([
					{ choices: [{ delta: { content: "Hi" } }] },
					{
						choices: [
							{ delta: { tool_calls: [{ index: 0, id: "c1", function: { name: "f", arguments: "" } }] } }
						]
					},
					{ choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '{"a":' } }] } }] },
					{ choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: "1}" } }] } }] },
					{ choices: [{ delta: {}, finish_reason: "tool_calls" }] },
					{
						choices: [],
						usage: {
							prompt_tokens: 10,
							completion_tokens: 5,
							prompt_tokens_details: { cached_tokens: 4 },
							completion_tokens_details: { reasoning_tokens: 2 }
						}
					}
				])
			)
		);
		expect(evs).toEqual<UpstreamEvent[]>([
			{ type: "text", text: "Hi" },
			{ type: "tool", index: 0, id: "c1", name: "f", args: "" },
			{ type: "tool", index: 0, args: '{"a":' },
			{ type: "tool", index: 0, args: "1}" },
			{
				type: "done",
				finish: "tool_calls",
				stopSequence: null,
				usage: {
					promptTokens: 10,
					completionTokens: 5,
					cachedTokens: 4,
					cacheWriteTokens: 0,
					reasoningTokens: 2
				}
			}
		]);
	});

	test("OpenAI: no finish_reason is a cut", async () => {
		await expect(all(readOpenAIStream(from([{ choices: [{ delta: { content: "Hi" } }] }])))).rejects.toMatchObject({
			kind: "truncated"
		});
	});

	test("Anthropic events: cache usage, tool_use blocks, stop reasons; no message_stop is a cut", async () => {
		const evs = await all(
			readAnthropicStream(
				from([
					{
						type: "message_start",
						message: {
							usage: { input_tokens: 3, cache_read_input_tokens: 7, cache_creation_input_tokens: 2 }
						}
					},
					{ type: "content_block_start", index: 0, content_block: { type: "text" } },
					{ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "ok" } },
					{ type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "t", name: "f" } },
					{ type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: "{}" } },
					{ type: "message_delta", delta: { stop_reason: "tool_use" }, usage: { output_tokens: 9 } },
					{ type: "message_stop" }
				])
			)
		);
		expect(evs).toEqual<UpstreamEvent[]>([
			{ type: "text", text: "ok" },
			{ type: "tool", index: 0, id: "t", name: "f", args: "" },
			{ type: "tool", index: 0, args: "{}" },
			{
				type: "done",
				finish: "tool_calls",
				stopSequence: null,
				usage: {
					promptTokens: 12,
					completionTokens: 9,
					cachedTokens: 7,
					cacheWriteTokens: 2,
					reasoningTokens: 0
				}
			}
		]);
		await expect(
			all(
				readAnthropicStream(
					from([
						{ type: "message_start", message: { usage: { input_tokens: 1 } } },
						{ type: "message_delta", delta: { stop_reason: "end_turn" } }
					])
				)
			)
		).rejects.toMatchObject({ kind: "truncated" });
	});

	test("finish and stop reason tables are inverse where both protocols have the reason", () => {
		expect(OPENAI_FINISH).toMatchObject({
			stop: "stop",
			length: "length",
			tool_calls: "tool_calls",
			content_filter: "content_filter"
		});
		expect(ANTHROPIC_STOP).toMatchObject({
			end_turn: "stop",
			max_tokens: "length",
			tool_use: "tool_calls",
			refusal: "content_filter",
			stop_sequence: "stop"
		});
		for (const [neutral, anth] of Object.entries(ANTHROPIC_STOP_OF)) expect(ANTHROPIC_STOP[anth]).toBe(neutral);
	});
});

describe("neutral events → each protocol", () => {
	const usage = { promptTokens: 20, completionTokens: 8, cachedTokens: 5, cacheWriteTokens: 3, reasoningTokens: 1 };
	const events: ChatEvent[] = [
		{ t: "start", id: "abc", model: "claude-haiku", created: 1, promptTokens: 18 },
		{ t: "text", text: "Hel" },
		{ t: "text", text: "lo" },
		{ t: "tool", index: 0, id: "c1", name: "f", args: '{"a"' },
		{ t: "tool", index: 0, args: ":1}" },
		{ t: "done", finish: "tool_calls", stopSequence: null, usage, costCredits: 1 }
	];

	test("OpenAI response and chunks", () => {
		const r = openAIResponse(collect(events, () => new Error("x")));
		expect(r.choices[0]).toMatchObject({
			message: {
				role: "assistant",
				content: "Hello",
				tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: '{"a":1}' } }]
			},
			finish_reason: "tool_calls"
		});
		expect(r.usage).toEqual({
			prompt_tokens: 20,
			completion_tokens: 8,
			total_tokens: 28,
			prompt_tokens_details: { cached_tokens: 5 },
			completion_tokens_details: { reasoning_tokens: 1 }
		});
		const w = new OpenAIStreamWriter(true);
		const frames = events.map(e => w.write(e)).join("");
		const datas = frames
			.split("\n\n")
			.filter(Boolean)
			.map(f => f.slice(6));
		expect(datas[datas.length - 1]).toBe("[DONE]");
		const parsed = datas.slice(0, -1).map(d => JSON.parse(d));
		expect(parsed[3].choices[0].delta.tool_calls[0]).toEqual({
			index: 0,
			id: "c1",
			type: "function",
			function: { name: "f", arguments: '{"a"' }
		});
		expect(parsed[4].choices[0].delta.tool_calls[0]).toEqual({ index: 0, function: { arguments: ":1}" } });
		expect(parsed[parsed.length - 1]).toMatchObject({ choices: [], usage: { total_tokens: 28 } });
		expect(w.fail(new CompatError("overloaded", "gone"))).toBe(
			`data: ${JSON.stringify({ error: { message: "gone", type: "server_error", param: null, code: null } })}\n\n`
		);
	});

	test("Anthropic response and events", () => {
		const r = anthropicResponse(collect(events, () => new Error("x")));
		expect(r).toMatchObject({
			content: [
				{ type: "text", text: "Hello" },
				{ type: "tool_use", id: "c1", name: "f", input: { a: 1 } }
			],
			stop_reason: "tool_use",
			usage: { input_tokens: 12, output_tokens: 8, cache_read_input_tokens: 5, cache_creation_input_tokens: 3 }
		});
		const w = new AnthropicStreamWriter();
		const frames = events.map(e => w.write(e)).join("");
		expect([...frames.matchAll(/^event: (\w+)$/gm)].map(m => m[1])).toEqual([
			"message_start",
			"ping",
			"content_block_start",
			"content_block_delta",
			"content_block_delta",
			"content_block_stop",
			"content_block_start",
			"content_block_delta",
			"content_block_delta",
			"content_block_stop",
			"message_delta",
			"message_stop"
		]);
		expect(w.fail(new CompatError("overloaded", "busy"))).toBe(
			`event: error\ndata: ${JSON.stringify({ type: "error", error: { type: "overloaded_error", message: "busy" } })}\n\n`
		);
	});

	test("error shapes and statuses", () => {
		const e = new CompatError("insufficient_credits", "poor");
		expect(errorResponse("openai", e, "r1")).toEqual({
			status: 429,
			headers: { "x-should-retry": "false" },
			body: { error: { message: "poor", type: "insufficient_quota", param: null, code: "insufficient_quota" } }
		});
		expect(errorResponse("anthropic", e, "r1")).toEqual({
			status: 402,
			headers: { "x-should-retry": "false" },
			body: { type: "error", error: { type: "billing_error", message: "poor" }, request_id: "r1" }
		});
		const rl = errorResponse("anthropic", new CompatError("rate_limited", "slow", null, null, 1.5), "r");
		expect(rl.status).toBe(429);
		expect(rl.headers).toEqual({ "retry-after": "2", "retry-after-ms": "1500" });
		expect(errorResponse("anthropic", new CompatError("overloaded", "x"), "r").status).toBe(529);
		expect(errorResponse("openai", new CompatError("overloaded", "x"), "r").status).toBe(503);
	});

	test("platform errors, with or without a broker hop, and CompatErrors across the wire", () => {
		// In process: a DomainError (string code, numeric status); after a hop: Moleculer's shape.
		expect(fromPlatformError(TooManyRequests("slow", 7))).toMatchObject({ kind: "rate_limited", retryAfterS: 7 });
		expect(fromPlatformError(toMoleculerError(TooManyRequests("slow", 7)))).toMatchObject({
			kind: "rate_limited",
			retryAfterS: 7
		});
		expect(fromPlatformError(toMoleculerError(PaymentRequired("poor")))).toMatchObject({
			kind: "insufficient_credits"
		});
		expect(fromPlatformError(new Error("boom"))).toMatchObject({ kind: "api_error", message: "Internal error" });
		const c = new CompatError("permission", "no", "model", "model_not_allowed", null);
		for (const wired of [toWire(c), toMoleculerError(toWire(c))]) expect(fromPlatformError(wired)).toEqual(c);
	});
});
