/**
 * A node hosting only the tasks service on its own database, and a TaskStore on its pool: the harness
 * of the tests that run the store's statements against PostgreSQL. Registers beforeAll/afterAll; the
 * fields are set once beforeAll ran. Also the queue's rows and admin statements that these tests and
 * bench/queue share.
 */
import { randomUUID } from "node:crypto";
import pg from "pg";
import { TIER_ORDER } from "../../src/domain/tiers";
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

/**
 * `tasks` queued tasks (newTaskRow) inserted one by one: users `u0`… taken in turn (`users` of them),
 * project `p`, the four tiers in turn with boosts 0, 30, 60 and 90 s, enqueued 100 ms apart from ten
 * minutes before `now` (the clock at each insert when not given).
 */
export async function seedQueue(
	store: TaskStore,
	{ tasks = 400, users = 20, now }: { tasks?: number; users?: number; now?: number } = {}
): Promise<void> {
	for (let i = 0; i < tasks; i++)
		await store.insert(
			newTaskRow({
				userId: `u${i % users}`,
				projectId: "p",
				tier: TIER_ORDER[i % 4],
				boostMs: (i % 4) * 30_000,
				enqueuedAt: (now ?? Date.now()) - 600_000 + i * 100
			})
		);
}

/**
 * `sql` on its own connection to `url` with no statement timeout (the node's pool has one; VACUUM,
 * ANALYZE and large INSERT … SELECTs take longer).
 */
export async function admin(url: string, sql: string): Promise<void> {
	const c = new pg.Client({ connectionString: url });
	await c.connect();
	try {
		await c.query(`SET statement_timeout = 0`);
		await c.query(sql);
	} finally {
		await c.end();
	}
}
