/**
 * A node hosting only the tasks service on its own database, and a TaskStore on its pool: the harness
 * of the tests that run the store's statements against PostgreSQL. Registers beforeAll/afterAll; the
 * fields are set once beforeAll ran.
 */
import { randomUUID } from "node:crypto";
import { TaskStore, type NewTask } from "../../src/tasks/store";
import { createTestDatabase, startTestNode, type TestDatabase } from "./env";

export interface TaskStoreNode {
	db: TestDatabase;
	node: Awaited<ReturnType<typeof startTestNode>>;
	store: TaskStore;
}

export function taskStoreNode(): TaskStoreNode {
	const h = {} as TaskStoreNode;
	beforeAll(async () => {
		h.db = await createTestDatabase();
		h.node = await startTestNode({ db: h.db, services: ["tasks"], env: { LOG_LEVEL: "error" } });
		h.store = new TaskStore(h.node.runtime.sequelize);
	});
	afterAll(async () => {
		await h.node?.stop();
		await h.db?.drop();
	});
	return h;
}

/**
 * A queued chat task row for `TaskStore.insert` with the fields the queue does not look at filled in
 * (a one-credit hold, no models, no idempotency key); the rest from `p`.
 */
export function newTaskRow(
	p: Partial<NewTask> & Pick<NewTask, "userId" | "projectId" | "tier" | "enqueuedAt">
): NewTask {
	return {
		id: randomUUID(),
		kind: "chat",
		prompt: "x",
		request: {},
		prepared: { models: [], promptTokens: 0, contextTokensBudget: 0, maxOutputTokens: 1, maxCostCredits: 1 },
		requestHash: "h",
		idempotencyKey: null,
		maxCostCredits: 1,
		boostMs: 0,
		maxAttempts: 3,
		notBefore: null,
		...p
	};
}
