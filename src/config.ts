/**
 * The one configuration module. Every setting comes from the environment, is validated here once,
 * and a bad or missing value stops the process with a message naming the variable.
 *
 * Embedded mode is simply "no external URLs set": no TRANSPORTER, DATABASE_URL, REDIS_URL or AMQP_URL.
 * Only adapters differ between the modes; the domain code never looks at the mode.
 */
import os from "node:os";
import path from "node:path";
import Validator from "fastest-validator";
import { UsersConfig, loadUsersConfig } from "./users/config";
import { parseKeyList } from "./users/key-list";
import { ProjectsConfig, loadProjectsConfig } from "./projects/config";
import { PaymentsConfig, loadPaymentsConfig } from "./payments/config";
import { OrgsConfig, loadOrgsConfig } from "./orgs/config";
import { TasksConfig, loadTasksConfig } from "./tasks/config";
import { type RetentionConfig, loadRetentionConfig } from "./db/retention";
import { AiConfig, loadAiConfig } from "./ai/config";
import type { Env, EnvReader } from "./env-reader";
import { ContextConfig, loadContextConfig } from "./context/config";
import { DependencyPolicy, loadDependencyPolicy } from "./runtime/dependency-policy";

export const ALL_SERVICES = ["api", "projects", "users", "payments", "ai", "tasks", "context-bridge", "orgs"] as const;
export type ServiceName = (typeof ALL_SERVICES)[number];

export interface JwtKey {
	kid: string;
	secret: string;
}

export interface Config {
	nodeEnv: string;
	nodeId: string;
	namespace: string;
	services: ServiceName[];
	transporter: string | null;
	databaseUrl: string | null;
	/** Connections in this node's PostgreSQL pool (shared by its services). */
	dbPoolMax: number;
	/** Named prepared statements for the hottest queries (off behind a pooler in transaction mode). */
	dbNamedStatements: boolean;
	embeddedPg: { dir: string; port: number };
	redisUrl: string | null;
	redisPrefix: string;
	amqpUrl: string | null;
	amqpPrefix: string;
	http: {
		host: string;
		port: number;
		publicUrl: string;
		bodyLimit: string;
		corsOrigins: string[];
		trustProxyHops: number;
		/** Request line + headers, bytes (431 above it). */
		maxHeaderBytes: number;
		/** The headers must have arrived this long after the connection opened or the last request (408). */
		headersTimeoutMs: number;
		/** The whole request, body included, must have arrived within this (408): slow bodies. */
		requestTimeoutMs: number;
	};
	healthPort: number | null;
	metricsPort: number | null;
	logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
	logFormat: "json" | "short" | "full";
	tracing: { exporter: "none" | "console" | "zipkin"; zipkinUrl: string | null };
	requestTimeoutMs: number;
	heartbeat: { intervalS: number; timeoutS: number };
	rateLimit: { perMinute: number; anonymousPerMinute: number };
	bulkhead: { concurrency: number; maxQueueSize: number };
	circuitBreaker: { threshold: number; minRequestCount: number; windowTime: number; halfOpenTime: number };
	retry: { retries: number; delay: number; maxDelay: number };
	jwt: { issuer: string; audience: string; keys: JwtKey[]; activeKid: string; accessTtlS: number };
	outbox: { pollMs: number; maxAttempts: number; retryBaseMs: number };
	/** What is pruned when, in which batches (src/db/retention.ts, docs/retention.md). */
	retention: RetentionConfig;
	/** Connect timeout, command timeout and retry bound of each dependency (src/runtime/dependency-policy.ts). */
	deps: DependencyPolicy;
	dataDir: string;
	// Per-service sections, each read and validated by its service's own config module.
	users: UsersConfig;
	projects: ProjectsConfig;
	payments: PaymentsConfig;
	orgs: OrgsConfig;
	tasks: TasksConfig;
	ai: AiConfig;
	/** The platform side of the context service (ai calls, embedded NATS + Python node). */
	context: ContextConfig;
}

