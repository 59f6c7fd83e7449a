import { Errors } from "moleculer";
import { loadConfig } from "../../../src/config";
import { isDependencyDown, redisClientOptions } from "../../../src/runtime/dependency-policy";
import { asDependencyError, DependencyUnavailableError } from "../../../src/middlewares/dependency-errors";
import { mapError } from "../../../src/http/errors";

const named = (name: string, message = "x") => Object.assign(new Error(message), { name });

describe("dependency policy", () => {
	test("defaults: every dependency has a connect timeout, a command timeout and a retry bound", () => {
		const { deps } = loadConfig({});
		expect(deps.redis).toEqual({ connectTimeoutMs: 1000, commandTimeoutMs: 2000, retries: 1, reconnectMaxMs: 500 });
		expect(deps.postgres).toEqual({
			connectTimeoutMs: 2000,
			statementTimeoutMs: 30_000,
			acquireTimeoutMs: 3000,
			retries: 0
		});
		expect(deps.amqp).toEqual({ connectTimeoutMs: 2000, confirmTimeoutMs: 5000, reconnectMaxMs: 1000 });
		expect(deps.nats).toEqual({
			connectTimeoutMs: 2000,
			reconnectWaitMs: 500,
			pingIntervalMs: 10_000,
			maxPingOut: 2
		});
		expect(deps.chain).toEqual({ timeoutMs: 5000, retries: 1 });
	});

	test("bad values name the variable", () => {
		expect(() => loadConfig({ REDIS_COMMAND_TIMEOUT_MS: "0", DB_MAX_RETRIES: "x" })).toThrow(
			/REDIS_COMMAND_TIMEOUT_MS must be an integer between 10 and 60000[\s\S]*DB_MAX_RETRIES must be an integer/
		);
	});

	test("the Redis client options carry the URL's parts and the policy", () => {
		const o = redisClientOptions("redis://u:p%40ss@10.0.0.7:6380/3", {
			connectTimeoutMs: 111,
			commandTimeoutMs: 222,
			retries: 1,
			reconnectMaxMs: 300
		});
		expect(o).toMatchObject({
			host: "10.0.0.7",
			port: 6380,
			username: "u",
			password: "p@ss",
			db: 3,
			connectTimeout: 111,
			commandTimeout: 222,
			maxRetriesPerRequest: 1,
			// one write per turn of the event loop, not per command (a burst of /v1 requests)
			enableAutoPipelining: true
		});
		expect(o.tls).toBeUndefined();
		const retry = o.retryStrategy as (n: number) => number;
		expect(retry(1)).toBe(100);
		expect(retry(50)).toBe(300);
		expect(
			redisClientOptions("rediss://h", {
				connectTimeoutMs: 1,
				commandTimeoutMs: 1,
				retries: 0,
				reconnectMaxMs: 1
			})
		).toMatchObject({
			host: "h",
			port: 6379,
			db: 0,
			tls: {}
		});
	});

	test.each([
		["SequelizeConnectionRefusedError", "connect ECONNREFUSED 127.0.0.1:5432"],
		["SequelizeConnectionAcquireTimeoutError", "Operation timeout"],
		["SequelizeConnectionError", "timeout expired"],
		["MaxRetriesPerRequestError", "Reached the max retries per request limit (which is 1)."],
		["Error", "Connection is closed."],
		["Error", "Command timed out"],
		["SequelizeDatabaseError", "Connection terminated unexpectedly"],
		["Error", "AMQP event bus is not connected"]
	])("%s (%s) is a dependency that is down", (name, message) => {
		expect(isDependencyDown(named(name, message))).toBe(true);
	});

	test("a wrapped driver error is found through its parent; a query error is not a dependency being down", () => {
		expect(
			isDependencyDown(
				Object.assign(named("SequelizeDatabaseError", "x"), { parent: named("Error", "read ECONNRESET") })
			)
		).toBe(true);
		expect(isDependencyDown(named("SequelizeUniqueConstraintError", "duplicate key value"))).toBe(false);
		expect(isDependencyDown(named("TypeError", "cannot read x of undefined"))).toBe(false);
		expect(isDependencyDown(null)).toBe(false);
	});

	test("an action's driver error leaves as 503 DEPENDENCY_UNAVAILABLE, not retryable; Moleculer errors pass as they are", () => {
		const e = asDependencyError(
			named("SequelizeConnectionRefusedError", "connect ECONNREFUSED")
		) as DependencyUnavailableError;
		expect(e).toBeInstanceOf(DependencyUnavailableError);
		expect(e.code).toBe(503);
		expect(e.type).toBe("DEPENDENCY_UNAVAILABLE");
		expect(e.retryable).toBe(false);
		const own = new Errors.MoleculerClientError("nope", 409, "CONFLICT");
		expect(asDependencyError(own)).toBe(own);
		const bug = new TypeError("x is undefined");
		expect(asDependencyError(bug)).toBe(bug);
	});

	test("the gateway maps driver errors to 503 with Retry-After, remote ones included", () => {
		const local = mapError(named("MaxRetriesPerRequestError", "Reached the max retries per request limit"));
		expect(local.status).toBe(503);
		expect(local.headers["Retry-After"]).toBeDefined();
		expect(local.body.error.code).toBe("DEPENDENCY_UNAVAILABLE");
		const remote = mapError(new DependencyUnavailableError(new Error("connect ECONNREFUSED")));
		expect(remote.status).toBe(503);
		expect(remote.body.error.code).toBe("DEPENDENCY_UNAVAILABLE");
		expect(mapError(new TypeError("x")).status).toBe(500);
	});
});
