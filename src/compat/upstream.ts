/**
 * ChatRequest → one provider call, streamed. The request bodies are built by pure functions
 * (`toOpenAIBody`, `toAnthropicBody`, unit-tested as tables); the stream readers turn each
 * protocol's chunks into `UpstreamEvent`s. Anthropic calls go through its SDK with its retries off,
 * OpenAI-protocol calls through undici and an SSE parser (src/ai/openai-sse.ts: the SDK's cost per
 * stream, without it), like every other ai call (src/ai/providers.ts): `generate()` is the one retry loop.
 *
 * Continuation after a cut (the rule of docs/ai.md): text already delivered is given back as the
 * start of the answer (Anthropic prefill; OpenAI protocol: assistant text + "continue" user turn).
 * A tool call cannot be continued that way: once one has reached the client, a cut ends the
 * request with an error event (see `platformStream`).
 */
import type { CatalogModel } from "../ai/catalog";
import type { StreamEvent, StreamRequest } from "../ai/providers";
import { openaiChatStream } from "../ai/openai-sse";
import { CONTINUE_INSTRUCTION, ProviderError, anthropicClient } from "../ai/providers";
import type { ChatMessage, ChatPart, ChatRequest, ChatUsage, FinishReason, UpstreamEvent } from "./types";

type Body = Record<string, unknown>;

const textOf = (parts: ChatPart[]) =>
	parts
		.filter((p): p is Extract<ChatPart, { type: "text" }> => p.type === "text")
		.map(p => p.text)
		.join("");

/** The instruction that asks for JSON where the provider has no native structured output (Anthropic). */
export function jsonInstruction(rf: ChatRequest["responseFormat"]): string | null {
	if (!rf || rf.type === "text") return null;
	if (rf.type === "json_object") return "Respond with one JSON object and nothing else: no prose, no code fences.";
	return `Respond with one JSON value and nothing else (no prose, no code fences) that validates against this JSON Schema (${rf.name}):\n${JSON.stringify(rf.schema)}`;
}

export function toOpenAIBody(
	req: ChatRequest,
	model: CatalogModel,
	upstreamModel: string,
	maxTokens: number,
	prefix: string
): Body {
	const reasoning = model.group === "reasoning";
	const messages: Body[] = req.messages.map((m: ChatMessage) => {
		switch (m.role) {
			case "system":
				// OpenAI's reasoning models take instructions as `developer`.
				return { role: reasoning ? "developer" : "system", content: textOf(m.content) };
			case "user":
				return {
					role: "user",
					content:
						m.content.length === 1 && m.content[0].type === "text"
							? m.content[0].text
							: m.content.map(p =>
									p.type === "text"
										? { type: "text", text: p.text }
										: {
												type: "image_url",
												image_url: { url: p.url, ...(p.detail ? { detail: p.detail } : {}) }
											}
								)
				};
			case "assistant":
				return {
					role: "assistant",
					content: m.content.length ? textOf(m.content) : null,
					...(m.toolCalls?.length
						? {
								tool_calls: m.toolCalls.map(c => ({
									id: c.id,
									type: "function",
									function: { name: c.name, arguments: c.arguments }
								}))
							}
						: {})
				};
			case "tool":
				return {
					role: "tool",
					tool_call_id: m.toolCallId,
					content: (m.isError ? "Error: " : "") + textOf(m.content)
				};
		}
	});
	if (prefix) messages.push({ role: "assistant", content: prefix }, { role: "user", content: CONTINUE_INSTRUCTION });
	const rf = req.responseFormat;
	const tc = req.toolChoice;
	return {
		model: upstreamModel,
		messages,
		stream: true,
		stream_options: { include_usage: true },
		// Reasoning models refuse max_tokens; the others get the parameter every OpenAI-compatible server knows.
		...(reasoning ? { max_completion_tokens: maxTokens } : { max_tokens: maxTokens }),
		...(req.tools?.length
			? {
					tools: req.tools.map(t => ({
						type: "function",
						function: {
							name: t.name,
							...(t.description !== undefined ? { description: t.description } : {}),
							parameters: t.parameters,
							...(t.strict !== undefined ? { strict: t.strict } : {})
						}
					}))
				}
			: {}),
		...(tc ? { tool_choice: typeof tc === "string" ? tc : { type: "function", function: { name: tc.name } } } : {}),
		...(req.parallelToolCalls !== undefined && req.tools?.length
			? { parallel_tool_calls: req.parallelToolCalls }
			: {}),
		...(rf && rf.type !== "text"
			? {
					response_format:
						rf.type === "json_object"
							? { type: "json_object" }
							: {
									type: "json_schema",
									json_schema: {
										name: rf.name,
										schema: rf.schema,
										strict: rf.strict,
										...(rf.description ? { description: rf.description } : {})
									}
								}
				}
			: {}),
		...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
		...(req.topP !== undefined ? { top_p: req.topP } : {}),
		...(req.stop ? { stop: req.stop } : {}),
		...(req.seed !== undefined ? { seed: req.seed } : {}),
		...(req.reasoningEffort ? { reasoning_effort: req.reasoningEffort } : {}),
		...(req.endUser ? { user: req.endUser } : {})
	};
}

