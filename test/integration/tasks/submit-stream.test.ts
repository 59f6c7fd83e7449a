/**
 * POST /tasks with `Accept: text/event-stream` (docs/api.md): the submission answered with the new
 * task's event stream, on the real tasks and ai services (dev provider, the lease at insert: the
 * worker starts at once). Errors before the task exists stay JSON; an idempotent resubmission
 * streams the task it made; the stream cap refuses before anything is submitted; a client that
 * goes away mid-stream leaves the task to run and settle.
 */
import http from "node:http";
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { createTestDatabase, eventually, startTestNode, type TestDatabase } from "../../support/env";
import { taskStreamHubOf } from "../../../src/tasks/stream-hub";
import { ALL, api, makeUser, readSseResponse, type SseEvent, type TestNode } from "./helpers";

jest.setTimeout(90_000);

let db: TestDatabase;
let node: TestNode;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: [...ALL, "ai"],
		env: {
			RATE_LIMIT_PER_MINUTE: "100000",
			AI_DEV_PROVIDER: "true",
			AI_LEASE_AT_INSERT: "true",
			AI_POLL_MS: "200",
			TASKS_SSE_MAX_PER_USER: "2"
		}
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

interface Streamed {
	status: number;
	headers: http.IncomingHttpHeaders;
	events: SseEvent[];
	body: string;
}

/** POST /tasks with Accept: text/event-stream; reads frames until the end (or `until`, then disconnects). */
function postStream(
	token: string | null,
	body: unknown,
	opts: { headers?: Record<string, string>; until?: (ev: SseEvent) => boolean } = {}
): Promise<Streamed> {
	return new Promise((resolve, reject) => {
		const payload = JSON.stringify(body);
		const req = http.request(
			new URL(`${node.baseUrl}/api/v1/tasks`),
			{
				method: "POST",
				headers: {
					...(token ? { Authorization: `Bearer ${token}` } : {}),
					"Content-Type": "application/json",
					Accept: "text/event-stream",
					...opts.headers
				}
			},
			res =>
				void readSseResponse(req, res, { until: opts.until, timeoutMs: 20_000 }).then(r =>
					resolve({ status: res.statusCode ?? 0, headers: res.headers, events: r.events, body: r.raw })
				)
		);
		req.on("error", err => {
			if ((err as NodeJS.ErrnoException).code === "ECONNRESET") return;
			reject(err);
		});
		req.end(payload);
	});
}

const chat = (projectId: string, prompt = `hello ${randomUUID()}`) => ({
	projectId,
	kind: "chat",
	prompt,
	model: "dev-echo"
});

async function taskCount(userId: string): Promise<number> {
	const [row] = (await node.runtime.sequelize.query(`SELECT count(*)::int AS n FROM tasks WHERE user_id = $1`, {
		bind: [userId],
		type: QueryTypes.SELECT
	})) as Array<{ n: number }>;
	return row.n;
}

const balance = async (token: string) => (await api(node, "GET", "/billing/balance", token)).body;

function checkOrdered(events: SseEvent[]) {
	// ids grow along the stream; deltas numbered 0..n-1 once each, inside the run's version
	const ids = events.map(e => e.id!.split(":").map(Number));
	for (let i = 1; i < ids.length; i++)
		expect(ids[i][0] * 1e6 + ids[i][1]).toBeGreaterThan(ids[i - 1][0] * 1e6 + ids[i - 1][1]);
	const deltas = events.filter(e => e.event === "delta").map(e => e.data as { seq: number; text: string });
	expect(deltas.map(d => d.seq)).toEqual(deltas.map((_, i) => i));
	return deltas;
}

test("the submission answers with its stream: the submission's state, every delta, the final state with its result; settled", async () => {
	const u = await makeUser(node, "pro", 1_000);
	for (let round = 0; round < 5; round++) {
		const r = await postStream(u.token, chat(u.projectId));
		expect(r.status).toBe(200);
		expect(r.headers["content-type"]).toMatch(/^text\/event-stream/);
		const names = r.events.map(e => e.event);
		// The lease at insert: the idle worker's task is answered running, so its first event is started.
		expect(["queued", "started"]).toContain(names[0]);
		expect(names[names.length - 1]).toBe("completed");
		const deltas = checkOrdered(r.events);
		expect(deltas.length).toBeGreaterThan(0);
		const final = r.events[r.events.length - 1].data as {
			taskId: string;
			state: string;
			result: { text: string };
			costCredits: number;
		};
		expect(final.state).toBe("succeeded");
		// No delta lost between the submission and the stream's subscription: they make the result.
		expect(deltas.map(d => d.text).join("")).toBe(final.result.text);
		const t = (await api(node, "GET", `/tasks/${final.taskId}`, u.token)).body;
		expect(t.state).toBe("succeeded");
		expect(t.attempts).toBe(1);
	}
	await eventually(async () => (await balance(u.token)).held === 0, 20_000);
	// The stream's places are given back.
	expect(taskStreamHubOf(node.broker).openStreams(u.id)).toBe(0);
});

