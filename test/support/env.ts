/**
 * Test isolation: each suite gets its own PostgreSQL database, Redis key prefix, RabbitMQ names and
 * Moleculer namespace, so runs (and suites) never see each other's data.
 */
import net from "node:net";
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import type { ServiceSchema } from "moleculer";
import { Config, ServiceName, loadConfig } from "../../src/config";
import { ForgeNode, createNode } from "../../app/node";

export const PG_ADMIN_URL = process.env.TEST_PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379/0";
export const AMQP_URL = process.env.TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672";
export const NATS_URL = process.env.TEST_NATS_URL ?? "nats://127.0.0.1:4222";
export const TEST_JWT_KEYS =
	"k1:test-secret-key-number-one-0123456789abcdef,k0:old-secret-key-number-zero-0123456789abcdef";

export const uniqueId = (prefix: string) => `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;

export interface TestDatabase {
	name: string;
	url: string;
	drop(): Promise<void>;
}

export async function createTestDatabase(prefix = "ff_test"): Promise<TestDatabase> {
	const name = uniqueId(prefix).toLowerCase();
	const admin = new Client({ connectionString: PG_ADMIN_URL });
	await admin.connect();
	await admin.query(`CREATE DATABASE "${name}"`);
	await admin.end();
	const url = PG_ADMIN_URL.replace(/\/[^/]*$/, `/${name}`);
	return {
		name,
		url,
		async drop() {
			const c = new Client({ connectionString: PG_ADMIN_URL });
			await c.connect();
			await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
			await c.end();
		}
	};
}

/** Environment for an isolated node of a test: real Postgres (own database), Redis (own prefix), RabbitMQ (own names). */
export function isolatedEnv(db: TestDatabase, extra: Record<string, string> = {}): Record<string, string> {
	const id = uniqueId("t");
	return {
		DATABASE_URL: db.url,
		REDIS_URL: REDIS_URL,
		REDIS_PREFIX: `fftest:${id}:`,
		AMQP_URL: AMQP_URL,
		AMQP_PREFIX: `fftest.${id}`,
		NAMESPACE: `fftest-${id}`,
		JWT_KEYS: TEST_JWT_KEYS,
		PORT: "0",
		HOST: "127.0.0.1",
		LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "warn",
		LOG_FORMAT: "short",
		OUTBOX_POLL_MS: "100",
		EVENT_RETRY_BASE_MS: "50",
		// Tests that sign their own tokens with bearerFor() have no users service to ask about sessions;
		// the users service's own tests turn the gateway's session check back on.
		AUTH_SESSION_CHECK: "false",
		// No welcome grant (on by default with no TRANSPORTER): suites count credits exactly; its own
		// suites turn it on.
		SIGNUP_GRANT_CREDITS: "0",
		...extra
	};
}

export function testConfig(env: Record<string, string>): Config {
	return loadConfig(env);
}

export async function startTestNode(opts: {
	db: TestDatabase;
	services: ServiceName[];
	extraServices?: ServiceSchema[];
	env?: Record<string, string>;
}): Promise<ForgeNode & { port: number; baseUrl: string }> {
	const env = isolatedEnv(opts.db, opts.env);
	const config = testConfig(env);
	// Test services handed in beside the list (an outbox consumer, say) may use the database too.
	const node = await createNode(config, {
		services: opts.services,
		extraServices: opts.extraServices,
		migrate: opts.extraServices?.length ? true : undefined
	});
	const api = node.broker.getLocalService("api") as unknown as { server?: import("node:http").Server } | undefined;
	const addr = api?.server?.address();
	const port = addr && typeof addr === "object" ? addr.port : 0;
	return Object.assign(node, { port, baseUrl: `http://127.0.0.1:${port}` });
}

/** Signs an access token the way the users service does, for tests of the gateway alone. */
export function bearerFor(config: Config, sub: string, role: "user" | "admin" | "operator" = "user"): string {
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { signAccessToken } = require("../../src/auth/jwt") as typeof import("../../src/auth/jwt");
	// A session id shaped like the real ones (a UUID); with the gateway check off no session row is read.
	return signAccessToken(config.jwt, { sub, role, scopes: [], sid: "00000000-0000-4000-8000-000000000001" });
}

/** Polls `check` until it holds (true), failing after `timeoutMs`: for effects that land asynchronously. */
export async function eventually(
	check: () => boolean | Promise<boolean>,
	timeoutMs = 10_000,
	stepMs = 10
): Promise<void> {
	const end = Date.now() + timeoutMs;
	while (!(await check())) {
		if (Date.now() > end)
			throw new Error(`condition not reached within ${timeoutMs} ms: ${check.toString().slice(0, 200)}`);
		await new Promise(r => setTimeout(r, stepMs));
	}
}

/** A TCP port free on 127.0.0.1 right now (for a listener the test starts next, e.g. METRICS_PORT). */
export function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = net.createServer();
		s.once("error", reject);
		s.listen(0, "127.0.0.1", () => {
			const port = (s.address() as net.AddressInfo).port;
			s.close(() => resolve(port));
		});
	});
}
