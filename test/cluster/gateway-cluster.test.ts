/**
 * A gateway node and two worker nodes in separate processes over the real NATS: REST requests are
 * balanced across the workers, a worker killed mid-load loses no idempotent request, and a worker
 * that keeps failing trips the circuit breaker so traffic moves to the healthy one.
 */
import { createTestDatabase, freePort, isolatedEnv, NATS_URL, TestDatabase } from "../support/env";
import { spawnNode, SpawnedNode } from "../support/cluster";

jest.setTimeout(120_000);

let db: TestDatabase;
const nodes: SpawnedNode[] = [];

async function get(port: number, path: string) {
	const res = await fetch(`http://127.0.0.1:${port}${path}`);
	return { status: res.status, json: (await res.json()) as { nodeID?: string; error?: { code: string } } };
}

async function waitForWorkers(port: number, expected: number) {
	const end = Date.now() + 20_000;
	for (;;) {
		const seen = new Set<string>();
		for (let i = 0; i < 10; i++) {
			const r = await get(port, "/api/v1/probe/whoami");
			if (r.status === 200 && r.json.nodeID) seen.add(r.json.nodeID);
		}
		if (seen.size >= expected) return seen;
		if (Date.now() > end) throw new Error(`only ${seen.size} workers visible`);
		await new Promise(r => setTimeout(r, 300));
	}
}

describe("multi-node over NATS", () => {
	let env: Record<string, string>;
	let gateway: SpawnedNode;
	let metricsPort: number;

	beforeAll(async () => {
		db = await createTestDatabase();
		env = isolatedEnv(db, {
			TRANSPORTER: NATS_URL,
			REQUEST_TIMEOUT_MS: "1000",
			RETRY_ATTEMPTS: "5",
			RETRY_DELAY_MS: "50",
			HEARTBEAT_INTERVAL_S: "1",
			HEARTBEAT_TIMEOUT_S: "4",
			// A short window so a dead node's fresh failures are not diluted by its earlier successes.
			CB_MIN_REQUESTS: "5",
			CB_THRESHOLD_PERCENT: "50",
			CB_WINDOW_S: "3",
			CB_HALF_OPEN_MS: "60000",
			RATE_LIMIT_ANON_PER_MINUTE: "100000",
			LOG_LEVEL: "error"
		});
	});
	afterAll(async () => {
		await Promise.all(nodes.map(n => n.kill("SIGKILL")));
		await db?.drop();
	});

	test("requests are balanced across two workers, and survive one being killed mid-load", async () => {
		const [w1, w2] = await Promise.all([
			spawnNode("test/cluster/node-main.ts", { ...env, ROLE: "worker", NODE_ID: "worker-1" }),
			spawnNode("test/cluster/node-main.ts", { ...env, ROLE: "worker", NODE_ID: "worker-2" })
		]);
		metricsPort = await freePort();
		gateway = await spawnNode("test/cluster/node-main.ts", {
			...env,
			ROLE: "gateway",
			NODE_ID: "gateway-1",
			METRICS_PORT: String(metricsPort)
		});
		nodes.push(w1, w2, gateway);
		const seen = await waitForWorkers(gateway.port, 2);
		expect([...seen].sort()).toEqual(["worker-1", "worker-2"]);

		// Balanced: 40 sequential requests spread over both workers.
		const counts: Record<string, number> = {};
		for (let i = 0; i < 40; i++) {
			const r = await get(gateway.port, "/api/v1/probe/whoami");
			expect(r.status).toBe(200);
			counts[r.json.nodeID!] = (counts[r.json.nodeID!] ?? 0) + 1;
		}
		expect(counts["worker-1"]).toBeGreaterThanOrEqual(10);
		expect(counts["worker-2"]).toBeGreaterThanOrEqual(10);

		// Kill worker-2 hard while 60 requests (each held 200 ms on the worker) are in flight.
		const load = Array.from({ length: 60 }, (_, i) =>
			new Promise(r => setTimeout(r, i * 15)).then(() => get(gateway.port, "/api/v1/probe/whoami?delayMs=200"))
		);
		setTimeout(() => void w2.kill("SIGKILL"), 300);
		const results = await Promise.all(load);
		const failed = results.filter(r => r.status !== 200);
		if (failed.length)
			console.log(
				gateway.output
					.join("")
					.split("\n")
					.filter(l => /WARN|ERROR/.test(l))
					.slice(-40)
					.join("\n")
			);
		expect(failed).toEqual([]);
		const after = results.slice(-10).map(r => r.json.nodeID);
		expect(after.every(n => n === "worker-1")).toBe(true);
	});

	test("a worker that keeps failing trips the circuit breaker", async () => {
		// The killed worker has left the registry (heartbeat timeout) before the next scenario.
		await new Promise(r => setTimeout(r, 5000));
		const broken = await spawnNode("test/cluster/node-main.ts", {
			...env,
			ROLE: "worker",
			NODE_ID: "worker-broken",
			PROBE_MODE: "failing"
		});
		nodes.push(broken);
		expect([...(await waitForWorkers(gateway.port, 2))].sort()).toEqual(["worker-1", "worker-broken"]);

		// Not idempotent, so not retried: the broken worker's answers fail until its circuit opens.
		const first: number[] = [];
		for (let i = 0; i < 30; i++) first.push((await get(gateway.port, "/api/v1/probe/flaky")).status);
		const failures = first.filter(s => s !== 200).length;
		expect(failures).toBeGreaterThanOrEqual(3);
		expect(first.filter(s => s !== 200 && s !== 500)).toEqual([]);

		// Circuit open: every following request goes to the healthy worker.
		const after: Array<{ status: number; node?: string }> = [];
		for (let i = 0; i < 20; i++) {
			const r = await get(gateway.port, "/api/v1/probe/flaky");
			after.push({ status: r.status, node: r.json.nodeID });
		}
		expect(after.every(r => r.status === 200 && r.node === "worker-1")).toBe(true);

		// Cluster mode: metrics on METRICS_PORT only, never on the API port.
		expect((await fetch(`http://127.0.0.1:${gateway.port}/metrics`)).status).toBe(404);
		const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(r => r.text());
		expect(metrics).toMatch(/moleculer_circuit_breaker_opened_total\{[^}]*action="probe.flaky"[^}]*\} [1-9]/);
	});
});