test("no event is lost when the task runs to its end before the submission's answer reaches the stream", async () => {
	// The answer of tasks.submit held back 400 ms: the worker (leased at insert) streams and finishes
	// meanwhile, so every delta and the final state arrive before the stream knows the task's id.
	const ep = (
		node.broker.registry as unknown as {
			getActionEndpoints(n: string): {
				endpoints: Array<{ action: { handler: (ctx: unknown) => Promise<unknown> } }>;
			};
		}
	).getActionEndpoints("tasks.submit").endpoints[0];
	const original = ep.action.handler;
	ep.action.handler = async (ctx: unknown) => {
		const answer = await original(ctx);
		await new Promise(r => setTimeout(r, 400));
		return answer;
	};
	try {
		const u = await makeUser(node, "pro", 1_000);
		for (let round = 0; round < 3; round++) {
			const r = await postStream(u.token, chat(u.projectId));
			expect(r.status).toBe(200);
			const names = r.events.map(e => e.event);
			expect(names[names.length - 1]).toBe("completed");
			const deltas = checkOrdered(r.events);
			const final = r.events[r.events.length - 1].data as { result: { text: string } };
			expect(deltas.length).toBeGreaterThan(0);
			expect(deltas.map(d => d.text).join("")).toBe(final.result.text);
		}
	} finally {
		ep.action.handler = original;
	}
});

test("errors before the task exists are JSON with their status, never a stream", async () => {
	const u = await makeUser(node, "pro", 1_000);
	const bad = await postStream(u.token, { projectId: u.projectId, kind: "chat" });
	expect(bad.status).toBe(422);
	expect(bad.headers["content-type"]).toMatch(/^application\/json/);
	expect(JSON.parse(bad.body)).toMatchObject({ error: { code: "VALIDATION_ERROR" } });

	const anon = await postStream(null, chat(u.projectId));
	expect(anon.status).toBe(401);
	expect(anon.headers["content-type"]).toMatch(/^application\/json/);

	const broke = await makeUser(node, "pro", 0);
	const poor = await postStream(broke.token, chat(broke.projectId));
	expect(poor.status).toBe(402);
	expect(poor.headers["content-type"]).toMatch(/^application\/json/);
	expect(JSON.parse(poor.body)).toMatchObject({ error: { code: "INSUFFICIENT_CREDITS" } });
	expect(await taskCount(broke.id)).toBe(0);
	expect(taskStreamHubOf(node.broker).openStreams(u.id)).toBe(0);
	expect(taskStreamHubOf(node.broker).openStreams(broke.id)).toBe(0);

	// Without the Accept header: the 202 JSON as ever.
	const plain = await api(node, "POST", "/tasks", u.token, chat(u.projectId));
	expect(plain.status).toBe(202);
	expect(plain.body.task.id).toEqual(expect.any(String));
});

test("an idempotent resubmission streams the task it made", async () => {
	const u = await makeUser(node, "pro", 1_000);
	const key = `stream-${randomUUID()}`;
	const body = chat(u.projectId);
	const first = await postStream(u.token, body, { headers: { "Idempotency-Key": key } });
	expect(first.status).toBe(200);
	const firstFinal = first.events[first.events.length - 1];
	expect(firstFinal.event).toBe("completed");
	const again = await postStream(u.token, body, { headers: { "Idempotency-Key": key } });
	expect(again.status).toBe(200);
	expect(again.events.map(e => e.event)).toEqual(["completed"]);
	expect(again.events[0]).toEqual(firstFinal);
	expect(await taskCount(u.id)).toBe(1);
});

test("the stream cap refuses before the submission: 429 TOO_MANY_STREAMS, no task, no credit held", async () => {
	const u = await makeUser(node, "pro", 1_000);
	const hub = taskStreamHubOf(node.broker);
	// Two streams of the user held open on this node (the cap is 2).
	const held = [hub.openStream(u.id, 2)!, hub.openStream(u.id, 2)!];
	try {
		const r = await postStream(u.token, chat(u.projectId));
		expect(r.status).toBe(429);
		expect(r.headers["content-type"]).toMatch(/^application\/json/);
		expect(JSON.parse(r.body)).toMatchObject({ error: { code: "TOO_MANY_STREAMS" } });
		expect(await taskCount(u.id)).toBe(0);
		expect(await balance(u.token)).toMatchObject({ available: 1_000, held: 0 });
	} finally {
		for (const release of held) release();
	}
});

test("a client that goes away mid-stream leaves the task running; it finishes and settles", async () => {
	const u = await makeUser(node, "pro", 1_000);
	const r = await postStream(u.token, chat(u.projectId), { until: () => true });
	expect(r.status).toBe(200);
	const id = (r.events[0].data as { taskId: string }).taskId;
	await eventually(async () => (await api(node, "GET", `/tasks/${id}`, u.token)).body.state === "succeeded", 20_000);
	const t = (await api(node, "GET", `/tasks/${id}`, u.token)).body;
	await eventually(async () => (await balance(u.token)).held === 0, 20_000);
	expect((await balance(u.token)).available).toBe(1_000 - t.costCredits);
	await eventually(async () => taskStreamHubOf(node.broker).openStreams(u.id) === 0, 5_000);
});
