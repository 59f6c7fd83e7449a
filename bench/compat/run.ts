/**
 * Added latency of /v1/chat/completions: the same `openai` SDK against a local OpenAI-shaped
 * upstream directly (bench/compat/upstream.ts), through a ForgeFluid node (gateway + users +
 * payments + ai in a process of its own, bench/compat/node.ts; real PostgreSQL and Redis) and
 * through LiteLLM's proxy (the peer, its own process, the same upstream), in one run. Streams: time
 * to first token and total at LEVELS concurrent streams (ROUNDS rounds each, and at least
 * MIN_SAMPLES=60 streams per level, after a warm-up); then non-streaming
 * requests/s for SECONDS. The upstream answers at once (CHUNKS tokens, no pacing), so the figures
 * are each proxy's own cost. Machine printed first.
 * Run: ./forge bench:compat   (installs LiteLLM into .tools/bench-venv; LEVELS=1,50,200 ROUNDS=3
 * SECONDS=5). Without BENCH_LITELLM (a litellm executable) the peer is left out. BENCH_BASELINE=<a
 * checkout with its node_modules> adds that tree's node as a target (before/after in one run).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { startBenchUpstream } from "./upstream";
import { machine } from "../support/machine";

const LEVELS = (process.env.LEVELS ?? "1,50,200").split(",").map(Number);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 5);
const CHUNKS = Number(process.env.CHUNKS ?? 20);
const MIN_SAMPLES = Number(process.env.MIN_SAMPLES ?? 60);

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

/**
 * The ForgeFluid node in a child process (bench/compat/node.ts); BENCH_CPU_PROF=<dir> profiles it.
 * `tree`: another checkout of the repository (with its node_modules) whose node to start instead.
 */
async function startNode(
	upstream: string,
	tree?: string
): Promise<{ baseUrl: string; key: string; stop(): Promise<void> }> {
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
			env: { ...process.env, BENCH_FAKE_URL: upstream }
		}
	);
	const ready = await new Promise<{ baseUrl: string; key: string }>((resolve, reject) => {
		let buf = "";
		child.stdout!.on("data", (d: Buffer) => {
			buf += d.toString();
			const m = /^READY (.*)$/m.exec(buf);
			if (m) resolve(JSON.parse(m[1]) as { baseUrl: string; key: string });
		});
		child.once("exit", code => reject(new Error(`the ForgeFluid node exited (${code})`)));
	});
	return {
		...ready,
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
	try {
		const key = node.key;
		const direct = new OpenAI({ apiKey: "sk", baseURL: fake.url, maxRetries: 0 });
		const via = new OpenAI({ apiKey: key, baseURL: `${node.baseUrl}/v1`, maxRetries: 0 });
		const peer = litellm ? new OpenAI({ apiKey: LITELLM_KEY, baseURL: litellm.url, maxRetries: 0 }) : null;
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
			...(peer ? [["litellm", peer] as [string, OpenAI]] : [])
		];
		// Warm-up (JIT, pools, connections): 20 sequential streams and one burst of 50 per target.
		for (const [, client] of targets) {
			for (let i = 0; i < 20; i++) await stream(client);
			await Promise.all(Array.from({ length: 50 }, () => stream(client)));
		}
		for (const c of LEVELS) {
			const res: Record<string, { ttft: number[]; total: number[] }> = Object.fromEntries(
				targets.map(([n]) => [n, { ttft: [], total: [] }])
			);
			// At least MIN_SAMPLES streams per target and level (1 stream: MIN_SAMPLES rounds).
			const rounds = Math.max(ROUNDS, Math.ceil(MIN_SAMPLES / c));
			for (let r = 0; r < rounds; r++)
				for (const [name, client] of targets) {
					const out = await Promise.all(Array.from({ length: c }, () => stream(client)));
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
		}
		for (const [name, client] of targets) {
			const end = Date.now() + SECONDS * 1000;
			let n = 0;
			await Promise.all(
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
			console.log(`non-streaming ${name}: ${(n / SECONDS).toFixed(0)} req/s (20 clients, ${SECONDS} s)`);
		}
	} finally {
		await node.stop();
		await baseline?.stop();
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
