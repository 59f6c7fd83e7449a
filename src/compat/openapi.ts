/**
 * The /v1 routes (OpenAI Chat Completions, Anthropic Messages, models, count_tokens) in the OpenAPI
 * document: request and response schemas in each protocol's own shape, the statuses each route
 * answers with (src/compat/errors.ts's tables), and the SSE frames of the streaming answers.
 * Plain JSON Schema (the protocols' shapes are not TypeBox values used elsewhere). What the
 * readers refuse by name (n > 1, logprobs, audio, top_k, …) is listed so clients see it, and is
 * answered with a 400 naming the field.
 */
import { ANTHROPIC_ERRORS, ErrorKind, OPENAI_ERRORS } from "./errors";

type Json = Record<string, unknown>;

const str = (maxLength = 1_048_576, extra: Json = {}): Json => ({ type: "string", maxLength, ...extra });
const int = (minimum: number, maximum: number): Json => ({ type: "integer", format: "int64", minimum, maximum });
const num = (minimum: number, maximum: number): Json => ({ type: "number", minimum, maximum });
const list = (items: Json, maxItems = 1000): Json => ({ type: "array", items, maxItems });
const obj = (properties: Record<string, Json>, required: string[] = [], extra: Json = {}): Json => ({
	type: "object",
	properties,
	...(required.length ? { required } : {}),
	...extra
});
const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const nullable = (s: Json): Json => ({ oneOf: [s, { type: "null" }] });
/** A JSON Schema or other free-form object the client supplies (compiled by Ajv at the gateway). */
const freeObject = (description: string): Json => ({
	type: "object",
	description,
	maxProperties: 1000,
	additionalProperties: true
});
const TOKENS = int(0, 10_000_000);
const CACHE = obj({ type: { type: "string", enum: ["ephemeral"] }, ttl: { type: "string", enum: ["5m", "1h"] } }, [
	"type"
]);

// ---- OpenAI --------------------------------------------------------------------------------------

const OA_TEXT_PART = obj({ type: { type: "string", enum: ["text"] }, text: str() }, ["type", "text"]);
const OA_IMAGE_PART = obj(
	{
		type: { type: "string", enum: ["image_url"] },
		image_url: obj({ url: str(), detail: { type: "string", enum: ["auto", "low", "high"] } }, ["url"])
	},
	["type", "image_url"]
);
const OA_TOOL_CALL = obj(
	{
		id: str(128),
		type: { type: "string", enum: ["function"] },
		function: obj({ name: str(64), arguments: str() }, ["name", "arguments"])
	},
	["id", "type", "function"]
);
const oaText = { oneOf: [str(), list(OA_TEXT_PART)] };
const OA_MESSAGE: Json = {
	oneOf: [
		obj({ role: { type: "string", enum: ["system", "developer"] }, content: oaText, name: str(64) }, [
			"role",
			"content"
		]),
		obj(
			{
				role: { type: "string", enum: ["user"] },
				content: { oneOf: [str(), list({ oneOf: [OA_TEXT_PART, OA_IMAGE_PART] })] },
				name: str(64)
			},
			["role", "content"]
		),
		obj(
			{
				role: { type: "string", enum: ["assistant"] },
				content: nullable(oaText),
				refusal: nullable(str()),
				tool_calls: list(OA_TOOL_CALL, 128),
				name: str(64)
			},
			["role"]
		),
		obj({ role: { type: "string", enum: ["tool"] }, tool_call_id: str(128), content: oaText }, [
			"role",
			"tool_call_id",
			"content"
		])
	]
};
const OA_TOOL = obj(
	{
		type: { type: "string", enum: ["function"] },
		function: obj(
			{
				name: str(64, { pattern: "^[A-Za-z0-9_-]{1,64}$" }),
				description: str(),
				parameters: freeObject("The arguments' JSON Schema (must compile)"),
				strict: nullable({ type: "boolean" })
			},
			["name"]
		)
	},
	["type", "function"]
);
const refusedField = (why: string): Json => ({ description: `Refused with 400: ${why}` });

