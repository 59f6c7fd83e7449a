/**
 * Python context nodes beside a TS node with the production heartbeat settings (loadConfig's defaults,
 * brokerOptions' heartbeat check and dead-node detector), over the real NATS: one started with embedded
 * mode's environment (app/embedded.ts embeddedContextEnv), one with no heartbeat variables at all (as
 * compose and k8s start it: its own defaults). For three heartbeat timeouts and more neither side drops
 * the other, and calls keep reaching both.
 *
 * The bug this guards: embedded mode passed no heartbeat settings, the Python node beat every 5 s
 * against the TS node's 3 s timeout, and the gateway logged "Heartbeat is not received from
 * '<host>-context'" about 11 times a minute, each time followed by a rediscovery.
 */
import type { ServiceBroker } from "moleculer";
import type { ForgeNode } from "../../../app/node";
import { embeddedContextEnv } from "../../../app/embedded";
import { createTestDatabase, eventually, NATS_URL, startTestNode, TestDatabase, uniqueId } from "../../support/env";
import { ContextNode, startContextNode } from "../../support/context-node";

jest.setTimeout(120_000);

type Bus = { localBus: { on(ev: string, fn: (p: { node?: { id?: string } }) => void): void } };
type Nodes = { nodes: { get(id: string): { available: boolean } | undefined } };

let db: TestDatabase;
let node: ForgeNode;
const py: ContextNode[] = [];
const pyIds = [uniqueId("py-hb-embedded"), uniqueId("py-hb-defaults")].map(id => id.replace(/_/g, "-"));
const events: Array<{ event: string; at: number }> = [];

beforeAll(async () => {
	db = await createTestDatabase();
	// No HEARTBEAT_* in the environment: the TS defaults, as `./forge start` runs them.
	node = await startTestNode({ db, services: [], env: { TRANSPORTER: NATS_URL, NODE_ID: uniqueId("ts-hb") } });
	const bus = (node.broker as unknown as Bus).localBus;
	for (const event of ["$node.connected", "$node.disconnected"])
		bus.on(event, p => {
			if (p?.node?.id && pyIds.includes(p.node.id))
				events.push({ event: `${event} ${p.node.id}`, at: Date.now() });
		});
});

afterAll(async () => {
	await Promise.all(py.map(n => n.stop()));
	await node?.stop();
	await db?.drop();
});

const available = (b: ServiceBroker, id: string) => !!(b.registry as unknown as Nodes).nodes.get(id)?.available;

it("is never dropped by the TS node, nor drops it, over three heartbeat timeouts", async () => {
	const { intervalS, timeoutS } = node.config.heartbeat;
	expect(process.env.HEARTBEAT_INTERVAL_S ?? process.env.HEARTBEAT_TIMEOUT_S).toBeUndefined();
	const embedded = embeddedContextEnv(node.config, NATS_URL, pyIds[0]);
	const {
		HEARTBEAT_INTERVAL_S: _i,
		HEARTBEAT_TIMEOUT_S: _t,
		...bare
	} = embeddedContextEnv(node.config, NATS_URL, pyIds[1]);
	// info: a node logs each node it drops ("node <id> heartbeat timed out")
	py.push(...(await Promise.all([embedded, bare].map(env => startContextNode({ ...env, LOG_LEVEL: "info" })))));
	for (const id of pyIds) await eventually(() => available(node.broker, id), 30_000, 50);
	await node.broker.waitForServices(["context"], 30_000);
	const since = Date.now();
	await new Promise(r => setTimeout(r, (3 * timeoutS + 2 * intervalS) * 1000));

	expect(events.filter(e => e.at >= since)).toEqual([]);
	expect(events.map(e => e.event).sort()).toEqual(pyIds.map(id => `$node.connected ${id}`).sort());
	for (const [i, id] of pyIds.entries()) {
		expect(available(node.broker, id)).toBe(true);
		expect(py[i].output()).not.toMatch(/heartbeat timed out|disconnected/);
		const status = await node.broker.call<{ node: string }, object>(
			"context.status",
			{ projectId: "prj_hb" },
			{ nodeID: id }
		);
		expect(status.node).toBe(id);
	}
});
