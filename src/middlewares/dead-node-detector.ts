/**
 * Fast eviction of dead nodes. Moleculer drops a node that vanished without a DISCONNECT (SIGKILL,
 * lost host) only after its heartbeat timeout, checked on a timer of the same period (so up to twice
 * the timeout), and each node finds out on its own clock. Until then every call balanced to the dead
 * node waits for the full request timeout, and retries may land there again.
 *
 * Three things shorten that:
 * - heartbeats are checked every second instead of every heartbeat timeout;
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
	nodes: { disconnected(id: string, unexpected: boolean): void; get(id: string): { available: boolean } | undefined };
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

export function DeadNodeDetector(opts: { pingTimeoutMs: number; checkEveryMs?: number }): Middleware {
	let broker: ServiceBroker;
	let timer: NodeJS.Timeout | null = null;
	const announce = (payload: { node?: { id?: string }; unexpected?: boolean }) => {
		const id = payload?.node?.id;
		if (!id || !payload.unexpected || !internals(broker).transit?.connected) return;
		// Fire and forget: a hint that makes the others check at once; each one verifies with its own ping.
		void broker.broadcast(NODE_EVICTED_EVENT, { nodeID: id, by: broker.nodeID }).catch(() => undefined);
	};

	return {
		name: "DeadNodeDetector",
		created(b: ServiceBroker) {
			broker = b;
			internals(broker).localBus.on("$node.disconnected", announce);
		},
		async started() {
			const discoverer = (broker.registry as unknown as { discoverer?: { checkRemoteNodes?(): void } })
				.discoverer;
			if (!internals(broker).transit || !discoverer?.checkRemoteNodes) return;
			timer = setInterval(() => discoverer.checkRemoteNodes!(), opts.checkEveryMs ?? 1000);
			timer.unref();
		},
		async stopped() {
			if (timer) clearInterval(timer);
			timer = null;
			internals(broker).localBus.off("$node.disconnected", announce);
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
