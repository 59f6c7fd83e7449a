/**
 * Anthropic Messages request → ChatRequest. `system` (string or text blocks) becomes system
 * messages; a user turn's `tool_result` blocks become tool messages (one per result, in order,
 * before the turn's other content); an assistant turn's `tool_use` blocks become its tool calls
 * (input as JSON text). `cache_control` on text, image and tool blocks is kept so an Anthropic
 * upstream gets it back unchanged. Unknown fields are refused by name; so are the features this
 * gateway does not offer (extended thinking, server tools, documents, MCP servers, top_k).
 */
import { invalid } from "./errors";
import { readStop } from "./openai-in";
import type { CacheControl, ChatMessage, ChatPart, ChatRequest, ToolChoice, ToolDef } from "./types";
import { Json, arr, isObj, jsonSchema, num, obj, onlyKnown, optBool, optStr, str, toolName } from "./validate";

const TOP = new Set([
	"model",
	"messages",
	"max_tokens",
	"system",
	"stop_sequences",
	"stream",
	"temperature",
	"top_p",
	"top_k",
	"tools",
	"tool_choice",
	"metadata",
	"thinking",
	"service_tier",
	"mcp_servers",
	"container"
]);

function cacheControl(v: unknown, param: string): CacheControl | undefined {
	if (v === undefined || v === null) return undefined;
	const c = obj(v, param);
	if (c.type !== "ephemeral") throw invalid(`'${param}.type' must be 'ephemeral'`, `${param}.type`);
	if (c.ttl !== undefined && c.ttl !== "5m" && c.ttl !== "1h")
		throw invalid(`'${param}.ttl' must be 5m or 1h`, `${param}.ttl`);
	return { type: "ephemeral", ...(c.ttl ? { ttl: c.ttl as "5m" | "1h" } : {}) };
}

const withCache = <T extends object>(part: T, cc: CacheControl | undefined): T =>
	cc ? { ...part, cacheControl: cc } : part;

function textBlock(b: Json, where: string): ChatPart {
	onlyKnown(b, new Set(["type", "text", "cache_control", "citations"]), where);
	return withCache(
		{ type: "text" as const, text: str(b.text, `${where}.text`) },
		cacheControl(b.cache_control, `${where}.cache_control`)
	);
}

