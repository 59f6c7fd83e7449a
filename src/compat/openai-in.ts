/**
 * OpenAI Chat Completions request → ChatRequest. Every field of the protocol is either read,
 * or refused by name (`n > 1`, `logprobs`, audio…), never silently dropped; unknown fields are
 * refused like api.openai.com does ("Unrecognized request argument").
 *
 * Roles: system and developer become system (a developer message is a system message for every
 * provider but OpenAI's reasoning models, which accept system too); user, assistant (text,
 * refusal, tool_calls) and tool (tool_call_id) keep theirs. The legacy `functions` /
 * `function_call` / role `function` are refused with a pointer to `tools`.
 */
import { invalid } from "./errors";
import type { ChatMessage, ChatPart, ChatRequest, ResponseFormat, ToolCall, ToolChoice, ToolDef } from "./types";
import { Json, arr, isObj, jsonSchema, num, obj, onlyKnown, optBool, optNum, optStr, str, toolName } from "./validate";

const TOP = new Set([
	"model",
	"messages",
	"stream",
	"stream_options",
	"max_tokens",
	"max_completion_tokens",
	"temperature",
	"top_p",
	"stop",
	"seed",
	"tools",
	"tool_choice",
	"parallel_tool_calls",
	"response_format",
	"n",
	"user",
	"reasoning_effort",
	"presence_penalty",
	"frequency_penalty",
	"logprobs",
	"top_logprobs",
	"logit_bias",
	"modalities",
	"metadata",
	"store",
	"service_tier",
	// Refused by name below.
	"audio",
	"prediction",
	"functions",
	"function_call",
	"web_search_options"
]);

const REFUSED: Record<string, string> = {
	audio: "audio output is not supported",
	prediction: "predicted outputs are not supported",
	functions: "'functions' is deprecated and not supported; use 'tools'",
	function_call: "'function_call' is deprecated and not supported; use 'tool_choice'",
	web_search_options: "web search is not supported"
};

function textOf(v: unknown, param: string): ChatPart[] {
	if (typeof v === "string") return [{ type: "text", text: v }];
	return arr(v, param, 1000).map((p, i) => {
		const part = obj(p, `${param}[${i}]`);
		if (part.type !== "text")
			throw invalid(`'${param}[${i}].type' must be 'text' for this role`, `${param}[${i}].type`);
		return { type: "text" as const, text: str(part.text, `${param}[${i}].text`) };
	});
}

