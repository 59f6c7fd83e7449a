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
	node.broker.call("ai.prepare", { userId, tier: "free", projectId: randomUUID(), kind: "chat", prompt: "hello", model: "dev-echo", maxOutputTokens: 10, ...extra }).then(
		() => "ok",
		(e: { code: number; type: string; data: { retryAfter: number } }) => `${e.code} ${e.type} ${e.data?.retryAfter > 0}`
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
