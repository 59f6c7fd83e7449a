/**
 * The floor of bench/compat: a bare pass-through proxy in Node, in its own process (as the ForgeFluid
 * node and LiteLLM are). `POST /v1/chat/completions` is forwarded to the upstream and its answer piped
 * back, with no authentication, no ledger, no limits, no logs: what any Node proxy adds on this
 * machine. Prints one line `READY {"baseUrl"}` on stdout; exits when its standard input closes.
 * Env: BENCH_FAKE_URL (the upstream's `/v1` base, required); BARE_VIA=undici (the default: the body
 * forwarded and the answer piped with undici's `request`) or `sdk` (the upstream called through the
 * `openai` SDK, as the ai service does, and its chunks written back as SSE frames: the SDK's cost).
 */
import http from "node:http";
import OpenAI from "openai";
import { Agent, request } from "undici";

async function main() {
	const upstream = process.env.BENCH_FAKE_URL;
	if (!upstream) throw new Error("BENCH_FAKE_URL is required");
	const via = process.env.BARE_VIA ?? "undici";
	const target = `${upstream}/chat/completions`;
	const dispatcher = new Agent({ connections: 1000, keepAliveTimeout: 60_000 });
	const sdk = new OpenAI({ apiKey: "sk", baseURL: upstream, maxRetries: 0 });
	const fail = (res: http.ServerResponse, err: unknown) => {
		if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
		res.end(JSON.stringify({ error: { message: String(err), type: "upstream_error" } }));
	};
	const server = http.createServer((req, res) => {
		if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
			res.writeHead(404, { "content-type": "application/json" });
			return void res.end('{"error":{"message":"not found","type":"invalid_request_error"}}');
		}
		const parts: Buffer[] = [];
		req.on("data", (d: Buffer) => parts.push(d));
		req.on("end", () => {
			const raw = Buffer.concat(parts);
			if (via === "sdk") {
				const body = JSON.parse(raw.toString("utf8")) as OpenAI.ChatCompletionCreateParams;
				if (!body.stream) {
					sdk.chat.completions.create(body).then(
						out => {
							res.writeHead(200, { "content-type": "application/json" });
							res.end(JSON.stringify(out));
						},
						(err: unknown) => fail(res, err)
					);
					return;
				}
				void (async () => {
					try {
						const s = await sdk.chat.completions.create(body);
						res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
						for await (const ch of s) res.write(`data: ${JSON.stringify(ch)}\n\n`);
						res.end("data: [DONE]\n\n");
					} catch (err) {
						fail(res, err);
					}
				})();
				return;
			}
			request(target, {
				method: "POST",
				dispatcher,
				headers: { "content-type": "application/json", authorization: "Bearer sk" },
				body: raw
			}).then(
				up => {
					res.writeHead(up.statusCode, {
						"content-type": String(up.headers["content-type"] ?? "application/json")
					});
					up.body.on("data", (d: Buffer) => res.write(d));
					up.body.on("end", () => res.end());
					up.body.on("error", () => res.destroy());
				},
				(err: unknown) => fail(res, err)
			);
		});
	});
	server.keepAliveTimeout = 60_000;
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const { port } = server.address() as { port: number };
	process.stdin.on("end", () => process.exit(0));
	process.stdin.resume();
	process.stdout.write(`READY ${JSON.stringify({ baseUrl: `http://127.0.0.1:${port}` })}\n`);
}

void main().catch(err => {
	console.error(err);
	process.exit(1);
});