function anthropicPart(p: ChatPart): Body {
	const cc = p.cacheControl ? { cache_control: p.cacheControl } : {};
	if (p.type === "text") return { type: "text", text: p.text, ...cc };
	const m = /^data:([^;]+);base64,(.*)$/s.exec(p.url);
	return {
		type: "image",
		source: m ? { type: "base64", media_type: m[1], data: m[2] } : { type: "url", url: p.url },
		...cc
	};
}

export function toAnthropicBody(req: ChatRequest, upstreamModel: string, maxTokens: number, prefix: string): Body {
	const system = req.messages.filter(m => m.role === "system").flatMap(m => m.content.map(anthropicPart));
	const instruction = jsonInstruction(req.responseFormat);
	if (instruction) system.push({ type: "text", text: instruction });
	const turns: Array<{ role: "user" | "assistant"; content: Body[] }> = [];
	const push = (role: "user" | "assistant", content: Body[]) => {
		const last = turns[turns.length - 1];
		// Anthropic wants alternating turns: consecutive same-role messages (tool results, then the user's text) join.
		if (last && last.role === role) last.content.push(...content);
		else turns.push({ role, content });
	};
	for (const m of req.messages) {
		if (m.role === "system") continue;
		if (m.role === "tool")
			push("user", [
				{
					type: "tool_result",
					tool_use_id: m.toolCallId,
					content: m.content.map(anthropicPart),
					...(m.isError ? { is_error: true } : {})
				}
			]);
		else if (m.role === "user") push("user", m.content.map(anthropicPart));
		else
			push("assistant", [
				...m.content.filter(p => p.type !== "text" || p.text).map(anthropicPart),
				...(m.toolCalls ?? []).map(c => ({
					type: "tool_use",
					id: c.id,
					name: c.name,
					input: parseArgs(c.arguments)
				}))
			]);
	}
	// Native continuation: the delivered text as the final assistant turn (no trailing whitespace allowed there).
	const prefill = prefix.trimEnd();
	if (prefill) push("assistant", [{ type: "text", text: prefill }]);
	const tc = req.toolChoice;
	const noParallel = req.parallelToolCalls === false && req.tools?.length ? { disable_parallel_tool_use: true } : {};
	const toolChoice =
		tc === undefined
			? req.parallelToolCalls === false && req.tools?.length
				? { type: "auto", ...noParallel }
				: undefined
			: tc === "none"
				? { type: "none" }
				: tc === "auto"
					? { type: "auto", ...noParallel }
					: tc === "required"
						? { type: "any", ...noParallel }
						: { type: "tool", name: tc.name, ...noParallel };
	return {
		model: upstreamModel,
		max_tokens: maxTokens,
		stream: true,
		...(system.length ? { system } : {}),
		messages: turns,
		...(req.tools?.length
			? {
					tools: req.tools.map(t => ({
						name: t.name,
						...(t.description !== undefined ? { description: t.description } : {}),
						input_schema: t.parameters,
						...(t.cacheControl ? { cache_control: t.cacheControl } : {})
					}))
				}
			: {}),
		...(toolChoice ? { tool_choice: toolChoice } : {}),
		...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
		...(req.topP !== undefined ? { top_p: req.topP } : {}),
		...(req.stop ? { stop_sequences: req.stop } : {}),
		...(req.endUser ? { metadata: { user_id: req.endUser } } : {})
	};
}

function parseArgs(s: string): unknown {
	try {
		const v = JSON.parse(s || "{}");
		return typeof v === "object" && v !== null && !Array.isArray(v) ? v : { value: v };
	} catch {
		return { _raw: s };
	}
}

export const OPENAI_FINISH: Record<string, FinishReason> = {
	stop: "stop",
	length: "length",
	tool_calls: "tool_calls",
	function_call: "tool_calls",
	content_filter: "content_filter"
};

