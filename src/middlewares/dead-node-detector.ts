/**
 * Fast eviction of dead nodes. Moleculer drops a node that vanished without a DISCONNECT (SIGKILL,
 * lost host) only after its heartbeat timeout, and its circuit breaker never sees timeouts (the
 * Timeout middleware wraps the breaker, so the breaker's promise never settles). Until then every
 * call balanced to the dead node waits for the full request timeout, and retries may land there again.
 *
 * This middleware sits just outside Timeout: when a remote call times out it pings that node once;
 * no pong within `pingTimeoutMs` → the node is marked disconnected through Moleculer's own registry
 * path (services unregistered, pending requests rejected as retryable), so retries go elsewhere.
 * A node that was only slow answers the ping and is left alone; a node that was wrongly evicted
 * re-registers with its next heartbeat.
 */
import type { Middleware, ServiceBroker } from "moleculer";

export function DeadNodeDetector(opts: { pingTimeoutMs: number }): Middleware {
	let broker: ServiceBroker;
	const probing = new Set<string>();

	async function suspect(nodeID: string) {
		if (probing.has(nodeID)) return;
		probing.add(nodeID);
		try {
			const pong = await broker.ping(nodeID, opts.pingTimeoutMs);
			if (!pong) {
				broker
					.getLogger("dead-node-detector")
					.warn(`Node '${nodeID}' timed out a request and did not answer a ping: evicting it.`);
				(
					broker.registry as unknown as { nodes: { disconnected(id: string, unexpected: boolean): void } }
				).nodes.disconnected(nodeID, true);
			}
		} finally {
			probing.delete(nodeID);
		}
	}

	return {
		name: "DeadNodeDetector",
		created(b: ServiceBroker) {
			broker = b;
		},
		remoteAction(next) {
			const handler = next as (ctx: import("moleculer").Context) => Promise<unknown>;
			return function detectDeadNode(ctx) {
				return handler(ctx).catch((err: { name?: string }) => {
					if (err?.name === "RequestTimeoutError" && ctx.nodeID && ctx.nodeID !== broker.nodeID)
						void suspect(ctx.nodeID);
					throw err;
				});
			};
		}
	} as Middleware;
}
