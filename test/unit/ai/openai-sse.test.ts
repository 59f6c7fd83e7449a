/**
 * The OpenAI-protocol stream over undici (src/ai/openai-sse.ts) against a loopback server scripted
 * per test: chunks split anywhere (inside a line, inside a UTF-8 character), `[DONE]`, and each
 * failure mapped by `classify` as the `openai` SDK's errors were.
 */
import http from "node:http";
import type { DeploymentConfig } from "../../../src/ai/config";
import { openaiChatStream } from "../../../src/ai/openai-sse";
import { classify } from "../../../src/ai/providers";

type Handler = (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void;
let handler: Handler = (_q, _b, res) => res.end();
let server: http.Server;
let base = "";

beforeAll(async () => {
	server = http.createServer((req, res) => {
		let body = "";
		req.on("data", (d: Buffer) => (body += d.toString()));
		req.on("end", () => handler(req, body, res));
	});
	await new Promise<void>(r => server.listen(0, "127.0.0.1", r));
	base = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/`;
});
afterAll(async () => {
	server.closeAllConnections();
	await new Promise(r => server.close(r));
});

const deployment = (): DeploymentConfig =>
	({ id: "t", model: "m", provider: "openai", baseUrl: base, apiKey: "sk-test", upstreamModel: "m" }) as never;

const run = async (opts: { signal?: AbortSignal; timeoutMs?: number } = {}) => {
	const out: unknown[] = [];
	for await (const c of openaiChatStream(
		deployment(),
		{ model: "m", stream: true },
		{ signal: opts.signal ?? new AbortController().signal, timeoutMs: opts.timeoutMs ?? 5_000 }
	))
		out.push(c);
	return out;
};
const failure = (p: Promise<unknown>) =>
	p.then(
		() => {
			throw new Error("resolved");
		},
		(err: unknown) => classify(err)
	);

test("chunks in order across any split of the bytes, nothing after [DONE]; the request as sent", async () => {
	let seen: { url?: string; auth?: string; body?: string } = {};
	const text = `data: ${JSON.stringify({ choices: [{ delta: { content: "héllo ✓" } }] })}\n\ndata: {"choices":[],"usage":{"prompt_tokens":3}}\r\n\r\ndata: [DONE]\n\ndata: {"late":true}\n\n`;
	const bytes = Buffer.from(text);
	handler = (req, body, res) => {
		seen = { url: req.url, auth: req.headers.authorization, body };
		res.writeHead(200, { "content-type": "text/event-stream" });
		// One byte at a time: splits lines, CRLFs and the multi-byte characters.
		let i = 0;
		const next = () => (i < bytes.length ? res.write(bytes.subarray(i, ++i), () => setImmediate(next)) : res.end());
		next();
	};
	expect(await run()).toEqual([
		{ choices: [{ delta: { content: "héllo ✓" } }] },
		{ choices: [], usage: { prompt_tokens: 3 } }
	]);
	expect(seen).toEqual({ url: "/v1/chat/completions", auth: "Bearer sk-test", body: '{"model":"m","stream":true}' });
});

test("a non-2xx answer: status, the body's error and Retry-After, as classify reads them", async () => {
	handler = (_q, _b, res) => {
		res.writeHead(429, { "content-type": "application/json", "retry-after": "2" });
		res.end('{"error":{"message":"slow down","type":"rate_limit_exceeded"}}');
	};
	expect(await failure(run())).toMatchObject({ kind: "rate_limited", status: 429, retryAfterMs: 2000 });
	handler = (_q, _b, res) => {
		res.writeHead(400, { "content-type": "application/json" });
		res.end('{"error":{"message":"bad","type":"invalid_request_error"}}');
	};
	const e = await failure(run());
	expect(e).toMatchObject({ kind: "client", status: 400 });
	expect(e.message).toBe("400 bad");
	handler = (_q, _b, res) => {
		res.writeHead(503);
		res.end("down");
	};
	expect(await failure(run())).toMatchObject({ kind: "server", status: 503 });
});

test("an error chunk mid-stream, an error event, malformed JSON, a cut body", async () => {
	const sse = (s: string, end = true) => {
		handler = (_q, _b, res) => {
			res.writeHead(200, { "content-type": "text/event-stream" });
			if (end) res.end(s);
			else res.write(s, () => res.destroy());
		};
	};
	sse(
		'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
	);
	const e = await failure(run());
	expect(e.retryable).toBe(true);
	expect(e.message).toBe("overloaded");
	sse('event: error\ndata: {"message":"boom","type":"server_error"}\n\n');
	expect((await failure(run())).message).toBe("boom");
	sse('data: {"choices":[{"delta":{"content":"oops"\n\n');
	expect(await failure(run())).toMatchObject({ kind: "malformed" });
	sse('data: {"choices":[{"delta":{"content":"a"}}]}\n\n', false);
	expect(await failure(run())).toMatchObject({ kind: "connection" });
});

test("no headers within timeoutMs: timeout; the caller's abort: aborted, and the upstream sees the socket close", async () => {
	handler = () => undefined; // never answers
	expect(await failure(run({ timeoutMs: 100 }))).toMatchObject({ kind: "timeout" });
	let closed = false;
	handler = (req, _b, res) => {
		res.writeHead(200, { "content-type": "text/event-stream" });
		res.write('data: {"choices":[{"delta":{"content":"a"}}]}\n\n');
		res.on("close", () => (closed = true));
	};
	const ctrl = new AbortController();
	const it = openaiChatStream(deployment(), {}, { signal: ctrl.signal, timeoutMs: 5_000 });
	expect((await it.next()).value).toEqual({ choices: [{ delta: { content: "a" } }] });
	const pending = it.next();
	ctrl.abort();
	expect(await failure(pending)).toMatchObject({ kind: "aborted" });
	await new Promise(r => setTimeout(r, 50));
	expect(closed).toBe(true);
});

test("a consumer that stops early frees the socket", async () => {
	let closed = false;
	handler = (_q, _b, res) => {
		res.writeHead(200, { "content-type": "text/event-stream" });
		res.write('data: {"n":1}\n\ndata: {"n":2}\n\n');
		res.on("close", () => (closed = true));
	};
	for await (const c of openaiChatStream(
		deployment(),
		{},
		{ signal: new AbortController().signal, timeoutMs: 5_000 }
	)) {
		expect(c).toEqual({ n: 1 });
		break;
	}
	await new Promise(r => setTimeout(r, 50));
	expect(closed).toBe(true);
});
