/**
 * A local server speaking OpenAI's chat-completions streaming protocol (also what Ollama, vLLM,
 * llama.cpp server and LM Studio speak): `data: {chunk}` lines, a chunk with `finish_reason`,
 * a usage chunk (`choices: []`) when `stream_options.include_usage`, then `data: [DONE]`.
 * Faults are scripted per request (see fake-llm-server.ts).
 */
import type http from "node:http";
import { FakeServer, RecordedRequest, Writer, fakePromptTokens, startFakeServer } from "./fake-llm-server";

const line = (res: http.ServerResponse, obj: unknown) => res.write(`data: ${JSON.stringify(obj)}\n\n`);

function chunk(model: unknown, delta: Record<string, unknown>, finish: string | null) {
	return {
		id: "chatcmpl-fake",
		object: "chat.completion.chunk",
		created: 1_700_000_000,
		model,
		choices: [{ index: 0, delta, finish_reason: finish }]
	};
}

function usageOf(req: RecordedRequest, prompt: number, completion: number) {
	const x = req.usageExtra ?? {};
	return {
		prompt_tokens: prompt,
		completion_tokens: completion,
		total_tokens: prompt + completion,
		prompt_tokens_details: { cached_tokens: x.cachedTokens ?? 0 },
		completion_tokens_details: { reasoning_tokens: x.reasoningTokens ?? 0 }
	};
}

const writer: Writer = {
	start(res, req) {
		res.writeHead(200, {
			"Content-Type": "text/event-stream",
			"Cache-Control": "no-cache",
			Connection: "keep-alive"
		});
		line(res, chunk(req.body.model, { role: "assistant", content: "" }, null));
	},
	chunk(res, text) {
		line(res, chunk("fake", { content: text }, null));
	},
	finish(res, req, finish, chunks, usage) {
		line(res, chunk(req.body.model, {}, finish));
		if (usage) {
			const prompt = fakePromptTokens(req.body);
			line(res, {
				id: "chatcmpl-fake",
				object: "chat.completion.chunk",
				created: 1_700_000_000,
				model: req.body.model,
				choices: [],
				usage: usageOf(req, prompt, chunks)
			});
		}
		res.write("data: [DONE]\n\n");
		res.end();
	},
	tools(res, req, calls, textChunks) {
		calls.forEach((c, index) => {
			line(
				res,
				chunk(
					req.body.model,
					{ tool_calls: [{ index, id: c.id, type: "function", function: { name: c.name, arguments: "" } }] },
					null
				)
			);
			const half = Math.ceil(c.arguments.length / 2);
			for (const piece of [c.arguments.slice(0, half), c.arguments.slice(half)])
				line(res, chunk(req.body.model, { tool_calls: [{ index, function: { arguments: piece } }] }, null));
		});
		line(res, chunk(req.body.model, {}, "tool_calls"));
		const prompt = fakePromptTokens(req.body);
		const completion = textChunks + calls.length * 3;
		if (writer.wantsUsage(req.body))
			line(res, {
				id: "chatcmpl-fake",
				object: "chat.completion.chunk",
				created: 1_700_000_000,
				model: req.body.model,
				choices: [],
				usage: usageOf(req, prompt, completion)
			});
		res.write("data: [DONE]\n\n");
		res.end();
	},
	malformed(res) {
		res.write('data: {"id":"chatcmpl-fake","choices":[{"delta":{"content":"oops"\n\n');
	},
	overloaded(res) {
		line(res, { error: { message: "overloaded", type: "server_error" } });
	},
	error(res, status, retryAfter, errorType) {
		res.writeHead(status, {
			"Content-Type": "application/json",
			...(retryAfter ? { "Retry-After": retryAfter } : {})
		});
		res.end(
			JSON.stringify({
				error: {
					message: `fake error ${status}`,
					type: errorType ?? (status === 429 ? "rate_limit_exceeded" : "server_error"),
					code: null
				}
			})
		);
	},
	wantsUsage: body => !!(body.stream_options as { include_usage?: boolean } | undefined)?.include_usage,
	maxTokens: body => Number(body.max_tokens ?? body.max_completion_tokens ?? Infinity)
};

/** `url` is the base URL to give the SDK (ends in /v1). */
export function startFakeOpenAI(): Promise<FakeServer> {
	return startFakeServer("/chat/completions", writer, "/v1");
}