export const ANTHROPIC_STOP: Record<string, FinishReason> = {
	end_turn: "stop",
	stop_sequence: "stop",
	pause_turn: "stop",
	max_tokens: "length",
	tool_use: "tool_calls",
	refusal: "content_filter"
};

interface OpenAIChunk {
	choices?: Array<{
		delta?: {
			content?: string | null;
			tool_calls?: Array<{ index: number; id?: string; function?: { name?: string; arguments?: string } }>;
		};
		finish_reason?: string | null;
	}>;
	usage?: {
		prompt_tokens: number;
		completion_tokens: number;
		prompt_tokens_details?: { cached_tokens?: number };
		completion_tokens_details?: { reasoning_tokens?: number };
	} | null;
}

/** OpenAI-protocol chunks → events. Complete only with a finish_reason. */
export async function* readOpenAIStream(chunks: AsyncIterable<OpenAIChunk>): AsyncGenerator<UpstreamEvent> {
	let finish: FinishReason | null = null;
	let usage: ChatUsage | null = null;
	for await (const chunk of chunks) {
		if (chunk.usage)
			usage = {
				promptTokens: chunk.usage.prompt_tokens,
				completionTokens: chunk.usage.completion_tokens,
				cachedTokens: chunk.usage.prompt_tokens_details?.cached_tokens ?? 0,
				cacheWriteTokens: 0,
				reasoningTokens: chunk.usage.completion_tokens_details?.reasoning_tokens ?? 0
			};
		const choice = chunk.choices?.[0];
		if (!choice) continue;
		const text = choice.delta?.content;
		if (text) yield { type: "text", text };
		for (const tc of choice.delta?.tool_calls ?? [])
			yield {
				type: "tool",
				index: tc.index,
				...(tc.id ? { id: tc.id } : {}),
				...(tc.function?.name ? { name: tc.function.name } : {}),
				args: tc.function?.arguments ?? ""
			};
		if (choice.finish_reason) finish = OPENAI_FINISH[choice.finish_reason] ?? "stop";
	}
	if (!finish) throw new ProviderError("truncated", "the stream ended without a finish_reason");
	yield { type: "done", finish, stopSequence: null, usage };
}

interface AnthropicEvent {
	type: string;
	index?: number;
	message?: {
		usage?: {
			input_tokens?: number;
			cache_read_input_tokens?: number | null;
			cache_creation_input_tokens?: number | null;
			output_tokens?: number;
		};
	};
	content_block?: { type: string; id?: string; name?: string };
	delta?: {
		type?: string;
		text?: string;
		partial_json?: string;
		stop_reason?: string | null;
		stop_sequence?: string | null;
	};
	usage?: { output_tokens?: number };
	error?: { type?: string; message?: string };
}

/**
 * Anthropic events → events. Complete only with message_delta.stop_reason then message_stop. The
 * delivered whitespace trimmed off a prefill is not repeated (`dropLeading`).
 */
export async function* readAnthropicStream(
	events: AsyncIterable<AnthropicEvent>,
	dropLeading = ""
): AsyncGenerator<UpstreamEvent> {
	let input = 0;
	let cacheRead = 0;
	let cacheWrite = 0;
	let output: number | null = null;
	let stop: string | null = null;
	let stopSequence: string | null = null;
	let stopped = false;
	let started = false;
	const toolIndex = new Map<number, number>();
	for await (const ev of events) {
		switch (ev.type) {
			case "message_start": {
				const u = ev.message?.usage;
				started = true;
				input = u?.input_tokens ?? 0;
				cacheRead = u?.cache_read_input_tokens ?? 0;
				cacheWrite = u?.cache_creation_input_tokens ?? 0;
				break;
			}
			case "content_block_start":
				if (ev.content_block?.type === "tool_use") {
					const i = toolIndex.size;
					toolIndex.set(ev.index ?? 0, i);
					yield { type: "tool", index: i, id: ev.content_block.id, name: ev.content_block.name, args: "" };
				}
				break;
			case "content_block_delta":
				if (ev.delta?.type === "text_delta" && ev.delta.text) {
					let text = ev.delta.text;
					if (dropLeading) {
						if (text.startsWith(dropLeading)) text = text.slice(dropLeading.length);
						dropLeading = "";
					}
					if (text) yield { type: "text", text };
				} else if (ev.delta?.type === "input_json_delta") {
					const i = toolIndex.get(ev.index ?? 0);
					if (i !== undefined && ev.delta.partial_json)
						yield { type: "tool", index: i, args: ev.delta.partial_json };
				}
				break;
			case "message_delta":
				stop = ev.delta?.stop_reason ?? stop;
				stopSequence = ev.delta?.stop_sequence ?? stopSequence;
				output = ev.usage?.output_tokens ?? output;
				break;
			case "message_stop":
				stopped = true;
				break;
			case "error":
				throw Object.assign(new Error(ev.error?.message ?? "stream error"), {
					type: "error",
					error: { type: ev.error?.type }
				});
		}
	}
	if (!stopped || !stop) throw new ProviderError("truncated", "the stream ended without message_stop");
	yield {
		type: "done",
		finish: ANTHROPIC_STOP[stop] ?? "stop",
		stopSequence,
		usage:
			started && output !== null
				? {
						promptTokens: input + cacheRead + cacheWrite,
						completionTokens: output,
						cachedTokens: cacheRead,
						cacheWriteTokens: cacheWrite,
						reasoningTokens: 0
					}
				: null
	};
}

