/**
 * Moleculer's NATS transporter with one change: packets sent during one event-loop turn are handed
 * to the NATS client together at the end of the turn (setImmediate), in order, so the client writes
 * them to the socket in one write instead of one write per packet.
 *
 * Why: the `nats` client flushes its outbound buffer on a microtask, so every HTTP request a gateway
 * node turns into an action call becomes its own socket write, its own read on nats-server and on
 * the receiving node. Under load many requests arrive in one turn; batching them cuts the syscalls
 * per call (bench/gateway measures nats-server CPU per request). The cost is at most the rest of the
 * current turn before a packet leaves. Nothing else changes: subscriptions, balancing, reconnects
 * and serialisation are the base transporter's.
 *
 * It also watches its own link (the client's status events): `linkTroubleWithin(ms)` is true while
 * the connection to nats-server is down and for `ms` after it is back. While this node is cut off,
 * every other node looks gone from here; a caller that acts on "that node left" (the tasks sweeper
 * taking a lease back) asks this first (`cutOffRecently`).
 */
import { Transporters, type ServiceBroker } from "moleculer";

type Packet = [topic: string, data: Buffer];

export class BatchingNatsTransporter extends Transporters.NATS {
	private pending: Packet[] = [];
	private scheduled = false;
	private linkDownSince: number | null = null;
	private linkUpAt = 0;

	override connect(): Promise<void> {
		return super.connect().then((r: void) => {
			this.watchLink();
			return r;
		});
	}

	private watchLink() {
		const client = this.client as { status(): AsyncIterable<{ type: string }> } | null;
		if (!client?.status) return;
		void (async () => {
			for await (const s of client.status()) {
				if (s.type === "disconnect") this.linkDownSince ??= Date.now();
				else if (s.type === "reconnect") {
					this.linkDownSince = null;
					this.linkUpAt = Date.now();
				}
			}
		})().catch(() => undefined);
	}

	/** True while this node's connection to nats-server is down, and for `ms` after it came back. */
	linkTroubleWithin(ms: number, now = Date.now()): boolean {
		return this.linkDownSince !== null || now - this.linkUpAt < ms;
	}

	override send(topic: string, data: Buffer): Promise<void> {
		if (!this.client) return Promise.resolve();
		this.pending.push([topic, data]);
		if (!this.scheduled) {
			this.scheduled = true;
			setImmediate(() => this.drain());
		}
		return Promise.resolve();
	}

	/** Hands every pending packet to the client, in the order they were sent. */
	drain(): void {
		this.scheduled = false;
		if (!this.pending.length) return;
		const batch = this.pending;
		this.pending = [];
		const client = this.client as { publish(topic: string, data: Buffer): void } | null;
		if (!client) return;
		for (const [topic, data] of batch) client.publish(topic, data);
	}

	/** The goodbye packet (DISCONNECT) is sent just before this: it must reach the client before it flushes and closes. */
	override disconnect(): Promise<void> {
		this.drain();
		return super.disconnect();
	}
}

/** Whether `broker`'s own NATS link is down or came back less than `withinMs` ago (see above). */
export function cutOffRecently(broker: ServiceBroker, withinMs: number): boolean {
	const tx = (broker as unknown as { transit?: { tx?: unknown } }).transit?.tx;
	return tx instanceof BatchingNatsTransporter && tx.linkTroubleWithin(withinMs);
}
