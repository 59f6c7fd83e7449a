/**
 * One timeout policy per dependency: how long a connection may take to open, how long one command
 * may take, and how many times the client itself retries. Every client of a dependency is built
 * from it (docs/faults.md has the table), so a dependency that is down costs a caller well under a
 * second instead of a driver's default (ioredis: 20 retries per command; ethers: 5 minutes per call;
 * pg: no connect timeout at all).
 *
 * THE RULE: a caller that needs a dependency that is down gets an answer within
 * connect timeout + command timeout at worst, never the sum of a driver's retries. Retries that
 * span an outage belong to the caller (Moleculer's retry policy, the outbox, the worker's report
 * loop), which knows whether the work is idempotent; the drivers retry at most `retries` times.
 */
import type Redis from "ioredis";
import type { RedisOptions } from "ioredis";
import type { EnvReader } from "../env-reader";

export interface DependencyPolicy {
	redis: {
		connectTimeoutMs: number;
		/**
		 * Bounds a Redis that holds the connection but does not answer. A Redis that is down (refused,
		 * closed) fails a command at once through the retry bound instead. Not lower: a loaded node's
		 * own event-loop stalls would fire it against a healthy Redis.
		 */
		commandTimeoutMs: number;
		/** Reconnections a queued command waits through before it fails (ioredis maxRetriesPerRequest). */
		retries: number;
		/** Longest wait between reconnection attempts, so a restarted Redis is found within it. */
		reconnectMaxMs: number;
	};
	postgres: {
		connectTimeoutMs: number;
		/** Server-side statement_timeout and the client's query timeout. */
		statementTimeoutMs: number;
		/** Longest wait for a free pool connection. */
		acquireTimeoutMs: number;
		/** Retries of a statement that failed to connect (0: the caller decides). */
		retries: number;
	};
	amqp: {
		connectTimeoutMs: number;
		/** Longest wait for a publisher confirm. */
		confirmTimeoutMs: number;
		/** Longest wait between reconnection attempts. */
		reconnectMaxMs: number;
	};
	nats: {
		connectTimeoutMs: number;
		reconnectWaitMs: number;
		/** Client pings; a server that misses `maxPingOut` of them is given up and reconnected. */
		pingIntervalMs: number;
		maxPingOut: number;
	};
	chain: { timeoutMs: number; retries: number };
	/** The model providers' policy lives in the ai section (AI_FIRST_TOKEN_TIMEOUT_MS, AI_STALL_TIMEOUT_MS, AI_MAX_ATTEMPTS). */
}

export function loadDependencyPolicy(r: EnvReader): DependencyPolicy {
	return {
		redis: {
			connectTimeoutMs: r.int("REDIS_CONNECT_TIMEOUT_MS", 1000, 50, 60_000),
			commandTimeoutMs: r.int("REDIS_COMMAND_TIMEOUT_MS", 2000, 10, 60_000),
			retries: r.int("REDIS_MAX_RETRIES", 1, 0, 20),
			reconnectMaxMs: r.int("REDIS_RECONNECT_MAX_MS", 500, 10, 60_000)
		},
		postgres: {
			connectTimeoutMs: r.int("DB_CONNECT_TIMEOUT_MS", 2000, 50, 60_000),
			statementTimeoutMs: r.int("DB_STATEMENT_TIMEOUT_MS", 30_000, 100, 3_600_000),
			acquireTimeoutMs: r.int("DB_ACQUIRE_TIMEOUT_MS", 3000, 50, 600_000),
			retries: r.int("DB_MAX_RETRIES", 0, 0, 10)
		},
		amqp: {
			connectTimeoutMs: r.int("AMQP_CONNECT_TIMEOUT_MS", 2000, 50, 60_000),
			confirmTimeoutMs: r.int("AMQP_CONFIRM_TIMEOUT_MS", 5000, 50, 600_000),
			reconnectMaxMs: r.int("AMQP_RECONNECT_MAX_MS", 1000, 10, 60_000)
		},
		nats: {
			connectTimeoutMs: r.int("NATS_CONNECT_TIMEOUT_MS", 2000, 50, 60_000),
			reconnectWaitMs: r.int("NATS_RECONNECT_WAIT_MS", 500, 10, 60_000),
			pingIntervalMs: r.int("NATS_PING_INTERVAL_MS", 10_000, 100, 600_000),
			maxPingOut: r.int("NATS_MAX_PING_OUT", 2, 1, 100)
		},
		chain: {
			timeoutMs: r.int("CHAIN_RPC_TIMEOUT_MS", 5000, 100, 60_000),
			retries: r.int("CHAIN_RPC_RETRIES", 1, 0, 10)
		}
	};
}

