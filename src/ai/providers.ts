/**
 * Provider adapters: one streaming call to one deployment (OpenAI and OpenAI-compatible local
 * servers over undici with an SSE parser, src/ai/openai-sse.ts; Anthropic through `@anthropic-ai/sdk`), or
 * the built-in dev provider. Each yields text deltas and ends with exactly one `done` event, or
 * throws a `ProviderError` that says whether another attempt may help.
 *
 * A stream counts as complete only with the protocol's proper ending: a `finish_reason` on an
 * OpenAI chunk, a `message_stop` event (after `message_delta.stop_reason`) on Anthropic. A body
 * that ends without one was cut and throws `truncated`, so a partial answer is never taken for a
 * whole one. The SDKs' own retries are off (`maxRetries: 0`): the router is the one retry loop.
 */
import Anthropic from "@anthropic-ai/sdk";
import type OpenAI from "openai";
import type { DeploymentConfig } from "./config";
import { openaiChatStream } from "./openai-sse";
import type { ChatMessage } from "./prompt";

export type FailureKind =
	| "rate_limited"
	| "overloaded"
	| "server"
	| "connection"
	| "timeout"
	| "stall"
	| "malformed"
	| "truncated"
	| "client"
	| "aborted";

export class ProviderError extends Error {
	constructor(
		readonly kind: FailureKind,
		message: string,
		readonly status: number | null = null,
		readonly retryAfterMs: number | null = null
	) {
		super(message);
		this.name = "ProviderError";
	}

	/** Another attempt (same or another deployment) may succeed. */
	get retryable(): boolean {
		return this.kind !== "client" && this.kind !== "aborted";
	}
}

export type FinishReason = "stop" | "length";

export type StreamEvent =
	| { type: "delta"; text: string }
	| { type: "done"; finishReason: FinishReason; usage: { promptTokens: number; completionTokens: number } | null };

export interface StreamRequest {
	deployment: DeploymentConfig;
	messages: ChatMessage[];
	maxTokens: number;
	/** Text already delivered by an earlier attempt; the model continues after it. */
	prefix: string;
	signal: AbortSignal;
	/** SDK-level backstop; the router's own timers are tighter. */
	timeoutMs: number;
}

/** The instruction appended (OpenAI protocol) after the partial answer when continuing on a fallback. */
export const CONTINUE_INSTRUCTION =
	"Your previous answer (above) was cut off. Continue it exactly where it stops, without repeating any of it and without any preamble.";

