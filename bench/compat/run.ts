/**
 * Added latency of /v1/chat/completions: the same `openai` SDK against a local OpenAI-shaped
 * upstream directly (bench/compat/upstream.ts), through a ForgeFluid node (gateway + users +
 * payments + ai in a process of its own, bench/compat/node.ts; real PostgreSQL and Redis) and
 * through LiteLLM's proxy (the peer, its own process, the same upstream), in one run. Streams: time
 * to first token and total at LEVELS concurrent streams (ROUNDS rounds each, and at least
 * MIN_SAMPLES=60 streams per level, after a warm-up); then non-streaming
 * requests/s, SECONDS per target in ROUNDS turns. The upstream answers at once (CHUNKS tokens, no pacing), so the figures
 * are each proxy's own cost. Machine printed first.
 * Run: ./forge bench:compat   (installs LiteLLM into .tools/bench-venv; LEVELS=1,50,200 ROUNDS=3
 * SECONDS=5). Without BENCH_LITELLM (a litellm executable) the peer is left out. BENCH_BASELINE=<a
 * checkout with its node_modules> adds that tree's node as a target (before/after in one run);
 * BENCH_BASELINE_ENV=<JSON> gives that node more environment (the same tree with a switch off).
 * For each ForgeFluid node, the CPU it and its PostgreSQL backends spent per request (from /proc,
 * over that node's own rounds: the targets take turns, so each one's figure is its own), less what
 * it spends with no request (measured for 2 s after the warm-up).
 * Stream rounds alternate the order of the targets (every other round reversed) and pause PAUSE_MS=300
 * before each burst, so one target's work after its last token does not fall into the next one's.
 * BARE=undici,sdk (the default; BARE= for none): the floor, bare pass-through proxies in Node
 * (bench/compat/bare-proxy.ts, a process each): `bare` forwards with undici and pipes the answer,
 * `bare-sdk` calls the upstream through the `openai` SDK as the ai service does; their CPU per
 * request is reported too.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { startBenchUpstream } from "./upstream";
import { cpuSeconds, pgBackendCpu, pgBackendCpuDelta } from "../support/cpu";
import { machine } from "../support/machine";

const LEVELS = (process.env.LEVELS ?? "1,50,200").split(",").map(Number);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 5);
const CHUNKS = Number(process.env.CHUNKS ?? 20);
const MIN_SAMPLES = Number(process.env.MIN_SAMPLES ?? 60);
const PAUSE_MS = Number(process.env.PAUSE_MS ?? 300);

const pct = (xs: number[], p: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

async function stream(c: OpenAI): Promise<{ ttft: number; total: number }> {
	const t0 = performance.now();
	let ttft = NaN;
	const s = await c.chat.completions.create({
		model: "gpt-4o-mini",
		max_tokens: 64,
		stream: true,
		messages: [{ role: "user", content: "hi" }]
	});
	for await (const ch of s) if (Number.isNaN(ttft) && ch.choices[0]?.delta?.content) ttft = performance.now() - t0;
	return { ttft, total: performance.now() - t0 };
}

const freePort = () =>
	new Promise<number>((resolve, reject) => {
		const srv = createServer();
		srv.once("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const port = (srv.address() as { port: number }).port;
			srv.close(() => resolve(port));
		});
	});

/**
 * LiteLLM's proxy in front of the same upstream: one uvicorn worker, a master key (it refuses to start
 * without one), no database (so no virtual keys, budgets or spend logs: its lightest path).
 */
