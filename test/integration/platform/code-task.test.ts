/**
 * The whole platform in one node against the real PostgreSQL, Redis and RabbitMQ, with the real
 * OpenAI SDK pointed at a local server speaking its wire protocol: a user registers, gets credits,
 * creates a project, submits a code task, watches it over SSE, and ends with a new project version
 * written by the model and a ledger where exactly the task's cost was spent once.
 */
import type { ForgeNode } from "../../../app/node";
import { createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import { startFakeOpenAI } from "../../support/fake-openai";
import type { FakeServer } from "../../support/fake-llm-server";
import { signUp } from "../../support/sign-up";

jest.setTimeout(90_000);

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let openai: FakeServer;

const CODE_ANSWER = [
	"Here is the change.\n",
	"```ts path=src/greet.ts\n",
	"export const greet = (name: string) => `Hello, ${name}!`;\n",
	"```\n",
	"```delete path=README.old\n",
	"```\n"
];

beforeAll(async () => {
	db = await createTestDatabase();
	openai = await startFakeOpenAI();
	// Spread over ~300 ms so the SSE client is connected while the answer streams.
	openai.setDefault({ kind: "ok", chunks: CODE_ANSWER, usage: true, chunkDelayMs: 50 });
	node = await startTestNode({
		db,
		services: ["api", "users", "projects", "payments", "tasks", "ai"],
		env: {
			OPENAI_API_KEY: "sk-test",
			OPENAI_BASE_URL: openai.url,
			AUTH_SESSION_CHECK: "true",
			RATE_LIMIT_ANON_PER_MINUTE: "10000",
			LOGIN_THROTTLE_DISABLED: "false"
		}
	});
});
afterAll(async () => {
	await node?.stop();
	await openai?.close();
	await db?.drop();
});

async function api(method: string, path: string, token?: string, body?: unknown) {
	const res = await fetch(node.baseUrl + "/api/v1" + path, {
		method,
		headers: {
			...(token ? { authorization: `Bearer ${token}` } : {}),
			...(body ? { "content-type": "application/json" } : {})
		},
		body: body ? JSON.stringify(body) : undefined
	});
	const text = await res.text();
	return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function readSse(path: string, token: string, until: (ev: string) => boolean) {
	const res = await fetch(node.baseUrl + "/api/v1" + path, {
		headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" }
	});
	expect(res.status).toBe(200);
	expect(res.headers.get("content-type")).toContain("text/event-stream");
	const reader = res.body!.getReader();
	const events: Array<{ event: string; data: any }> = []; // parsed JSON of each event
	let buf = "";
	const decoder = new TextDecoder();
	for (;;) {
		const { value, done } = await reader.read();
		if (done) break;
		buf += decoder.decode(value, { stream: true });
		let i: number;
		while ((i = buf.indexOf("\n\n")) >= 0) {
			const block = buf.slice(0, i);
			buf = buf.slice(i + 2);
			const event = /^event: (.*)$/m.exec(block)?.[1];
			const data = /^data: (.*)$/m.exec(block)?.[1];
			if (event && data) events.push({ event, data: JSON.parse(data) });
		}
		if (events.some(e => until(e.event))) break;
	}
	await reader.cancel().catch(() => undefined);
	return events;
}

test("register → credits → project → code task over SSE → new version, settled once", async () => {
	const reg = await signUp(node, "Dev@Example.com", "correct horse battery staple");
	const token: string = reg.accessToken;
	expect(typeof token).toBe("string");
	const me = await api("GET", "/users/me", token);
	expect(me.status).toBe(200);
	const userId: string = me.json.id;

	await node.broker.call("payments.grant", {
		userId,
		credits: 50_000,
		operator: "e2e-test",
		reason: "test credit",
		source: "paid"
	});
	const before = await api("GET", "/billing/balance", token);
	expect(before.json).toMatchObject({ available: 50_000, held: 0, tier: "free" });

	const project = await api("POST", "/projects", token, { name: "e2e" });
	expect(project.status).toBe(201);
	const projectId: string = project.json.id;
	const v1 = await api("POST", `/projects/${projectId}/versions`, token, {
		baseVersion: 0,
		message: "initial",
		changes: [
			{ op: "add", path: "src/greet.ts", content: "export const greet = () => 'hi';\n" },
			{ op: "add", path: "README.old", content: "old\n" }
		]
	});
	expect(v1.status).toBe(201);

	const submit = await api("POST", "/tasks", token, {
		projectId,
		kind: "code",
		prompt: "Make greet take a name",
		model: "gpt-4o-mini"
	});
	expect(submit.status).toBe(202);
	const taskId: string = submit.json.task.id;
	// The node's idle worker took it in its insert (docs/task-lifecycle.md, "Dispatch"): running, no position.
	expect(submit.json.task).toMatchObject({ state: "running", attempts: 1 });
	expect(submit.json.position).toBeNull();

	const events = await readSse(`/tasks/${taskId}/events`, token, e =>
		["completed", "failed", "cancelled"].includes(e)
	);
	const names = events.map(e => e.event).filter(n => n !== "position");
	// The current state comes first: queued, or started when a worker was quicker than the client.
	expect(["queued", "started"]).toContain(names[0]);
	expect(names[names.length - 1]).toBe("completed");
	// Deltas arrive in order while it streams (a late client sees the tail; the result holds it all).
	const deltas = events
		.filter(e => e.event === "delta")
		.map(e => e.data.text)
		.join("");
	expect(deltas.length).toBeGreaterThan(0);
	expect(CODE_ANSWER.join("").endsWith(deltas)).toBe(true);
	expect(events[events.length - 1].data.result.text.trimEnd()).toBe(CODE_ANSWER.join("").trimEnd());

	const task = await api("GET", `/tasks/${taskId}`, token);
	expect(task.status).toBe(200);
	const t = task.json;
	expect(t.state).toBe("succeeded");
	expect(t.result.text).toContain("Here is the change.");
	expect(t.costCredits).toBeGreaterThan(0);

	// Tokens per minute: the admission counted the worst case; the run gave back what it did not use,
	// to the window that counted it (named by its end on Redis's clock, carried by the task).
	const { UsageLimiter } = await import("../../../src/ai/limits");
	const counted = await new UsageLimiter(node.runtime.redis, node.config.redisPrefix).tokensCounted(userId, "free");
	expect(counted).toBe(t.usage.promptTokens + t.usage.completionTokens);

	// The model's change set became version 2, written on the user's behalf.
	const file = await fetch(`${node.baseUrl}/api/v1/projects/${projectId}/files/src/greet.ts`, {
		headers: { authorization: `Bearer ${token}` }
	});
	expect(file.status).toBe(200);
	expect(await file.text()).toBe("export const greet = (name: string) => `Hello, ${name}!`;\n");
	const gone = await fetch(`${node.baseUrl}/api/v1/projects/${projectId}/files/README.old`, {
		headers: { authorization: `Bearer ${token}` }
	});
	expect(gone.status).toBe(404);

	// Exactly the task's cost left the balance, nothing is held, and the settlement happened once.
	const after = await api("GET", "/billing/balance", token);
	expect(after.json.held).toBe(0);
	expect(before.json.available - after.json.available).toBe(t.costCredits);
	const ledger = await api("GET", "/billing/ledger?limit=50", token);
	expect(ledger.status).toBe(200);
	const forTask = (ledger.json.items as Array<Record<string, unknown>>).filter(e =>
		JSON.stringify(e).includes(taskId)
	);
	expect(forTask.map(e => e.kind).sort()).toEqual(["reserve", "settle"]);
	const settle = forTask.find(e => e.kind === "settle")!;
	const reserve = forTask.find(e => e.kind === "reserve")!;
	expect(settle.heldDelta).toBe(-(reserve.heldDelta as number));
	expect(-(reserve.availableDelta as number) - (settle.availableDelta as number)).toBe(t.costCredits);

	// The provider saw one request, through the real SDK, with streaming on.
	expect(openai.requests).toHaveLength(1);
	expect(openai.requests[0].body.stream).toBe(true);
});

test("project members are real accounts: a registered colleague is added and can read; an unknown id is 404", async () => {
	const owner = await signUp(node, "owner@example.com", "correct horse battery staple");
	const mate = await signUp(node, "mate@example.com", "correct horse battery staple");
	const project = await api("POST", "/projects", owner.accessToken, { name: "shared" });
	expect(project.status).toBe(201);
	const id: string = project.json.id;
	const added = await api("PUT", `/projects/${id}/members/${mate.userId}`, owner.accessToken, {
		role: "viewer"
	});
	expect(added.status).toBe(200);
	expect((await api("GET", `/projects/${id}`, mate.accessToken)).status).toBe(200);
	const ghost = await api("PUT", `/projects/${id}/members/5f0c9a8e-1d2b-4c3d-8e9f-0a1b2c3d4e5f`, owner.accessToken, {
		role: "viewer"
	});
	expect(ghost.status).toBe(404);
	expect(ghost.json.error.code).toBe("USER_NOT_FOUND");
	const members = await api("GET", `/projects/${id}/members`, owner.accessToken);
	expect(members.json.items.map((m: { userId: string }) => m.userId).sort()).toEqual(
		[owner.userId, mate.userId].sort()
	);
});
