/**
 * Moleculer broker options, built from the validated configuration. Fault tolerance is Moleculer's
 * own (circuit breaker, retries, timeouts, bulkhead, request tracking), configured here once.
 */
import type { BrokerOptions, Errors } from "moleculer";
import { Config } from "./src/config";
import { EXPECTED_UNAVAILABLE_CODES } from "./src/errors";
import { PermissionsMiddleware } from "./src/middlewares/permissions";
import { DomainErrorMiddleware } from "./src/middlewares/domain-errors";
import { RequestLogMiddleware } from "./src/middlewares/request-log";
import { DeadNodeDetector } from "./src/middlewares/dead-node-detector";
import { SettleTimedOutRequests } from "./src/middlewares/settle-timed-out";
import { DependencyErrorsMiddleware } from "./src/middlewares/dependency-errors";
import { ResilientRedisCacher } from "./src/runtime/resilient-cacher";
import { BatchingNatsTransporter } from "./src/runtime/nats-transporter";
import { redisClientOptions } from "./src/runtime/dependency-policy";
import { NullRefusingValidator } from "./src/runtime/validator";
import { ForgePrometheusReporter } from "./src/runtime/prometheus";

/** Transient failures worth another attempt; only actions marked idempotent are retried at all. */
export function isRetryableError(err: Errors.MoleculerError | Error): boolean {
	const e = err as Errors.MoleculerRetryableError;
	return !!e && e.retryable === true;
}

/**
 * What counts towards opening a circuit: failures that say the callee is unwell (unexpected errors and
 * 500s, connection errors, a 503 the callee did not mean). Never a 4xx (the caller's mistake), never a
 * documented 503 the callee answers on purpose (EXPECTED_UNAVAILABLE_CODES: STRIPE_NOT_CONFIGURED...):
 * else one client able to produce ten of them switches the action off for every user.
 */
export function countsForCircuitBreaker(err: Errors.MoleculerError | Error): boolean {
	// A Moleculer error: numeric `code`, string `type`. A DomainError (src/errors.ts): numeric `status`, string `code`.
	const e = (err ?? {}) as { code?: unknown; type?: unknown; status?: unknown };
	const status = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : undefined;
	const name = typeof e.type === "string" ? e.type : typeof e.code === "string" ? e.code : undefined;
	if (status !== undefined && status >= 400 && status < 500) return false;
	if (status === 503 && name !== undefined && EXPECTED_UNAVAILABLE_CODES.has(name)) return false;
	return true;
}

/**
 * fastest-validator's own enum message shows the allowed values where the bad value belongs
 * ("field value 'add, modify' does not match..."); this one names both.
 */
export const VALIDATOR_MESSAGES = {
	enumValue: "The '{field}' field value '{actual}' does not match any of the allowed values ({expected})."
};

/** A transporter given by the entry point rather than by TRANSPORTER: embedded mode's loopback NATS (app/embedded.ts). */
export interface TransporterOverride {
	url: string;
	token?: string;
}