const LITELLM_KEY = `sk-ffbench-${randomBytes(16).toString("hex")}`;
async function startLiteLLM(bin: string, upstream: string): Promise<{ url: string; proc: ChildProcess }> {
	const port = await freePort();
	const dir = tmpdir();
	const config = join(dir, `ff-bench-litellm-${process.pid}.yaml`);
	writeFileSync(
		config,
		[
			"model_list:",
			"  - model_name: gpt-4o-mini",
			"    litellm_params:",
			"      model: openai/gpt-4o-mini",
			`      api_base: ${upstream}`,
			"      api_key: sk",
			"litellm_settings:",
			"  telemetry: false",
			"general_settings:",
			`  master_key: ${LITELLM_KEY}`,
			""
		].join("\n")
	);
	const log = openSync(join(dir, `ff-bench-litellm-${process.pid}.log`), "w");
	const proc = spawn(bin, ["--config", config, "--host", "127.0.0.1", "--port", String(port), "--num_workers", "1"], {
		stdio: ["ignore", log, log],
		env: { ...process.env, LITELLM_LOCAL_MODEL_COST_MAP: "True", LITELLM_LOG: "ERROR" }
	});
	const url = `http://127.0.0.1:${port}`;
	for (const end = Date.now() + 120_000; Date.now() < end;) {
		if (proc.exitCode !== null) throw new Error(`litellm exited (${proc.exitCode}); see its log in ${dir}`);
		const ok = await fetch(`${url}/health/liveliness`).then(
			r => r.ok,
			() => false
		);
		if (ok) return { url: `${url}/v1`, proc };
		await new Promise(r => setTimeout(r, 250));
	}
	proc.kill();
	throw new Error("litellm did not become ready in 120 s");
}

interface NodeTarget {
	baseUrl: string;
	key: string;
	/** The node's database (its backends' CPU); none for a bare proxy. */
	db?: { url: string; name: string };
	pid: number;
	stop(): Promise<void>;
}

/** CPU ms so far of a node process and of its database's backends. */
async function cpuOf(n: NodeTarget): Promise<{ node: number; pg: Map<number, number> }> {
	return {
		node: (cpuSeconds(n.pid) ?? NaN) * 1000,
		pg: n.db ? await pgBackendCpu(n.db.url, n.db.name) : new Map<number, number>()
	};
}

/** What a node and its backends spend per second with no request (timers, pollers), measured once. */
const background = new Map<NodeTarget, { node: number; pg: number }>();

async function measureBackground(n: NodeTarget, ms = 2000): Promise<void> {
	const a = await cpuOf(n);
	await new Promise(r => setTimeout(r, ms));
	const b = await cpuOf(n);
	background.set(n, { node: (b.node - a.node) / ms, pg: pgBackendCpuDelta(a.pg, b.pg) / ms });
}

/**
 * Sums a node's CPU over the rounds it is measured in, less its background (measureBackground) over
 * the same time, and the requests those rounds made.
 */
class CpuMeter {
	node = 0;
	pg = 0;
	requests = 0;
	constructor(private readonly target: NodeTarget) {}
	async around<T>(requests: () => number, fn: () => Promise<T>): Promise<T> {
		const a = await cpuOf(this.target);
		const t0 = performance.now();
		const out = await fn();
		const b = await cpuOf(this.target);
		const bg = background.get(this.target) ?? { node: 0, pg: 0 };
		const ms = performance.now() - t0;
		this.node += b.node - a.node - bg.node * ms;
		this.pg += pgBackendCpuDelta(a.pg, b.pg) - bg.pg * ms;
		this.requests += requests();
		return out;
	}
	line(name: string): string {
		const per = (ms: number) => (ms / Math.max(1, this.requests)).toFixed(2);
		return `  ${name} CPU per request, less background: node ${per(this.node)} ms, PostgreSQL backends ${per(this.pg)} ms (${this.requests} requests)`;
	}
}

/**
 * The ForgeFluid node in a child process (bench/compat/node.ts); BENCH_CPU_PROF=<dir> profiles it.
 * `tree`: another checkout of the repository (with its node_modules) whose node to start instead.
 */