const OA_REQUEST = obj(
	{
		model: str(256),
		messages: list(OA_MESSAGE, 10_000),
		stream: nullable({ type: "boolean" }),
		stream_options: nullable(obj({ include_usage: { type: "boolean" } })),
		max_tokens: nullable(int(1, 1_000_000)),
		max_completion_tokens: nullable(int(1, 1_000_000)),
		temperature: nullable(num(0, 2)),
		top_p: nullable(num(0, 1)),
		stop: nullable({ oneOf: [str(1000), list(str(1000), 4)] }),
		seed: nullable(int(-9_007_199_254_740_991, 9_007_199_254_740_991)),
		tools: list(OA_TOOL, 128),
		tool_choice: {
			oneOf: [
				{ type: "string", enum: ["auto", "none", "required"] },
				obj({ type: { type: "string", enum: ["function"] }, function: obj({ name: str(64) }, ["name"]) }, [
					"type",
					"function"
				])
			]
		},
		parallel_tool_calls: nullable({ type: "boolean" }),
		response_format: {
			oneOf: [
				obj({ type: { type: "string", enum: ["text", "json_object"] } }, ["type"]),
				obj(
					{
						type: { type: "string", enum: ["json_schema"] },
						json_schema: obj(
							{
								name: str(64),
								description: str(),
								schema: freeObject("The answer's JSON Schema (must compile)"),
								strict: nullable({ type: "boolean" })
							},
							["name"]
						)
					},
					["type", "json_schema"]
				)
			]
		},
		reasoning_effort: nullable({ type: "string", enum: ["minimal", "low", "medium", "high"] }),
		n: { ...int(1, 1), description: "Only 1 (n > 1 is refused with 400)" },
		user: str(256),
		metadata: freeObject("Accepted and not stored"),
		store: { type: "boolean" },
		service_tier: str(64),
		presence_penalty: refusedField("penalties are not supported (0 is accepted)"),
		frequency_penalty: refusedField("penalties are not supported (0 is accepted)"),
		logprobs: refusedField("logprobs are not supported (false is accepted)"),
		top_logprobs: refusedField("logprobs are not supported"),
		logit_bias: refusedField("logit_bias is not supported (an empty object is accepted)"),
		modalities: refusedField("only text"),
		audio: refusedField("audio output is not supported"),
		prediction: refusedField("predicted outputs are not supported"),
		functions: refusedField("deprecated; use tools"),
		function_call: refusedField("deprecated; use tool_choice"),
		web_search_options: refusedField("web search is not supported")
	},
	["model", "messages"],
	{ additionalProperties: false }
);

const OA_USAGE = obj(
	{
		prompt_tokens: TOKENS,
		completion_tokens: TOKENS,
		total_tokens: TOKENS,
		prompt_tokens_details: obj({ cached_tokens: TOKENS }),
		completion_tokens_details: obj({ reasoning_tokens: TOKENS })
	},
	["prompt_tokens", "completion_tokens", "total_tokens"]
);
const OA_FINISH = { type: "string", enum: ["stop", "length", "tool_calls", "content_filter"] };
const OA_COMPLETION = obj(
	{
		id: str(128),
		object: { type: "string", enum: ["chat.completion"] },
		created: int(0, 10_000_000_000),
		model: str(256),
		choices: list(
			obj(
				{
					index: int(0, 0),
					message: obj(
						{
							role: { type: "string", enum: ["assistant"] },
							content: nullable(str()),
							refusal: { type: "null" },
							tool_calls: list(OA_TOOL_CALL, 128)
						},
						["role", "content"]
					),
					logprobs: { type: "null" },
					finish_reason: OA_FINISH
				},
				["index", "message", "finish_reason"]
			),
			1
		),
		usage: OA_USAGE
	},
	["id", "object", "created", "model", "choices", "usage"]
);
const OA_CHUNK = obj(
	{
		id: str(128),
		object: { type: "string", enum: ["chat.completion.chunk"] },
		created: int(0, 10_000_000_000),
		model: str(256),
		choices: list(
			obj(
				{
					index: int(0, 0),
					delta: obj({
						role: { type: "string", enum: ["assistant"] },
						content: nullable(str()),
						refusal: { type: "null" },
						tool_calls: list(
							obj(
								{
									index: int(0, 127),
									id: str(128),
									type: { type: "string", enum: ["function"] },
									function: obj({ name: str(64), arguments: str() })
								},
								["index"]
							),
							128
						)
					}),
					logprobs: { type: "null" },
					finish_reason: nullable(OA_FINISH)
				},
				["index", "delta", "finish_reason"]
			),
			1
		),
		usage: nullable(OA_USAGE)
	},
	["id", "object", "created", "model", "choices"]
);
const OA_ERROR = obj(
	{
		error: obj(
			{
				message: str(4096),
				type: str(64, { enum: [...new Set(Object.values(OPENAI_ERRORS).map(m => m.type))] }),
				param: nullable(str(256)),
				code: nullable(str(64))
			},
			["message", "type", "param", "code"]
		)
	},
	["error"]
);

