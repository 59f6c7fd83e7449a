/**
 * /v1 requests across processes (docs/compat.md "Dead nodes"): the ai node serving a stream is
 * killed (SIGKILL: no goodbye) mid-stream. Its hold lease stops being renewed and expires; one of
 * the two users nodes sweeps it: the credit hold `chat:<id>` is released once (one release in the
 * ledger), the key's budget hold settles at 0, the balance is whole again, nothing counts twice.
 */
import { ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { ServiceBroker } from "moleculer";
import { Client } from "pg";
import { createTestDatabase, eventually, isolatedEnv, NATS_URL, TestDatabase } from "../support/env";
import { startFakeOpenAI } from "../support/fake-openai";
import type { FakeServer } from "../support/fake-llm-server";
import { signUp } from "../support/sign-up";

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, "..", "..");
let db: TestDatabase;
let openai: FakeServer;
let operator: ServiceBroker;
const procs = new Map<string, ChildProcess>();
let gatewayPort = 0;

function freePort(): Promise<number> {
	return new Promise(resolve => {
		const s = net.createServer().listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}

function startNode(name: string, env: Record<string, string>): Promise<ChildProcess> {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, ["-r", "@swc-node/register", "bin/forgefluid.ts"], {
			cwd: ROOT,
			env: { PATH: process.env.PATH ?? "", ...env, NODE_ID: name },
			stdio: ["ignore", "pipe", "pipe"]
		});
		let out = "";
		const timer = setTimeout(() => reject(new Error(`node ${name} did not start:\n${out}`)), 60_000);
		proc.stdout!.on("data", b => {
			out += b;
			if (out.includes("Press Ctrl-C")) {
				clearTimeout(timer);
				procs.set(name, proc);
				resolve(proc);
			}
		});
		proc.stderr!.on("data", b => (out += b));
		proc.once("exit", code => reject(new Error(`node ${name} exited ${code}:\n${out}`)));
	});
}

