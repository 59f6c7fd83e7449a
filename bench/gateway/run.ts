/**
 * Gateway benchmark: autocannon against (1) a bare moleculer-web hello route (local action) and
 * (2) the project's gateway — JWT auth + param validation + rate limiting — calling the action on
 * another process over the real NATS. Same run, same machine. Prints req/s, latency p50/p99 and
 * the ratio. Run: ./forge bench:gateway   (options: DURATION_S=10 CONNECTIONS=50 BENCH_CPU_PROF=<dir>)
 */
import { ChildProcess, execFileSync, spawn } from "node:child_process";
import path from "node:path";
import autocannon from "autocannon";
import { Client } from "pg";
import { loadConfig } from "../../src/config";
import { signAccessToken } from "../../src/auth/jwt";
import { cpuSeconds } from "../support/cpu";
import { machine } from "../support/machine";

const ROOT = path.resolve(__dirname, "..", "..");
const DURATION = Number(process.env.DURATION_S ?? 10);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 50);
const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const DB = `ff_bench_${id}`;
const PG_ADMIN = process.env.BENCH_PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

const env: Record<string, string> = {
	TRANSPORTER: process.env.BENCH_NATS_URL ?? "nats://127.0.0.1:4222",
	DATABASE_URL: PG_ADMIN.replace(/\/[^/]*$/, `/${DB}`),
	REDIS_URL: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/0",
	AMQP_URL: process.env.BENCH_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672",
	REDIS_PREFIX: `ffbench:${id}:`,
	AMQP_PREFIX: `ffbench.${id}`,
	NAMESPACE: `ffbench-${id}`,
	JWT_KEYS: "bench:bench-secret-0123456789abcdef0123456789",
	RATE_LIMIT_PER_MINUTE: "1000000",
	PORT: "0",
	HOST: "127.0.0.1",
	LOG_LEVEL: "error",
	SERVICES: "api",
	// No users service here and a synthetic token: measure the gateway without the per-request session check.
	AUTH_SESSION_CHECK: "false"
};

function start(role: string): Promise<{ proc: ChildProcess; port: number }> {
	return new Promise((resolve, reject) => {
		// BENCH_CPU_PROF=<dir>: each process writes a V8 CPU profile there when it exits.
		const prof = process.env.BENCH_CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : [];
		const proc = spawn(process.execPath, [...prof, "-r", "@swc-node/register", path.join(__dirname, "node.ts")], {
			cwd: ROOT,
			env: { ...process.env, ...env, ROLE: role, NODE_ID: `bench-${role}` },
			stdio: ["ignore", "pipe", "inherit"]
		});
		proc.stdout!.on("data", (b: Buffer) => {
			const m = /BENCH_READY (\d+)/.exec(b.toString());
			if (m) resolve({ proc, port: Number(m[1]) });
		});
		proc.once("exit", code => reject(new Error(`${role} exited ${code}`)));
	});
}

const pidOf = (name: string): number | undefined => {
	try {
		return Number(execFileSync("pgrep", ["-o", "-x", name]).toString().trim()) || undefined;
	} catch {
		return undefined;
	}
};

/** The processes a request crosses, named, whose CPU time per request the run reports. */
type Watched = Record<string, number | undefined>;

async function load(url: string, watched: Watched, headers: Record<string, string> = {}) {
	// Warm-up, then the measured run.
	await autocannon({ url, connections: CONNECTIONS, duration: 2, headers });
	const before = Object.fromEntries(Object.entries(watched).map(([k, pid]) => [k, cpuSeconds(pid)]));
	const r = await autocannon({ url, connections: CONNECTIONS, duration: DURATION, headers });
	if (r.non2xx || r.errors) throw new Error(`${url}: ${r.non2xx} non-2xx, ${r.errors} errors`);
	const cpu: Record<string, number | null> = {};
	for (const [k, pid] of Object.entries(watched)) {
		const a = before[k];
		const b = cpuSeconds(pid);
		cpu[k] = a === null || b === null ? null : Math.round(((b - a) * 1e6) / r.requests.total);
	}
	return { rps: Math.round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, cpu };
}

