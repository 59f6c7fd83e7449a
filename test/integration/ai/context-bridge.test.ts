/**
 * context-bridge: every new project version reaches `context.index` through the durable event
 * (outbox → RabbitMQ → the "context" consumer group), and a failing context service is retried
 * through the bus's backoff until it indexes. Real PostgreSQL and RabbitMQ; a TS stand-in for the
 * context service.
 */
import { createTestDatabase, eventually, startTestNode, type TestDatabase } from "../../support/env";
import { fakeContextService, type FakeContextState } from "../../support/fake-context";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: Awaited<ReturnType<typeof startTestNode>>;
let ctxState: FakeContextState;
const user = { id: "bridge-user", role: "user", scopes: ["*"] };

beforeAll(async () => {
	db = await createTestDatabase();
	const fake = fakeContextService();
	ctxState = fake.state;
	node = await startTestNode({
		db,
		services: ["projects", "context-bridge"],
		extraServices: [fake.schema],
		env: { EVENT_MAX_ATTEMPTS: "6", EVENT_RETRY_BASE_MS: "50" }
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function commit(projectId: string, baseVersion: number, path: string) {
	return node.broker.call<{ number: number }, unknown>(
		"projects.commit",
		{ id: projectId, baseVersion, message: `add ${path}`, changes: [{ op: "add", path, content: `${path}\n` }] },
		{ meta: { user } }
	);
}

test("each new version is indexed once", async () => {
	const p = await node.broker.call<{ id: string }, unknown>("projects.create", { name: "b1" }, { meta: { user } });
	await commit(p.id, 0, "a.ts");
	await commit(p.id, 1, "b.ts");
	await eventually(() => ctxState.indexed.filter(i => i.projectId === p.id).length === 2, 20_000);
	expect(ctxState.indexed.filter(i => i.projectId === p.id).sort((a, b) => a.version - b.version)).toEqual([
		{ projectId: p.id, version: 1 },
		{ projectId: p.id, version: 2 }
	]);
	const total = node.broker.metrics.getMetric("context.bridge.index.total");
	expect(Number(total?.get({ outcome: "ok" })?.value)).toBeGreaterThanOrEqual(2);
});

test("a context service that fails is retried through the bus until the version is indexed", async () => {
	const p = await node.broker.call<{ id: string }, unknown>("projects.create", { name: "b2" }, { meta: { user } });
	const failedBefore = Number(
		node.broker.metrics.getMetric("context.bridge.index.total")?.get({ outcome: "failed" })?.value ?? 0
	);
	ctxState.failIndex = 3;
	await commit(p.id, 0, "c.ts");
	await eventually(() => ctxState.indexed.some(i => i.projectId === p.id), 30_000);
	expect(ctxState.failIndex).toBe(0);
	expect(ctxState.indexed.filter(i => i.projectId === p.id)).toEqual([{ projectId: p.id, version: 1 }]);
	const failed = Number(
		node.broker.metrics.getMetric("context.bridge.index.total")?.get({ outcome: "failed" })?.value ?? 0
	);
	expect(failed - failedBefore).toBe(3);
});
