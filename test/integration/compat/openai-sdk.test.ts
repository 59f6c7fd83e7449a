/**
 * The official `openai` SDK for Node against the gateway's /v1, with the fake upstreams behind it:
 * streaming and not, a tool-call round trip, JSON-schema output, usage, and every refusal raised as
 * the SDK's own exception class. Credits: every request settles its hold (nothing left held) at the
 * catalogue price of its reported usage.
 */
import OpenAI from "openai";
import { DEFAULT_CHUNKS } from "../../support/fake-llm-server";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(60_000);

let w: CompatWorld;
let u: { id: string; token: string; key: string };
let client: OpenAI;

beforeAll(async () => {
	w = await startCompatWorld();
	u = await w.user(100_000, ["ai:use"], {}, "team");
	client = new OpenAI({ apiKey: u.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 0 });
});
afterAll(() => w?.close());

const ANSWER = DEFAULT_CHUNKS.join("");

test("non-streaming completion: text, usage, and the hold settled at the catalogue price", async () => {
	const before = await w.balance(u.token);
	const r = await client.chat.completions.create({
		model: "gpt-4o-mini",
		messages: [
			{ role: "developer", content: "Be brief." },
			{ role: "user", content: "Say hello" }
		],
		temperature: 0.2,
		top_p: 0.9,
		seed: 7,
		stop: ["\n\n"],
		max_tokens: 50
	});
	expect(r.object).toBe("chat.completion");
	expect(r.model).toBe("gpt-4o-mini");
	expect(r.choices[0].message.content).toBe(ANSWER);
	expect(r.choices[0].finish_reason).toBe("stop");
	const up = w.openai.requests[w.openai.requests.length - 1].body;
	expect(up).toMatchObject({
		model: "gpt-4o-mini",
		temperature: 0.2,
		top_p: 0.9,
		seed: 7,
		stop: ["\n\n"],
		max_tokens: 50,
		messages: [
			{ role: "system", content: "Be brief." },
			{ role: "user", content: "Say hello" }
		]
	});
	expect(up.max_completion_tokens).toBeUndefined();
	expect(r.usage!.completion_tokens).toBe(DEFAULT_CHUNKS.length);
	expect(r.usage!.prompt_tokens).toBeGreaterThan(0);
	const after = await w.settled(u.token);
	// gpt-4o-mini: 150 in / 600 out per 1M credits, rounded up once.
	const cost = Math.ceil((r.usage!.prompt_tokens * 150 + r.usage!.completion_tokens * 600) / 1e6);
	expect(before.available - after.available).toBe(cost);
});

test("streaming with include_usage: deltas in order, a finish chunk, then the usage chunk", async () => {
	const stream = await client.chat.completions.create({
		model: "gpt-4o-mini",
		messages: [{ role: "user", content: "Stream it" }],
		stream: true,
		stream_options: { include_usage: true }
	});
	let text = "";
	let finish: string | null = null;
	let usage: OpenAI.CompletionUsage | null | undefined = null;
	for await (const chunk of stream) {
		text += chunk.choices[0]?.delta?.content ?? "";
		finish = chunk.choices[0]?.finish_reason ?? finish;
		if (chunk.usage) usage = chunk.usage;
	}
	expect(text).toBe(ANSWER);
	expect(finish).toBe("stop");
	expect(usage!.completion_tokens).toBe(DEFAULT_CHUNKS.length);
	expect(usage!.total_tokens).toBe(usage!.prompt_tokens + usage!.completion_tokens);
	await w.settled(u.token);
});

test("tool-call round trip: parallel calls streamed, results sent back, the answer uses them", async () => {
	w.openai.enqueue({
		kind: "tools",
		calls: [
			{ id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' },
			{ id: "call_2", name: "get_weather", arguments: '{"city":"Oslo"}' }
		]
	});
	const tools: OpenAI.ChatCompletionTool[] = [
		{
			type: "function",
			function: {
				name: "get_weather",
				description: "Weather in a city",
				parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] }
			}
		}
	];
	const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Weather in Paris and Oslo?" }];
	const stream = client.chat.completions.stream({
		model: "gpt-4o-mini",
		messages,
		tools,
		tool_choice: "auto",
		parallel_tool_calls: true
	});
	const first = await stream.finalChatCompletion();
	expect(first.choices[0].finish_reason).toBe("tool_calls");
	const calls = first.choices[0].message.tool_calls!;
	expect(
		calls.map(c => [
			c.id,
			c.type === "function" && c.function.name,
			c.type === "function" && JSON.parse(c.function.arguments)
		])
	).toEqual([
		["call_1", "get_weather", { city: "Paris" }],
		["call_2", "get_weather", { city: "Oslo" }]
	]);
	const sent = w.openai.requests[w.openai.requests.length - 1].body;
	expect(sent).toMatchObject({ tool_choice: "auto", parallel_tool_calls: true, tools });

	w.openai.enqueue({ kind: "ok", chunks: ["Paris 20C", ", Oslo 5C"] });
	const second = await client.chat.completions.create({
		model: "gpt-4o-mini",
		tools,
		messages: [
			...messages,
			first.choices[0].message as OpenAI.ChatCompletionMessageParam,
			{ role: "tool", tool_call_id: "call_1", content: "20C" },
			{ role: "tool", tool_call_id: "call_2", content: "5C" }
		]
	});
	expect(second.choices[0].message.content).toBe("Paris 20C, Oslo 5C");
	const back = w.openai.requests[w.openai.requests.length - 1].body.messages as Array<Record<string, unknown>>;
	expect(back.slice(1)).toEqual([
		{
			role: "assistant",
			content: null,
			tool_calls: [
				{ id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
				{ id: "call_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } }
			]
		},
		{ role: "tool", tool_call_id: "call_1", content: "20C" },
		{ role: "tool", tool_call_id: "call_2", content: "5C" }
	]);
	await w.settled(u.token);
});

test("JSON-schema output: the schema goes upstream and the answer parses", async () => {
	w.openai.enqueue({ kind: "ok", chunks: ['{"name":', '"Ada",', '"age":36}'] });
	const schema = {
		type: "object",
		properties: { name: { type: "string" }, age: { type: "integer" } },
		required: ["name", "age"],
		additionalProperties: false
	};
	const r = await client.chat.completions.create({
		model: "gpt-4o-mini",
		messages: [{ role: "user", content: "Who?" }],
		response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } }
	});
	expect(JSON.parse(r.choices[0].message.content!)).toEqual({ name: "Ada", age: 36 });
	expect(w.openai.requests[w.openai.requests.length - 1].body.response_format).toEqual({
		type: "json_schema",
		json_schema: { name: "person", schema, strict: true }
	});
});