/** The dev provider: a canned, labelled answer (no key, no network). */
async function* devStream(req: ChatRequest, maxTokens: number, signal: AbortSignal): AsyncGenerator<UpstreamEvent> {
	const last = [...req.messages].reverse().find(m => m.role === "user");
	const words = `[dev provider: not a real model] You said: "${textOf(last?.content ?? []).slice(0, 200)}"`.split(
		/(?<= )/
	);
	let n = 0;
	for (const w of words) {
		if (signal.aborted) throw new ProviderError("aborted", "aborted");
		if (n >= maxTokens) return yield { type: "done", finish: "length", stopSequence: null, usage: null };
		await new Promise(r => setImmediate(r));
		n++;
		yield { type: "text", text: w };
	}
	yield { type: "done", finish: "stop", stopSequence: null, usage: null };
}

/** One attempt against `sr.deployment`. */
export async function* callUpstream(
	req: ChatRequest,
	model: CatalogModel,
	sr: StreamRequest
): AsyncGenerator<UpstreamEvent> {
	const d = sr.deployment;
	const opts = { signal: sr.signal, maxRetries: 0, timeout: sr.timeoutMs };
	if (d.provider === "dev") return yield* devStream(req, sr.maxTokens, sr.signal);
	if (d.provider === "anthropic") {
		const body = toAnthropicBody(req, d.upstreamModel, sr.maxTokens, sr.prefix);
		// The body is built from validated fields; the SDK's param type is narrower than our table's Body.
		const stream = await anthropicClient(d).messages.create(body as never, opts);
		const prefill = sr.prefix.trimEnd();
		return yield* readAnthropicStream(
			stream as unknown as AsyncIterable<AnthropicEvent>,
			sr.prefix.slice(prefill.length)
		);
	}
	const body = toOpenAIBody(req, model, d.upstreamModel, sr.maxTokens, sr.prefix);
	return yield* readOpenAIStream(
		openaiChatStream<OpenAIChunk>(d, body, { signal: sr.signal, timeoutMs: sr.timeoutMs })
	);
}

/** What one generation learnt besides its text, for the worker (tool deltas go straight to `onTool`). */
export interface AttemptSideChannel {
	onTool(ev: Extract<UpstreamEvent, { type: "tool" }>): void;
	/** The last attempt's end, with the protocol-level finish reason and full usage. */
	done: Extract<UpstreamEvent, { type: "done" }> | null;
	toolSent: boolean;
}

/**
 * Adapts `callUpstream` to `generate()`'s stream contract: text as deltas, everything else through
 * the side channel; a tool delta also yields an empty delta so the first-token and stall timers see
 * the stream alive.
 */
export function platformStream(req: ChatRequest, model: CatalogModel, side: AttemptSideChannel) {
	return async function* (sr: StreamRequest): AsyncGenerator<StreamEvent> {
		if (side.toolSent)
			// A cut inside a tool call cannot be continued: the client already holds half of it.
			throw new ProviderError("client", "the upstream stream was cut during a tool call");
		side.done = null;
		for await (const ev of callUpstream(req, model, sr)) {
			if (ev.type === "text") yield { type: "delta", text: ev.text };
			else if (ev.type === "tool") {
				side.toolSent = true;
				side.onTool(ev);
				yield { type: "delta", text: "" };
			} else {
				side.done = ev;
				yield {
					type: "done",
					finishReason: ev.finish === "length" ? "length" : "stop",
					usage: ev.usage
						? { promptTokens: ev.usage.promptTokens, completionTokens: ev.usage.completionTokens }
						: null
				};
			}
		}
	};
}