function imageBlock(b: Json, where: string): ChatPart {
	const src = obj(b.source, `${where}.source`);
	let url: string;
	if (src.type === "base64") {
		const mt = str(src.media_type, `${where}.source.media_type`, 64);
		if (!/^image\/(png|jpeg|gif|webp)$/.test(mt))
			throw invalid(
				`'${where}.source.media_type' must be image/png, image/jpeg, image/gif or image/webp`,
				`${where}.source.media_type`
			);
		url = `data:${mt};base64,${str(src.data, `${where}.source.data`)}`;
	} else if (src.type === "url") {
		url = str(src.url, `${where}.source.url`, 8192);
		if (!/^https?:\/\//.test(url))
			throw invalid(`'${where}.source.url' must be an http(s) URL`, `${where}.source.url`);
	} else throw invalid(`'${where}.source.type' must be base64 or url`, `${where}.source.type`);
	return withCache({ type: "image" as const, url }, cacheControl(b.cache_control, `${where}.cache_control`));
}

function blocks(v: unknown, where: string): Json[] {
	if (typeof v === "string") return [{ type: "text", text: v }];
	return arr(v, where, 1000).map((b, i) => obj(b, `${where}[${i}]`));
}

function readMessage(m: Json, where: string): ChatMessage[] {
	onlyKnown(m, new Set(["role", "content"]), where);
	if (m.role !== "user" && m.role !== "assistant")
		throw invalid(
			`'${where}.role' must be user or assistant (system goes in 'system')`,
			`${where}.role`,
			"invalid_role"
		);
	const list = blocks(m.content, `${where}.content`);
	const out: ChatMessage[] = [];
	const content: ChatPart[] = [];
	const toolCalls: NonNullable<ChatMessage["toolCalls"]> = [];
	list.forEach((b, i) => {
		const at = `${where}.content[${i}]`;
		switch (b.type) {
			case "text":
				content.push(textBlock(b, at));
				return;
			case "image":
				if (m.role !== "user") throw invalid(`'${at}': images are allowed in user turns only`, `${at}.type`);
				content.push(imageBlock(b, at));
				return;
			case "tool_use":
				if (m.role !== "assistant")
					throw invalid(`'${at}': tool_use is allowed in assistant turns only`, `${at}.type`);
				toolCalls.push({
					id: str(b.id, `${at}.id`, 256),
					name: toolName(b.name, `${at}.name`),
					arguments: JSON.stringify(b.input === undefined ? {} : obj(b.input, `${at}.input`))
				});
				return;
			case "tool_result": {
				if (m.role !== "user")
					throw invalid(`'${at}': tool_result is allowed in user turns only`, `${at}.type`);
				const parts =
					b.content === undefined
						? []
						: blocks(b.content, `${at}.content`).map((x, j) =>
								x.type === "text"
									? textBlock(x, `${at}.content[${j}]`)
									: x.type === "image"
										? imageBlock(x, `${at}.content[${j}]`)
										: (() => {
												throw invalid(
													`'${at}.content[${j}].type' must be text or image`,
													`${at}.content[${j}].type`
												);
											})()
							);
				out.push({
					role: "tool",
					toolCallId: str(b.tool_use_id, `${at}.tool_use_id`, 256),
					content: parts,
					...(optBool(b.is_error, `${at}.is_error`) ? { isError: true } : {})
				});
				return;
			}
			case "thinking":
			case "redacted_thinking":
				throw invalid("Extended thinking is not supported", `${at}.type`, "unsupported_content");
			default:
				throw invalid(
					`Content blocks of type '${String(b.type)}' are not supported`,
					`${at}.type`,
					"unsupported_content"
				);
		}
	});
	if (content.length || toolCalls.length)
		out.push({ role: m.role, content, ...(toolCalls.length ? { toolCalls } : {}) });
	return out;
}

function readTools(v: unknown): ToolDef[] {
	return arr(v, "tools", 128).map((t, i) => {
		const where = `tools[${i}]`;
		const tool = obj(t, where);
		if (tool.type !== undefined && tool.type !== "custom")
			throw invalid(
				`Server tools ('${String(tool.type)}') are not supported`,
				`${where}.type`,
				"unsupported_parameter"
			);
		onlyKnown(tool, new Set(["type", "name", "description", "input_schema", "cache_control"]), where);
		return {
			name: toolName(tool.name, `${where}.name`),
			...(tool.description !== undefined
				? { description: str(tool.description, `${where}.description`, 100_000) }
				: {}),
			parameters: jsonSchema(tool.input_schema, `${where}.input_schema`),
			...(tool.cache_control ? { cacheControl: cacheControl(tool.cache_control, `${where}.cache_control`) } : {})
		};
	});
}

function readToolChoice(v: unknown, tools: ToolDef[] | undefined): { choice: ToolChoice; parallel?: boolean } {
	const tc = obj(v, "tool_choice");
	onlyKnown(tc, new Set(["type", "name", "disable_parallel_tool_use"]), "tool_choice");
	const noParallel = optBool(tc.disable_parallel_tool_use, "tool_choice.disable_parallel_tool_use");
	const parallel = noParallel === undefined ? {} : { parallel: !noParallel };
	switch (tc.type) {
		case "auto":
			return { choice: "auto", ...parallel };
		case "any":
			if (!tools?.length) throw invalid("'tool_choice.type' is 'any' but no tools are given", "tool_choice.type");
			return { choice: "required", ...parallel };
		case "none":
			return { choice: "none" };
		case "tool": {
			const name = toolName(tc.name, "tool_choice.name");
			if (!tools?.some(t => t.name === name))
				throw invalid(
					`'tool_choice.name' names the tool '${name}', which is not in 'tools'`,
					"tool_choice.name"
				);
			return { choice: { name }, ...parallel };
		}
		default:
			throw invalid("'tool_choice.type' must be auto, any, tool or none", "tool_choice.type");
	}
}

/** `forCount`: the count_tokens body (no max_tokens, no stream). */
export function readAnthropicRequest(body: unknown, forCount = false): ChatRequest {
	const b = obj(body, "");
	onlyKnown(
		b,
		forCount ? new Set(["model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"]) : TOP,
		""
	);
	if (b.thinking !== undefined && b.thinking !== null && !(isObj(b.thinking) && b.thinking.type === "disabled"))
		throw invalid("Extended thinking is not supported", "thinking", "unsupported_parameter");
	if (b.mcp_servers !== undefined)
		throw invalid("MCP servers are not supported", "mcp_servers", "unsupported_parameter");
	if (b.container !== undefined) throw invalid("Containers are not supported", "container", "unsupported_parameter");
	if (b.top_k !== undefined && b.top_k !== null)
		throw invalid("'top_k' is not supported", "top_k", "unsupported_parameter");
	if (b.service_tier !== undefined && b.service_tier !== "auto" && b.service_tier !== "standard_only")
		throw invalid("'service_tier' must be auto or standard_only", "service_tier");
	const system: ChatMessage[] =
		b.system === undefined || b.system === null
			? []
			: [
					{
						role: "system",
						content: blocks(b.system, "system").map((x, i) => {
							if (x.type !== "text")
								throw invalid(`'system[${i}].type' must be text`, `system[${i}].type`);
							return textBlock(x, `system[${i}]`);
						})
					}
				];
	const raw = arr(b.messages, "messages", 10_000);
	if (!raw.length) throw invalid("'messages' must contain at least one message", "messages");
	const messages = raw.flatMap((m, i) => readMessage(obj(m, `messages[${i}]`), `messages[${i}]`));
	const tools = b.tools === undefined || b.tools === null ? undefined : readTools(b.tools);
	const tc = b.tool_choice === undefined || b.tool_choice === null ? null : readToolChoice(b.tool_choice, tools);
	let endUser: string | undefined;
	if (b.metadata !== undefined && b.metadata !== null) {
		const md = obj(b.metadata, "metadata");
		onlyKnown(md, new Set(["user_id"]), "metadata");
		endUser = optStr(md.user_id, "metadata.user_id", 256);
	}
	const stream = forCount ? false : (optBool(b.stream, "stream") ?? false);
	return {
		model: str(b.model, "model", 200),
		messages: [...system, ...messages],
		...(tools?.length ? { tools } : {}),
		...(tc ? { toolChoice: tc.choice } : {}),
		...(tc?.parallel !== undefined ? { parallelToolCalls: tc.parallel } : {}),
		...(b.temperature !== undefined && b.temperature !== null
			? { temperature: num(b.temperature, "temperature", 0, 1) }
			: {}),
		...(b.top_p !== undefined && b.top_p !== null ? { topP: num(b.top_p, "top_p", 0, 1) } : {}),
		...(b.stop_sequences !== undefined && b.stop_sequences !== null
			? { stop: readStop(b.stop_sequences, "stop_sequences", 16) }
			: {}),
		...(forCount ? {} : { maxTokens: num(b.max_tokens, "max_tokens", 1, 10_000_000, true) }),
		...(endUser ? { endUser } : {}),
		stream,
		// Anthropic streams always carry usage (message_start and message_delta).
		includeUsage: true
	};
}