export function brokerOptions(config: Config, override?: TransporterOverride): BrokerOptions {
	const cluster = config.transporter != null;
	return {
		namespace: config.namespace,
		nodeID: config.nodeId,
		metadata: { services: config.services, version: process.env.npm_package_version ?? "dev" },

		logger: {
			type: "Console",
			options: {
				level: config.logLevel,
				formatter: config.logFormat === "json" ? "jsonext" : config.logFormat,
				colors: config.logFormat !== "json"
			}
		},

		// Moleculer's NATS transporter, handing each event-loop turn's packets to the client at once (src/runtime/nats-transporter.ts).
		transporter: cluster
			? new BatchingNatsTransporter({
					url: config.transporter!,
					maxReconnectAttempts: -1,
					timeout: config.deps.nats.connectTimeoutMs,
					reconnectTimeWait: config.deps.nats.reconnectWaitMs,
					pingInterval: config.deps.nats.pingIntervalMs,
					maxPingOut: config.deps.nats.maxPingOut
				})
			: override
				? new BatchingNatsTransporter({
						url: override.url,
						...(override.token ? { token: override.token } : {}),
						maxReconnectAttempts: -1
					})
				: null,
		serializer: "JSON",

		// The cacher's ioredis client is built from the Redis policy (not the library's 20 retries per
		// command), and a Redis that cannot answer is bypassed instead of failing the call.
		cacher: config.redisUrl
			? new ResilientRedisCacher({
					prefix: `${config.redisPrefix}cache`,
					ttl: 60,
					redis: redisClientOptions(config.redisUrl, config.deps.redis),
					maxParamsLength: 120
				})
			: { type: "Memory", options: { ttl: 60, maxParamsLength: 120, clone: true } },

		requestTimeout: config.requestTimeoutMs,
		// Off by default: a retried write is a duplicated write. Idempotent actions opt in with
		// `retryPolicy: { enabled: true }` on the action. Retries run on the
		// caller only (Moleculer skips them on the callee), so they do not multiply across hops.
		retryPolicy: {
			enabled: false,
			retries: config.retry.retries,
			delay: config.retry.delay,
			maxDelay: config.retry.maxDelay,
			factor: 2,
			check: isRetryableError
		},
		maxCallLevel: 20,
		// A node that dies without saying goodbye (SIGKILL, lost host) is dropped from the registry
		// after heartbeatTimeout; until then its in-flight calls time out and idempotent ones are retried.
		heartbeatInterval: config.heartbeat.intervalS,
		heartbeatTimeout: config.heartbeat.timeoutS,
		contextParamsCloning: false,
		tracking: { enabled: true, shutdownTimeout: 10_000 },
		disableBalancer: false,
		registry: { strategy: "RoundRobin", preferLocal: true },
		circuitBreaker: {
			enabled: true,
			threshold: config.circuitBreaker.threshold,
			minRequestCount: config.circuitBreaker.minRequestCount,
			windowTime: config.circuitBreaker.windowTime,
			halfOpenTime: config.circuitBreaker.halfOpenTime,
			check: countsForCircuitBreaker
		},
		// Off by default: the gateway's request handler and long-lived streams must not queue behind a
		// global limit. Work that needs a concurrency cap (AI runs) opts in with `bulkhead: { enabled: true }`,
		// inheriting these limits unless it sets its own.
		bulkhead: {
			enabled: false,
			concurrency: config.bulkhead.concurrency,
			maxQueueSize: config.bulkhead.maxQueueSize
		},
		// fastest-validator with the house messages, refusing `null` where a schema does not say `nullable: true` (src/runtime/validator.ts).
		validator: new NullRefusingValidator({ messages: VALIDATOR_MESSAGES }),
		errorHandler: null,
		metrics: {
			enabled: true,
			// Prometheus text on METRICS_PORT, never on the API port in cluster mode (src/runtime/prometheus.ts).
			// Moleculer accepts a reporter instance (reporters/index.js resolve()); its types list named ones only.
			reporter: (config.metricsPort
				? [new ForgePrometheusReporter({ port: config.metricsPort })]
				: []) as unknown as Exclude<BrokerOptions["metrics"], boolean | undefined>["reporter"]
		},
		tracing: {
			enabled: config.tracing.exporter !== "none",
			exporter:
				config.tracing.exporter === "zipkin"
					? [{ type: "Zipkin", options: { baseURL: config.tracing.zipkinUrl } }]
					: config.tracing.exporter === "console"
						? [{ type: "Console", options: { width: 100 } }]
						: []
		},
		internalServices: true,
		// Moleculer's internal middlewares in their own order (innermost first), with two of ours right
		// outside Timeout: one settles the transport's pending request on a timeout (else the tracker and
		// the breaker inside Timeout wait forever: src/middlewares/settle-timed-out.ts), the dead-node
		// detector sees request timeouts before Retry does.
		internalMiddlewares: false,
		middlewares: [
			// Innermost: a driver's connection error becomes a 503 before anything else sees it.
			DependencyErrorsMiddleware,
			PermissionsMiddleware,
			"ActionHook",
			// Innermost after the hooks: everything outside (request log, breaker, retry, the caller) sees
			// Moleculer errors only.
			DomainErrorMiddleware,
			RequestLogMiddleware,
			"Validator",
			"Bulkhead",
			"Cacher",
			"ContextTracker",
			"CircuitBreaker",
			"Timeout",
			SettleTimedOutRequests(),
			DeadNodeDetector({ pingTimeoutMs: Math.min(1000, config.requestTimeoutMs) }),
			"Retry",
			"Fallback",
			"ErrorHandler",
			"Tracing",
			"Metrics",
			"Debounce",
			"Throttle"
		],
		skipProcessEventRegistration: true,
		replOptions: { customCommands: [] }
	} as BrokerOptions;
}