// ---- Anthropic -----------------------------------------------------------------------------------

const AN_TEXT = obj(
	{
		type: { type: "string", enum: ["text"] },
		text: str(),
		cache_control: CACHE,
		citations: nullable(list(freeObject("A citation")))
	},
	["type", "text"]
);
const AN_IMAGE = obj(
	{
		type: { type: "string", enum: ["image"] },
		source: {
			oneOf: [
				obj(
					{
						type: { type: "string", enum: ["base64"] },
						media_type: { type: "string", enum: ["image/jpeg", "image/png", "image/gif", "image/webp"] },
						data: str(20_000_000)
					},
					["type", "media_type", "data"]
				),
				obj({ type: { type: "string", enum: ["url"] }, url: str(8192) }, ["type", "url"])
			]
		},
		cache_control: CACHE
	},
	["type", "source"]
);
const AN_TOOL_USE = obj(
	{
		type: { type: "string", enum: ["tool_use"] },
		id: str(128),
		name: str(64),
		input: freeObject("The tool's arguments"),
		cache_control: CACHE
	},
	["type", "id", "name", "input"]
);
const AN_TOOL_RESULT = obj(
	{
		type: { type: "string", enum: ["tool_result"] },
		tool_use_id: str(128),
		content: { oneOf: [str(), list({ oneOf: [AN_TEXT, AN_IMAGE] })] },
		is_error: { type: "boolean" },
		cache_control: CACHE
	},
	["type", "tool_use_id"]
);
const AN_MESSAGE = obj(
	{
		role: { type: "string", enum: ["user", "assistant"] },
		content: { oneOf: [str(), list({ oneOf: [AN_TEXT, AN_IMAGE, AN_TOOL_USE, AN_TOOL_RESULT] })] }
	},
	["role", "content"]
);
const AN_TOOL = obj(
	{
		name: str(64, { pattern: "^[A-Za-z0-9_-]{1,64}$" }),
		description: str(),
		input_schema: freeObject("The input's JSON Schema (must compile)"),
		cache_control: CACHE
	},
	["name", "input_schema"]
);
const anRequest = (countOnly: boolean) =>
	obj(
		{
			model: str(256),
			messages: list(AN_MESSAGE, 10_000),
			...(countOnly ? {} : { max_tokens: int(1, 1_000_000) }),
			system: { oneOf: [str(), list(AN_TEXT)] },
			stop_sequences: list(str(1000), 4),
			stream: { type: "boolean" },
			temperature: num(0, 1),
			top_p: num(0, 1),
			tools: list(AN_TOOL, 128),
			tool_choice: obj(
				{
					type: { type: "string", enum: ["auto", "any", "tool", "none"] },
					name: str(64),
					disable_parallel_tool_use: { type: "boolean" }
				},
				["type"]
			),
			metadata: obj({ user_id: str(256) }),
			service_tier: str(64),
			top_k: refusedField("top_k is not supported"),
			thinking: refusedField("extended thinking is not supported"),
			mcp_servers: refusedField("MCP servers are not supported"),
			container: refusedField("server tools are not supported")
		},
		countOnly ? ["model", "messages"] : ["model", "messages", "max_tokens"],
		{ additionalProperties: false }
	);
