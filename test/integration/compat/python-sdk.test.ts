/**
 * The official `openai` and `anthropic` SDKs for Python (pinned in context/requirements-dev.lock,
 * installed in the project's venv) against the gateway's /v1, with the fake upstreams behind it.
 * `python/sdk_cases.py` runs in the venv (FORGE_PYTHON) for the whole suite; each case sends it
 * one command after scripting the fake, and checks what the SDK saw: streaming and not, a tool-call round trip, JSON-schema output, usage,
 * and every refusal raised as the SDK's own exception class (401, 403 scope, 404 model, 400,
 * 402 / insufficient_quota, 429 with retry-after honoured by the SDK's retry).
 */
import { ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import path from "node:path";
import readline from "node:readline";
import { DEFAULT_CHUNKS } from "../../support/fake-llm-server";
import { eventually } from "../../support/env";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(120_000);

const PY = process.env.FORGE_PYTHON ?? path.resolve(".tools/venv/bin/python");
const SCRIPT = path.join(__dirname, "python", "sdk_cases.py");
const ANSWER = DEFAULT_CHUNKS.join("");

let w: CompatWorld;
let u: { id: string; token: string; key: string };

let child: ChildProcessWithoutNullStreams;
let answers: AsyncIterator<string>;

/** One SDK case in the Python process; its answer. Commands run one at a time. */
async function py(
	sdk: "openai" | "anthropic",
	kase: string,
	opts: { key?: string; over?: Record<string, unknown>; maxRetries?: number } = {}
): Promise<any> {
	child.stdin.write(
		`${JSON.stringify({ sdk, case: kase, key: opts.key ?? u.key, over: opts.over ?? {}, maxRetries: opts.maxRetries ?? 0 })}\n`
	);
	const next = await answers.next();
	if (next.done) throw new Error("the Python SDK process ended");
	const r = JSON.parse(next.value);
	if (r.crash) throw new Error(`python ${sdk} ${kase}: ${r.crash}`);
	return r;
}

beforeAll(async () => {
	// One worker slot: the 429 case fills its line (free tier: a line of one) and holds it while the
	// SDK retries, so the wait and the first-token timeouts are long.
	w = await startCompatWorld({
		AI_CONCURRENCY: "1",
		AI_COMPAT_MAX_WAIT_MS: "60000",
		AI_FIRST_TOKEN_TIMEOUT_MS: "60000"
	});
	u = await w.user(100_000, ["ai:use"], {}, "team");
	child = spawn(PY, [SCRIPT], { env: { ...process.env, FF_BASE: w.node.baseUrl } });
	let stderr = "";
	child.stderr.on("data", d => (stderr = (stderr + String(d)).slice(-4000)));
	child.on("exit", code => code && console.error(`python SDK process exited ${code}: ${stderr}`));
	answers = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
});
afterAll(async () => {
	child?.stdin.end();
	child?.kill();
	await w?.close();
});

const last = (s: { requests: Array<{ body: Record<string, unknown> }> }) => s.requests[s.requests.length - 1].body;

describe.each(["openai", "anthropic"] as const)("%s SDK for Python", sdk => {
	const fake = () => (sdk === "openai" ? w.openai : w.anthropic);
	const price =
		sdk === "openai"
			? (inp: number, out: number) => Math.ceil((inp * 150 + out * 600) / 1e6) // gpt-4o-mini
			: (inp: number, out: number) => Math.ceil((inp * 800 + out * 4000) / 1e6); // claude-haiku

	test("non-streaming: text, usage, the hold settled at the catalogue price", async () => {
		const before = await w.balance(u.token);
		const r = await py(sdk, "text");
		expect(r.content).toBe(ANSWER);
		expect(r.finish).toBe(sdk === "openai" ? "stop" : "end_turn");
		const inp = sdk === "openai" ? r.usage.prompt_tokens : r.usage.input_tokens;
		const out = sdk === "openai" ? r.usage.completion_tokens : r.usage.output_tokens;
		expect(out).toBe(DEFAULT_CHUNKS.length);
		expect(inp).toBeGreaterThan(0);
		if (sdk === "openai") {
			expect(r.usage.total_tokens).toBe(inp + out);
			expect(last(w.openai)).toMatchObject({ seed: 7, temperature: 0.2, max_tokens: 50 });
		} else
			expect(last(w.anthropic)).toMatchObject({ system: [{ type: "text", text: "Be brief." }], max_tokens: 50 });
		const after = await w.settled(u.token);
		expect(before.available - after.available).toBe(price(inp, out));
	});

	test("streaming: every delta, the finish reason and the usage", async () => {
		const r = await py(sdk, "stream");
		expect(r.text).toBe(ANSWER);
		if (sdk === "openai") {
			expect(r.deltas).toBe(DEFAULT_CHUNKS.length);
			expect(r.finish).toBe("stop");
			expect(r.usage.completion_tokens).toBe(DEFAULT_CHUNKS.length);
		} else {
			expect(r.final).toBe(ANSWER);
			expect(r.finish).toBe("end_turn");
			expect(r.usage.output_tokens).toBe(DEFAULT_CHUNKS.length);
			for (const t of ["message_start", "content_block_start", "content_block_delta", "message_stop"])
				expect(r.events).toContain(t);
		}
		await w.settled(u.token);
	});

	test("tool-call round trip: two calls streamed, their results sent back, the answer", async () => {
		fake().enqueue(
			{
				kind: "tools",
				calls: [
					{ id: "call_p", name: "get_weather", arguments: '{"city":"Paris"}' },
					{ id: "call_o", name: "get_weather", arguments: '{"city":"Oslo"}' }
				]
			},
			{ kind: "ok", chunks: ["Paris 20C", ", Oslo 5C"] }
		);
		const r = await py(sdk, "tools");
		expect(r.finish1).toBe(sdk === "openai" ? "tool_calls" : "tool_use");
		expect(r.calls).toEqual([
			["call_p", "get_weather", { city: "Paris" }],
			["call_o", "get_weather", { city: "Oslo" }]
		]);
		expect(r.answer).toBe("Paris 20C, Oslo 5C");
		// The results reached the upstream, each tied to its call.
		const sent = JSON.stringify(last(fake()).messages);
		expect(sent).toContain("call_p");
		expect(sent).toContain("20C");
		expect(sent).toContain("5C");
		await w.settled(u.token);
	});

	test("JSON-schema output parsed by the SDK", async () => {
		if (sdk === "openai") fake().enqueue({ kind: "ok", chunks: ['{"name":', '"Ada",', '"age":36}'] });
		else
			fake().enqueue({
				kind: "tools",
				calls: [{ id: "toolu_j", name: "person", arguments: '{"name":"Ada","age":36}' }]
			});
		const r = await py(sdk, "json");
		expect(r.parsed).toEqual({ name: "Ada", age: 36 });
		const up = last(fake());
		if (sdk === "openai")
			expect(up.response_format).toMatchObject({
				type: "json_schema",
				json_schema: { name: "Person", strict: true }
			});
		else expect(up.tool_choice).toEqual({ type: "tool", name: "person" });
	});

	test("401 bad key, 403 without ai:use, 404 unknown model, 400 bad request: the SDK's classes", async () => {
		const bad = await py(sdk, "error", { key: "ff_nope_0123456789abcdefghij" });
		expect(bad).toMatchObject({ ok: false, class: "AuthenticationError", status: 401 });
		const noScope = await py(sdk, "error", { key: await w.newKey(u.token, ["projects:read"]) });
		expect(noScope).toMatchObject({ ok: false, class: "PermissionDeniedError", status: 403 });
		const nf = await py(sdk, "error", { over: { model: "no-such-model" } });
		expect(nf).toMatchObject({ ok: false, class: "NotFoundError", status: 404 });
		const badReq = await py(sdk, "error", {
			over: sdk === "openai" ? { n: 2 } : { messages: [{ role: "system", content: "x" }] }
		});
		expect(badReq).toMatchObject({
			ok: false,
			class: "BadRequestError",
			status: 400,
			type: "invalid_request_error"
		});
		if (sdk === "openai") {
			expect(bad.code).toBe("invalid_api_key");
			expect(noScope.code).toBe("missing_scope");
			expect(nf).toMatchObject({ code: "model_not_found", param: "model" });
			expect(badReq.param).toBe("n");
		} else {
			expect(bad.type).toBe("authentication_error");
			expect(noScope.type).toBe("permission_error");
			expect(nf.type).toBe("not_found_error");
		}
	});

	test("not enough credits: the protocol's billing error, not retried", async () => {
		const poor = await w.user(0);
		const n0 = fake().requests.length;
		const r = await py(sdk, "error", { key: poor.key, maxRetries: 2 });
		if (sdk === "openai")
			expect(r).toMatchObject({ class: "RateLimitError", status: 429, code: "insufficient_quota" });
		else expect(r).toMatchObject({ class: "PaymentRequiredError", status: 402, type: "billing_error" });
		// x-should-retry: false: one attempt, though the SDK was allowed two retries.
		expect(r.statuses).toEqual([r.status]);
		expect(fake().requests.length).toBe(n0);
	});

	test("429 when the line is full: RateLimitError, then the SDK's retry honours retry-after and succeeds", async () => {
		const free = await w.user(10_000);
		const { refusals, restore } = countRefusals();
		let letGo!: () => void;
		fake().enqueue({ kind: "ok", until: new Promise<void>(r => (letGo = r)) });
		const n0 = fake().requests.length;
		// The first holds the only slot until let go, the second waits in the line of one.
		const first = rawCall(sdk, free.key);
		await fake().waitForRequests(n0 + 1);
		const second = rawCall(sdk, free.key);
		const gate = gateOf();
		await eventually(() => gate.queued === 1, 30_000);
		try {
			const refused = await py(sdk, "error", { key: free.key });
			expect(refused).toMatchObject({ ok: false, class: "RateLimitError", status: 429 });
			expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
			// Again with the SDK's retries: refused while the line is full; the line clears once its
			// first attempt has been refused; the retry after retry-after gets in.
			const before = refusals();
			const retried = py(sdk, "error", { key: free.key, maxRetries: 4 });
			await eventually(() => refusals() > before, 30_000);
			letGo();
			const r = await retried;
			expect(r.ok).toBe(true);
			expect(r.statuses[0]).toBe(429);
			expect(r.statuses[r.statuses.length - 1]).toBe(200);
			// It waited what retry-after said (2 s for a full line) before retrying.
			expect(r.elapsedMs).toBeGreaterThanOrEqual(1_900);
		} finally {
			letGo();
			restore();
		}
		expect((await first).status).toBe(200);
		expect((await second).status).toBe(200);
		await w.settled(free.token);
	});
});

type Gate = { queued: number; acquire: (...a: unknown[]) => Promise<unknown> };
const gateOf = () => (w.node.broker.getLocalService("ai") as unknown as { gate: Gate }).gate;

/** Counts the slot gate's refusals (wraps the ai node's gate for one test). */
function countRefusals() {
	const gate = gateOf();
	const acquire = gate.acquire;
	let n = 0;
	gate.acquire = (...a: unknown[]) => {
		const p = acquire.apply(gate, a);
		p.catch(() => n++);
		return p;
	};
	return { refusals: () => n, restore: () => void (gate.acquire = acquire) };
}

/** A request straight over HTTP (no SDK start-up time), to fill the slot and the line. */
async function rawCall(sdk: "openai" | "anthropic", key: string): Promise<{ status: number }> {
	const res = await fetch(`${w.node.baseUrl}/v1/${sdk === "openai" ? "chat/completions" : "messages"}`, {
		method: "POST",
		headers: {
			"content-type": "application/json",
			...(sdk === "openai"
				? { authorization: `Bearer ${key}` }
				: { "x-api-key": key, "anthropic-version": "2023-06-01" })
		},
		body: JSON.stringify({
			model: sdk === "openai" ? "gpt-4o-mini" : "claude-haiku",
			max_tokens: 20,
			messages: [{ role: "user", content: "hi" }]
		})
	});
	await res.text();
	return { status: res.status };
}