test("reasoning model: max_completion_tokens upstream, reasoning tokens reported and billed", async () => {
	w.openai.enqueue({ kind: "ok", usageExtra: { reasoningTokens: 4 } });
	const before = await w.balance(u.token);
	const r = await client.chat.completions.create({
		model: "o3-mini",
		messages: [
			{ role: "system", content: "Think." },
			{ role: "user", content: "2+2?" }
		],
		max_completion_tokens: 100,
		reasoning_effort: "low"
	});
	const up = w.openai.requests[w.openai.requests.length - 1].body;
	expect(up.max_completion_tokens).toBe(100);
	expect(up.max_tokens).toBeUndefined();
	expect(up.reasoning_effort).toBe("low");
	expect((up.messages as Array<{ role: string }>)[0].role).toBe("developer");
	expect(r.usage!.completion_tokens_details!.reasoning_tokens).toBe(4);
	const after = await w.settled(u.token);
	expect(before.available - after.available).toBe(
		Math.ceil((r.usage!.prompt_tokens * 1100 + r.usage!.completion_tokens * 4400) / 1e6)
	);
});

describe("errors raise the SDK's exception classes", () => {
	const call = (c: OpenAI, body: Record<string, unknown>) =>
		c.chat.completions.create({
			model: "gpt-4o-mini",
			messages: [{ role: "user", content: "hi" }],
			...body
		} as never);

	test("401 for a bad key", async () => {
		const bad = new OpenAI({
			apiKey: "ff_nope_0123456789abcdefghij",
			baseURL: `${w.node.baseUrl}/v1`,
			maxRetries: 0
		});
		const err = await call(bad, {}).catch(e => e);
		expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
		expect(err.status).toBe(401);
		expect(err.code).toBe("invalid_api_key");
	});

	test("403 for a key without ai:use", async () => {
		const key = await w.newKey(u.token, ["projects:read"]);
		const err = await call(new OpenAI({ apiKey: key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 0 }), {}).catch(
			e => e
		);
		expect(err).toBeInstanceOf(OpenAI.PermissionDeniedError);
		expect(err.code).toBe("missing_scope");
	});

	test("404 for an unknown model", async () => {
		const err = await call(client, { model: "gpt-17" }).catch(e => e);
		expect(err).toBeInstanceOf(OpenAI.NotFoundError);
		expect(err.code).toBe("model_not_found");
		expect(err.param).toBe("model");
	});

	test("400 for unsupported options, bad roles, bad schemas, malformed JSON, images on a text model", async () => {
		const cases: Array<[Record<string, unknown>, string]> = [
			[{ n: 2 }, "n"],
			[{ messages: [{ role: "wizard", content: "x" }] }, "messages[0].role"],
			[{ logprobs: true }, "logprobs"],
			[{ frobnicate: 1 }, "frobnicate"],
			[
				{
					tools: [
						{
							type: "function",
							function: { name: "f", parameters: { type: "object", properties: { a: { type: 12 } } } }
						}
					]
				},
				"tools[0].function.parameters"
			],
			[
				{
					model: "o3-mini",
					messages: [
						{
							role: "user",
							content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }]
						}
					]
				},
				"messages[0].content"
			]
		];
		for (const [body, param] of cases) {
			const err = await call(client, body).catch(e => e);
			expect(err).toBeInstanceOf(OpenAI.BadRequestError);
			expect(err.param).toBe(param);
			expect(err.error).toMatchObject({ type: "invalid_request_error" });
		}
		const raw = await fetch(`${w.node.baseUrl}/v1/chat/completions`, {
			method: "POST",
			headers: { authorization: `Bearer ${u.key}`, "content-type": "application/json" },
			body: '{"model": "gpt-4o-mini", "messages": ['
		});
		expect(raw.status).toBe(400);
		expect(((await raw.json()) as { error: unknown }).error).toMatchObject({
			type: "invalid_request_error",
			code: "invalid_json"
		});
		const big = await fetch(`${w.node.baseUrl}/v1/chat/completions`, {
			method: "POST",
			headers: { authorization: `Bearer ${u.key}`, "content-type": "application/json" },
			body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(1_100_000) }] })
		});
		expect(big.status).toBe(413);
		expect(((await big.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
	});

	test("insufficient credits: 429 insufficient_quota, not retried by the SDK", async () => {
		const poor = await w.user(0);
		const before = w.openai.requests.length;
		const retrying = new OpenAI({ apiKey: poor.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 2 });
		const started = Date.now();
		const err = await call(retrying, {}).catch(e => e);
		expect(err).toBeInstanceOf(OpenAI.RateLimitError);
		expect(err.code).toBe("insufficient_quota");
		expect(err.headers.get("x-should-retry")).toBe("false");
		expect(Date.now() - started).toBeLessThan(5_000);
		expect(w.openai.requests.length).toBe(before);
	});
});
