/**
 * Added latency of /v1/chat/completions: the same `openai` SDK against the fake OpenAI server
 * directly, through a ForgeFluid node (gateway + users + payments + ai in one process, real
 * PostgreSQL and Redis) and through LiteLLM's proxy (the peer, its own process, the same fake
 * upstream), in one run. Streams: time to first token and total at LEVELS concurrent streams
 * (ROUNDS rounds each); then non-streaming requests/s for SECONDS. The fake answers at once (CHUNKS
 * tokens, no pacing), so the figures are each proxy's own cost. Machine printed first.
 * Run: ./forge bench:compat   (installs LiteLLM into .tools/bench-venv; LEVELS=1,50,200 ROUNDS=3
 * SECONDS=5). Without BENCH_LITELLM (a litellm executable) the peer is left out.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { openSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { Client } from "pg";
import { createTestDatabase, startTestNode } from "../../test/support/env";
import { startFakeOpenAI } from "../../test/support/fake-openai";
import { machine } from "../support/machine";

const LEVELS = (process.env.LEVELS ?? "1,50,200").split(",").map(Number);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 5);
const CHUNKS = Number(process.env.CHUNKS ?? 20);

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
 * LiteLLM's proxy in front of the same fake: one uvicorn worker, a master key (it refuses to start
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

async function main() {
	console.log(machine());
	const fake = await startFakeOpenAI();
	fake.setDefault({ kind: "ok", chunks: Array.from({ length: CHUNKS }, (_, i) => ` t${i}`) });
	setInterval(() => (fake.requests.length = 0), 1000).unref();
	const litellm = process.env.BENCH_LITELLM ? await startLiteLLM(process.env.BENCH_LITELLM, fake.url) : null;
	if (!litellm) console.log("LiteLLM: not measured (BENCH_LITELLM unset; ./forge bench:compat sets it)");
	const db = await createTestDatabase("ff_bench");
	const node = await startTestNode({
		db,
		services: ["api", "users", "payments", "ai"],
		env: {
			AI_DEPLOYMENTS: JSON.stringify([
				{ id: "oa", model: "gpt-4o-mini", provider: "openai", baseUrl: fake.url, apiKey: "sk" }
			]),
			AI_DEV_PROVIDER: "false",
			AI_CONCURRENCY: "1000",
			RATE_LIMIT_PER_MINUTE: "1000000",
			LOG_LEVEL: "error"
		}
	});
	try {
		const post = (path: string, body: unknown, token?: string) =>
			fetch(`${node.baseUrl}/api/v1${path}`, {
				method: "POST",
				headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
				body: JSON.stringify(body)
			}).then(r => r.json() as Promise<Record<string, string>>);
		const reg = await post("/auth/register", {
			email: "bench@example.com",
			password: "correct horse battery staple"
		});
		const me = (await (
			await fetch(`${node.baseUrl}/api/v1/users/me`, { headers: { authorization: `Bearer ${reg.accessToken}` } })
		).json()) as { id: string };
		// Enterprise: its rate limits do not cap the bench.
		const pg = new Client({ connectionString: db.url });
		await pg.connect();
		await pg.query(
			`INSERT INTO user_tier_facts (user_id, plan_tier, plan_as_of) VALUES ($1, 'enterprise', now())`,
			[me.id]
		);
		await pg.end();
		await node.broker.call("payments.grant", {
			userId: me.id,
			credits: 100_000_000,
			operator: "bench",
			reason: "bench",
			source: "paid"
		});
		const key = (await post("/users/me/api-keys", { name: "bench", scopes: ["ai:use"] }, reg.accessToken)).key;
		const direct = new OpenAI({ apiKey: "sk", baseURL: fake.url, maxRetries: 0 });
		const via = new OpenAI({ apiKey: key, baseURL: `${node.baseUrl}/v1`, maxRetries: 0 });
		const peer = litellm ? new OpenAI({ apiKey: LITELLM_KEY, baseURL: litellm.url, maxRetries: 0 }) : null;
		const targets: Array<[string, OpenAI]> = [
			["direct", direct],
			["forgefluid", via],
			...(peer ? [["litellm", peer] as [string, OpenAI]] : [])
		];
		for (const [, client] of targets) await stream(client);
		for (const c of LEVELS) {
			const res: Record<string, { ttft: number[]; total: number[] }> = Object.fromEntries(
				targets.map(([n]) => [n, { ttft: [], total: [] }])
			);
			for (let r = 0; r < ROUNDS; r++)
				for (const [name, client] of targets) {
					const out = await Promise.all(Array.from({ length: c }, () => stream(client)));
					for (const o of out) {
						res[name].ttft.push(o.ttft);
						res[name].total.push(o.total);
					}
				}
			const line = (n: string) =>
				`${n.padEnd(10)} ttft p50 ${pct(res[n].ttft, 50).toFixed(1)} p99 ${pct(res[n].ttft, 99).toFixed(1)} ms; total p50 ${pct(res[n].total, 50).toFixed(1)} p99 ${pct(res[n].total, 99).toFixed(1)} ms`;
			console.log(`streams=${c} (${ROUNDS} rounds)\n${targets.map(([n]) => `  ${line(n)}`).join("\n")}`);
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
		litellm?.proc.kill();
		await fake.close();
		await db.drop();
	}
}

void main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
