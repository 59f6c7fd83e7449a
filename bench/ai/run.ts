/**
 * Added latency of the ai service's streaming path over a direct SDK call, against the same local
 * fake OpenAI server (test/support/fake-openai.ts), at 100 and 500 concurrent streams.
 *
 * - direct: `openai` SDK, `chat.completions.create({ stream: true })`, iterate the chunks.
 * - service: `generate()` (router, budget, timers, stall detection, continuation bookkeeping) with
 *   each delta broadcast as `tasks.stream` through a local Moleculer broker to a listener service,
 *   timed where the listener receives it (what a gateway node relays to SSE).
 * The fake server runs in its own process. Time to first token and total are measured per stream; rounds alternate the two modes so both
 * see the same machine load. Run:
 *   export PATH=/work/main/.tools/node_modules/node/bin:$PATH
 *   node -r @swc-node/register bench/ai/run.ts        # options: ROUNDS=3 CHUNKS=20 LEVELS=100,500
 */
import { spawn } from "node:child_process";
import path from "node:path";
import OpenAI from "openai";
import { ServiceBroker } from "moleculer";
import { loadConfig } from "../../src/config";
import { findModel } from "../../src/ai/catalog";
import { generate } from "../../src/ai/generate";
import { buildMessages, servedModels } from "../../src/ai/prompt";
import { DeploymentRouter } from "../../src/ai/router";
import { streamPublisher } from "../../src/ai/task-runner";
import { machine } from "../support/machine";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CHUNKS = Number(process.env.CHUNKS ?? 20);
const LEVELS = (process.env.LEVELS ?? "100,500").split(",").map(Number);

interface Sample {
	ttft: number;
	total: number;
}

const pct = (xs: number[], p: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

async function main() {
	const child = spawn(process.execPath, ["-r", "@swc-node/register", path.join(__dirname, "fake-server.ts")], { env: { ...process.env, CHUNKS: String(CHUNKS) }, stdio: ["ignore", "pipe", "inherit"] });
	const url = await new Promise<string>(resolve => child.stdout.once("data", (d: Buffer) => resolve(d.toString().trim())));
	const fake = { url, close: async () => void child.kill("SIGTERM") };
	const cfg = loadConfig({ AI_DEV_PROVIDER: "false", AI_DEPLOYMENTS: JSON.stringify([{ id: "fake", model: "gpt-4o-mini", provider: "openai", baseUrl: fake.url, apiKey: "k" }]) }).ai;
	const router = new DeploymentRouter(cfg.deployments, { balancing: "least-busy", circuitFailures: 1000, circuitCooldownMs: 1000 });
	const client = new OpenAI({ apiKey: "k", baseURL: fake.url, maxRetries: 0 });
	const { messages } = buildMessages("chat", "Say hello", [], 0);
	const model = findModel("gpt-4o-mini")!;
	const served = servedModels(cfg);

	const broker = new ServiceBroker({ logger: false, metrics: false });
	const listeners = new Map<string, (seq: number) => void>();
	broker.createService({
		name: "gateway-listener",
		events: {
			"tasks.stream"(ctx: { params: { taskId: string; seq: number } }) {
				listeners.get(ctx.params.taskId)?.(ctx.params.seq);
			}
		}
	});
	await broker.start();

	async function direct(): Promise<Sample> {
		const t0 = performance.now();
		let ttft = -1;
		const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true, stream_options: { include_usage: true }, max_tokens: 1000 });
		for await (const c of stream) if (ttft < 0 && c.choices?.[0]?.delta?.content) ttft = performance.now() - t0;
		return { ttft, total: performance.now() - t0 };
	}

	let n = 0;
	async function service(): Promise<Sample> {
		const taskId = `t${n++}`;
		const t0 = performance.now();
		let ttft = -1;
		const events = streamPublisher(ev => void broker.broadcast("tasks.stream", { taskId, userId: "u", ...ev }));
		listeners.set(taskId, () => {
			if (ttft < 0) ttft = performance.now() - t0;
		});
		await generate({
			cfg,
			router,
			model,
			messages,
			maxOutputTokens: 1000,
			budgetCredits: 1000,
			signal: new AbortController().signal,
			servedModels: served,
			onDelta: text => events.delta(text),
			onFallback: () => undefined
		});
		events.flush();
		const total = performance.now() - t0;
		listeners.delete(taskId);
		return { ttft, total };
	}

	const run = async (fn: () => Promise<Sample>, c: number) => Promise.all(Array.from({ length: c }, fn));
	await run(direct, 50);
	await run(service, 50); // warm-up (connections, JIT)

	console.log(`ai streaming path vs direct SDK — ${machine()}`);
	console.log(`${CHUNKS} chunks per answer, ${ROUNDS} rounds per level, local fake OpenAI server in a child process\n`);
	console.log("concurrency | mode    | ttft p50 | ttft p99 | total p50 | total p99  (ms)");
	const rows: string[] = [];
	for (const c of LEVELS) {
		const d: Sample[] = [];
		const s: Sample[] = [];
		for (let r = 0; r < ROUNDS; r++) {
			d.push(...(await run(direct, c)));
			s.push(...(await run(service, c)));
		}
		const f = (x: number) => x.toFixed(2).padStart(8);
		for (const [name, xs] of [["direct", d], ["service", s]] as const)
			console.log(`${String(c).padStart(11)} | ${name.padEnd(7)} | ${f(pct(xs.map(x => x.ttft), 50))} | ${f(pct(xs.map(x => x.ttft), 99))} | ${f(pct(xs.map(x => x.total), 50))} | ${f(pct(xs.map(x => x.total), 99))}`);
		const over = (p: number, k: keyof Sample) => pct(s.map(x => x[k]), p) - pct(d.map(x => x[k]), p);
		rows.push(`${String(c).padStart(11)} | overhead ttft p50 ${over(50, "ttft").toFixed(2)} ms, p99 ${over(99, "ttft").toFixed(2)} ms; total p50 ${over(50, "total").toFixed(2)} ms, p99 ${over(99, "total").toFixed(2)} ms`);
	}
	console.log("\nadded latency (service − direct; target p50 ≤ 2 ms, p99 ≤ 10 ms):");
	for (const r of rows) console.log(r);
	await broker.stop();
	await fake.close();
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
