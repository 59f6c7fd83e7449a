/**
 * Two ai nodes over the real NATS share deployment cooldowns: a Retry-After or an opened circuit on
 * one node is broadcast to the ai nodes of the cluster, which then skip that deployment too.
 */
import type { ServiceBroker } from "moleculer";
import { NATS_URL, TestDatabase, createTestDatabase, startTestNode } from "../../support/env";
import type { DeploymentRouter } from "../../../src/ai/router";

type Node = Awaited<ReturnType<typeof startTestNode>>;

jest.setTimeout(60_000);

let db: TestDatabase;
let a: Node;
let b: Node;
const namespace = `fftest-aicool-${process.pid}-${Date.now().toString(36)}`;
const deployments = JSON.stringify([
	{ id: "oa-1", model: "gpt-4o-mini", provider: "openai", baseUrl: "http://127.0.0.1:9/v1", apiKey: "k" },
	{ id: "oa-2", model: "gpt-4o-mini", provider: "openai", baseUrl: "http://127.0.0.1:9/v1", apiKey: "k" }
]);

const routerOf = (broker: ServiceBroker) =>
	(broker.getLocalService("ai") as unknown as { router: DeploymentRouter }).router;

async function healthOn(from: Node, nodeID: string) {
	const r = (await from.broker.call("ai.health", {}, { nodeID })) as {
		nodeID: string;
		deployments: Array<{ id: string; circuit: string; availableAt: number | null }>;
	};
	return r;
}

async function until<T>(fn: () => Promise<T | null>, ms = 10_000): Promise<T> {
	const end = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (v) return v;
		if (Date.now() > end) throw new Error("timed out");
		await new Promise(r => setTimeout(r, 50));
	}
}

beforeAll(async () => {
	db = await createTestDatabase();
	const env = (id: string) => ({
		TRANSPORTER: NATS_URL,
		NAMESPACE: namespace,
		NODE_ID: id,
		AI_DEV_PROVIDER: "false",
		AI_DEPLOYMENTS: deployments,
		AI_CIRCUIT_FAILURES: "2",
		AI_CIRCUIT_COOLDOWN_MS: "20000"
	});
	a = await startTestNode({ db, services: ["ai"], env: env(`ai-a-${process.pid}`) });
	b = await startTestNode({ db, services: ["ai"], env: env(`ai-b-${process.pid}`) });
	await until(
		async () =>
			(a.broker.registry.getServiceList({ onlyAvailable: true }) as Array<{ name: string; nodeID: string }>).some(
				s => s.name === "ai" && s.nodeID === b.broker.nodeID
			) || null
	);
});

afterAll(async () => {
	await b?.stop();
	await a?.stop();
	await db?.drop();
});

test("a Retry-After on node A cools the deployment down on node B; an opened circuit opens there too", async () => {
	const ra = routerOf(a.broker);
	ra.acquire("gpt-4o-mini", new Set(["oa-2"]), true)!.failure("oa-1: rate_limited 429", 30_000);
	const cooled = await until(async () => {
		const h = await healthOn(a, b.broker.nodeID);
		const d = h.deployments.find(x => x.id === "oa-1")!;
		return d.availableAt !== null ? d : null;
	});
	expect(cooled.circuit).toBe("closed");
	expect(cooled.availableAt! - Date.now()).toBeGreaterThan(20_000);
	// Node B now routes around oa-1 on its own.
	const lease = routerOf(b.broker).acquire("gpt-4o-mini")!;
	expect(lease.deployment.id).toBe("oa-2");
	lease.neutral();

	// Two plain failures open oa-2's circuit on A: B learns it is open, and nothing is usable there.
	for (let i = 0; i < 2; i++) ra.acquire("gpt-4o-mini", new Set(["oa-1"]))!.failure("oa-2: server 500");
	const opened = await until(async () => {
		const h = await healthOn(a, b.broker.nodeID);
		const d = h.deployments.find(x => x.id === "oa-2")!;
		return d.circuit === "open" ? d : null;
	});
	expect(opened.availableAt).not.toBeNull();
	expect(routerOf(b.broker).acquire("gpt-4o-mini")).toBeNull();
	// Failure counts stay per node.
	expect((await healthOn(b, b.broker.nodeID)).deployments.find(x => x.id === "oa-2")).toMatchObject({
		circuit: "open"
	});
	expect(
		routerOf(b.broker)
			.health()
			.find(x => x.id === "oa-2")?.failures
	).toBe(0);
});

test("a malformed cooldown event is refused by validation and changes nothing", async () => {
	const before = routerOf(b.broker).health();
	await a.broker.broadcast(
		"ai.deployment.cooldown",
		{ id: "oa-1", coolForMs: -5, openForMs: "x", nodeID: "evil" },
		{ groups: ["ai"] }
	);
	await new Promise(r => setTimeout(r, 300));
	expect(
		routerOf(b.broker)
			.health()
			.map(h => [h.id, h.circuit, h.availableAt])
	).toEqual(before.map(h => [h.id, h.circuit, h.availableAt]));
});
