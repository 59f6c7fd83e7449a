/**
 * Domain events that must arrive. A service publishes with `this.publishDurable(tx, topic, payload)`
 * inside the transaction of its state change (transactional outbox), and consumes with handlers
 * that run exactly once per event id: each handler gets a transaction in which the inbox row that
 * marks the event as processed is written together with the handler's own changes.
 *
 *   mixins: [durableEvents({ group: "users", handlers: { "payments.plan.changed": async function (payload, { tx }) { ... } } })]
 *
 * Delivery is at least once (RabbitMQ with acks, retries with backoff, a dead-letter queue; or the
 * in-process bus in embedded mode); consumption is idempotent. Moleculer's plain `emit` remains for
 * hints only (cache invalidation, progress ticks).
 */
import type { Service, ServiceSchema } from "moleculer";
import type { Transaction } from "sequelize";
import { consumeOnce, writeOutboxEvent } from "../src/events/outbox";
import { topicMatches as topicMatchesPattern } from "../src/events/memory-bus";
import type { EventEnvelope } from "../src/events/types";
import { runtimeOf } from "../src/runtime/runtime";

export interface DurableEventContext {
	event: EventEnvelope;
	tx: Transaction;
	attempt: number;
}

// Handlers are called with the service as `this`; the service type is the caller's.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type DurableHandler = (this: any, payload: any, ctx: DurableEventContext) => Promise<void>;

export interface DurableThis extends Service {
	publishDurable(
		tx: Transaction,
		topic: string,
		payload: unknown,
		headers?: Record<string, string>
	): Promise<EventEnvelope>;
}

export function durableEvents(opts: {
	group: string;
	handlers?: Record<string, DurableHandler>;
}): Partial<ServiceSchema> {
	const handlers = opts.handlers ?? {};
	return {
		methods: {
			async publishDurable(
				this: DurableThis,
				tx: Transaction,
				topic: string,
				payload: unknown,
				headers: Record<string, string> = {}
			) {
				const rt = runtimeOf(this.broker);
				const ev = await writeOutboxEvent(rt.sequelize, tx, topic, payload, headers);
				tx.afterCommit(() => rt.relay.kick());
				return ev;
			}
		},
		async started(this: DurableThis) {
			const rt = runtimeOf(this.broker);
			void rt.relay; // the getter starts this node's relay
			const topics = Object.keys(handlers);
			if (!topics.length) return;
			await rt.bus.subscribe({
				group: opts.group,
				topics,
				maxAttempts: rt.config.outbox.maxAttempts,
				retryBaseMs: rt.config.outbox.retryBaseMs,
				handler: async (event, info) => {
					const handler = Object.entries(handlers).find(([t]) => topicMatchesPattern(t, event.topic))?.[1];
					if (!handler) return;
					await consumeOnce(rt.sequelize, opts.group, event.id, tx =>
						handler.call(this, event.payload, { event, tx, attempt: info.attempt })
					);
				}
			});
		}
	} as unknown as Partial<ServiceSchema>;
}