export class ConfigError extends Error {
	constructor(public readonly problems: string[]) {
		super(`Invalid configuration:\n  - ${problems.join("\n  - ")}`);
		this.name = "ConfigError";
	}
}

const v = new Validator({ useNewCustomCheckerFunction: true });

const checkInt = (name: string, min: number, max: number) =>
	v.compile({ value: { type: "number", integer: true, min, max, convert: true } });

function parseJwtKeys(raw: string | undefined, problems: string[]): JwtKey[] {
	if (!raw) return [];
	const keys = parseKeyList(raw, (kid, secret) =>
		/^[A-Za-z0-9._-]{1,64}$/.test(kid) && secret.length >= 32 ? { kid, secret } : null
	);
	if (keys) return keys;
	problems.push("JWT_KEYS must be a comma-separated list of kid:secret pairs, each secret at least 32 characters");
	return [];
}

/** Reads and validates the configuration. Throws ConfigError listing every bad variable. */
export function loadConfig(env: Env = process.env): Config {
	const problems: string[] = [];
	const str = (name: string, def: string) => (env[name] ?? "").trim() || def;
	const optUrl = (name: string, schemes: string[]): string | null => {
		const raw = (env[name] ?? "").trim();
		if (!raw) return null;
		try {
			const u = new URL(raw);
			if (!schemes.includes(u.protocol.replace(/:$/, ""))) throw new Error("scheme");
			return raw;
		} catch {
			problems.push(`${name} must be a URL with scheme ${schemes.join(" or ")} (got '${raw}')`);
			return null;
		}
	};
	const int = (name: string, def: number, min: number, max: number): number => {
		const raw = env[name];
		if (raw == null || raw.trim() === "") return def;
		const r = { value: raw.trim() };
		const ok = /^-?\d+$/.test(r.value) && checkInt(name, min, max)(r) === true;
		if (!ok) {
			problems.push(`${name} must be an integer between ${min} and ${max} (got '${raw}')`);
			return def;
		}
		return Number(raw);
	};
	const oneOf = <T extends string>(name: string, def: T, allowed: readonly T[]): T => {
		const raw = str(name, def) as T;
		if (!allowed.includes(raw)) {
			problems.push(`${name} must be one of ${allowed.join(", ")} (got '${raw}')`);
			return def;
		}
		return raw;
	};

	const bool = (name: string, def: boolean): boolean => {
		const raw = (env[name] ?? "").trim().toLowerCase();
		if (!raw) return def;
		if (["1", "true", "yes", "on"].includes(raw)) return true;
		if (["0", "false", "no", "off"].includes(raw)) return false;
		problems.push(`${name} must be true or false (got '${env[name]}')`);
		return def;
	};
	const optStr = (name: string) => (env[name] ?? "").trim() || null;
	const reader: EnvReader = { env, problems, str, optStr, optUrl, int, bool, oneOf };

	const servicesRaw = str("SERVICES", ALL_SERVICES.join(","));
	const services =
		servicesRaw === "*"
			? [...ALL_SERVICES]
			: servicesRaw
					.split(",")
					.map(s => s.trim())
					.filter(Boolean);
	const unknown = services.filter(s => !(ALL_SERVICES as readonly string[]).includes(s));
	if (unknown.length)
		problems.push(`SERVICES names unknown services: ${unknown.join(", ")} (known: ${ALL_SERVICES.join(", ")})`);
	if (!services.length) problems.push("SERVICES must name at least one service");

	const transporter = optUrl("TRANSPORTER", ["nats"]);
	const databaseUrl = optUrl("DATABASE_URL", ["postgres", "postgresql"]);
	const redisUrl = optUrl("REDIS_URL", ["redis", "rediss"]);
	const amqpUrl = optUrl("AMQP_URL", ["amqp", "amqps"]);
	const nodeEnv = str("NODE_ENV", "development");
	const dataDir = path.resolve(str("DATA_DIR", path.join(process.cwd(), ".data")));

	// In cluster mode a node must not silently fall back to per-process stores: a gateway replica
	// with an in-memory rate limiter, or a worker with an embedded database, would split the truth.
	if (transporter) {
		if (!databaseUrl) problems.push("DATABASE_URL is required when TRANSPORTER is set (cluster mode)");
		if (!redisUrl) problems.push("REDIS_URL is required when TRANSPORTER is set (cluster mode)");
		if (!amqpUrl) problems.push("AMQP_URL is required when TRANSPORTER is set (cluster mode)");
	}

	const jwtKeys = parseJwtKeys(env.JWT_KEYS, problems);
	// CORS: any origin only in embedded mode (a developer's machine); a cluster names its origins.
	const corsOrigins = str("CORS_ORIGINS", transporter ? "" : "*")
		.split(",")
		.map(s => s.trim())
		.filter(Boolean);
	if (transporter && corsOrigins.includes("*"))
		problems.push("CORS_ORIGINS must list origins in cluster mode (* is for embedded mode only)");
	if (!jwtKeys.length && transporter) problems.push("JWT_KEYS is required in cluster mode (kid:secret[,kid:secret])");
	const activeKid = str("JWT_ACTIVE_KID", jwtKeys[0]?.kid ?? "dev");
	if (jwtKeys.length && !jwtKeys.some(k => k.kid === activeKid))
		problems.push(`JWT_ACTIVE_KID '${activeKid}' is not one of the kids in JWT_KEYS`);

	const port = int("PORT", 3000, 0, 65535);
	const host = str("HOST", "0.0.0.0");
	const publicUrl = str("PUBLIC_URL", `http://${host === "0.0.0.0" ? "localhost" : host}:${port}`);
	const healthPortRaw = int("HEALTH_PORT", 0, 0, 65535);
	const metricsPortRaw = int("METRICS_PORT", 0, 0, 65535);
	const bodyLimit = str("BODY_LIMIT", "1mb");
	if (!/^\d+(b|kb|mb)$/i.test(bodyLimit))
		problems.push(`BODY_LIMIT must look like 512kb or 1mb (got '${bodyLimit}')`);

	const config: Config = {
		nodeEnv,
		nodeId: str("NODE_ID", `${os.hostname()}-${process.pid}`),
		namespace: str("NAMESPACE", "forgefluid"),
		services: services as ServiceName[],
		transporter,
		databaseUrl,
		dbPoolMax: int("DB_POOL_MAX", 10, 1, 1000),
		dbNamedStatements: bool("DB_NAMED_STATEMENTS", true),
		embeddedPg: { dir: path.join(dataDir, "pg"), port: int("EMBEDDED_PG_PORT", 54329, 1024, 65535) },
		redisUrl,
		redisPrefix: str("REDIS_PREFIX", "ff:"),
		amqpUrl,
		amqpPrefix: str("AMQP_PREFIX", "ff"),
		http: {
			host,
			port,
			publicUrl,
			bodyLimit,
			corsOrigins,
			trustProxyHops: int("TRUST_PROXY_HOPS", 0, 0, 10),
			maxHeaderBytes: int("HTTP_MAX_HEADER_BYTES", 16_384, 1024, 1_048_576),
			headersTimeoutMs: int("HTTP_HEADERS_TIMEOUT_MS", 10_000, 100, 600_000),
			requestTimeoutMs: int("HTTP_REQUEST_TIMEOUT_MS", 60_000, 100, 3_600_000)
		},
		healthPort: healthPortRaw || null,
		metricsPort: metricsPortRaw || null,
		logLevel: oneOf("LOG_LEVEL", "info", ["fatal", "error", "warn", "info", "debug", "trace"] as const),
		logFormat: oneOf("LOG_FORMAT", transporter ? "json" : "short", ["json", "short", "full"] as const),
		tracing: {
			exporter: oneOf("TRACING_EXPORTER", "none", ["none", "console", "zipkin"] as const),
			zipkinUrl: optUrl("ZIPKIN_URL", ["http", "https"])
		},
		requestTimeoutMs: int("REQUEST_TIMEOUT_MS", 10_000, 100, 600_000),
		heartbeat: {
			// A node killed without goodbye is dropped everywhere within about 5 s (docs/faults.md).
			intervalS: int("HEARTBEAT_INTERVAL_S", 1, 1, 60),
			timeoutS: int("HEARTBEAT_TIMEOUT_S", 3, 2, 600)
		},
		rateLimit: {
			perMinute: int("RATE_LIMIT_PER_MINUTE", 600, 1, 1_000_000),
			anonymousPerMinute: int("RATE_LIMIT_ANON_PER_MINUTE", 120, 1, 1_000_000)
		},
		bulkhead: {
			concurrency: int("BULKHEAD_CONCURRENCY", 50, 1, 100_000),
			maxQueueSize: int("BULKHEAD_MAX_QUEUE", 500, 0, 1_000_000)
		},
		circuitBreaker: {
			threshold: int("CB_THRESHOLD_PERCENT", 50, 1, 100) / 100,
			minRequestCount: int("CB_MIN_REQUESTS", 10, 1, 100_000),
			// A short window and half-open delay: an open circuit is tried again 1 s later, so it closes
			// within ~1 s of the callee's return (the issue saw 10 s and more; 2 s left the fault suite's
			// PostgreSQL recovery at 2.4 s of its 3 s bound on a loaded box). One trial call a second
			// against a callee that is still down costs nothing.
			windowTime: int("CB_WINDOW_S", 10, 1, 3600),
			halfOpenTime: int("CB_HALF_OPEN_MS", 1_000, 100, 3_600_000)
		},
		retry: {
			retries: int("RETRY_ATTEMPTS", 3, 0, 10),
			delay: int("RETRY_DELAY_MS", 100, 0, 60_000),
			maxDelay: int("RETRY_MAX_DELAY_MS", 2_000, 0, 600_000)
		},
		jwt: {
			issuer: str("JWT_ISSUER", "forgefluid"),
			audience: str("JWT_AUDIENCE", "forgefluid-api"),
			keys: jwtKeys,
			activeKid,
			accessTtlS: int("ACCESS_TOKEN_TTL_S", 900, 30, 86_400)
		},
		outbox: {
			pollMs: int("OUTBOX_POLL_MS", 500, 10, 60_000),
			maxAttempts: int("EVENT_MAX_ATTEMPTS", 5, 1, 100),
			retryBaseMs: int("EVENT_RETRY_BASE_MS", 500, 1, 600_000)
		},
		retention: loadRetentionConfig(reader),
		deps: loadDependencyPolicy(reader),
		dataDir,
		users: loadUsersConfig(reader, publicUrl, !transporter),
		projects: loadProjectsConfig(reader),
		payments: loadPaymentsConfig(reader),
		orgs: loadOrgsConfig(reader),
		tasks: loadTasksConfig(reader),
		ai: loadAiConfig(reader),
		context: loadContextConfig(reader)
	};
	if (config.http.headersTimeoutMs > config.http.requestTimeoutMs)
		problems.push("HTTP_HEADERS_TIMEOUT_MS must not exceed HTTP_REQUEST_TIMEOUT_MS");
	if (config.heartbeat.timeoutS <= config.heartbeat.intervalS)
		problems.push("HEARTBEAT_TIMEOUT_S must be greater than HEARTBEAT_INTERVAL_S");
	const kept = config.retention.days;
	if (kept.inbox > 0 && kept.outbox > 0 && kept.inbox < kept.outbox)
		problems.push(
			"INBOX_RETENTION_DAYS must be 0 (kept forever) or at least OUTBOX_RETENTION_DAYS (the consumers' dedupe memory outlives the events)"
		);
	if (config.tracing.exporter === "zipkin" && !config.tracing.zipkinUrl)
		problems.push("ZIPKIN_URL is required when TRACING_EXPORTER=zipkin");
	if (problems.length) throw new ConfigError(problems);
	return config;
}

/** For entry points: the configuration, or exit 2 with every problem named. */
export function loadConfigOrExit(env: Env = process.env): Config {
	try {
		return loadConfig(env);
	} catch (err) {
		if (err instanceof ConfigError) {
			console.error(err.message);
			process.exit(2);
		}
		throw err;
	}
}