const AN_USAGE = obj(
	{
		input_tokens: TOKENS,
		output_tokens: TOKENS,
		cache_creation_input_tokens: TOKENS,
		cache_read_input_tokens: TOKENS
	},
	["input_tokens", "output_tokens"]
);
const AN_STOP = { type: "string", enum: ["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"] };
const AN_RESPONSE = obj(
	{
		id: str(128),
		type: { type: "string", enum: ["message"] },
		role: { type: "string", enum: ["assistant"] },
		model: str(256),
		content: list(
			{ oneOf: [obj({ type: { type: "string", enum: ["text"] }, text: str() }, ["type", "text"]), AN_TOOL_USE] },
			256
		),
		stop_reason: AN_STOP,
		stop_sequence: nullable(str(1000)),
		usage: AN_USAGE
	},
	["id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"]
);
const AN_ERROR_INNER = obj(
	{
		type: str(64, { enum: [...new Set(Object.values(ANTHROPIC_ERRORS).map(m => m.type))] }),
		message: str(4096)
	},
	["type", "message"]
);
const AN_ERROR = obj({ type: { type: "string", enum: ["error"] }, error: AN_ERROR_INNER, request_id: str(128) }, [
	"type",
	"error"
]);
const anEvent = (name: string, data: Json): Json =>
	obj(
		{
			event: { type: "string", const: name, maxLength: 32 },
			data: obj({ type: { type: "string", const: name, maxLength: 32 } }, ["type"], { ...data })
		},
		["event", "data"],
		{ title: name }
	);
const AN_EVENTS: Json = {
	type: "array",
	maxItems: 1_000_000,
	description:
		"A text/event-stream of `event: <type>` / `data: <JSON>` frames in Anthropic's order: message_start, then per content block content_block_start, content_block_delta (text_delta or input_json_delta)…, content_block_stop, then message_delta (stop_reason, usage) and message_stop. A stream that fails after it started ends with an `error` event instead (never a clean end); `ping` may appear anywhere.",
	items: {
		oneOf: [
			anEvent("message_start", { properties: { message: AN_RESPONSE } }),
			anEvent("content_block_start", {
				properties: { index: int(0, 255), content_block: freeObject("The block, empty") }
			}),
			anEvent("content_block_delta", {
				properties: {
					index: int(0, 255),
					delta: {
						oneOf: [
							obj({ type: { type: "string", enum: ["text_delta"] }, text: str() }, ["type", "text"]),
							obj({ type: { type: "string", enum: ["input_json_delta"] }, partial_json: str() }, [
								"type",
								"partial_json"
							])
						]
					}
				}
			}),
			anEvent("content_block_stop", { properties: { index: int(0, 255) } }),
			anEvent("message_delta", {
				properties: {
					delta: obj({ stop_reason: AN_STOP, stop_sequence: nullable(str(1000)) }),
					usage: AN_USAGE
				}
			}),
			anEvent("message_stop", {}),
			anEvent("ping", {}),
			anEvent("error", { properties: { error: AN_ERROR_INNER } })
		]
	}
};
const OA_EVENTS: Json = {
	type: "array",
	maxItems: 1_000_000,
	description:
		"A text/event-stream of `data: <JSON>` lines, each a chat.completion.chunk (the first carries the role, the last choice chunk the finish_reason; with stream_options.include_usage a final chunk with empty choices carries the usage), then `data: [DONE]`. A stream that fails after it started ends with a `data:` line holding an `error` object and no [DONE].",
	items: { oneOf: [OA_CHUNK, OA_ERROR, { type: "string", enum: ["[DONE]"] }] }
};

// ---- Models --------------------------------------------------------------------------------------

const OA_MODEL = obj(
	{
		id: str(256),
		object: { type: "string", enum: ["model"] },
		created: int(0, 10_000_000_000),
		owned_by: str(64)
	},
	["id", "object", "created", "owned_by"]
);
const AN_MODEL = obj(
	{
		type: { type: "string", enum: ["model"] },
		id: str(256),
		display_name: str(1024),
		created_at: str(64, { format: "date-time" })
	},
	["type", "id", "display_name", "created_at"]
);