async function api(method: string, p: string, token?: string, body?: unknown) {
	const res = await fetch(`http://127.0.0.1:${gatewayPort}/api/v1${p}`, {
		method,
		headers: {
			...(token ? { authorization: `Bearer ${token}` } : {}),
			...(body ? { "content-type": "application/json" } : {})
		},
		body: body ? JSON.stringify(body) : undefined
	});
	const text = await res.text();
	return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function sql<T = Record<string, unknown>>(q: string, bind: unknown[] = []): Promise<T[]> {
	const c = new Client({ connectionString: db.url });
	await c.connect();
	try {
		return (await c.query(q, bind)).rows as T[];
	} finally {
		await c.end();
	}
}

beforeAll(async () => {
	db = await createTestDatabase();
	openai = await startFakeOpenAI();
	// Streams until the node serving it dies.
	openai.setDefault({ kind: "endless", chunkDelayMs: 50 });
	gatewayPort = await freePort();
	const env = isolatedEnv(db, {
		TRANSPORTER: NATS_URL,
		LOG_LEVEL: "warn",
		AI_DEPLOYMENTS: JSON.stringify([
			{ id: "oa-1", model: "gpt-4o-mini", provider: "openai", baseUrl: openai.url, apiKey: "sk-1" }
		]),
		AI_DEV_PROVIDER: "false",
		AI_STREAM_TIMEOUT_MS: "120000",
		AI_COMPAT_HOLD_LEASE_MS: "1500",
		USERS_CHAT_HOLD_SWEEP_MS: "200",
		RATE_LIMIT_ANON_PER_MINUTE: "10000",
		AUTH_SESSION_CHECK: "true"
	});
	// One by one: the first applies the migrations. Two users nodes sweep: each lease is swept once.
	await startNode("core-1", { ...env, SERVICES: "users,payments", PORT: "0" });
	await startNode("core-2", { ...env, SERVICES: "users", PORT: "0" });
	await startNode("ai-1", { ...env, SERVICES: "ai", PORT: "0" });
	await startNode("gateway-1", { ...env, SERVICES: "api", PORT: String(gatewayPort) });
	operator = new ServiceBroker({
		namespace: env.NAMESPACE,
		nodeID: "test-operator",
		transporter: { type: "NATS", options: { url: NATS_URL } },
		logger: false
	});
	await operator.start();
	await operator.waitForServices(["users", "payments", "ai", "api"], 30_000);
	for (let i = 0; i < 100; i++) {
		const r = await fetch(`http://127.0.0.1:${gatewayPort}/health/ready`).then(
			x => x.json() as Promise<{ services: Record<string, { available: boolean }> }>
		);
		if (["users", "payments", "ai"].every(s => r.services[s]?.available)) break;
		await new Promise(r2 => setTimeout(r2, 200));
	}
});

afterAll(async () => {
	await operator?.stop();
	await Promise.all(
		[...procs.values()].map(
			p =>
				new Promise<void>(r =>
					p.exitCode != null || p.signalCode != null ? r() : (p.once("exit", () => r()), p.kill("SIGTERM"))
				)
		)
	);
	await openai?.close();
	await db?.drop();
});

test("the holds of an ai node killed mid-stream are released once, the key's budget too", async () => {
	const reg = await signUp(`http://127.0.0.1:${gatewayPort}`, "dead-node@example.com", "a long enough passphrase");
	const token: string = reg.accessToken;
	await operator.call("payments.grant", {
		userId: reg.userId,
		credits: 10_000,
		operator: "cluster-test",
		reason: "test",
		source: "paid"
	});
	const k = await api("POST", "/users/me/api-keys", token, {
		name: "budgeted",
		scopes: ["ai:use"],
		monthlyBudgetCredits: 5_000
	});
	expect(k.status).toBe(201);
	const keyId: string = (k.json.key as string).split("_")[1];

	const res = await fetch(`http://127.0.0.1:${gatewayPort}/v1/chat/completions`, {
		method: "POST",
		headers: { authorization: `Bearer ${k.json.key}`, "content-type": "application/json" },
		body: JSON.stringify({
			model: "gpt-4o-mini",
			stream: true,
			max_tokens: 1000,
			messages: [{ role: "user", content: "go on forever" }]
		})
	});
	expect(res.status).toBe(200);
	const reader = res.body!.getReader();
	let text = "";
	while (!text.includes("data: ")) text += new TextDecoder().decode((await reader.read()).value);

	// Mid-stream: the hold and the key's hold are taken, the lease is renewed.
	const [held] = await sql<{ task_id: string; state: string; amount: string }>(
		`SELECT task_id, state, amount FROM credit_holds WHERE user_id = $1`,
		[reg.userId]
	);
	expect(held.state).toBe("held");
	expect(held.task_id).toMatch(/^chat:[a-f0-9]{32}$/);
	expect((await api("GET", "/billing/balance", token)).json.held).toBe(Number(held.amount));
	const spend = await operator.call<{ spent: number; reserved: number }, { keyId: string }>("users.keySpend", {
		keyId
	});
	expect(spend).toEqual({ spent: 0, reserved: Number(held.amount) });
	await new Promise(r => setTimeout(r, 2_000)); // past one lease time: renewals kept it alive
	expect((await sql(`SELECT 1 FROM chat_hold_leases WHERE hold_id = $1`, [held.task_id])).length).toBe(1);
	expect((await sql(`SELECT state FROM credit_holds WHERE task_id = $1`, [held.task_id]))[0].state).toBe("held");

	procs.get("ai-1")!.kill("SIGKILL");
	// The client's stream ends (an error event or a cut), never a clean [DONE].
	const rest = await (async () => {
		let s = "";
		for (;;) {
			const r = await reader.read().catch(() => ({ done: true, value: undefined }));
			if (r.done) return s;
			s += new TextDecoder().decode(r.value);
		}
	})();
	expect(rest).not.toContain("[DONE]");

	await eventually(async () => (await sql(`SELECT 1 FROM chat_hold_leases`)).length === 0, 20_000, 100);
	const [after] = await sql<{ state: string }>(`SELECT state FROM credit_holds WHERE task_id = $1`, [held.task_id]);
	expect(after.state).toBe("released");
	const posts = await sql<{ kind: string; n: string }>(
		`SELECT kind, count(*) AS n FROM ledger_transactions WHERE cause_id = $1 GROUP BY kind ORDER BY kind`,
		[held.task_id]
	);
	expect(posts.map(p => [p.kind, Number(p.n)])).toEqual([
		["release", 1],
		["reserve", 1]
	]);
	const balance = (await api("GET", "/billing/balance", token)).json;
	expect(balance).toMatchObject({ available: 10_000, held: 0 });
	expect(await operator.call("users.keySpend", { keyId })).toEqual({ spent: 0, reserved: 0 });
	const [kh] = await sql<{ charged: string; settled_at: Date | null }>(
		`SELECT charged, settled_at FROM api_key_holds WHERE hold_id = $1`,
		[held.task_id]
	);
	expect(Number(kh.charged)).toBe(0);
	expect(kh.settled_at).not.toBeNull();
	// More sweeps change nothing.
	await operator.call("users.sweepChatHolds", {});
	expect((await api("GET", "/billing/balance", token)).json).toMatchObject({ available: 10_000, held: 0 });
});
