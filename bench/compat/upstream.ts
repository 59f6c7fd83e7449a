/**
 * The bench's upstream: OpenAI's chat completions answered at once with CHUNKS tokens, streamed
 * (`data:` chunks, the finish chunk, a usage chunk when `stream_options.include_usage`, `[DONE]`)
 * or, for `stream: false`, as one `chat.completion` JSON body (the test suite's fake streams only,
 * and LiteLLM's proxy asks a non-streaming client's request without streaming).
 */
import http from "node:http";

export async function startBenchUpstream(chunks: number): Promise<{ url: string; close(): Promise<void> }> {
	const tokens = Array.from({ length: chunks }, (_, i) => ` t${i}`);
	const server = http.createServer((req, res) => {
		if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
			res.writeHead(404, { "Content-Type": "application/json" });
			return void res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
		}
		let raw = "";
		req.setEncoding("utf8");
		req.on("data", (d: string) => (raw += d));
		req.on("end", () => {
			const body = JSON.parse(raw || "{}") as {
				model?: string;
				messages?: unknown[];
				stream?: boolean;
				stream_options?: { include_usage?: boolean };
			};
			const model = body.model ?? "gpt-4o-mini";
			const usage = {
				prompt_tokens: Math.ceil(JSON.stringify(body.messages ?? []).length / 4),
				completion_tokens: chunks,
				total_tokens: Math.ceil(JSON.stringify(body.messages ?? []).length / 4) + chunks
			};
			const base = { id: "chatcmpl-bench", created: 1_700_000_000, model };
			if (!body.stream) {
				const payload = JSON.stringify({
					...base,
					object: "chat.completion",
					choices: [
						{ index: 0, message: { role: "assistant", content: tokens.join("") }, finish_reason: "stop" }
					],
					usage
				});
				res.writeHead(200, {
					"Content-Type": "application/json",
					"Content-Length": Buffer.byteLength(payload)
				});
				return void res.end(payload);
			}
			res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" });
			const chunk = (delta: Record<string, unknown>, finish: string | null) =>
				`data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
			let out = chunk({ role: "assistant", content: "" }, null);
			for (const t of tokens) out += chunk({ content: t }, null);
			out += chunk({}, "stop");
			if (body.stream_options?.include_usage)
				out += `data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices: [], usage })}\n\n`;
			res.end(`${out}data: [DONE]\n\n`);
		});
	});
	server.keepAliveTimeout = 60_000;
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const { port } = server.address() as { port: number };
	return {
		url: `http://127.0.0.1:${port}/v1`,
		close: () =>
			new Promise<void>(resolve => {
				server.closeAllConnections();
				server.close(() => resolve());
			})
	};
}
