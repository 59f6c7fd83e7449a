import { ConfigError, loadConfig } from "../../../src/config";

const problemsOf = (env: Record<string, string>) => {
	try {
		loadConfig(env);
		return [];
	} catch (err) {
		expect(err).toBeInstanceOf(ConfigError);
		return (err as ConfigError).problems;
	}
};

describe("config", () => {
	test("no environment means embedded mode with every service", () => {
		const c = loadConfig({});
		expect(c.transporter).toBeNull();
		expect(c.databaseUrl).toBeNull();
		expect(c.redisUrl).toBeNull();
		expect(c.amqpUrl).toBeNull();
		expect(c.services).toContain("api");
		expect(c.http.port).toBe(3000);
		expect(c.heartbeat).toEqual({ intervalS: 1, timeoutS: 3 });
		expect(c.circuitBreaker).toMatchObject({ windowTime: 10, halfOpenTime: 1000 });
		expect(c.dbPoolMax).toBe(10);
		expect(c.dbNamedStatements).toBe(true);
		expect(loadConfig({ DB_NAMED_STATEMENTS: "false" }).dbNamedStatements).toBe(false);
		expect(c.tasks.sseSlotTtlMs).toBe(30_000);
	});

	test("cluster mode requires its stores and keys, naming each variable", () => {
		const p = problemsOf({ TRANSPORTER: "nats://127.0.0.1:4222" });
		expect(p.join("\n")).toMatch(/DATABASE_URL is required/);
		expect(p.join("\n")).toMatch(/REDIS_URL is required/);
		expect(p.join("\n")).toMatch(/AMQP_URL is required/);
		expect(p.join("\n")).toMatch(/JWT_KEYS is required/);
	});

	test("bad values fail fast with the variable named", () => {
		const p = problemsOf({
			PORT: "http",
			DATABASE_URL: "mysql://x",
			SERVICES: "api,billing",
			LOG_LEVEL: "loud",
			JWT_KEYS: "k1:short",
			DB_POOL_MAX: "0"
		});
		expect(p).toEqual(
			expect.arrayContaining([
				expect.stringMatching(/^PORT must be an integer/),
				expect.stringMatching(/^DATABASE_URL must be a URL with scheme postgres/),
				expect.stringMatching(/^SERVICES names unknown services: billing/),
				expect.stringMatching(/^LOG_LEVEL must be one of/),
				expect.stringMatching(/^JWT_KEYS must be/),
				expect.stringMatching(/^DB_POOL_MAX must be/)
			])
		);
	});

	test("JWT keys parse with rotation and the active kid must exist", () => {
		const keys = "new:0123456789abcdef0123456789abcdef,old:fedcba9876543210fedcba9876543210";
		const c = loadConfig({ JWT_KEYS: keys, JWT_ACTIVE_KID: "old" });
		expect(c.jwt.keys.map(k => k.kid)).toEqual(["new", "old"]);
		expect(c.jwt.activeKid).toBe("old");
		expect(problemsOf({ JWT_KEYS: keys, JWT_ACTIVE_KID: "gone" })).toEqual([
			expect.stringMatching(/JWT_ACTIVE_KID 'gone'/)
		]);
	});

	test("heartbeat timeout must exceed the interval", () => {
		expect(problemsOf({ HEARTBEAT_INTERVAL_S: "5", HEARTBEAT_TIMEOUT_S: "5" })).toEqual([
			expect.stringMatching(/HEARTBEAT_TIMEOUT_S/)
		]);
	});
});
