/**
 * The generated TypeScript client (clients/typescript) drives a full journey against the whole
 * platform in one node: register, project, commit, task, its events over SSE, balance. Every call is
 * typed from the OpenAPI document, and every answer is also checked against it (the suites' fetch hook).
 */
import { createForgeClient, bearer, readEvents } from "../../../clients/typescript/src";
import type { ForgeNode } from "../../../app/node";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { startFakeOpenAI } from "../../support/fake-openai";
import type { FakeServer } from "../../support/fake-llm-server";

jest.setTimeout(90_000);

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let openai: FakeServer;

beforeAll(async () => {
	db = await createTestDatabase();
	openai = await startFakeOpenAI();
	openai.setDefault({ kind: "ok", chunks: ["Hello ", "from ", "the model."], usage: true, chunkDelayMs: 30 });
	node = await startTestNode({
		db,
		services: ["api", "users", "projects", "payments", "tasks", "ai"],
		env: { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: openai.url, AUTH_SESSION_CHECK: "true" }
	});
});
afterAll(async () => {
	await node?.stop();
	await openai?.close();
	await db?.drop();
});

test("register → project → commit → task → events → balance, through the typed client", async () => {
	const ff = createForgeClient({ baseUrl: node.baseUrl });
	const account = { email: `journey_${Date.now()}@example.com`, password: "correct horse battery staple" };
	const reg = await ff.POST("/api/v1/auth/register", { body: account });
	expect(reg.response.status).toBe(202);
	expect(reg.data).toMatchObject({ status: "pending", email: account.email });
	const login = await ff.POST("/api/v1/auth/login", { body: account });
	expect(login.response.status).toBe(200);
	const signedIn = login.data!;
	if (!("accessToken" in signedIn)) throw new Error("no session: the account has no second factor");
	expect(signedIn.tokenType).toBe("Bearer");
	ff.use(bearer(signedIn.accessToken));

	await node.broker.call("payments.grant", {
		userId: signedIn.user.id,
		credits: 50_000,
		operator: "e2e-test",
		reason: "test credit",
		source: "paid"
	});

	const project = await ff.POST("/api/v1/projects", { body: { name: "journey" } });
	expect(project.response.status).toBe(201);
	const projectId = project.data!.id;

	const commit = await ff.POST("/api/v1/projects/{id}/versions", {
		params: { path: { id: projectId } },
		body: {
			baseVersion: 0,
			message: "first",
			changes: [{ op: "add", path: "README.md", content: "# journey\n" }]
		}
	});
	expect(commit.response.status).toBe(201);
	expect(commit.data!.number).toBe(1);

	const submitted = await ff.POST("/api/v1/tasks", {
		body: { projectId, kind: "chat", prompt: "Say hello", model: "gpt-4o-mini" }
	});
	expect(submitted.response.status).toBe(202);
	const taskId = submitted.data!.task.id;

	const stream = await ff.GET("/api/v1/tasks/{id}/events", {
		params: { path: { id: taskId } },
		parseAs: "stream"
	});
	expect(stream.response.headers.get("content-type")).toContain("text/event-stream");
	const events = await readEvents(stream.response.body!, e => ["completed", "failed", "cancelled"].includes(e.event));
	expect(events[events.length - 1].event).toBe("completed");

	const task = await ff.GET("/api/v1/tasks/{id}", { params: { path: { id: taskId } } });
	expect(task.data!.state).toBe("succeeded");
	const cost = task.data!.costCredits!;
	expect(cost).toBeGreaterThan(0);

	const balance = await ff.GET("/api/v1/billing/balance");
	expect(balance.data).toMatchObject({ available: 50_000 - cost, held: 0, tier: "free" });
});
