/**
 * The fuzz test of issue 13 against a cluster: the production entry point (bin/forgefluid.ts) as
 * three processes over the real NATS (gateway; users, projects, payments; tasks, ai), so every error
 * crosses the transporter before the gateway maps it. Same assertions as the embedded run
 * (test/integration/security/fuzz.test.ts): no 5xx, nothing over 64 KB, the contract's error shape.
 */
import { ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { Client } from "pg";
import { createTestDatabase, isolatedEnv, NATS_URL, TestDatabase } from "../support/env";
import { startStripeFake, type StripeFake } from "../support/stripe-fake";
import { runFuzz } from "../support/fuzz";
import { fuzzCredentials } from "../support/fuzz-setup";

jest.setTimeout(600_000);

const ROOT = path.resolve(__dirname, "..", "..");
const SEED = Number(process.env.FUZZ_SEED ?? 1337);
let db: TestDatabase;
let fake: StripeFake;
const procs: ChildProcess[] = [];
let gatewayPort = 0;

function freePort(): Promise<number> {
	return new Promise(resolve => {
		const s = net.createServer().listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}

function startNode(env: Record<string, string>): Promise<ChildProcess> {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, ["-r", "@swc-node/register", "bin/forgefluid.ts"], {
			cwd: ROOT,
			env: { PATH: process.env.PATH ?? "", ...env },
			stdio: ["ignore", "pipe", "pipe"]
		});
		let out = "";
		const timer = setTimeout(() => reject(new Error(`node did not start:\n${out}`)), 90_000);
		proc.stdout!.on("data", b => {
			out += b;
			if (out.includes("Press Ctrl-C")) {
				clearTimeout(timer);
				resolve(proc);
			}
		});
		proc.stderr!.on("data", b => (out += b));
		proc.once("exit", code => reject(new Error(`node exited ${code}:\n${out}`)));
	});
}

beforeAll(async () => {
	db = await createTestDatabase();
	fake = await startStripeFake();
	gatewayPort = await freePort();
	const env = isolatedEnv(db, {
		...fake.env(),
		TRANSPORTER: NATS_URL,
		LOG_LEVEL: "warn",
		STRIPE_MAX_NETWORK_RETRIES: "0",
		RATE_LIMIT_PER_MINUTE: "1000000",
		RATE_LIMIT_ANON_PER_MINUTE: "1000000",
		REGISTER_PER_IP_PER_HOUR: "100000",
		AI_DEV_PROVIDER: "true"
	});
	// One by one: the first applies the migrations, the others find them applied.
	procs.push(await startNode({ ...env, SERVICES: "users,projects,payments,orgs", NODE_ID: "fuzz-core", PORT: "0" }));
	procs.push(await startNode({ ...env, SERVICES: "tasks,ai", NODE_ID: "fuzz-work", PORT: "0" }));
	procs.push(await startNode({ ...env, SERVICES: "api", NODE_ID: "fuzz-gateway", PORT: String(gatewayPort) }));
	for (let i = 0; i < 150; i++) {
		const r = await fetch(`http://127.0.0.1:${gatewayPort}/health/ready`)
			.then(x => x.json() as Promise<{ services?: Record<string, { available: boolean }> }>)
			.catch(() => ({ services: {} as Record<string, { available: boolean }> }));
		if (["users", "projects", "payments", "tasks", "ai"].every(s => r.services?.[s]?.available)) break;
		await new Promise(r2 => setTimeout(r2, 200));
	}
});

afterAll(async () => {
	await Promise.all(
		procs.map(
			p => new Promise<void>(r => (p.exitCode != null ? r() : (p.once("exit", () => r()), p.kill("SIGTERM"))))
		)
	);
	await fake?.stop();
	await db?.drop();
});

test(`every operation through a three-node cluster (seed ${SEED}): no 5xx, nothing over 64 KB, the error shape`, async () => {
	const baseUrl = `http://127.0.0.1:${gatewayPort}`;
	const creds = await fuzzCredentials(baseUrl, async id => {
		const c = new Client({ connectionString: db.url });
		await c.connect();
		await c.query(`UPDATE users SET role = 'admin' WHERE id = $1`, [id]);
		await c.end();
	});
	const report = await runFuzz({ baseUrl, creds, seed: SEED });
	console.log(
		JSON.stringify({
			seed: SEED,
			requests: report.requests,
			operations: report.operations,
			byStatus: report.byStatus,
			notConfigured: report.notConfigured
		})
	);
	expect(report.operations).toBeGreaterThan(50);
	expect(report.requests).toBeGreaterThan(600);
	expect(report.violations).toEqual([]);
});
