/**
 * One streamed OpenAI-protocol chat completion (`POST {baseUrl}/chat/completions`, `stream: true`)
 * over undici's `request` with `eventsource-parser`: the chunks as parsed JSON, in order, up to
 * `data: [DONE]`. It replaces the `openai` SDK on the streamed hot path (web streams, its SSE
 * decoder and per-request option handling cost about 0.7 ms of CPU per stream, bench/compat) and
 * throws what the SDK threw, so `classify` maps both alike:
 * - a non-2xx answer: an error with `status`, `headers` (`get`, for Retry-After) and the body's
 *   `error` object (`type`, `message`);
 * - an `error` event, or a chunk with an `error` member: an error with that object and no status
 *   (the SDK's `APIError` without a status);
 * - a `data:` line that is not JSON: a `SyntaxError`;
 * - no answer headers within `timeoutMs` (the SDK's timeout also ends at the headers): name
 *   `APIConnectionTimeoutError`; the caller's signal: name `AbortError`; a socket error
 *   or a body cut mid-way: the undici error (a connection failure). A body that ends cleanly
 *   without a finish_reason is the reader's to judge (`truncated`).
 */
import { StringDecoder } from "node:string_decoder";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { Agent, request } from "undici";
import type { DeploymentConfig } from "./config";

const OPENAI_BASE = "https://api.openai.com/v1";

/** One keep-alive pool for every upstream; response bodies are paced by the router's stall timer, not here. */
const agent = new Agent({ keepAliveTimeout: 30_000, bodyTimeout: 0 });

/** What `classify` (src/ai/providers.ts) takes for the caller's abort. */
const aborted = () => Object.assign(new Error("Request was aborted."), { name: "AbortError" });

class UpstreamError extends Error {
	constructor(
		message: string,
		readonly status: number | undefined,
		readonly error: { type?: string; message?: string } | undefined,
		readonly headers: Headers | undefined
	) {
		super(message);
		this.name = "Error";
	}
	get type() {
		return this.error?.type;
	}
}

function headersOf(raw: Record<string, string | string[] | undefined>): Headers {
	const h = new Headers();
	for (const [k, v] of Object.entries(raw))
		if (v !== undefined) for (const one of Array.isArray(v) ? v : [v]) h.append(k, one);
	return h;
}

const messageOf = (status: number | undefined, error: { message?: unknown } | undefined, fallback: string) => {
	const msg =
		typeof error?.message === "string"
			? error.message
			: error?.message !== undefined
				? JSON.stringify(error.message)
				: error
					? JSON.stringify(error)
					: fallback;
	return status ? `${status} ${msg}` : msg;
};

export function openaiChatUrl(d: DeploymentConfig): string {
	const base = d.baseUrl ?? process.env.OPENAI_BASE_URL ?? OPENAI_BASE;
	return `${base.replace(/\/+$/, "")}/chat/completions`;
}

export async function* openaiChatStream<T = unknown>(
	d: DeploymentConfig,
	body: Record<string, unknown>,
	opts: { signal: AbortSignal; timeoutMs: number }
): AsyncGenerator<T> {
	if (opts.signal.aborted) throw aborted();
	let res: Awaited<ReturnType<typeof request>>;
	try {
		res = await request(openaiChatUrl(d), {
			method: "POST",
			dispatcher: agent,
			signal: opts.signal,
			headersTimeout: opts.timeoutMs,
			headers: {
				"content-type": "application/json",
				accept: "application/json",
				// Local servers accept any key; the SDK sent this one when none was configured.
				authorization: `Bearer ${d.apiKey ?? "not-needed"}`
			},
			body: JSON.stringify(body)
		});
	} catch (err) {
		if (opts.signal.aborted) throw aborted();
		if ((err as { code?: string }).code === "UND_ERR_HEADERS_TIMEOUT")
			throw Object.assign(new Error("Request timed out."), { name: "APIConnectionTimeoutError" });
		throw err;
	}
	if (res.statusCode < 200 || res.statusCode >= 300) {
		const text = await res.body.text().catch(() => "");
		let error: { type?: string; message?: string } | undefined;
		try {
			error = (JSON.parse(text) as { error?: { type?: string; message?: string } }).error;
		} catch {
			error = undefined;
		}
		throw new UpstreamError(
			messageOf(res.statusCode, error, text || "status code (no body)"),
			res.statusCode,
			error,
			headersOf(res.headers)
		);
	}
	const headers = res.headers;
	const queue: EventSourceMessage[] = [];
	const parser = createParser({ onEvent: ev => void queue.push(ev) });
	const decoder = new StringDecoder("utf8");
	let done = false;
	try {
		for await (const piece of res.body) {
			parser.feed(decoder.write(piece as Buffer));
			while (queue.length) {
				const ev = queue.shift()!;
				if (done) continue;
				if (ev.data === "[DONE]") {
					done = true;
					continue;
				}
				let data: { error?: { type?: string; message?: string } } & Record<string, unknown>;
				try {
					data = JSON.parse(ev.data) as typeof data;
				} catch {
					throw new SyntaxError("Error reading response: malformed server-sent event JSON.");
				}
				if (ev.event === "error" || data?.error) {
					const error = (data?.error ?? data) as { type?: string; message?: string };
					throw new UpstreamError(
						messageOf(undefined, error, "stream error"),
						undefined,
						error,
						headersOf(headers)
					);
				}
				yield data as T;
			}
		}
	} catch (err) {
		if (opts.signal.aborted) throw aborted();
		throw err;
	} finally {
		// The consumer stopped early (or an error): free the socket rather than read on.
		if (!res.body.readableEnded) res.body.destroy();
	}
}
