/**
 * Moleculer broker options, built from the validated configuration. Fault tolerance is Moleculer's
 * own (circuit breaker, retries, timeouts, bulkhead, request tracking), configured here once.
 */
import type { BrokerOptions, Errors } from "moleculer";
import { Config } from "./src/config";
import { PermissionsMiddleware } from "./src/middlewares/permissions";
import { RequestLogMiddleware } from "./src/middlewares/request-log";

/** Transient failures worth another attempt; only actions marked idempotent are retried at all. */
export function isRetryableError(err: Errors.MoleculerError | Error): boolean {
	const e = err as Errors.MoleculerRetryableError;
	return !!e && e.retryable === true;
}

/** Only server-side failures count towards opening a circuit; a 4xx is the caller's fault. */
export function countsForCircuitBreaker(err: Errors.MoleculerError | Error): boolean {
	const code = (err as Errors.MoleculerError)?.code;
	return !(typeof code === "number" && code >= 400 && code < 500);
}

export function brokerOptions(config: Config): BrokerOptions {
	const cluster = config.transporter != null;
	return {
		namespace: config.namespace,
		nodeID: config.nodeId,
		metadata: { services: config.services, version: process.env.npm_package_version ?? "dev" },

		logger: {
			type: "Console",
			options: { level: config.logLevel, formatter: config.logFormat === "json" ? "jsonext" : config.logFormat, colors: config.logFormat !== "json" }
		},

		transporter: cluster ? { type: "NATS", options: { url: config.transporter!, maxReconnectAttempts: -1 } } : null,
		serializer: "JSON",

		cacher: config.redisUrl
			? { type: "Redis", options: { prefix: `${config.redisPrefix}cache`, ttl: 60, redis: config.redisUrl, maxParamsLength: 120 } }
			: { type: "Memory", options: { ttl: 60, maxParamsLength: 120, clone: true } },

		requestTimeout: config.requestTimeoutMs,
		// Off by default: a retried write is a duplicated write. Idempotent actions opt in with
		// `retryPolicy: { enabled: true }` (see IDEMPOTENT in src/moleculer.ts). Retries run on the
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
		heartbeatInterval: 5,
		heartbeatTimeout: 15,
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
		bulkhead: {
			enabled: true,
			concurrency: config.bulkhead.concurrency,
			maxQueueSize: config.bulkhead.maxQueueSize
		},
		validator: true,
		errorHandler: null,
		metrics: {
			enabled: true,
			reporter: config.metricsPort ? [{ type: "Prometheus", options: { port: config.metricsPort, path: "/metrics" } }] : []
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
		internalMiddlewares: true,
		middlewares: [PermissionsMiddleware, RequestLogMiddleware],
		skipProcessEventRegistration: true,
		replOptions: { customCommands: [] }
	} as BrokerOptions;
}