async function startNode(upstream: string, tree?: string): Promise<NodeTarget> {
	const prof = process.env.BENCH_CPU_PROF;
	const child = spawn(
		process.execPath,
		[
			...(prof && !tree ? ["--cpu-prof", `--cpu-prof-dir=${prof}`] : []),
			"-r",
			"@swc-node/register",
			tree ? join(tree, "bench", "compat", "node.ts") : join(__dirname, "node.ts")
		],
		{
			stdio: ["pipe", "pipe", "inherit"],
			cwd: tree ?? process.cwd(),
			// BENCH_BASELINE_ENV: JSON of variables for the baseline's node only (e.g. a switch turned off).
			env: {
				...process.env,
				...(tree && process.env.BENCH_BASELINE_ENV
					? (JSON.parse(process.env.BENCH_BASELINE_ENV) as Record<string, string>)
					: {}),
				BENCH_FAKE_URL: upstream
			}
		}
	);
	const ready = await new Promise<Omit<NodeTarget, "pid" | "stop">>((resolve, reject) => {
		let buf = "";
		child.stdout!.on("data", (d: Buffer) => {
			buf += d.toString();
			const m = /^READY (.*)$/m.exec(buf);
			if (m) resolve(JSON.parse(m[1]) as Omit<NodeTarget, "pid" | "stop">);
		});
		child.once("exit", code => reject(new Error(`the ForgeFluid node exited (${code})`)));
	});
	return {
		...ready,
		pid: child.pid!,
		stop: () =>
			new Promise<void>(resolve => {
				child.once("exit", () => resolve());
				child.stdin!.end();
			})
	};
}

/** A bare pass-through proxy (bench/compat/bare-proxy.ts) in a child process: the floor. */
async function startBare(upstream: string, via: string): Promise<NodeTarget> {
	const child = spawn(process.execPath, ["-r", "@swc-node/register", join(__dirname, "bare-proxy.ts")], {
		stdio: ["pipe", "pipe", "inherit"],
		env: { ...process.env, BENCH_FAKE_URL: upstream, BARE_VIA: via }
	});
	const ready = await new Promise<{ baseUrl: string }>((resolve, reject) => {
		let buf = "";
		child.stdout!.on("data", (d: Buffer) => {
			buf += d.toString();
			const m = /^READY (.*)$/m.exec(buf);
			if (m) resolve(JSON.parse(m[1]) as { baseUrl: string });
		});
		child.once("exit", code => reject(new Error(`the bare proxy exited (${code})`)));
	});
	return {
		baseUrl: ready.baseUrl,
		key: "sk",
		pid: child.pid!,
		stop: () =>
			new Promise<void>(resolve => {
				child.once("exit", () => resolve());
				child.stdin!.end();
			})
	};
}

