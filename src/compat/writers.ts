/**
 * ChatEvents → each protocol's answer: the stream frames (`OpenAIStreamWriter`,
 * `AnthropicStreamWriter`) and, for non-streaming calls, the whole response built from the same
 * events (`collect` then `openAIResponse` / `anthropicResponse`). Translation tables (finish and
 * stop reasons, usage fields) are exported for the unit tests.
 */
import { CompatError, streamErrorPayload } from "./errors";
import type { ChatEvent, ChatUsage, FinishReason, Protocol } from "./types";

export const ANTHROPIC_STOP_OF: Record<FinishReason, string> = {
	stop: "end_turn",
	length: "max_tokens",
	tool_calls: "tool_use",
	content_filter: "refusal"
};

export function openAIUsage(u: ChatUsage) {
	return {
		prompt_tokens: u.promptTokens,
		completion_tokens: u.completionTokens,
		total_tokens: u.promptTokens + u.completionTokens,
		prompt_tokens_details: { cached_tokens: u.cachedTokens },
		completion_tokens_details: { reasoning_tokens: u.reasoningTokens }
	};
}

export function anthropicUsage(u: ChatUsage) {
	return {
		// Anthropic counts cached reads and cache writes apart from input_tokens.
		input_tokens: Math.max(0, u.promptTokens - u.cachedTokens - u.cacheWriteTokens),
		output_tokens: u.completionTokens,
		cache_creation_input_tokens: u.cacheWriteTokens,
		cache_read_input_tokens: u.cachedTokens
	};
}

export interface Collected {
	start: Extract<ChatEvent, { t: "start" }>;
	text: string;
	tools: Array<{ id: string; name: string; args: string }>;
	done: Extract<ChatEvent, { t: "done" }>;
}

/** Folds a whole event list into one answer (non-streaming calls). Throws the error event's error. */
export function collect(events: ChatEvent[], toError: (ev: Extract<ChatEvent, { t: "error" }>) => Error): Collected {
	let start: Collected["start"] | null = null;
	let text = "";
	const tools: Collected["tools"] = [];
	for (const ev of events) {
		if (ev.t === "start") start = ev;
		else if (ev.t === "text") text += ev.text;
		else if (ev.t === "tool") {
			const t = (tools[ev.index] ??= { id: "", name: "", args: "" });
			if (ev.id) t.id = ev.id;
			if (ev.name) t.name = ev.name;
			t.args += ev.args;
		} else if (ev.t === "error") throw toError(ev);
		else if (ev.t === "done") {
			if (!start) throw new Error("done before start");
			return { start, text, tools: tools.filter(Boolean), done: ev };
		}
	}
	throw new Error("the answer ended without its final event");
}

export function openAIResponse(c: Collected) {
	return {
		id: `chatcmpl-${c.start.id}`,
		object: "chat.completion",
		created: c.start.created,
		model: c.start.model,
		choices: [
			{
				index: 0,
				message: {
					role: "assistant",
					content: c.text || (c.tools.length ? null : ""),
					refusal: null,
					...(c.tools.length
						? {
								tool_calls: c.tools.map(t => ({
									id: t.id,
									type: "function",
									function: { name: t.name, arguments: t.args }
								}))
							}
						: {})
				},
				logprobs: null,
				finish_reason: c.done.finish
			}
		],
		usage: openAIUsage(c.done.usage)
	};
}

function parseInput(s: string): unknown {
	try {
		return JSON.parse(s || "{}");
	} catch {
		return {};
	}
}

export function anthropicResponse(c: Collected) {
	return {
		id: `msg_${c.start.id}`,
		type: "message",
		role: "assistant",
		model: c.start.model,
		content: [
			...(c.text ? [{ type: "text", text: c.text }] : []),
			...c.tools.map(t => ({ type: "tool_use", id: t.id, name: t.name, input: parseInput(t.args) }))
		],
		stop_reason: c.done.stopSequence ? "stop_sequence" : ANTHROPIC_STOP_OF[c.done.finish],
		stop_sequence: c.done.stopSequence,
		usage: anthropicUsage(c.done.usage)
	};
}

export interface StreamWriter {
	/** Frames for one event (may be empty). */
	write(ev: ChatEvent): string;
	/** Frames ending a stream that failed after it started. */
	fail(e: CompatError): string;
}

const data = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;

export class OpenAIStreamWriter implements StreamWriter {
	private head: { id: string; object: string; created: number; model: string } | null = null;
	private readonly seenTools = new Set<number>();
	constructor(private readonly includeUsage: boolean) {}

