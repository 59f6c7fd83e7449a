/**
 * Added latency of the ai service's streaming path over a direct SDK call, against the same local
 * fake OpenAI server (bench/ai/fake-server.ts, its own process), at 100 and 500 concurrent streams.
 *
 * - direct: `openai` SDK, `chat.completions.create({ stream: true })`, iterate the chunks.
 * - service: `generate()` (router, budget, timers, stall detection, continuation bookkeeping) with
 *   each delta broadcast as `tasks.stream` through a local Moleculer broker to a listener service,
 *   timed where the listener receives it (what a gateway node relays to SSE).
 *
 * Two load shapes, both in the same run:
 * - paced (the headline): the server answers like a model — the first token after FIRST_TOKEN_MS
 *   (200 ms), then one every CHUNK_DELAY_MS (50 ms, 20 tokens/s), CHUNKS (40) tokens — and `c` clients each run streams back to back for ROUND_S
 *   seconds, their first starts spread over one stream's length — `c` streams in flight at every
 *   moment. Streams started in the first stream-length of a round are not counted (ramp-up).
 * - separate: the paced load, but rounds alternate the two paths (all `c` streams of a round take
 *   one path), so the service's extra CPU shows as queueing when the process is saturated.
 * - burst: the server sends the whole answer at once and `c` streams start at the same instant; the
 *   process is CPU-bound, so latency there is the queue of everyone's CPU work (a throughput
 *   figure: the service's extra CPU per stream times the queue in front of it).
 * In the paced shape every client alternates the two paths stream by stream, so both run side by side
 * under the same load; in the burst shape rounds alternate direct and service, and the CPU time of
 * this process per stream is reported for each. Run:
 *   export PATH=/work/main/.tools/node_modules/node/bin:$PATH
 *   node -r @swc-node/register bench/ai/run.ts
 *   # options: LEVELS=100,500 ROUNDS=3 ROUND_S=6 CHUNKS=40 FIRST_TOKEN_MS=200 CHUNK_DELAY_MS=50 SHAPES=paced,burst
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
const ROUND_S = Number(process.env.ROUND_S ?? 6);
const CHUNKS = Number(process.env.CHUNKS ?? 40);
const FIRST_TOKEN_MS = Number(process.env.FIRST_TOKEN_MS ?? 200);
const CHUNK_DELAY_MS = Number(process.env.CHUNK_DELAY_MS ?? 50);
const LEVELS = (process.env.LEVELS ?? "100,500").split(",").map(Number);
const SHAPES = (process.env.SHAPES ?? "paced,separate,burst").split(",") as Array<"paced" | "separate" | "burst">;

interface Sample {
	ttft: number;
	total: number;
}

const pct = (xs: number[], p: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

async function fakeServer(firstMs: number, delayMs: number) {
	const child = spawn(process.execPath, ["-r", "@swc-node/register", path.join(__dirname, "fake-server.ts")], {
		env: {
			...process.env,
			CHUNKS: String(CHUNKS),
			FIRST_TOKEN_MS: String(firstMs),
			CHUNK_DELAY_MS: String(delayMs)
		},
		stdio: ["ignore", "pipe", "inherit"]
	});
	const url = await new Promise<string>(resolve =>
		child.stdout.once("data", (d: Buffer) => resolve(d.toString().trim()))
	);
	return { url, close: async () => void child.kill("SIGTERM") };
}

async function main() {
	const pacedServer = await fakeServer(FIRST_TOKEN_MS, CHUNK_DELAY_MS);
	const servers = { paced: pacedServer, separate: pacedServer, burst: await fakeServer(0, 0) };
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
	const { messages } = buildMessages("chat", "Say hello", [], 0);
	const model = findModel("gpt-4o-mini")!;

	function paths(url: string) {
		const cfg = loadConfig({
			AI_DEV_PROVIDER: "false",
			AI_DEPLOYMENTS: JSON.stringify([
				{ id: "fake", model: "gpt-4o-mini", provider: "openai", baseUrl: url, apiKey: "k" }
			])
		}).ai;
		const router = new DeploymentRouter(cfg.deployments, {
			balancing: "least-busy",
			circuitFailures: 1000,
			circuitCooldownMs: 1000
		});
		const client = new OpenAI({ apiKey: "k", baseURL: url, maxRetries: 0 });
		const served = servedModels(cfg);
		let n = 0;
		return {
			async direct(): Promise<Sample> {
				const t0 = performance.now();
				let ttft = -1;
				const stream = await client.chat.completions.create({
					model: "gpt-4o-mini",
					messages,
					stream: true,
					stream_options: { include_usage: true },
					max_tokens: 1000
				});
				for await (const c of stream)
					if (ttft < 0 && c.choices?.[0]?.delta?.content) ttft = performance.now() - t0;
				return { ttft, total: performance.now() - t0 };
			},
			async service(): Promise<Sample> {
				const taskId = `t${n++}`;
				const t0 = performance.now();
				let ttft = -1;
				const events = streamPublisher(
					ev => void broker.broadcast("tasks.stream", { taskId, userId: "u", ...ev })
				);
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
		};
	}

	/** `c` streams at once, once. */
	const burst = (fn: () => Promise<Sample>, c: number) => Promise.all(Array.from({ length: c }, fn));

	/**
	 * `c` clients streaming back to back for ROUND_S seconds, their first starts spread over one
	 * stream length; each client alternates direct and service stream by stream (client i starts with
	 * mode i mod 2), so both paths run at the same moments under the same load.
	 */
	async function paced(
		p: { direct(): Promise<Sample>; service(): Promise<Sample> },
		c: number,
		only?: "direct" | "service"
	): Promise<{ direct: Sample[]; service: Sample[] }> {
		const streamMs = FIRST_TOKEN_MS + (CHUNKS - 1) * CHUNK_DELAY_MS;
		const t0 = performance.now();
		const end = t0 + ROUND_S * 1000;
		const out = { direct: [] as Sample[], service: [] as Sample[] };
		await Promise.all(
			Array.from({ length: c }, async (_, i) => {
				await sleep((i * streamMs) / c);
				for (let k = i; performance.now() < end; k++) {
					const mode = only ?? (k % 2 === 0 ? "direct" : "service");
					const started = performance.now();
					const s = await p[mode]();
					if (started - t0 >= streamMs) out[mode].push(s);
				}
			})
		);
		return out;
	}

	console.log(`ai streaming path vs direct SDK — ${machine()}`);
	console.log(
		`${CHUNKS} chunks per answer, ${ROUNDS} rounds per level and mode, fake OpenAI server in a child process`
	);
	console.log(
		`paced: first token after ${FIRST_TOKEN_MS} ms, then one every ${CHUNK_DELAY_MS} ms, ${ROUND_S} s per round, c streams in flight; burst: whole answer at once, c streams started together\n`
	);
	console.log(
		"shape    | concurrency | mode    | streams | cpu µs/stream | ttft p50 | ttft p99 | total p50 | total p99  (ms)"
	);
	const rows: string[] = [];
	const f = (x: number) => x.toFixed(2).padStart(8);
	const report = (shape: string, c: number, d: Sample[], s: Sample[], cpu?: { direct: number; service: number }) => {
		for (const [name, xs] of [
			["direct", d],
			["service", s]
		] as const)
			console.log(
				`${shape.padEnd(8)} | ${String(c).padStart(11)} | ${name.padEnd(7)} | ${String(xs.length).padStart(7)} | ${(cpu ? String(Math.round(cpu[name] / xs.length)) : "–").padStart(13)} | ${f(
					pct(
						xs.map(x => x.ttft),
						50
					)
				)} | ${f(
					pct(
						xs.map(x => x.ttft),
						99
					)
				)} | ${f(
					pct(
						xs.map(x => x.total),
						50
					)
				)} | ${f(
					pct(
						xs.map(x => x.total),
						99
					)
				)}`
			);
		const over = (q: number, k: keyof Sample) =>
			pct(
				s.map(x => x[k]),
				q
			) -
			pct(
				d.map(x => x[k]),
				q
			);
		rows.push(
			`${shape.padEnd(8)} | ${String(c).padStart(4)} streams | overhead ttft p50 ${over(50, "ttft").toFixed(2)} ms, p99 ${over(99, "ttft").toFixed(2)} ms; total p50 ${over(50, "total").toFixed(2)} ms, p99 ${over(99, "total").toFixed(2)} ms`
		);
	};
	for (const shape of SHAPES) {
		const p = paths(servers[shape].url);
		await burst(p.direct, 50);
		await burst(p.service, 50); // warm-up (connections, JIT)
		for (const c of LEVELS) {
			const d: Sample[] = [];
			const s: Sample[] = [];
			if (shape === "paced") {
				for (let r = 0; r < ROUNDS; r++) {
					const out = await paced(p, c);
					d.push(...out.direct);
					s.push(...out.service);
				}
				report(shape, c, d, s);
				continue;
			}
			if (shape === "separate") {
				const cpu = { direct: 0, service: 0 };
				for (let r = 0; r < ROUNDS; r++) {
					for (const mode of ["direct", "service"] as const) {
						const before = process.cpuUsage();
						const out = await paced(p, c, mode);
						const used = process.cpuUsage(before);
						cpu[mode] += used.user + used.system;
						(mode === "direct" ? d : s).push(...out[mode]);
					}
				}
				// CPU per counted stream (ramp-up streams are not counted but did use CPU: a slight overstatement, equal for both).
				report(shape, c, d, s, cpu);
				continue;
			}
			const cpu = { direct: 0, service: 0 };
			for (let r = 0; r < ROUNDS; r++) {
				for (const [mode, fn, into] of [
					["direct", p.direct, d],
					["service", p.service, s]
				] as const) {
					const before = process.cpuUsage();
					into.push(...(await burst(fn, c)));
					const used = process.cpuUsage(before);
					cpu[mode] += used.user + used.system;
				}
			}
			report(shape, c, d, s, cpu);
		}
	}
	console.log("\nadded latency (service − direct; target p50 ≤ 2 ms, p99 ≤ 10 ms):");
	for (const r of rows) console.log(r);
	await broker.stop();
	await pacedServer.close();
	await servers.burst.close();
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