async function main() {
	console.log(machine());
	const fake = await startBenchUpstream(CHUNKS);
	const litellm = process.env.BENCH_LITELLM ? await startLiteLLM(process.env.BENCH_LITELLM, fake.url) : null;
	if (!litellm) console.log("LiteLLM: not measured (BENCH_LITELLM unset; ./forge bench:compat sets it)");
	const node = await startNode(fake.url);
	// BENCH_BASELINE=<checkout>: that tree's node as one more target, measured in the same run (before/after).
	const baseline = process.env.BENCH_BASELINE ? await startNode(fake.url, process.env.BENCH_BASELINE) : null;
	const bares: Record<string, NodeTarget> = {};
	for (const via of (process.env.BARE ?? "undici,sdk").split(",").filter(Boolean))
		bares[via === "undici" ? "bare" : `bare-${via}`] = await startBare(fake.url, via);
	try {
		const key = node.key;
		const direct = new OpenAI({ apiKey: "sk", baseURL: fake.url, maxRetries: 0 });
		const via = new OpenAI({ apiKey: key, baseURL: `${node.baseUrl}/v1`, maxRetries: 0 });
		const peer = litellm ? new OpenAI({ apiKey: LITELLM_KEY, baseURL: litellm.url, maxRetries: 0 }) : null;
		const nodes: Record<string, NodeTarget> = { forgefluid: node, ...(baseline ? { baseline } : {}), ...bares };
		const targets: Array<[string, OpenAI]> = [
			["direct", direct],
			["forgefluid", via],
			...(baseline
				? [
						[
							"baseline",
							new OpenAI({ apiKey: baseline.key, baseURL: `${baseline.baseUrl}/v1`, maxRetries: 0 })
						] as [string, OpenAI]
					]
				: []),
			...Object.entries(bares).map(
				([n, b]) =>
					[n, new OpenAI({ apiKey: "sk", baseURL: `${b.baseUrl}/v1`, maxRetries: 0 })] as [string, OpenAI]
			),
			...(peer ? [["litellm", peer] as [string, OpenAI]] : [])
		];
		// Warm-up (JIT, pools, connections): 20 sequential streams and one burst of 50 per target.
		for (const [, client] of targets) {
			for (let i = 0; i < 20; i++) await stream(client);
			await Promise.all(Array.from({ length: 50 }, () => stream(client)));
		}
		// Then each node's background CPU, with the others idle too (subtracted from its CPU per request).
		for (const [n, t] of Object.entries(nodes)) {
			await measureBackground(t);
			const bg = background.get(t)!;
			console.log(
				`${n} background CPU (no requests, 2 s): node ${(bg.node * 1000).toFixed(0)} ms/s, PostgreSQL backends ${(bg.pg * 1000).toFixed(0)} ms/s`
			);
		}
		for (const c of LEVELS) {
			const res: Record<string, { ttft: number[]; total: number[] }> = Object.fromEntries(
				targets.map(([n]) => [n, { ttft: [], total: [] }])
			);
			const meters = Object.fromEntries(Object.entries(nodes).map(([n, t]) => [n, new CpuMeter(t)]));
			// At least MIN_SAMPLES streams per target and level (1 stream: MIN_SAMPLES rounds).
			const rounds = Math.max(ROUNDS, Math.ceil(MIN_SAMPLES / c));
			for (let r = 0; r < rounds; r++)
				// Every other round in the reverse order, and a pause before each burst: a node's work after
				// its last token (settlement, lease drop) otherwise lands in the next target's round.
				for (const [name, client] of r % 2 ? [...targets].reverse() : targets) {
					await new Promise(res => setTimeout(res, PAUSE_MS));
					const burst = () => Promise.all(Array.from({ length: c }, () => stream(client)));
					const out = meters[name] ? await meters[name].around(() => c, burst) : await burst();
					for (const o of out) {
						res[name].ttft.push(o.ttft);
						res[name].total.push(o.total);
					}
				}
			const line = (n: string) =>
				`${n.padEnd(10)} ttft p50 ${pct(res[n].ttft, 50).toFixed(1)} p99 ${pct(res[n].ttft, 99).toFixed(1)} ms; total p50 ${pct(res[n].total, 50).toFixed(1)} p99 ${pct(res[n].total, 99).toFixed(1)} ms`;
			console.log(`streams=${c} (${rounds} rounds)\n${targets.map(([n]) => `  ${line(n)}`).join("\n")}`);
			for (const [n] of targets.slice(1))
				console.log(
					`  ${n} added ttft p50 ${(pct(res[n].ttft, 50) - pct(res.direct.ttft, 50)).toFixed(1)} ms, p99 ${(pct(res[n].ttft, 99) - pct(res.direct.ttft, 99)).toFixed(1)} ms; total p50 ${(pct(res[n].total, 50) - pct(res.direct.total, 50)).toFixed(1)} ms`
				);
			for (const [n, m] of Object.entries(meters)) console.log(m.line(n));
		}
		// Non-streaming: SECONDS per target, in ROUNDS slices taken in turn (as the stream rounds are).
		const done: Record<string, number> = Object.fromEntries(targets.map(([n]) => [n, 0]));
		const nsMeters = Object.fromEntries(Object.entries(nodes).map(([n, t]) => [n, new CpuMeter(t)]));
		for (let r = 0; r < ROUNDS; r++)
			for (const [name, client] of targets) {
				let n = 0;
				const slice = () => {
					const end = Date.now() + (SECONDS * 1000) / ROUNDS;
					return Promise.all(
						Array.from({ length: 20 }, async () => {
							while (Date.now() < end) {
								await client.chat.completions.create({
									model: "gpt-4o-mini",
									max_tokens: 64,
									messages: [{ role: "user", content: "hi" }]
								});
								n++;
							}
						})
					);
				};
				await (nsMeters[name] ? nsMeters[name].around(() => n, slice) : slice());
				done[name] += n;
			}
		for (const [name] of targets) {
			console.log(
				`non-streaming ${name}: ${(done[name] / SECONDS).toFixed(0)} req/s (20 clients, ${SECONDS} s in ${ROUNDS} turns)`
			);
			if (nsMeters[name]) console.log(nsMeters[name].line(name));
		}
	} finally {
		await node.stop();
		await baseline?.stop();
		for (const b of Object.values(bares)) await b.stop();
		litellm?.proc.kill();
		await fake.close();
	}
}

void main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
