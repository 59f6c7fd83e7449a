/**
 * The dead-node detector's heartbeat check (src/middlewares/dead-node-detector.ts): a node that goes
 * silent is dropped once it has been unresponsive for the heartbeat timeout, measured in
 * milliseconds; a node that is late with its heartbeats but answers a ping stays. Two brokers in this
 * process over Moleculer's Fake transporter. A "dead" node stops its heartbeats and drops its
 * subscriptions without saying goodbye (what kill -9 looks like to the others).
 */
import { ServiceBroker, type BrokerOptions } from "moleculer";
import { brokerOptions } from "../../../moleculer.config";
import { loadConfig } from "../../../src/config";
import { DeadNodeDetector } from "../../../src/middlewares/dead-node-detector";

type Internals = {
	registry: {
		discoverer: { stopHeartbeatTimers(): void };
		nodes: { get(id: string): { available: boolean } | undefined };
	};
	transit: { tx: { disconnect(): Promise<void> } };
	localBus: { on(ev: string, fn: (p: { node: { id: string } }) => void): void };
};
const internals = (b: ServiceBroker) => b as unknown as Internals;

function options(namespace: string, nodeID: string): BrokerOptions {
	return {
		...brokerOptions(loadConfig({ NAMESPACE: namespace, NODE_ID: nodeID, LOG_LEVEL: "fatal" })),
		transporter: "Fake",
		logger: false
	};
}

const brokers: ServiceBroker[] = [];
afterEach(async () => {
	await Promise.all(brokers.splice(0).map(b => b.stop().catch(() => undefined)));
});

async function pair(watcherOptions?: (o: BrokerOptions) => BrokerOptions) {
	const ns = `dnd-${Math.random().toString(36).slice(2)}`;
	const other = new ServiceBroker(options(ns, "other"));
	other.createService({ name: "thing", actions: { ping: () => "pong" } });
	const base = options(ns, "watcher");
	const watcher = new ServiceBroker(watcherOptions ? watcherOptions(base) : base);
	brokers.push(watcher, other);
	await Promise.all([other.start(), watcher.start()]);
	await watcher.waitForServices(["thing"], 10_000);
	return { watcher, other };
}

test("a node that dies without a goodbye is dropped after the heartbeat timeout (3 s), not a second or two later", async () => {
	const { watcher, other } = await pair();
	let droppedAt = 0;
	internals(watcher).localBus.on("$node.disconnected", p => {
		if (p.node.id === "other") droppedAt = Date.now();
	});
	internals(other).registry.discoverer.stopHeartbeatTimers();
	await internals(other).transit.tx.disconnect();
	const killedAt = Date.now();
	while (!droppedAt && Date.now() - killedAt < 6000) await new Promise(r => setTimeout(r, 20));
	const ms = droppedAt - killedAt;
	// Its last word (a heartbeat, or its discovery) came up to 1.5 s (1 s ± 500 ms) before the kill;
	// silent 2 s → pinged, 1 s for the pong: 3 s after the last word (Moleculer alone: 3-4 s, checked every 3 s).
	expect(droppedAt).toBeGreaterThan(0);
	expect(ms).toBeGreaterThanOrEqual(1400);
	expect(ms).toBeLessThanOrEqual(3800);
	expect(internals(watcher).registry.nodes.get("other")?.available).toBe(false);
});

test("a node late with its heartbeats that answers the ping stays, and is pinged once per silence period, not every check", async () => {
	const { watcher, other } = await pair(o => ({
		...o,
		heartbeatTimeout: 60, // Moleculer's own check stays out of it
		middlewares: [DeadNodeDetector({ pingTimeoutMs: 500, suspectAfterMs: 800 })]
	}));
	const ping = jest.spyOn(watcher, "ping");
	internals(other).registry.discoverer.stopHeartbeatTimers();
	await new Promise(r => setTimeout(r, 2600));
	expect(internals(watcher).registry.nodes.get("other")?.available).toBe(true);
	expect(ping.mock.calls.length).toBeGreaterThanOrEqual(1);
	expect(ping.mock.calls.length).toBeLessThanOrEqual(3);
	expect(await watcher.call("thing.ping")).toBe("pong");
});
