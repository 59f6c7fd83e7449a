/**
 * RabbitMQ event bus on amqplib (chosen over @moleculer/channels 0.1.8, which does not declare
 * Moleculer 0.15 support and connects only after services start, so `started()` handlers could not
 * subscribe or publish; the outbox needs publisher confirms on its own terms anyway).
 *
 * Topology, all names under the configured prefix:
 *   exchange  <p>.events   (topic)      every domain event, routing key = topic
 *   queue     <p>.<group>               one per consumer group, bound to its topics
 *   queue     <p>.<group>.retry         messages wait here (per-message TTL) and dead-letter back to the group queue
 *   queue     <p>.<group>.dlq           messages that exhausted their attempts, with the last error in headers
 * Consumers ack only after their handler committed; a crash before the ack redelivers (at least once).
 */
import amqp, { type ChannelModel, type ConfirmChannel, type ConsumeMessage } from "amqplib";
import { EventBus, EventEnvelope, SubscribeOptions, eventRetryDelayMs } from "./types";

interface Logger {
	info(...a: unknown[]): void;
	warn(...a: unknown[]): void;
	error(...a: unknown[]): void;
}

export class AmqpEventBus implements EventBus {
	readonly kind = "amqp" as const;
	private conn: ChannelModel | null = null;
	private pubChannel: ConfirmChannel | null = null;
	private connecting: Promise<void> | null = null;
	private readonly subscriptions: SubscribeOptions[] = [];
	private closed = false;
	private reconnectTimer: NodeJS.Timeout | null = null;
	private readonly connectedListeners: Array<() => void> = [];

	constructor(
		private readonly url: string,
		private readonly prefix: string,
		private readonly logger: Logger,
		private readonly policy: { connectTimeoutMs: number; confirmTimeoutMs: number; reconnectMaxMs: number } = {
			connectTimeoutMs: 2000,
			confirmTimeoutMs: 5000,
			reconnectMaxMs: 1000
		}
	) {}

	/** Runs `fn` after every (re)connection, once the publishing channel and the consumers are set up. */
	onConnected(fn: () => void) {
		this.connectedListeners.push(fn);
	}

	get exchange() {
		return `${this.prefix}.events`;
	}
	queueName(group: string) {
		return `${this.prefix}.${group}`;
	}

	isConnected() {
		return this.conn != null && this.pubChannel != null;
	}

	/** Connects once; later failures reconnect in the background with backoff. */
	async connect(): Promise<void> {
		if (this.isConnected()) return;
		if (!this.connecting)
			this.connecting = this.doConnect().finally(() => {
				this.connecting = null;
			});
		return this.connecting;
	}

	private async doConnect() {
		const conn = await amqp.connect(this.url, { timeout: this.policy.connectTimeoutMs });
		conn.on("error", err => this.logger.warn("AMQP connection error", err.message));
		conn.on("close", () => {
			this.conn = null;
			this.pubChannel = null;
			if (!this.closed) this.scheduleReconnect(Math.min(100, this.policy.reconnectMaxMs));
		});
		const ch = await conn.createConfirmChannel();
		ch.on("error", err => this.logger.warn("AMQP channel error", err.message));
		await ch.assertExchange(this.exchange, "topic", { durable: true });
		this.conn = conn;
		this.pubChannel = ch;
		for (const sub of this.subscriptions) await this.setupConsumer(conn, sub);
		this.logger.info("AMQP event bus connected");
		for (const fn of this.connectedListeners) fn();
	}

	scheduleReconnect(delayMs: number) {
		if (this.reconnectTimer || this.closed) return;
		this.reconnectTimer = setTimeout(async () => {
			this.reconnectTimer = null;
			try {
				await this.connect();
			} catch (err) {
				this.logger.warn("AMQP reconnect failed", (err as Error).message);
				// Capped low: the bus must be found again within about a second of RabbitMQ's return.
				this.scheduleReconnect(Math.min(Math.max(delayMs, 50) * 2, this.policy.reconnectMaxMs));
			}
		}, delayMs);
		this.reconnectTimer.unref();
	}

	async publish(events: EventEnvelope[]): Promise<void> {
		if (!events.length) return;
		if (!this.isConnected()) {
			this.scheduleReconnect(0);
			throw new Error("AMQP event bus is not connected");
		}
		const ch = this.pubChannel!;
		for (const ev of events) {
			ch.publish(this.exchange, ev.topic, Buffer.from(JSON.stringify(ev)), {
				persistent: true,
				messageId: ev.id,
				contentType: "application/json",
				headers: { "x-attempt": 1 }
			});
		}
		let timer: NodeJS.Timeout | undefined;
		try {
			await Promise.race([
				ch.waitForConfirms(),
				new Promise((_, reject) => {
					timer = setTimeout(
						() =>
							reject(
								new Error(`AMQP publisher confirms timed out after ${this.policy.confirmTimeoutMs} ms`)
							),
						this.policy.confirmTimeoutMs
					);
				})
			]);
		} finally {
			clearTimeout(timer);
		}
	}

