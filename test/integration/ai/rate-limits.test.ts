/**
 * Per-user rate limits hold across two ai nodes: two brokers, each with its own ai service,
 * sharing one Redis (same key prefix), admit no more than the tier's requests per minute in total.
 */
import { randomUUID } from "node:crypto";
import { TestDatabase, createTestDatabase, startTestNode } from "../../support/env";
import { TIERS } from "../../../src/domain/tiers";

type Node = Awaited<ReturnType<typeof startTestNode>>;
let db: TestDatabase;
let a: Node, b: Node;

beforeAll(async () => {
	db = await createTestDatabase();
	const shared = { REDIS_PREFIX: `fftest:ai-rl:${randomUUID()}:`, AI_DEV_PROVIDER: "true" };
	a = await startTestNode({ db, services: ["ai"], env: { ...shared, NODE_ID: "ai-a" } });
	b = await startTestNode({ db, services: ["ai"], env: { ...shared, NODE_ID: "ai-b" } });
});
afterAll(async () => {
	await a?.stop();
	await b?.stop();
	await db?.drop();
});

const prepare = (node: Node, userId: string, extra: Record<string, unknown> = {}) =>
	node.broker
		.call("ai.prepare", {
			userId,
			tier: "free",
			projectId: randomUUID(),
			kind: "chat",
			prompt: "hello",
			model: "dev-echo",
			maxOutputTokens: 10,
			...extra
		})
		.then(
			() => "ok",
			(e: { code: number; type: string; data: { retryAfter: number } }) =>
				`${e.code} ${e.type} ${e.data?.retryAfter > 0}`
		);

test("requests per minute of one user are counted once across both nodes", async () => {
	const userId = `u-${randomUUID()}`;
	const limit = TIERS.free.rateLimits.requestsPerMinute;
	const results = await Promise.all(Array.from({ length: limit + 6 }, (_, i) => prepare(i % 2 ? a : b, userId)));
	expect(results.filter(r => r === "ok")).toHaveLength(limit);
	expect(results.filter(r => r !== "ok")).toEqual(Array(6).fill("429 RATE_LIMITED true"));
	// Another user is not affected.
	expect(await prepare(a, `u-${randomUUID()}`)).toBe("ok");
});

test("tokens per minute: worst-case tokens count on either node", async () => {
	const userId = `u-${randomUUID()}`;
	// 4,000 output tokens each: free allows 20,000 tokens per minute → 4 tasks fit, the 5th does not.
	const r: string[] = [];
	for (let i = 0; i < 5; i++) r.push(await prepare(i % 2 ? a : b, userId, { maxOutputTokens: 4_000 }));
	expect(r).toEqual(["ok", "ok", "ok", "ok", "429 RATE_LIMITED true"]);
});

describe("tokens per minute are settled to what runs used (UsageLimiter on the real Redis)", () => {
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { UsageLimiter } = require("../../../src/ai/limits") as typeof import("../../../src/ai/limits");
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const IORedis = require("ioredis") as typeof import("ioredis").default;
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { REDIS_URL } = require("../../support/env") as typeof import("../../support/env");
	let redis: InstanceType<typeof IORedis>;
	let limiter: InstanceType<typeof UsageLimiter>;
	beforeAll(() => {
		redis = new IORedis(REDIS_URL);
		limiter = new UsageLimiter(redis, `fftest:ai-settle:${randomUUID()}:`);
	});
	afterAll(async () => {
		await redis.quit();
	});

	test("a run that used less gives the difference back: the tokens can be admitted again in the same minute", async () => {
		const u = `u-${randomUUID()}`;
		const max = TIERS.free.rateLimits.tokensPerMinute;
		const { windowEndMs } = await limiter.admit(u, "free", max); // the whole minute's allowance, worst case
		await expect(limiter.admit(u, "free", 1_000)).rejects.toMatchObject({ what: "tokens" });
		expect(await limiter.tokensCounted(u, "free")).toBe(max); // a refused admission counts nothing
		await limiter.settle(u, "free", { counted: max, used: 1_500, windowEndMs, firstAttempt: true });
		expect(await limiter.tokensCounted(u, "free")).toBe(1_500);
		await limiter.admit(u, "free", 1_000); // fits now
		expect(await limiter.tokensCounted(u, "free")).toBe(2_500);
	});

	test("more than counted is added; a retry's attempt adds all it used; a task larger than the window was counted as the window", async () => {
		const u = `u-${randomUUID()}`;
		const { windowEndMs } = await limiter.admit(u, "free", 1_000);
		await limiter.settle(u, "free", { counted: 1_000, used: 1_300, windowEndMs, firstAttempt: true });
		expect(await limiter.tokensCounted(u, "free")).toBe(1_300);
		await limiter.settle(u, "free", { counted: 1_000, used: 200, windowEndMs, firstAttempt: false });
		expect(await limiter.tokensCounted(u, "free")).toBe(1_500);

		const big = `u-${randomUUID()}`;
		const max = TIERS.free.rateLimits.tokensPerMinute;
		const bigWindow = await limiter.admit(big, "free", max * 3);
		await limiter.settle(big, "free", {
			counted: max * 3,
			used: 100,
			windowEndMs: bigWindow.windowEndMs,
			firstAttempt: true
		});
		expect(await limiter.tokensCounted(big, "free")).toBe(100); // never below what the run used
	});

	test("an admission from an earlier window gives nothing back to the current one", async () => {
		const u = `u-${randomUUID()}`;
		const { windowEndMs } = await limiter.admit(u, "free", 5_000); // this window's count: 5,000 from another task
		// The task being settled was admitted in the window before this one (it ended a minute earlier).
		await limiter.settle(u, "free", {
			counted: 10_000,
			used: 100,
			windowEndMs: windowEndMs! - 60_000,
			firstAttempt: true
		});
		// A window not known (Redis's clock could not be read at admission): nothing either.
		await limiter.settle(u, "free", { counted: 10_000, used: 100, windowEndMs: null, firstAttempt: true });
		expect(await limiter.tokensCounted(u, "free")).toBe(5_000);
		// No window at all (nothing counted this minute): nothing to give back, nothing is created.
		const idle = `u-${randomUUID()}`;
		await limiter.settle(idle, "free", {
			counted: 10_000,
			used: 100,
			windowEndMs: windowEndMs! - 60_000,
			firstAttempt: true
		});
		expect(await limiter.tokensCounted(idle, "free")).toBe(0);
	});

	test("the window is told on Redis's clock: this process's clock does not matter", async () => {
		const u = `u-${randomUUID()}`;
		const { windowEndMs } = await limiter.admit(u, "free", 5_000);
		const [sec, usec] = await redis.time();
		const redisNow = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
		// The window's end is a minute after Redis's now (less the moments since the count).
		expect(windowEndMs! - redisNow).toBeGreaterThan(55_000);
		expect(windowEndMs! - redisNow).toBeLessThanOrEqual(60_000);
		const realNow = Date.now;
		Date.now = () => realNow() + 90_000; // this node's clock 90 s ahead: would have looked like another window
		try {
			await limiter.settle(u, "free", { counted: 5_000, used: 1_000, windowEndMs, firstAttempt: true });
		} finally {
			Date.now = realNow;
		}
		expect(await limiter.tokensCounted(u, "free")).toBe(1_000);
	});
});