// ---- Paths ---------------------------------------------------------------------------------------

const SCHEMAS: Record<string, Json> = {
	OpenAIChatRequest: OA_REQUEST,
	OpenAIChatCompletion: OA_COMPLETION,
	OpenAIError: OA_ERROR,
	AnthropicMessagesRequest: anRequest(false),
	AnthropicCountTokensRequest: anRequest(true),
	AnthropicMessage: AN_RESPONSE,
	AnthropicError: AN_ERROR,
	OpenAIModel: OA_MODEL,
	AnthropicModel: AN_MODEL
};

const REQUEST_ID = { description: "The request's id", schema: str(128) };
const RATE = {
	RateLimit: {
		description: "Remaining quota of each gateway policy spent (user, or ip for failed keys)",
		schema: str(512)
	},
	"RateLimit-Policy": { description: "The policies: name, quota (q), window in seconds (w)", schema: str(512) }
};
const CORS = { description: "CORS (the gateway's CORS_ORIGINS)", schema: str(2048) };
const RETRY = {
	"Retry-After": {
		description: "Seconds to wait (both SDKs wait for it)",
		schema: int(1, 86_400)
	},
	"Retry-After-Ms": { description: "Milliseconds to wait", schema: int(1, 86_400_000) }
};

const DESCRIBE: Record<ErrorKind, string> = {
	invalid_request:
		"Malformed JSON, an unknown or refused field, a bad role, a tool schema that does not compile, an image for a text model",
	authentication: "No key, or an invalid, expired or revoked one",
	permission: "The key lacks the ai:use scope, or its model allow-list excludes the model",
	not_found: "Unknown model (or one the caller's tier or key may not use)",
	insufficient_credits:
		"Not enough credits (or the key's monthly budget) for the request's worst case; x-should-retry: false",
	too_large: "The body is larger than BODY_LIMIT",
	rate_limited: "A rate limit (the user's, the key's RPM/TPM, the tier's) or admission refused it",
	overloaded: "No deployment could answer before the first byte",
	unavailable: "No ai worker is available",
	timeout: "The worker did not answer in time",
	api_error: "An internal error"
};

function errors(protocol: "openai" | "anthropic", kinds: ErrorKind[]): Json {
	const table = protocol === "openai" ? OPENAI_ERRORS : ANTHROPIC_ERRORS;
	const out: Json = {};
	for (const k of kinds) {
		const status = String(table[k].status);
		const prev = out[status] as { description: string } | undefined;
		const headers: Json = { "X-Request-Id": REQUEST_ID, "Access-Control-Allow-Origin": CORS };
		if (status.startsWith("4")) Object.assign(headers, RATE);
		if (status === "429" || status === "503" || status === "529") Object.assign(headers, RETRY);
		if (k === "insufficient_credits")
			headers["x-should-retry"] = {
				description: "false: the SDKs do not retry",
				schema: { type: "string", enum: ["false"] }
			};
		out[status] = {
			description: prev ? `${prev.description}; ${DESCRIBE[k]}` : DESCRIBE[k],
			headers: { ...((prev as { headers?: Json } | undefined)?.headers ?? {}), ...headers },
			content: { "application/json": { schema: ref(protocol === "openai" ? "OpenAIError" : "AnthropicError") } }
		};
	}
	return out;
}

const CHAT_ERRORS: ErrorKind[] = [
	"invalid_request",
	"authentication",
	"permission",
	"not_found",
	"insufficient_credits",
	"too_large",
	"rate_limited",
	"overloaded",
	"timeout",
	"api_error"
];
const READ_ERRORS: ErrorKind[] = ["authentication", "permission", "rate_limited", "unavailable", "api_error"];

const SECURITY = [{ compatBearer: [] }, { apiKey: [] }];
const ok = (description: string, content: Json): Json => ({
	description,
	headers: { "X-Request-Id": REQUEST_ID, "Access-Control-Allow-Origin": CORS, ...RATE },
	content
});
const anthropicVersion = {
	name: "anthropic-version",
	in: "header",
	required: false,
	description: "Sent by Anthropic SDKs; on /v1/models it selects Anthropic's list shape",
	schema: str(32)
};