function userContent(v: unknown, param: string): ChatPart[] {
	if (typeof v === "string") return [{ type: "text", text: v }];
	return arr(v, param, 1000).map((p, i) => {
		const where = `${param}[${i}]`;
		const part = obj(p, where);
		if (part.type === "text") {
			onlyKnown(part, new Set(["type", "text"]), where);
			return { type: "text" as const, text: str(part.text, `${where}.text`) };
		}
		if (part.type === "image_url") {
			const img = obj(part.image_url, `${where}.image_url`);
			const url = str(img.url, `${where}.image_url.url`);
			if (!/^https?:\/\//.test(url) && !/^data:image\/(png|jpeg|gif|webp);base64,/.test(url))
				throw invalid(
					`'${where}.image_url.url' must be an http(s) URL or a base64 data URL of a png, jpeg, gif or webp image`,
					`${where}.image_url.url`
				);
			const detail = img.detail;
			if (detail !== undefined && detail !== "auto" && detail !== "low" && detail !== "high")
				throw invalid(`'${where}.image_url.detail' must be auto, low or high`, `${where}.image_url.detail`);
			return { type: "image" as const, url, ...(detail ? { detail } : {}) };
		}
		throw invalid(
			`Content parts of type '${String(part.type)}' are not supported (text and image_url are)`,
			`${where}.type`,
			"unsupported_content"
		);
	});
}

function toolCalls(v: unknown, param: string): ToolCall[] {
	return arr(v, param, 128).map((c, i) => {
		const where = `${param}[${i}]`;
		const call = obj(c, where);
		if (call.type !== undefined && call.type !== "function")
			throw invalid(`'${where}.type' must be 'function'`, `${where}.type`);
		const fn = obj(call.function, `${where}.function`);
		return {
			id: str(call.id, `${where}.id`, 256),
			name: toolName(fn.name, `${where}.function.name`),
			arguments: str(fn.arguments ?? "{}", `${where}.function.arguments`)
		};
	});
}

export function readMessages(v: unknown): ChatMessage[] {
	const list = arr(v, "messages", 10_000);
	if (!list.length) throw invalid("'messages' must contain at least one message", "messages");
	return list.map((raw, i) => {
		const where = `messages[${i}]`;
		const m = obj(raw, where);
		switch (m.role) {
			case "system":
			case "developer":
				return { role: "system" as const, content: textOf(m.content, `${where}.content`) };
			case "user":
				return { role: "user" as const, content: userContent(m.content, `${where}.content`) };
			case "assistant": {
				let content: ChatPart[] = [];
				if (typeof m.content === "string") content = m.content ? [{ type: "text", text: m.content }] : [];
				else if (Array.isArray(m.content))
					content = m.content.map((p, j) => {
						const part = obj(p, `${where}.content[${j}]`);
						if (part.type === "text")
							return { type: "text" as const, text: str(part.text, `${where}.content[${j}].text`) };
						if (part.type === "refusal")
							return { type: "text" as const, text: str(part.refusal, `${where}.content[${j}].refusal`) };
						throw invalid(
							`'${where}.content[${j}].type' must be text or refusal`,
							`${where}.content[${j}].type`
						);
					});
				else if (m.content !== undefined && m.content !== null)
					throw invalid(`'${where}.content' must be a string, an array or null`, `${where}.content`);
				if (typeof m.refusal === "string" && m.refusal && !content.length)
					content = [{ type: "text", text: m.refusal }];
				const calls =
					m.tool_calls === undefined || m.tool_calls === null
						? []
						: toolCalls(m.tool_calls, `${where}.tool_calls`);
				if (!content.length && !calls.length)
					throw invalid(`'${where}' must have content or tool_calls`, `${where}.content`);
				return { role: "assistant" as const, content, ...(calls.length ? { toolCalls: calls } : {}) };
			}
			case "tool":
				return {
					role: "tool" as const,
					toolCallId: str(m.tool_call_id, `${where}.tool_call_id`, 256),
					content: textOf(m.content, `${where}.content`)
				};
			case "function":
				throw invalid(
					`Role 'function' is deprecated and not supported; use 'tool'`,
					`${where}.role`,
					"invalid_role"
				);
			default:
				throw invalid(
					`Invalid value for '${where}.role': expected one of system, developer, user, assistant, tool`,
					`${where}.role`,
					"invalid_role"
				);
		}
	});
}

function readTools(v: unknown): ToolDef[] {
	return arr(v, "tools", 128).map((t, i) => {
		const where = `tools[${i}]`;
		const tool = obj(t, where);
		if (tool.type !== "function") throw invalid(`'${where}.type' must be 'function'`, `${where}.type`);
		const fn = obj(tool.function, `${where}.function`);
		onlyKnown(fn, new Set(["name", "description", "parameters", "strict"]), `${where}.function`);
		return {
			name: toolName(fn.name, `${where}.function.name`),
			...(fn.description !== undefined
				? { description: str(fn.description, `${where}.function.description`, 100_000) }
				: {}),
			parameters:
				fn.parameters === undefined
					? { type: "object", properties: {} }
					: jsonSchema(fn.parameters, `${where}.function.parameters`),
			...(fn.strict !== undefined && fn.strict !== null
				? { strict: optBool(fn.strict, `${where}.function.strict`) }
				: {})
		};
	});
}

function readToolChoice(v: unknown, tools: ToolDef[] | undefined): ToolChoice {
	if (v === "auto" || v === "none" || v === "required") {
		if (v === "required" && !tools?.length)
			throw invalid("'tool_choice' is 'required' but no tools are given", "tool_choice");
		return v;
	}
	if (isObj(v) && v.type === "function") {
		const name = toolName(obj(v.function, "tool_choice.function").name, "tool_choice.function.name");
		if (!tools?.some(t => t.name === name))
			throw invalid(
				`'tool_choice' names the tool '${name}', which is not in 'tools'`,
				"tool_choice.function.name"
			);
		return { name };
	}
	throw invalid("'tool_choice' must be none, auto, required or {type:'function',function:{name}}", "tool_choice");
}

export function readResponseFormat(v: unknown): ResponseFormat {
	const rf = obj(v, "response_format");
	if (rf.type === "text") return { type: "text" };
	if (rf.type === "json_object") return { type: "json_object" };
	if (rf.type === "json_schema") {
		const js = obj(rf.json_schema, "response_format.json_schema");
		const name = toolName(js.name, "response_format.json_schema.name");
		return {
			type: "json_schema",
			name,
			schema: js.schema === undefined ? {} : jsonSchema(js.schema, "response_format.json_schema.schema"),
			strict: optBool(js.strict, "response_format.json_schema.strict") ?? false,
			...(js.description !== undefined
				? { description: str(js.description, "response_format.json_schema.description") }
				: {})
		};
	}
	throw invalid("'response_format.type' must be text, json_object or json_schema", "response_format.type");
}

export function readStop(v: unknown, param: string, max = 4): string[] | undefined {
	if (v === undefined || v === null) return undefined;
	const list = typeof v === "string" ? [v] : arr(v, param, max).map((s, i) => str(s, `${param}[${i}]`, 1000));
	if (list.length > max) throw invalid(`'${param}' may hold at most ${max} sequences`, param);
	if (list.some(s => !s.length)) throw invalid(`'${param}' must not contain empty strings`, param);
	return list;
}

export function readOpenAIRequest(body: unknown): ChatRequest {
	const b: Json = obj(body, "");
	onlyKnown(b, TOP, "");
	for (const [k, why] of Object.entries(REFUSED))
		if (b[k] !== undefined && b[k] !== null) throw invalid(why, k, "unsupported_parameter");
	const n = optNum(b.n, "n", 1, 128, true);
	if (n !== undefined && n > 1)
		throw invalid("'n' > 1 is not supported: ask once per answer", "n", "unsupported_parameter");
	if (b.logprobs === true) throw invalid("'logprobs' is not supported", "logprobs", "unsupported_parameter");
	if (b.top_logprobs !== undefined && b.top_logprobs !== null)
		throw invalid("'top_logprobs' is not supported", "top_logprobs", "unsupported_parameter");
	if (isObj(b.logit_bias) && Object.keys(b.logit_bias).length)
		throw invalid("'logit_bias' is not supported", "logit_bias", "unsupported_parameter");
	if (b.modalities !== undefined && b.modalities !== null) {
		const mods = arr(b.modalities, "modalities", 4);
		if (mods.some(m => m !== "text"))
			throw invalid("Only the 'text' modality is supported", "modalities", "unsupported_parameter");
	}
	if (
		b.service_tier !== undefined &&
		b.service_tier !== null &&
		b.service_tier !== "auto" &&
		b.service_tier !== "default"
	)
		throw invalid("'service_tier' may only be auto or default", "service_tier", "unsupported_parameter");
	for (const k of ["presence_penalty", "frequency_penalty"]) {
		const v = optNum(b[k], k, -2, 2);
		if (v) throw invalid(`'${k}' is not supported`, k, "unsupported_parameter");
	}
	const stream = optBool(b.stream, "stream") ?? false;
	let includeUsage = false;
	if (b.stream_options !== undefined && b.stream_options !== null) {
		if (!stream) throw invalid("'stream_options' is only allowed with 'stream: true'", "stream_options");
		const so = obj(b.stream_options, "stream_options");
		onlyKnown(so, new Set(["include_usage", "include_obfuscation"]), "stream_options");
		includeUsage = optBool(so.include_usage, "stream_options.include_usage") ?? false;
	}
	const maxTokens = optNum(b.max_tokens, "max_tokens", 1, 10_000_000, true);
	const maxCompletion = optNum(b.max_completion_tokens, "max_completion_tokens", 1, 10_000_000, true);
	if (maxTokens !== undefined && maxCompletion !== undefined)
		throw invalid("Give either 'max_tokens' or 'max_completion_tokens', not both", "max_tokens");
	const tools = b.tools === undefined || b.tools === null ? undefined : readTools(b.tools);
	const reasoning = b.reasoning_effort;
	if (
		reasoning !== undefined &&
		reasoning !== null &&
		!["minimal", "low", "medium", "high"].includes(String(reasoning))
	)
		throw invalid("'reasoning_effort' must be minimal, low, medium or high", "reasoning_effort");
	const endUser = optStr(b.user, "user", 256);
	return {
		model: str(b.model, "model", 200),
		messages: readMessages(b.messages),
		...(tools?.length ? { tools } : {}),
		...(b.tool_choice !== undefined && b.tool_choice !== null
			? { toolChoice: readToolChoice(b.tool_choice, tools) }
			: {}),
		...(b.parallel_tool_calls !== undefined && b.parallel_tool_calls !== null
			? { parallelToolCalls: optBool(b.parallel_tool_calls, "parallel_tool_calls") }
			: {}),
		...(b.response_format !== undefined && b.response_format !== null
			? { responseFormat: readResponseFormat(b.response_format) }
			: {}),
		...(b.temperature !== undefined && b.temperature !== null
			? { temperature: num(b.temperature, "temperature", 0, 2) }
			: {}),
		...(b.top_p !== undefined && b.top_p !== null ? { topP: num(b.top_p, "top_p", 0, 1) } : {}),
		...(b.stop !== undefined && b.stop !== null ? { stop: readStop(b.stop, "stop") } : {}),
		...(b.seed !== undefined && b.seed !== null ? { seed: num(b.seed, "seed", -(2 ** 53), 2 ** 53, true) } : {}),
		...((maxCompletion ?? maxTokens) !== undefined ? { maxTokens: maxCompletion ?? maxTokens } : {}),
		...(reasoning ? { reasoningEffort: reasoning as ChatRequest["reasoningEffort"] } : {}),
		...(endUser ? { endUser } : {}),
		stream,
		includeUsage
	};
}
