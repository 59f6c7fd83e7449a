/**
 * The scripting shared by the fake provider servers (fake-openai.ts, fake-anthropic.ts): an HTTP
 * server whose next answers are queued behaviours (or a default), recording every request.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export type Behaviour =
	/** A whole answer in chunks; honours max_tokens (one chunk = one token) unless `ignoreMaxTokens`. */
	| {
			kind: "ok";
			chunks?: string[];
			chunkDelayMs?: number;
			firstChunkDelayMs?: number;
			ignoreMaxTokens?: boolean;
			/** Nothing is written until this settles (hold every answer until a test lets them go). */
			until?: Promise<unknown>;
			usage?: boolean;
			/** Extra usage fields to report (cache reads/writes, reasoning tokens). */
			usageExtra?: UsageExtra;
	  }
	/** Optional text, then tool calls (arguments streamed in two pieces each); finish = tool calls. */
	| { kind: "tools"; calls: FakeToolCall[]; text?: string[]; usageExtra?: UsageExtra }
	/** An HTTP error before any body. */
	| { kind: "status"; status: number; retryAfter?: string; errorType?: string }
	/** Connection reset before the response. */
	| { kind: "reset" }
	/** `after` chunks, then the connection is destroyed (no finish signal). */
	| { kind: "cut"; after: number; chunks?: string[] }
	/** `after` chunks, then silence (the connection stays open). */
	| { kind: "stall"; after: number; chunks?: string[] }
	/** `after` chunks, then a chunk that is not JSON. */
	| { kind: "malformed"; after: number; chunks?: string[] }
	/** `after` chunks, then an `overloaded_error` error event (Anthropic protocol). */
	| { kind: "overloaded"; after: number; chunks?: string[] }
	/** Chunks forever (every `chunkDelayMs`), ignoring max_tokens, until the client goes away. */
	| { kind: "endless"; chunkDelayMs: number };

export interface UsageExtra {
	cachedTokens?: number;
	cacheWriteTokens?: number;
	reasoningTokens?: number;
}

export interface FakeToolCall {
	id: string;
	name: string;
	/** JSON text. */
	arguments: string;
}

export interface RecordedRequest {
	path: string;
	headers: http.IncomingHttpHeaders;
	body: Record<string, unknown>;
	/** The client closed the connection before the answer ended. */
	aborted: boolean;
	/** Chunks written before the end. */
	chunksSent: number;
	/** The behaviour's extra usage fields (read by the writers). */
	usageExtra?: UsageExtra;
}

export interface Writer {
	start(res: http.ServerResponse, req: RecordedRequest): void;
	chunk(res: http.ServerResponse, text: string, index: number): void;
	finish(
		res: http.ServerResponse,
		req: RecordedRequest,
		finish: "stop" | "length",
		chunks: number,
		usage: boolean
	): void;
	/** Text chunks (if any) then the tool calls, then the protocol's end (finish reason: tool calls). */
	tools(res: http.ServerResponse, req: RecordedRequest, calls: FakeToolCall[], textChunks: number): void;
	malformed(res: http.ServerResponse): void;
	overloaded(res: http.ServerResponse): void;
	error(
		res: http.ServerResponse,
		status: number,
		retryAfter: string | undefined,
		errorType: string | undefined
	): void;
	wantsUsage(body: Record<string, unknown>): boolean;
	maxTokens(body: Record<string, unknown>): number;
}

export interface FakeServer {
	url: string;
	requests: RecordedRequest[];
	/** Queues behaviours for the next requests (FIFO); after them the default applies. */
	enqueue(...b: Behaviour[]): void;
	setDefault(b: Behaviour | ((body: Record<string, unknown>) => Behaviour)): void;
	/** Resolves when `n` requests have arrived. */
	waitForRequests(n: number): Promise<void>;
	close(): Promise<void>;
}

export const DEFAULT_CHUNKS = ["Hello", " from", " the", " fake", " model", "."];

const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

