/**
 * In-process event bus for embedded mode (one process hosts every service, no RabbitMQ).
 * `publish` resolves only after every subscribed group has handled the event or dead-lettered it,
 * so the outbox row stays unpublished (and is redelivered after a restart) until then: the same
 * at-least-once contract as RabbitMQ, with retries and backoff in process.
 */
import { DeadLetter, EventBus, EventEnvelope, SubscribeOptions, eventRetryDelayMs } from "./types";

export class MemoryEventBus implements EventBus {
	readonly kind = "memory" as const;
	private readonly subs: SubscribeOptions[] = [];
	private closed = false;

	constructor(private readonly onDeadLetter: (dl: DeadLetter) => Promise<void>) {}

	isConnected() {
		return !this.closed;
	}

	async subscribe(opts: SubscribeOptions) {
		this.subs.push(opts);
	}

	async publish(events: EventEnvelope[]) {
		if (this.closed) throw new Error("event bus closed");
		const deliveries: Promise<void>[] = [];
		for (const ev of events)
			for (const sub of this.subs)
				if (sub.topics.some(t => topicMatches(t, ev.topic))) deliveries.push(this.deliver(sub, ev));
		await Promise.all(deliveries);
	}

	private async deliver(sub: SubscribeOptions, ev: EventEnvelope) {
		// Each consumer sees its own copy, as it would from a broker.
		for (let attempt = 1; ; attempt++) {
			try {
				await sub.handler(structuredClone(ev), { attempt, redelivered: attempt > 1 });
				return;
			} catch (err) {
				const error = (err as Error)?.message ?? String(err);
				if (attempt >= sub.maxAttempts || this.closed) {
					await this.onDeadLetter({ consumer: sub.group, event: ev, attempts: attempt, error });
					return;
				}
				await new Promise(r => setTimeout(r, eventRetryDelayMs(attempt, sub.retryBaseMs)));
			}
		}
	}

	async close() {
		this.closed = true;
	}
}

/** AMQP topic semantics: `*` matches one word, `#` zero or more. */
export function topicMatches(pattern: string, topic: string): boolean {
	const p = pattern.split(".");
	const t = topic.split(".");
	const match = (i: number, j: number): boolean => {
		if (i === p.length) return j === t.length;
		if (p[i] === "#") return match(i + 1, j) || (j < t.length && match(i, j + 1));
		if (j === t.length) return false;
		return (p[i] === "*" || p[i] === t[j]) && match(i + 1, j + 1);
	};
	return match(0, 0);
}