export function parseRetryAfterMs(
	headers: { get(name: string): string | null } | undefined | null,
	now = Date.now()
): number | null {
	if (!headers) return null;
	const ms = headers.get("retry-after-ms");
	if (ms && Number.isFinite(Number(ms))) return Math.max(0, Math.round(Number(ms)));
	const raw = headers.get("retry-after");
	if (!raw) return null;
	if (/^\d+(\.\d+)?$/.test(raw.trim())) return Math.round(Number(raw) * 1000);
	const at = Date.parse(raw);
	return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** Maps whatever an SDK threw to a ProviderError. */
export function classify(err: unknown): ProviderError {
	if (err instanceof ProviderError) return err;
	const e = err as {
		status?: number;
		headers?: { get(n: string): string | null };
		name?: string;
		message?: string;
		type?: string;
		error?: { type?: string; error?: { type?: string } };
	};
	const message = e?.message ?? String(err);
	const types = [e?.type, e?.error?.type, e?.error?.error?.type];
	const errorType = types.find(t => t && t !== "error");
	if (types.includes("overloaded_error"))
		return new ProviderError("overloaded", message, e.status ?? 529, parseRetryAfterMs(e.headers));
	if (typeof e?.status === "number") {
		const retryAfter = parseRetryAfterMs(e.headers);
		if (e.status === 429) return new ProviderError("rate_limited", message, 429, retryAfter);
		if (e.status === 529) return new ProviderError("overloaded", message, 529, retryAfter);
		if (e.status === 408 || e.status === 409 || e.status >= 500)
			return new ProviderError("server", message, e.status, retryAfter);
		return new ProviderError("client", message, e.status);
	}
	if (err instanceof SyntaxError || /malformed|JSON/i.test(message)) return new ProviderError("malformed", message);
	if (e?.name === "APIUserAbortError" || e?.name === "AbortError") return new ProviderError("aborted", message);
	if (e?.name === "APIConnectionTimeoutError") return new ProviderError("timeout", message);
	if (e?.name === "APIError" && errorType) return new ProviderError("server", message);
	return new ProviderError("connection", message);
}

const anthropicClients = new Map<string, Anthropic>();

export function anthropicClient(d: DeploymentConfig): Anthropic {
	let c = anthropicClients.get(d.id + d.baseUrl);
	if (!c) {
		c = new Anthropic({ apiKey: d.apiKey ?? "not-needed", baseURL: d.baseUrl ?? undefined, maxRetries: 0 });
		anthropicClients.set(d.id + d.baseUrl, c);
	}
	return c;
}

async function* streamOpenAI(req: StreamRequest): AsyncGenerator<StreamEvent> {
	const messages: ChatMessage[] = [...req.messages];
	if (req.prefix)
		messages.push({ role: "assistant", content: req.prefix }, { role: "user", content: CONTINUE_INSTRUCTION });
	const stream = openaiChatStream<OpenAI.ChatCompletionChunk>(
		req.deployment,
		{
			model: req.deployment.upstreamModel,
			messages,
			stream: true,
			stream_options: { include_usage: true },
			max_tokens: req.maxTokens
		},
		{ signal: req.signal, timeoutMs: req.timeoutMs }
	);
	let finish: FinishReason | null = null;
	let usage: { promptTokens: number; completionTokens: number } | null = null;
	for await (const chunk of stream) {
		if (chunk.usage)
			usage = { promptTokens: chunk.usage.prompt_tokens, completionTokens: chunk.usage.completion_tokens };
		const choice = chunk.choices?.[0];
		if (!choice) continue;
		const text = choice.delta?.content;
		if (text) yield { type: "delta", text };
		if (choice.finish_reason) finish = choice.finish_reason === "length" ? "length" : "stop";
	}
	if (!finish) throw new ProviderError("truncated", "the stream ended without a finish_reason");
	yield { type: "done", finishReason: finish, usage };
}

async function* streamAnthropic(req: StreamRequest): AsyncGenerator<StreamEvent> {
	const system = req.messages
		.filter(m => m.role === "system")
		.map(m => m.content)
		.join("\n\n");
	const messages = req.messages
		.filter(m => m.role !== "system")
		.map(m => ({ role: m.role as "user" | "assistant", content: m.content }));
	// Anthropic continues a final assistant message natively; it refuses trailing whitespace there.
	const prefill = req.prefix.trimEnd();
	if (prefill) messages.push({ role: "assistant", content: prefill });
	const stream = await anthropicClient(req.deployment).messages.create(
		{
			model: req.deployment.upstreamModel,
			system: system || undefined,
			messages,
			max_tokens: req.maxTokens,
			stream: true
		},
		{ signal: req.signal, maxRetries: 0, timeout: req.timeoutMs }
	);
	let promptTokens: number | null = null;
	let completionTokens: number | null = null;
	let stopReason: string | null = null;
	let stopped = false;
	let skipWhitespace = prefill.length < req.prefix.length;
	for await (const ev of stream) {
		if (ev.type === "message_start") promptTokens = ev.message.usage?.input_tokens ?? null;
		else if (ev.type === "content_block_delta" && ev.delta.type === "text_delta") {
			let text = ev.delta.text;
			// The trimmed whitespace was already delivered with the prefix.
			if (skipWhitespace) {
				const dropped = req.prefix.slice(prefill.length);
				if (text.startsWith(dropped)) text = text.slice(dropped.length);
				skipWhitespace = false;
			}
			if (text) yield { type: "delta", text };
		} else if (ev.type === "message_delta") {
			stopReason = ev.delta.stop_reason ?? stopReason;
			completionTokens = ev.usage?.output_tokens ?? completionTokens;
		} else if (ev.type === "message_stop") stopped = true;
	}
	if (!stopped || !stopReason) throw new ProviderError("truncated", "the stream ended without message_stop");
	yield {
		type: "done",
		finishReason: stopReason === "max_tokens" ? "length" : "stop",
		usage: promptTokens !== null && completionTokens !== null ? { promptTokens, completionTokens } : null
	};
}

/** The dev provider: a canned, clearly labelled answer, streamed word by word; no key, no network. */
async function* streamDev(req: StreamRequest): AsyncGenerator<StreamEvent> {
	const question = req.messages.find(m => m.role === "user")?.content.split("\n\nProject files:")[0] ?? "";
	const answer = `[dev provider: not a real model] You asked: "${question.slice(0, 200)}". Configure OPENAI_API_KEY, ANTHROPIC_API_KEY, LOCAL_LLM_BASE_URL or AI_DEPLOYMENTS for real answers.`;
	const words = answer.split(/(?<= )/);
	let n = 0;
	for (const w of words) {
		if (req.signal.aborted) throw new ProviderError("aborted", "aborted");
		if (n >= req.maxTokens) return yield { type: "done", finishReason: "length", usage: null };
		await new Promise(r => setImmediate(r));
		n++;
		yield { type: "delta", text: w };
	}
	yield { type: "done", finishReason: "stop", usage: null };
}

export function streamChat(req: StreamRequest): AsyncGenerator<StreamEvent> {
	switch (req.deployment.provider) {
		case "anthropic":
			return streamAnthropic(req);
		case "dev":
			return streamDev(req);
		default:
			return streamOpenAI(req);
	}
}