/** The /v1 paths, their component schemas and the security scheme they add to the document. */
export function compatOpenApi(): { paths: Json; schemas: Record<string, Json>; securitySchemes: Json } {
	const chat = (
		protocol: "openai" | "anthropic",
		summary: string,
		request: string,
		response: string,
		events: Json
	) => ({
		post: {
			summary,
			tags: ["compat"],
			operationId: protocol === "openai" ? "postV1ChatCompletions" : "postV1Messages",
			security: SECURITY,
			...(protocol === "anthropic" ? { parameters: [anthropicVersion] } : {}),
			requestBody: { required: true, content: { "application/json": { schema: ref(request) } } },
			responses: {
				"200": ok("The answer (JSON), or its event stream when `stream` is true", {
					"application/json": { schema: ref(response) },
					"text/event-stream": { schema: events }
				}),
				...errors(protocol, CHAT_ERRORS)
			}
		}
	});
	const models = (one: boolean) => ({
		get: {
			summary: one
				? "One model the caller may use (OpenAI's shape; Anthropic's with anthropic-version)"
				: "The models the caller's tier and key may use, that are served (OpenAI's list; Anthropic's with anthropic-version)",
			tags: ["compat"],
			operationId: one ? "getV1Model" : "getV1Models",
			security: SECURITY,
			parameters: [
				...(one ? [{ name: "id", in: "path", required: true, schema: str(256) }] : []),
				anthropicVersion
			],
			responses: {
				"200": ok(
					one ? "The model" : "The list",
					one
						? { "application/json": { schema: { oneOf: [ref("OpenAIModel"), ref("AnthropicModel")] } } }
						: {
								"application/json": {
									schema: {
										oneOf: [
											obj(
												{
													object: { type: "string", enum: ["list"] },
													data: list(ref("OpenAIModel"))
												},
												["object", "data"]
											),
											obj(
												{
													data: list(ref("AnthropicModel")),
													has_more: { type: "boolean" },
													first_id: nullable(str(256)),
													last_id: nullable(str(256))
												},
												["data", "has_more", "first_id", "last_id"]
											)
										]
									}
								}
							}
				),
				...errors("openai", one ? [...READ_ERRORS, "not_found"] : READ_ERRORS)
			}
		}
	});
	return {
		paths: {
			"/v1/chat/completions": chat(
				"openai",
				"OpenAI Chat Completions on ForgeFluid credits (docs/compat.md)",
				"OpenAIChatRequest",
				"OpenAIChatCompletion",
				OA_EVENTS
			),
			"/v1/messages": chat(
				"anthropic",
				"Anthropic Messages on ForgeFluid credits (docs/compat.md)",
				"AnthropicMessagesRequest",
				"AnthropicMessage",
				AN_EVENTS
			),
			"/v1/messages/count_tokens": {
				post: {
					summary: "Anthropic's token count (the platform's deliberately high estimate)",
					tags: ["compat"],
					operationId: "postV1MessagesCountTokens",
					security: SECURITY,
					parameters: [anthropicVersion],
					requestBody: {
						required: true,
						content: { "application/json": { schema: ref("AnthropicCountTokensRequest") } }
					},
					responses: {
						"200": ok("The estimate", {
							"application/json": { schema: obj({ input_tokens: TOKENS }, ["input_tokens"]) }
						}),
						...errors("anthropic", [
							"invalid_request",
							"authentication",
							"permission",
							"not_found",
							"too_large",
							"rate_limited",
							"api_error"
						])
					}
				}
			},
			"/v1/models": models(false),
			"/v1/models/{id}": models(true)
		},
		schemas: SCHEMAS,
		securitySchemes: {
			compatBearer: {
				type: "http",
				scheme: "bearer",
				description:
					"A platform API key with the ai:use scope (`ff_<id>_<secret>`) as OpenAI SDKs send it, or a session token"
			}
		}
	};
}
