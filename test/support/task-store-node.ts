/**
 * A node hosting only the tasks service on its own database, and a TaskStore on its pool: the harness
 * of the tests that run the store's statements against PostgreSQL. Registers beforeAll/afterAll; the
 * fields are set once beforeAll ran.
 */
import { TaskStore } from "../../src/tasks/store";
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