export async function startFakeServer(pathSuffix: string, w: Writer, basePath: string): Promise<FakeServer> {
	const queue: Behaviour[] = [];
	let def: Behaviour | ((body: Record<string, unknown>) => Behaviour) = { kind: "ok" };
	const requests: RecordedRequest[] = [];
	const waiters: Array<{ n: number; resolve: () => void }> = [];
	const sockets = new Set<import("node:net").Socket>();

	const server = http.createServer((req, res) => {
		let raw = "";
		req.on("data", c => (raw += c));
		req.on("end", async () => {
			if (req.method !== "POST" || !req.url?.endsWith(pathSuffix)) {
				res.writeHead(404).end();
				return;
			}
			const body = JSON.parse(raw || "{}") as Record<string, unknown>;
			const rec: RecordedRequest = { path: req.url, headers: req.headers, body, aborted: false, chunksSent: 0 };
			requests.push(rec);
			for (const wt of waiters.filter(x => requests.length >= x.n)) wt.resolve();
			let ended = false;
			res.on("close", () => {
				if (!ended) rec.aborted = true;
			});
			const b = queue.shift() ?? (typeof def === "function" ? def(body) : def);
			if ("usageExtra" in b && b.usageExtra) rec.usageExtra = b.usageExtra;
			const chunksOf = (c?: string[]) => c ?? DEFAULT_CHUNKS;
			const send = async (chunks: string[], n: number, delay = 0, firstDelay = delay) => {
				for (let i = 0; i < n && i < chunks.length; i++) {
					if (rec.aborted) return false;
					const d = i === 0 ? firstDelay : delay;
					if (d) await sleep(d);
					w.chunk(res, chunks[i], i);
					rec.chunksSent++;
				}
				return !rec.aborted;
			};
			switch (b.kind) {
				case "status":
					ended = true;
					return w.error(res, b.status, b.retryAfter, b.errorType);
				case "reset":
					ended = true;
					return req.socket.destroy();
				case "ok": {
					const all = chunksOf(b.chunks);
					const max = b.ignoreMaxTokens ? Infinity : w.maxTokens(body);
					const n = Math.min(all.length, max);
					if (b.until) await b.until;
					w.start(res, rec);
					if (!(await send(all, n, b.chunkDelayMs, b.firstChunkDelayMs ?? b.chunkDelayMs))) return;
					ended = true;
					return w.finish(res, rec, n < all.length ? "length" : "stop", n, b.usage ?? w.wantsUsage(body));
				}
				case "tools": {
					w.start(res, rec);
					const text = b.text ?? [];
					if (!(await send(text, text.length))) return;
					ended = true;
					return w.tools(res, rec, b.calls, text.length);
				}
				case "cut":
					w.start(res, rec);
					if (!(await send(chunksOf(b.chunks), b.after))) return;
					ended = true;
					return res.socket?.destroy();
				case "stall":
					w.start(res, rec);
					await send(chunksOf(b.chunks), b.after);
					return; // never ends; the client's stall timer must fire
				case "malformed":
					w.start(res, rec);
					if (!(await send(chunksOf(b.chunks), b.after))) return;
					ended = true;
					w.malformed(res);
					return res.end();
				case "overloaded":
					w.start(res, rec);
					if (!(await send(chunksOf(b.chunks), b.after))) return;
					ended = true;
					w.overloaded(res);
					return res.end();
				case "endless": {
					w.start(res, rec);
					for (let i = 0; !rec.aborted && i < 1_000_000; i++) {
						await sleep(b.chunkDelayMs);
						if (rec.aborted) break;
						w.chunk(res, " tok", i);
						rec.chunksSent++;
					}
					return;
				}
			}
		});
	});
	server.on("connection", s => {
		sockets.add(s);
		s.on("close", () => sockets.delete(s));
	});
	server.keepAliveTimeout = 60_000;
	await new Promise<void>(r => server.listen(0, "127.0.0.1", () => r()));
	const port = (server.address() as AddressInfo).port;
	return {
		url: `http://127.0.0.1:${port}${basePath}`,
		requests,
		enqueue: (...b) => void queue.push(...b),
		setDefault: b => void (def = b),
		waitForRequests: n =>
			requests.length >= n ? Promise.resolve() : new Promise<void>(resolve => waiters.push({ n, resolve })),
		close: () =>
			new Promise<void>(resolve => {
				for (const s of sockets) s.destroy();
				server.close(() => resolve());
			})
	};
}

/** Tokens the fakes report for a prompt: one per 4 bytes of the JSON of the messages. */
export function fakePromptTokens(body: Record<string, unknown>): number {
	return Math.ceil(JSON.stringify(body.messages ?? []).length / 4) + Math.ceil(String(body.system ?? "").length / 4);
}
