/**
 * Fast eviction of dead nodes. Moleculer drops a node that vanished without a DISCONNECT (SIGKILL,
 * lost host) only after its heartbeat timeout, checked on a timer of the same period (so up to twice
 * the timeout), and each node finds out on its own clock. Until then every call balanced to the dead
 * node waits for the full request timeout, and retries may land there again.
 *
 * Four things shorten that:
 * - heartbeats are checked every `checkEveryMs` (250 ms) instead of every heartbeat timeout;
 * - silence is measured in milliseconds: Moleculer stamps a heartbeat with whole seconds of process
 *   uptime and drops a node only when more than the timeout's whole seconds have passed (a 3 s timeout
 *   acts after 3.0-4.0 s, plus the check period). A node silent for `suspectAfterMs` (the heartbeat
 *   timeout less the ping timeout, at least one heartbeat interval plus Moleculer's 500 ms jitter) is
 *   pinged, and evicted when it does not answer within `pingTimeoutMs`: a node that cannot answer for
 *   the heartbeat timeout is dropped then, not a second or two later. A pong counts as a heartbeat, so a
 *   node that is late but alive is pinged once per `suspectAfterMs` at most;
 * - when a remote call times out, the node is pinged once; no pong within `pingTimeoutMs` → it is
 *   marked disconnected through Moleculer's own registry path (services unregistered, pending requests
 *   rejected as retryable, so they fail over instead of waiting);
 * - a node that evicts another for either reason broadcasts `node.evicted`; every other node pings the
 *   evicted node itself and evicts it on no pong (`confirmEviction`), so the whole cluster stops
 *   routing to it within a second of the first node that noticed.
 * A node that was only slow answers the ping and is left alone; a node that was wrongly evicted
 * re-registers with its next heartbeat (Moleculer asks an unknown sender for its INFO).
 */
import type { Middleware, ServiceBroker } from "moleculer";

export const NODE_EVICTED_EVENT = "node.evicted";

type NodeCatalog = {
	nodes: {
		disconnected(id: string, unexpected: boolean): void;
		get(id: string): { available: boolean } | undefined;
		toArray(): Array<{ id: string; local: boolean; available: boolean }>;
	};
	discoverer?: {
		checkRemoteNodes?(): void;
		heartbeatReceived?(nodeID: string, payload: unknown): unknown;
		processRemoteNodeInfo?(nodeID: string, payload: unknown): unknown;
	};
};

type BrokerInternals = {
	localBus: { on(ev: string, fn: (p: never) => void): void; off(ev: string, fn: (p: never) => void): void };
	transit?: { connected: boolean };
};
const internals = (b: ServiceBroker) => b as unknown as BrokerInternals;

const probing = new WeakMap<ServiceBroker, Set<string>>();

/** Pings `nodeID` and evicts it when it does not answer; true when it was evicted. */
export async function confirmEviction(broker: ServiceBroker, nodeID: string, pingTimeoutMs: number): Promise<boolean> {
	if (nodeID === broker.nodeID) return false;
	const registry = broker.registry as unknown as NodeCatalog;
	if (!registry.nodes.get(nodeID)?.available) return false;
	let set = probing.get(broker);
	if (!set) probing.set(broker, (set = new Set()));
	if (set.has(nodeID)) return false;
	set.add(nodeID);
	try {
		const pong = await broker.ping(nodeID, pingTimeoutMs);
		if (pong || !registry.nodes.get(nodeID)?.available) return false;
		broker.getLogger("dead-node-detector").warn(`Node '${nodeID}' did not answer a ping: evicting it.`);
		registry.nodes.disconnected(nodeID, true);
		return true;
	} finally {
		set.delete(nodeID);
	}
}

export function DeadNodeDetector(opts: {
	pingTimeoutMs: number;
	checkEveryMs?: number;
	/** Silence (ms) after which a node is pinged; default from the broker's heartbeat settings (above). */
	suspectAfterMs?: number;
}): Middleware {
	let broker: ServiceBroker;
	let timer: NodeJS.Timeout | null = null;
	/** When each remote node was last heard from (a heartbeat, its INFO, a pong), in ms. */
	const lastSeen = new Map<string, number>();
	let suspectAfterMs = 0;
	const announce = (payload: { node?: { id?: string }; unexpected?: boolean }) => {
		const id = payload?.node?.id;
		if (id) lastSeen.delete(id);
		if (!id || !payload.unexpected || !internals(broker).transit?.connected) return;
		// Fire and forget: a hint that makes the others check at once; each one verifies with its own ping.
		void broker.broadcast(NODE_EVICTED_EVENT, { nodeID: id, by: broker.nodeID }).catch(() => undefined);
	};
	const seen = (payload: { node?: { id?: string } }) => {
		if (payload?.node?.id) lastSeen.set(payload.node.id, Date.now());
	};
	const suspect = () => {
		if (!internals(broker).transit?.connected) return; // our own link is down: nothing to conclude
		const registry = broker.registry as unknown as NodeCatalog;
		const now = Date.now();
		for (const node of registry.nodes.toArray()) {
			if (node.local || !node.available) continue;
			const t = lastSeen.get(node.id);
			if (t === undefined) lastSeen.set(node.id, now);
			else if (now - t > suspectAfterMs)
				void confirmEviction(broker, node.id, opts.pingTimeoutMs).then(
					evicted => {
						if (!evicted && registry.nodes.get(node.id)?.available) lastSeen.set(node.id, Date.now());
					},
					() => undefined
				);
		}
	};

	return {
		name: "DeadNodeDetector",
		created(b: ServiceBroker) {
			broker = b;
			internals(broker).localBus.on("$node.disconnected", announce);
			internals(broker).localBus.on("$node.connected", seen);
			internals(broker).localBus.on("$node.updated", seen);
		},
		async started() {
			const discoverer = (broker.registry as unknown as NodeCatalog).discoverer;
			if (!internals(broker).transit || !discoverer?.checkRemoteNodes) return;
			const intervalMs = (broker.options.heartbeatInterval ?? 10) * 1000;
			const timeoutMs = (broker.options.heartbeatTimeout ?? 30) * 1000;
			suspectAfterMs = opts.suspectAfterMs ?? Math.max(intervalMs + 500, timeoutMs - opts.pingTimeoutMs);
			// Every heartbeat stamps the sender, in ms.
			const received = discoverer.heartbeatReceived?.bind(discoverer);
			if (received)
				discoverer.heartbeatReceived = (nodeID, payload) => {
					lastSeen.set(nodeID, Date.now());
					return received(nodeID, payload);
				};
			timer = setInterval(() => {
				discoverer.checkRemoteNodes!();
				suspect();
			}, opts.checkEveryMs ?? 250);
			timer.unref();
		},
		async stopped() {
			if (timer) clearInterval(timer);
			timer = null;
			lastSeen.clear();
			internals(broker).localBus.off("$node.disconnected", announce);
			internals(broker).localBus.off("$node.connected", seen);
			internals(broker).localBus.off("$node.updated", seen);
		},
		remoteAction(next) {
			const handler = next as (ctx: import("moleculer").Context) => Promise<unknown>;
			return function detectDeadNode(ctx) {
				return handler(ctx).catch((err: { name?: string }) => {
					if (err?.name === "RequestTimeoutError" && ctx.nodeID && ctx.nodeID !== broker.nodeID)
						void confirmEviction(broker, ctx.nodeID, opts.pingTimeoutMs);
					throw err;
				});
			};
		}
	} as Middleware;
}