	async subscribe(opts: SubscribeOptions): Promise<void> {
		this.subscriptions.push(opts);
		if (this.conn) await this.setupConsumer(this.conn, opts);
		else
			await this.connect().catch(err => {
				// The consumer is set up on (re)connection; a node may start while RabbitMQ is down.
				this.logger.warn("AMQP not reachable; consumer will attach on reconnect", (err as Error).message);
				this.scheduleReconnect(1000);
			});
	}

	private async setupConsumer(conn: ChannelModel, opts: SubscribeOptions) {
		const q = this.queueName(opts.group);
		const ch = await conn.createConfirmChannel();
		ch.on("error", err => this.logger.warn(`AMQP consumer channel error (${q})`, err.message));
		await ch.assertExchange(this.exchange, "topic", { durable: true });
		await ch.assertQueue(q, { durable: true });
		await ch.assertQueue(`${q}.retry`, {
			durable: true,
			arguments: { "x-dead-letter-exchange": "", "x-dead-letter-routing-key": q }
		});
		await ch.assertQueue(`${q}.dlq`, { durable: true });
		for (const t of opts.topics) await ch.bindQueue(q, this.exchange, t);
		await ch.prefetch(opts.prefetch ?? 16);
		await ch.consume(q, msg => {
			if (msg) void this.handleMessage(ch, q, opts, msg);
		});
	}

	private async handleMessage(ch: ConfirmChannel, q: string, opts: SubscribeOptions, msg: ConsumeMessage) {
		const attempt = Number(msg.properties.headers?.["x-attempt"] ?? 1) + (msg.fields.redelivered ? 1 : 0);
		let event: EventEnvelope;
		try {
			event = JSON.parse(msg.content.toString("utf8")) as EventEnvelope;
		} catch {
			// Unparseable: retrying cannot help.
			ch.sendToQueue(`${q}.dlq`, msg.content, { persistent: true, headers: { "x-error": "malformed JSON" } });
			await ch.waitForConfirms().catch(() => undefined);
			ch.ack(msg);
			return;
		}
		try {
			await opts.handler(event, { attempt, redelivered: msg.fields.redelivered });
			ch.ack(msg);
		} catch (err) {
			const error = (err as Error)?.message ?? String(err);
			try {
				if (attempt < opts.maxAttempts) {
					const delay = eventRetryDelayMs(attempt, opts.retryBaseMs);
					ch.sendToQueue(`${q}.retry`, msg.content, {
						persistent: true,
						messageId: event.id,
						expiration: String(delay),
						headers: { "x-attempt": attempt + 1, "x-last-error": error.slice(0, 500) }
					});
				} else {
					this.logger.error(
						`Event ${event.topic} ${event.id} dead-lettered by ${opts.group} after ${attempt} attempts: ${error}`
					);
					ch.sendToQueue(`${q}.dlq`, msg.content, {
						persistent: true,
						messageId: event.id,
						headers: { "x-attempt": attempt, "x-error": error.slice(0, 2000), "x-consumer": opts.group }
					});
				}
				await ch.waitForConfirms();
				ch.ack(msg);
			} catch (publishErr) {
				// Could not park the message: give it back to the queue rather than lose it.
				this.logger.warn("could not schedule retry; requeueing", (publishErr as Error).message);
				try {
					ch.nack(msg, false, true);
				} catch {
					/* channel gone: the broker redelivers unacked messages */
				}
			}
		}
	}

	/** Reads (and removes) the dead letters of a group; an operator tool and a test aid. */
	async drainDeadLetters(group: string): Promise<Array<{ event: EventEnvelope; error: string; attempts: number }>> {
		await this.connect();
		const ch = await this.conn!.createChannel();
		const out: Array<{ event: EventEnvelope; error: string; attempts: number }> = [];
		try {
			for (;;) {
				const m = await ch.get(`${this.queueName(group)}.dlq`, { noAck: false });
				if (!m) break;
				out.push({
					event: JSON.parse(m.content.toString("utf8")),
					error: String(m.properties.headers?.["x-error"] ?? ""),
					attempts: Number(m.properties.headers?.["x-attempt"] ?? 0)
				});
				ch.ack(m);
			}
		} finally {
			await ch.close().catch(() => undefined);
		}
		return out;
	}

	/** Deletes this bus's queues and exchange (test isolation). */
	async destroyTopology(groups: string[]) {
		await this.connect();
		const ch = await this.conn!.createChannel();
		for (const g of groups) {
			const q = this.queueName(g);
			for (const name of [q, `${q}.retry`, `${q}.dlq`]) await ch.deleteQueue(name).catch(() => undefined);
		}
		await ch.deleteExchange(this.exchange).catch(() => undefined);
		await ch.close().catch(() => undefined);
	}

	async close() {
		this.closed = true;
		if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
		const c = this.conn;
		this.conn = null;
		this.pubChannel = null;
		if (c) await c.close().catch(() => undefined);
	}
}