	private chunk(delta: Record<string, unknown>, finish: string | null) {
		return data({
			...this.head,
			choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
			...(this.includeUsage ? { usage: null } : {})
		});
	}

	write(ev: ChatEvent): string {
		switch (ev.t) {
			case "start":
				this.head = {
					id: `chatcmpl-${ev.id}`,
					object: "chat.completion.chunk",
					created: ev.created,
					model: ev.model
				};
				return this.chunk({ role: "assistant", content: "", refusal: null }, null);
			case "text":
				return this.chunk({ content: ev.text }, null);
			case "tool": {
				const first = !this.seenTools.has(ev.index);
				this.seenTools.add(ev.index);
				return this.chunk(
					{
						tool_calls: [
							{
								index: ev.index,
								...(first ? { id: ev.id, type: "function" } : {}),
								function: { ...(first ? { name: ev.name } : {}), arguments: ev.args }
							}
						]
					},
					null
				);
			}
			case "done":
				return (
					this.chunk({}, ev.finish) +
					(this.includeUsage ? data({ ...this.head, choices: [], usage: openAIUsage(ev.usage) }) : "") +
					"data: [DONE]\n\n"
				);
			case "error":
				return "";
		}
	}

	fail(e: CompatError): string {
		// The openai SDKs raise an APIError on a data line carrying `error`; no [DONE] follows.
		return data(streamErrorPayload("openai", e));
	}
}

const sse = (event: string, o: unknown) => `event: ${event}\ndata: ${JSON.stringify(o)}\n\n`;

export class AnthropicStreamWriter implements StreamWriter {
	private blockIndex = -1;
	private open: { kind: "text" } | { kind: "tool"; toolIndex: number } | null = null;
	private start: Extract<ChatEvent, { t: "start" }> | null = null;

	private close(): string {
		if (!this.open) return "";
		this.open = null;
		return sse("content_block_stop", { type: "content_block_stop", index: this.blockIndex });
	}

	write(ev: ChatEvent): string {
		switch (ev.t) {
			case "start":
				this.start = ev;
				return (
					sse("message_start", {
						type: "message_start",
						message: {
							id: `msg_${ev.id}`,
							type: "message",
							role: "assistant",
							model: ev.model,
							content: [],
							stop_reason: null,
							stop_sequence: null,
							// The estimate: the provider's own count comes with message_delta.
							usage: {
								input_tokens: ev.promptTokens,
								output_tokens: 0,
								cache_creation_input_tokens: 0,
								cache_read_input_tokens: 0
							}
						}
					}) + sse("ping", { type: "ping" })
				);
			case "text": {
				let out = "";
				if (this.open?.kind !== "text") {
					out += this.close();
					this.blockIndex++;
					this.open = { kind: "text" };
					out += sse("content_block_start", {
						type: "content_block_start",
						index: this.blockIndex,
						content_block: { type: "text", text: "" }
					});
				}
				return (
					out +
					sse("content_block_delta", {
						type: "content_block_delta",
						index: this.blockIndex,
						delta: { type: "text_delta", text: ev.text }
					})
				);
			}
			case "tool": {
				let out = "";
				if (!(this.open?.kind === "tool" && this.open.toolIndex === ev.index)) {
					out += this.close();
					this.blockIndex++;
					this.open = { kind: "tool", toolIndex: ev.index };
					out += sse("content_block_start", {
						type: "content_block_start",
						index: this.blockIndex,
						content_block: {
							type: "tool_use",
							id: ev.id ?? `toolu_${this.start?.id}_${ev.index}`,
							name: ev.name ?? "",
							input: {}
						}
					});
				}
				if (!ev.args) return out;
				return (
					out +
					sse("content_block_delta", {
						type: "content_block_delta",
						index: this.blockIndex,
						delta: { type: "input_json_delta", partial_json: ev.args }
					})
				);
			}
			case "done":
				return (
					this.close() +
					sse("message_delta", {
						type: "message_delta",
						delta: {
							stop_reason: ev.stopSequence ? "stop_sequence" : ANTHROPIC_STOP_OF[ev.finish],
							stop_sequence: ev.stopSequence
						},
						usage: anthropicUsage(ev.usage)
					}) +
					sse("message_stop", { type: "message_stop" })
				);
			case "error":
				return "";
		}
	}

	fail(e: CompatError): string {
		return sse("error", streamErrorPayload("anthropic", e));
	}
}

export function streamWriter(protocol: Protocol, includeUsage: boolean): StreamWriter {
	return protocol === "openai" ? new OpenAIStreamWriter(includeUsage) : new AnthropicStreamWriter();
}