/** ioredis options for a URL under the policy: every Redis client of a node (its own, the cacher's) uses these. */
export function redisClientOptions(url: string, p: DependencyPolicy["redis"]): RedisOptions {
	const u = new URL(url);
	const db = Number(u.pathname.replace(/^\//, "") || 0);
	return {
		host: u.hostname,
		port: Number(u.port || 6379),
		...(u.username ? { username: decodeURIComponent(u.username) } : {}),
		...(u.password ? { password: decodeURIComponent(u.password) } : {}),
		db: Number.isInteger(db) ? db : 0,
		...(u.protocol === "rediss:" ? { tls: {} } : {}),
		connectTimeout: p.connectTimeoutMs,
		commandTimeout: p.commandTimeoutMs,
		maxRetriesPerRequest: p.retries,
		// Commands issued while connecting wait for the connection (bounded by the command timeout),
		// so a node's start does not race its own connection. Once connected, `failFastWhenDown`
		// turns the queue off.
		enableOfflineQueue: true,
		// Commands issued in the same turn of the event loop leave in one write (a burst of requests
		// each doing its rate-limit, stamp and cache reads otherwise costs a socket write per command).
		enableAutoPipelining: true,
		retryStrategy: times => Math.min(50 * 2 ** Math.min(times, 10), p.reconnectMaxMs)
	};
}

/**
 * After a client's first connection, a command sent while Redis is down (reconnecting) fails at
 * once ("Stream isn't writeable") instead of waiting in ioredis's offline queue for the next
 * reconnection attempt: every caller degrades (cache miss, per-node rate limits, queue metadata
 * from PostgreSQL) without paying up to `reconnectMaxMs` per command, which added up to a second
 * per request when a request touched Redis more than once. Only the first connection queues (a
 * node's start does not race its own connection).
 */
export function failFastWhenDown(client: Redis): Redis {
	client.once("ready", () => {
		client.options.enableOfflineQueue = false;
	});
	return client;
}

const DRIVER_DOWN_NAMES = new Set([
	// Sequelize's connection error family
	"SequelizeConnectionError",
	"SequelizeConnectionRefusedError",
	"SequelizeConnectionAcquireTimeoutError",
	"SequelizeConnectionTimedOutError",
	"SequelizeHostNotFoundError",
	"SequelizeHostNotReachableError",
	"SequelizeInvalidConnectionError",
	"SequelizeAccessDeniedError",
	// ioredis
	"MaxRetriesPerRequestError",
	// nats.js
	"NatsError"
]);

/** Messages of the drivers' connection failures that come without a distinctive class. */
const DRIVER_DOWN_MESSAGE =
	/Connection terminated|connect ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EPIPE|Connection is closed|Stream isn't writeable|Command timed out|Channel closed|Connection closed|AMQP event bus is not connected|timeout exceeded when trying to connect|terminating connection due to administrator command|the database system is (starting up|shutting down)|canceling statement due to statement timeout|Query read timeout/i;

/**
 * Whether an error says a dependency (PostgreSQL, Redis, RabbitMQ, NATS) could not be reached or did
 * not answer in time, rather than refused the request: such errors are 503, never 500.
 */
export function isDependencyDown(err: unknown): boolean {
	for (
		let e = err as { name?: string; message?: string; parent?: unknown; original?: unknown } | undefined, i = 0;
		e && i < 4;
		i++
	) {
		if (typeof e.name === "string" && DRIVER_DOWN_NAMES.has(e.name)) return true;
		if (typeof e.message === "string" && DRIVER_DOWN_MESSAGE.test(e.message)) return true;
		e = (e.parent ?? e.original) as typeof e;
	}
	return false;
}
