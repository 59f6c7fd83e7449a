/**
 * The production entry point (bin/forgefluid.ts) as three cluster nodes over the real NATS:
 * gateway (api), core (users, projects, payments) and work (tasks, ai). A code task submitted
 * through the gateway is leased by the work node, calls projects/payments/users on the core node,
 * streams back to the gateway over SSE, and ends with a version and one settlement — every
 * service-to-service call crosses the transporter.
 */
import { ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { ServiceBroker } from "moleculer";
import { createTestDatabase, isolatedEnv, NATS_URL, TestDatabase } from "../support/env";
import { startFakeOpenAI } from "../support/fake-openai";
import type { FakeServer } from "../support/fake-llm-server";
import { signUp } from "../support/sign-up";

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, "..", "..");
let db: TestDatabase;
let openai: FakeServer;
let operator: ServiceBroker;
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
		const timer = setTimeout(() => reject(new Error(`node did not start:\n${out}`)), 60_000);
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

beforeAll(async () => {
	db = await createTestDatabase();
	openai = await startFakeOpenAI();
	openai.setDefault({
		kind: "ok",
		chunks: ["Done.\n", "```txt path=notes.txt\n", "written by the model\n", "```\n"],
		usage: true
	});
	gatewayPort = await freePort();
	const env = isolatedEnv(db, {
		TRANSPORTER: NATS_URL,
		LOG_LEVEL: "warn",
		OPENAI_API_KEY: "sk-test",
		OPENAI_BASE_URL: openai.url,
		RATE_LIMIT_ANON_PER_MINUTE: "10000"
	});
	// Started one by one: the first applies the migrations, the others find them applied.
	procs.push(await startNode({ ...env, SERVICES: "users,projects,payments", NODE_ID: "core-1", PORT: "0" }));
	procs.push(await startNode({ ...env, SERVICES: "tasks,ai", NODE_ID: "work-1", PORT: "0" }));
	procs.push(await startNode({ ...env, SERVICES: "api", NODE_ID: "gateway-1", PORT: String(gatewayPort) }));
	operator = new ServiceBroker({
		namespace: env.NAMESPACE,
		nodeID: "test-operator",
		transporter: { type: "NATS", options: { url: NATS_URL } },
		logger: false
	});
	await operator.start();
	await operator.waitForServices(["users", "projects", "payments", "tasks", "ai", "api"], 30_000);
	// The gateway must also see every service before the flow starts.
	for (let i = 0; i < 100; i++) {
		const r = await fetch(`http://127.0.0.1:${gatewayPort}/health/ready`).then(
			x => x.json() as Promise<{ services: Record<string, { available: boolean }> }>
		);
		if (["users", "projects", "payments", "tasks", "ai"].every(s => r.services[s]?.available)) break;
		await new Promise(r2 => setTimeout(r2, 200));
	}
});

afterAll(async () => {
	await operator?.stop();
	await Promise.all(
		procs.map(
			p => new Promise<void>(r => (p.exitCode != null ? r() : (p.once("exit", () => r()), p.kill("SIGTERM"))))
		)
	);
	await openai?.close();
	await db?.drop();
});

test("a code task crosses three nodes and settles once", async () => {
	const reg = await signUp(`http://127.0.0.1:${gatewayPort}`, "cluster@example.com", "a long enough passphrase");
	const token: string = reg.accessToken;
	const userId: string = reg.userId;
	await operator.call("payments.grant", {
		userId,
		credits: 10_000,
		operator: "cluster-test",
		reason: "test",
		source: "paid"
	});

	const project = await api("POST", "/projects", token, { name: "cluster" });
	expect(project.status).toBe(201);
	const projectId: string = project.json.id;

	const submit = await api("POST", "/tasks", token, {
		projectId,
		kind: "code",
		prompt: "write notes",
		model: "gpt-4o-mini"
	});
	expect(submit.status).toBe(202);
	const taskId: string = submit.json.task.id;

	let task: { state: string; costCredits: number; nodeId?: string } | undefined;
	for (let i = 0; i < 150; i++) {
		task = (await api("GET", `/tasks/${taskId}`, token)).json;
		if (["succeeded", "failed", "cancelled"].includes(task!.state)) break;
		await new Promise(r => setTimeout(r, 200));
	}
	expect(task!.state).toBe("succeeded");

	const file = await fetch(`http://127.0.0.1:${gatewayPort}/api/v1/projects/${projectId}/files/notes.txt`, {
		headers: { authorization: `Bearer ${token}` }
	});
	expect(file.status).toBe(200);
	expect(await file.text()).toBe("written by the model\n");

	// The task's state is written first, its settlement follows (retried by the sweeper if need be).
	let balance = await api("GET", "/billing/balance", token);
	for (let i = 0; i < 100 && balance.json.held !== 0; i++) {
		await new Promise(r => setTimeout(r, 100));
		balance = await api("GET", "/billing/balance", token);
	}
	expect(balance.json.held).toBe(0);
	expect(balance.json.available).toBe(10_000 - task!.costCredits);
	expect(openai.requests).toHaveLength(1);
});