const cpuCell = (cpu: Record<string, number | null>) =>
	Object.entries(cpu)
		.map(([k, v]) => `${k} ${v ?? "?"}`)
		.join(", ");

async function main() {
	const admin = new Client({ connectionString: PG_ADMIN });
	await admin.connect();
	await admin.query(`CREATE DATABASE "${DB}"`);
	const procs: ChildProcess[] = [];
	try {
		const bare = await start("bare");
		procs.push(bare.proc);
		const nats = pidOf("nats-server");
		const redis = pidOf("redis-server");
		const baseline = await load(`http://127.0.0.1:${bare.port}/hello?name=bench`, { gateway: bare.proc.pid });
		bare.proc.kill("SIGTERM");

		const bareWorker = await start("bare-worker");
		const bareRemote = await start("bare-remote");
		procs.push(bareWorker.proc, bareRemote.proc);
		const hop = await load(`http://127.0.0.1:${bareRemote.port}/hello?name=bench`, {
			gateway: bareRemote.proc.pid,
			worker: bareWorker.proc.pid,
			"nats-server": nats
		});
		bareWorker.proc.kill("SIGTERM");
		bareRemote.proc.kill("SIGTERM");

		const worker = await start("worker");
		const gateway = await start("gateway");
		procs.push(worker.proc, gateway.proc);
		await new Promise(r => setTimeout(r, 1500)); // discovery over NATS
		const token = signAccessToken(loadConfig(env).jwt, { sub: "bench-user", role: "user", scopes: [] });
		const project = await load(
			`http://127.0.0.1:${gateway.port}/api/v1/hello?name=bench`,
			{ gateway: gateway.proc.pid, worker: worker.proc.pid, "nats-server": nats, redis },
			{ authorization: `Bearer ${token}` }
		);

		const ratio = project.rps / baseline.rps;
		console.log(`\nGateway benchmark — ${machine()}`);
		console.log(`autocannon ${CONNECTIONS} connections, ${DURATION} s per target (after 2 s warm-up)\n`);
		console.log("| target | req/s | p50 ms | p99 ms | CPU µs per request, by process |");
		console.log("|---|---:|---:|---:|---|");
		console.log(
			`| bare moleculer-web, local action | ${baseline.rps} | ${baseline.p50} | ${baseline.p99} | ${cpuCell(baseline.cpu)} |`
		);
		console.log(
			`| bare moleculer-web, remote action over NATS (no auth, validation or limits) | ${hop.rps} | ${hop.p50} | ${hop.p99} | ${cpuCell(hop.cpu)} |`
		);
		console.log(
			`| ForgeFluid gateway: JWT + validation + rate limit (Redis) + remote call over NATS | ${project.rps} | ${project.p50} | ${project.p99} | ${cpuCell(project.cpu)} |`
		);
		console.log(
			`\nratio (project / bare local req/s): ${ratio.toFixed(2)}  (target ≥ 0.70: ${ratio >= 0.7 ? "met" : "NOT met"})`
		);
		console.log(
			`ratio (project / bare remote over NATS req/s): ${(project.rps / hop.rps).toFixed(2)}  (the cost of auth + validation + rate limit + metrics on the same hop)`
		);
		const g = (x: { cpu: Record<string, number | null> }) => x.cpu.gateway;
		if (g(baseline) && g(project))
			console.log(
				`gateway-bound ratio (bare local gateway CPU / project gateway CPU per request): ${(g(baseline)! / g(project)!).toFixed(2)}  (the req/s ratio when the gateway process is the bottleneck and NATS, the worker and the load generator have their own cores)`
			);
	} finally {
		for (const p of procs) p.kill("SIGTERM");
		await new Promise(r => setTimeout(r, 1000));
		await admin.query(`DROP DATABASE IF EXISTS "${DB}" WITH (FORCE)`);
		await admin.end();
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
