/**
 * A local server speaking Anthropic's Messages streaming protocol: named events message_start,
 * content_block_start, ping, content_block_delta (text_delta), content_block_stop, message_delta
 * (stop_reason, output usage), message_stop; `overloaded_error` as an `error` event mid-stream and
 * HTTP errors with Anthropic's error body. Faults are scripted per request (fake-llm-server.ts).
 */
import type http from "node:http";
import { FakeServer, Writer, fakePromptTokens, startFakeServer } from "./fake-llm-server";

const event = (res: http.ServerResponse, name: string, data: unknown) =>
	res.write(`event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);

const writer: Writer = {
	start(res, req) {
		res.writeHead(200, {
			"Content-Type": "text/event-stream",
			"Cache-Control": "no-cache",
			Connection: "keep-alive"
		});
		event(res, "message_start", {
			type: "message_start",
			message: {
				id: "msg_fake",
				type: "message",
				role: "assistant",
				content: [],
				model: req.body.model,
				stop_reason: null,
				stop_sequence: null,
				usage: {
					input_tokens: fakePromptTokens(req.body),
					output_tokens: 1,
					cache_read_input_tokens: req.usageExtra?.cachedTokens ?? 0,
					cache_creation_input_tokens: req.usageExtra?.cacheWriteTokens ?? 0
				}
			}
		});
		event(res, "content_block_start", {
			type: "content_block_start",
			index: 0,
			content_block: { type: "text", text: "" }
		});
		event(res, "ping", { type: "ping" });
	},
	chunk(res, text) {
		event(res, "content_block_delta", {
			type: "content_block_delta",
			index: 0,
			delta: { type: "text_delta", text }
		});
	},
	finish(res, _req, finish, chunks) {
		event(res, "content_block_stop", { type: "content_block_stop", index: 0 });
		event(res, "message_delta", {
			type: "message_delta",
			delta: { stop_reason: finish === "length" ? "max_tokens" : "end_turn", stop_sequence: null },
			usage: { output_tokens: chunks }
		});
		event(res, "message_stop", { type: "message_stop" });
		res.end();
	},
	tools(res, _req, calls, textChunks) {
		event(res, "content_block_stop", { type: "content_block_stop", index: 0 });
		calls.forEach((c, i) => {
			const index = i + 1;
			event(res, "content_block_start", {
				type: "content_block_start",
				index,
				content_block: { type: "tool_use", id: c.id, name: c.name, input: {} }
			});
			const half = Math.ceil(c.arguments.length / 2);
			for (const piece of [c.arguments.slice(0, half), c.arguments.slice(half)])
				event(res, "content_block_delta", {
					type: "content_block_delta",
					index,
					delta: { type: "input_json_delta", partial_json: piece }
				});
			event(res, "content_block_stop", { type: "content_block_stop", index });
		});
		event(res, "message_delta", {
			type: "message_delta",
			delta: { stop_reason: "tool_use", stop_sequence: null },
			usage: { output_tokens: textChunks + calls.length * 3 }
		});
		event(res, "message_stop", { type: "message_stop" });
		res.end();
	},
	malformed(res) {
		res.write(
			'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_de\n\n'
		);
	},
	overloaded(res) {
		event(res, "error", { type: "error", error: { type: "overloaded_error", message: "Overloaded" } });
	},
	error(res, status, retryAfter, errorType) {
		const type =
			errorType ?? (status === 429 ? "rate_limit_error" : status === 529 ? "overloaded_error" : "api_error");
		res.writeHead(status, {
			"Content-Type": "application/json",
			...(retryAfter ? { "retry-after": retryAfter } : {})
		});
		res.end(JSON.stringify({ type: "error", error: { type, message: `fake error ${status}` } }));
	},
	wantsUsage: () => true,
	maxTokens: body => Number(body.max_tokens ?? Infinity)
};

/** `url` is the base URL to give the SDK (the SDK appends /v1/messages). */
export function startFakeAnthropic(): Promise<FakeServer> {
	return startFakeServer("/v1/messages", writer, "");
}
