/** A domain event that must arrive: written to the outbox with the state change, delivered at least once. */
export interface EventEnvelope<T = unknown> {
	id: string; // uuid, the idempotency key of every consumer
	topic: string; // e.g. "payments.credited"
	payload: T;
	occurredAt: string;
	headers: Record<string, string>;
}

export interface DeliveryInfo {
	/** 1 on first delivery, then counts redeliveries and retries. */
	attempt: number;
	redelivered: boolean;
}

export type EventHandler = (event: EventEnvelope, info: DeliveryInfo) => Promise<void>;

export interface SubscribeOptions {
	/** Consumer group: one queue per group, each event handled by one member of each group. */
	group: string;
	topics: string[];
	handler: EventHandler;
	maxAttempts: number;
	retryBaseMs: number;
	prefetch?: number;
}

export interface DeadLetter {
	consumer: string;
	event: EventEnvelope;
	attempts: number;
	error: string;
}

export interface EventBus {
	readonly kind: "amqp" | "memory";
	/** Resolves once the broker has durably accepted every event (publisher confirms). */
	publish(events: EventEnvelope[]): Promise<void>;
	subscribe(opts: SubscribeOptions): Promise<void>;
	isConnected(): boolean;
	close(): Promise<void>;
}

/** Exponential backoff with full jitter, capped. */
export function eventRetryDelayMs(
	attempt: number,
	baseMs: number,
	maxMs = 60_000,
	rand: () => number = Math.random
): number {
	const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
	return Math.max(1, Math.round(exp / 2 + (rand() * exp) / 2));
}
