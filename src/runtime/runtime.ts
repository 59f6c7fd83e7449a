/**
 * The per-node runtime: the shared resources that the services of one node use (one Sequelize pool,
 * one Redis connection, one event bus, one key-value store). Adapters are chosen here from the
 * configuration, once; services ask `runtimeOf(broker)` and never look at the mode themselves.
 */
import type { ServiceBroker } from "moleculer";
import Redis from "ioredis";
import { QueryTypes, Sequelize } from "sequelize";
import { Config } from "../config";
import { createSequelize } from "../db/sequelize";
import { migrate } from "../db/migrate";
import { AmqpEventBus } from "../events/amqp-bus";
import { MemoryEventBus } from "../events/memory-bus";
import { OutboxRelay } from "../events/outbox";
import { EventBus } from "../events/types";
import { KeyValueStore, MemoryKeyValueStore, RedisKeyValueStore } from "./kv";
import { elapsedMs } from "../kit/timing";
import type { LocalWorker } from "../tasks/contract";
import { failFastWhenDown, redisClientOptions } from "./dependency-policy";

export interface Logger {
	info(...a: unknown[]): void;
	warn(...a: unknown[]): void;
	error(...a: unknown[]): void;
	debug(...a: unknown[]): void;
}

export interface DependencyState {
	name: string;
	ok: boolean;
	/**
	 * Whether this node is unready without it. PostgreSQL and NATS are; Redis and RabbitMQ are not:
	 * without Redis the node serves degraded (cache bypassed, rate limits on the node's own count),
	 * without RabbitMQ events wait in the outbox. The same rule on every node.
	 */
	required: boolean;
	latencyMs?: number;
	error?: string;
}

export class Runtime {
	private _sequelize: Sequelize | null = null;
	readonly redis: Redis | null;
	readonly kv: KeyValueStore;
	/** The ai worker on this node while it runs (set by the ai service), for leases at insert. */
	localWorker: LocalWorker | null = null;
	private _bus: EventBus | null = null;
	private _relay: OutboxRelay | null = null;
	private readonly closers: Array<() => Promise<void>> = [];

	constructor(
		readonly config: Config,
		readonly logger: Logger
	) {
		if (config.redisUrl) {
			this.redis = failFastWhenDown(
				new Redis({ ...redisClientOptions(config.redisUrl, config.deps.redis), lazyConnect: false })
			);
			this.redis.on("error", err => logger.warn("Redis error", err.message));
			this.kv = new RedisKeyValueStore(this.redis, `${config.redisPrefix}kv:`);
		} else {
			this.redis = null;
			this.kv = new MemoryKeyValueStore();
		}
	}

	get hasDatabase() {
		return this.config.databaseUrl != null;
	}

	/** The node's one Sequelize instance (created on first use). */
	get sequelize(): Sequelize {
		if (!this._sequelize) {
			if (!this.config.databaseUrl) throw new Error("this node has no database configured (DATABASE_URL)");
			this._sequelize = createSequelize(this.config.databaseUrl, {
				poolMax: this.config.dbPoolMax,
				policy: this.config.deps.postgres
			});
		}
		return this._sequelize;
	}

	async migrate(): Promise<string[]> {
		const applied = await migrate(this.config.databaseUrl!, this.sequelize);
		if (applied.length) this.logger.info(`Applied migrations: ${applied.join(", ")}`);
		return applied;
	}

	/** The durable event bus (RabbitMQ in cluster mode, in-process in embedded mode). */
	get bus(): EventBus {
		if (!this._bus) {
			if (this.config.amqpUrl) {
				const bus = new AmqpEventBus(
					this.config.amqpUrl,
					this.config.amqpPrefix,
					this.logger,
					this.config.deps.amqp
				);
				// Events that failed while the bus was away are due the moment it is back.
				bus.onConnected(() => void this._relay?.busReconnected());
				// Connect in the background: a node starts (and its outbox keeps the events) while RabbitMQ is down.
				bus.connect().catch(err => {
					this.logger.warn("AMQP not reachable yet; events wait in the outbox", (err as Error).message);
					bus.scheduleReconnect(1000);
				});
				this._bus = bus;
			} else {
				this._bus = new MemoryEventBus(async dl => {
					this.logger.error(
						`Event ${dl.event.topic} ${dl.event.id} dead-lettered by ${dl.consumer}: ${dl.error}`
					);
					await this.sequelize.query(
						`INSERT INTO event_dead_letters (consumer, event_id, topic, payload, attempts, last_error)
						 VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT DO NOTHING`,
						{
							bind: [
								dl.consumer,
								dl.event.id,
								dl.event.topic,
								JSON.stringify(dl.event.payload),
								dl.attempts,
								dl.error
							]
						}
					);
				});
			}
		}
		return this._bus;
	}

	/** The outbox relay of this node, started on first use. */
	get relay(): OutboxRelay {
		if (!this._relay) {
			this._relay = new OutboxRelay(this.sequelize, this.bus, {
				pollMs: this.config.outbox.pollMs,
				retryBaseMs: this.config.outbox.retryBaseMs,
				logger: this.logger
			});
			this._relay.start();
		}
		return this._relay;
	}

	onClose(fn: () => Promise<void>) {
		this.closers.push(fn);
	}

	async checkDependencies(): Promise<DependencyState[]> {
		const checks: Array<Promise<DependencyState>> = [];
		const timed = async (name: string, required: boolean, fn: () => Promise<unknown>): Promise<DependencyState> => {
			const t = performance.now();
			try {
				await Promise.race([
					fn(),
					new Promise((_, rej) => setTimeout(() => rej(new Error("timeout after 2000 ms")), 2000).unref())
				]);
				return { name, ok: true, required, latencyMs: elapsedMs(t) };
			} catch (err) {
				return { name, ok: false, required, error: (err as Error).message };
			}
		};
		if (this.config.databaseUrl)
			checks.push(timed("postgres", true, () => this.sequelize.query("SELECT 1", { type: QueryTypes.SELECT })));
		if (this.redis) checks.push(timed("redis", false, () => this.redis!.ping()));
		if (this._bus)
			checks.push(
				timed(this._bus.kind === "amqp" ? "rabbitmq" : "event-bus", false, async () => {
					if (!this._bus!.isConnected()) throw new Error("not connected");
				})
			);
		return Promise.all(checks);
	}

	async close() {
		for (const fn of this.closers.reverse())
			await fn().catch(err => this.logger.warn("close failed", (err as Error).message));
		await this._relay?.stop();
		await this._bus?.close();
		await this._sequelize?.close().catch(() => undefined);
		if (this.redis) await this.redis.quit().catch(() => this.redis!.disconnect());
	}
}

const runtimes = new WeakMap<ServiceBroker, Runtime>();

export function attachRuntime(broker: ServiceBroker, runtime: Runtime) {
	runtimes.set(broker, runtime);
}

export function runtimeOf(broker: ServiceBroker): Runtime {
	const r = runtimes.get(broker);
	if (!r) throw new Error("no runtime attached to this broker (create it with createNode)");
	return r;
}
