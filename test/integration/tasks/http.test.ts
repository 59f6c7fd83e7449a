/**
 * The tasks service through the gateway over HTTP, with the real users, projects and payments
 * services and the fake ai worker: submit, idempotency, ownership, balance, bad bodies, cancel,
 * retries, SSE, stats and metrics.
 */
import { QueryTypes } from "sequelize";
import { randomUUID } from "node:crypto";
import { createTestDatabase, type TestDatabase } from "../../support/env";
import { fakeAiWorker, type FakeRun } from "../../support/fake-ai-worker";
import { api, holdOf, makeUser, readSse, startTasksNode, waitFor, type TestNode } from "./helpers";

jest.setTimeout(60_000);

let db: TestDatabase;
let node: TestNode;
const runs: FakeRun[] = [];
const failOnce = new Set<string>();

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTasksNode(
		db,
		[
			fakeAiWorker({
				slots: 2,
				price: 100,
				cost: 40,
				runMs: task => (task.prompt.includes("slow") ? 3_000 : 150),
				deltas: 3,
				record: r => runs.push(r),
				refusePrompt: "TOO_LONG",
				failWith: task => {
					if (task.prompt.includes("flaky") && task.attempt === 1)
						return { code: "PROVIDER_TIMEOUT", retryable: true };
					if (task.prompt.includes("broken"))
						return { code: "BAD_OUTPUT", message: "unusable", retryable: false };
					if (failOnce.has(task.taskId)) return null;
					return null;
				}
			})
		],
		{
			TASKS_RETRY_BASE_MS: "50",
			TASKS_RETRY_MAX_MS: "100",
			TASKS_SSE_KEEPALIVE_MS: "300",
			TASKS_SSE_MAX_PER_USER: "2"
		}
	);
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function finished(token: string, id: string) {
	return waitFor(async () => {
		const r = await api(node, "GET", `/tasks/${id}`, token);
		return ["succeeded", "failed", "cancelled"].includes(r.body.state) ? r.body : null;
	});
}

describe("submit", () => {
	test("202 with the task, its position and expected start; it runs, is settled once, and is listed", async () => {
		const u = await makeUser(node, "pro");
		const r = await api(node, "POST", "/tasks", u.token, { projectId: u.projectId, kind: "chat", prompt: "hello" });
		expect(r.status).toBe(202);
		expect(r.headers.get("x-request-id")).toBeTruthy();
		expect(r.body.task).toMatchObject({
			projectId: u.projectId,
			kind: "chat",
			state: "queued",
			tier: "pro",
			maxCostCredits: 100,
			attempts: 0,
			settlement: "none"
		});
		expect(r.body.position).toBe(1);
		expect(Date.parse(r.body.expectedStartAt)).toBeGreaterThanOrEqual(Date.now() - 5_000);
		expect(r.body.admission).toEqual({ action: "accepted" });

		const done = await finished(u.token, r.body.task.id);
		expect(done).toMatchObject({
			state: "succeeded",
			costCredits: 40,
			attempts: 1,
			result: { text: `done ${r.body.task.id}` },
			usage: { promptTokens: 10, completionTokens: 20 }
		});
		expect(done.nodeId).toBe(node.broker.nodeID);
		await waitFor(async () => (await holdOf(node, r.body.task.id))?.state === "settled");
		expect((await holdOf(node, r.body.task.id))!.list_actual_cost).toBe("40");
		await waitFor(
			async () => (await api(node, "GET", `/tasks/${r.body.task.id}`, u.token)).body.settlement === "settled"
		);

		const list = await api(node, "GET", "/tasks?limit=10", u.token);
		expect(list.status).toBe(200);
		expect(list.body.items.map((t: { id: string }) => t.id)).toEqual([r.body.task.id]);
		expect(list.body.nextCursor).toBeNull();
	});

	test("the same Idempotency-Key returns the original task with 200; another body with it is refused", async () => {
		const u = await makeUser(node, "free");
		const key = `key-${randomUUID()}`;
		const body = { projectId: u.projectId, kind: "chat", prompt: "once" };
		const first = await api(node, "POST", "/tasks", u.token, body, { "Idempotency-Key": key });
		expect(first.status).toBe(202);
		const again = await api(node, "POST", "/tasks", u.token, body, { "Idempotency-Key": key });
		expect(again.status).toBe(200);
		expect(again.body.task.id).toBe(first.body.task.id);
		const other = await api(
			node,
			"POST",
			"/tasks",
			u.token,
			{ ...body, prompt: "twice" },
			{ "Idempotency-Key": key }
		);
		expect(other.status).toBe(422);
		expect(other.body.error.code).toBe("IDEMPOTENCY_KEY_REUSED");
		// Concurrent resubmissions: one task, one hold.
		const key2 = `key-${randomUUID()}`;
		const burst = await Promise.all(
			[1, 2, 3, 4].map(() => api(node, "POST", "/tasks", u.token, body, { "Idempotency-Key": key2 }))
		);
		const ids = new Set(burst.map(b => b.body.task.id));
		expect(ids.size).toBe(1);
		expect(burst.map(b => b.status).sort()).toEqual([200, 200, 200, 202]);
		const [{ n }] = (await node.runtime.sequelize.query(
			`SELECT count(*)::int AS n FROM credit_holds WHERE user_id = $1 AND state = 'held'`,
			{ bind: [u.id], type: QueryTypes.SELECT }
		)) as unknown as Array<{ n: number }>;
		expect(n).toBeLessThanOrEqual(2); // the first key's task may still be running
		await finished(u.token, first.body.task.id);
		await finished(u.token, [...ids][0]);
	});

	test("someone else's project is 404 and no hold is made", async () => {
		const owner = await makeUser(node, "pro");
		const other = await makeUser(node, "pro");
		const r = await api(node, "POST", "/tasks", other.token, {
			projectId: owner.projectId,
			kind: "chat",
			prompt: "peek"
		});
		expect(r.status).toBe(404);
		expect(r.body.error.code).toBe("NOT_FOUND");
		const [{ n }] = (await node.runtime.sequelize.query(
			`SELECT count(*)::int AS n FROM credit_holds WHERE user_id = $1`,
			{ bind: [other.id], type: QueryTypes.SELECT }
		)) as unknown as Array<{ n: number }>;
		expect(n).toBe(0);
	});

	test("without balance: 402 INSUFFICIENT_CREDITS and no task", async () => {
		const u = await makeUser(node, "pro", 0);
		const r = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "no money"
		});
		expect(r.status).toBe(402);
		expect(r.body.error.code).toBe("INSUFFICIENT_CREDITS");
		expect((await api(node, "GET", "/tasks", u.token)).body.items).toEqual([]);
	});

	test("malformed bodies are 4xx with the contract's error shape", async () => {
		const u = await makeUser(node, "pro");
		const bad = async (body: unknown, status: number, code: string, field?: string) => {
			const r = await api(node, "POST", "/tasks", u.token, body);
			expect({ status: r.status, code: r.body.error?.code }).toEqual({ status, code });
			expect(r.body.requestId).toBeTruthy();
			if (field) expect(r.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
		};
		await bad("{not json", 400, "MALFORMED_JSON");
		await bad({ kind: "chat", prompt: "x" }, 422, "VALIDATION_ERROR", "projectId");
		await bad({ projectId: "nope", kind: "chat", prompt: "x" }, 422, "VALIDATION_ERROR", "projectId");
		await bad({ projectId: u.projectId, kind: "poem", prompt: "x" }, 422, "VALIDATION_ERROR", "kind");
		await bad({ projectId: u.projectId, kind: "chat", prompt: "" }, 422, "VALIDATION_ERROR", "prompt");
		await bad({ projectId: u.projectId, kind: "compare", prompt: "x" }, 422, "VALIDATION_ERROR", "models");
		await bad(
			{ projectId: u.projectId, kind: "chat", prompt: "x", models: ["a", "b"] },
			422,
			"VALIDATION_ERROR",
			"models"
		);
		await bad(
			{ projectId: u.projectId, kind: "chat", prompt: "x", maxOutputTokens: -1 },
			422,
			"VALIDATION_ERROR",
			"maxOutputTokens"
		);
		await bad({ projectId: u.projectId, kind: "chat", prompt: "TOO_LONG" }, 422, "PROMPT_TOO_LONG");
		const noCt = await fetch(`${node.baseUrl}/api/v1/tasks`, {
			method: "POST",
			headers: { Authorization: `Bearer ${u.token}`, "Content-Type": "text/plain" },
			body: "x"
		});
		expect(noCt.status).toBe(415);
		const anon = await api(node, "POST", "/tasks", null, { projectId: u.projectId, kind: "chat", prompt: "x" });
		expect(anon.status).toBe(401);
		const badKey = await api(
			node,
			"POST",
			"/tasks",
			u.token,
			{ projectId: u.projectId, kind: "chat", prompt: "x" },
			{ "Idempotency-Key": "short" }
		);
		expect(badKey.status).toBe(422);
	});
});

describe("task access", () => {
	test("someone else's task is 404 on get, cancel and events", async () => {
		const a = await makeUser(node, "pro");
		const b = await makeUser(node, "pro");
		const r = await api(node, "POST", "/tasks", a.token, { projectId: a.projectId, kind: "chat", prompt: "mine" });
		expect((await api(node, "GET", `/tasks/${r.body.task.id}`, b.token)).status).toBe(404);
		expect((await api(node, "POST", `/tasks/${r.body.task.id}/cancel`, b.token)).status).toBe(404);
		const sse = await readSse(node.baseUrl, `/tasks/${r.body.task.id}/events`, b.token);
		expect(sse.status).toBe(404);
		expect(JSON.parse(sse.body!).error.code).toBe("NOT_FOUND");
		expect((await api(node, "GET", `/tasks/${randomUUID()}`, a.token)).status).toBe(404);
		await finished(a.token, r.body.task.id);
	});
});

describe("cancel", () => {
	test("a queued task is cancelled at once and its hold released", async () => {
		const u = await makeUser(node, "free");
		// free users run one task at a time: the second waits in the queue behind the slow first.
		const first = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "slow one"
		});
		await waitFor(
			async () => (await api(node, "GET", `/tasks/${first.body.task.id}`, u.token)).body.state === "running"
		);
		const second = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "waiting"
		});
		expect(second.body.task.state).toBe("queued");
		const c = await api(node, "POST", `/tasks/${second.body.task.id}/cancel`, u.token);
		expect(c.status).toBe(200);
		expect(c.body).toMatchObject({ state: "cancelled", costCredits: 0 });
		await waitFor(async () => (await holdOf(node, second.body.task.id))?.state === "released");
		expect(runs.some(run => run.taskId === second.body.task.id)).toBe(false);
		// Cancelling again is harmless; a finished task cannot be cancelled.
		expect((await api(node, "POST", `/tasks/${second.body.task.id}/cancel`, u.token)).status).toBe(200);

		// A running task: the heartbeat answers cancel, the worker reports CANCELLED with partial usage.
		const c1 = await api(node, "POST", `/tasks/${first.body.task.id}/cancel`, u.token);
		expect(c1.status).toBe(200);
		expect(c1.body).toMatchObject({ state: "running", cancelRequested: true });
		const done = await finished(u.token, first.body.task.id);
		expect(done).toMatchObject({ state: "cancelled", costCredits: 20, error: { code: "CANCELLED" } });
		await waitFor(async () => (await holdOf(node, first.body.task.id))?.state === "settled");
		expect((await holdOf(node, first.body.task.id))!.list_actual_cost).toBe("20");
		const again = await api(node, "POST", `/tasks/${first.body.task.id}/cancel`, u.token);
		expect(again.status).toBe(200);
	});

	test("a succeeded task cannot be cancelled (409)", async () => {
		const u = await makeUser(node, "pro");
		const r = await api(node, "POST", "/tasks", u.token, { projectId: u.projectId, kind: "chat", prompt: "quick" });
		await finished(u.token, r.body.task.id);
		const c = await api(node, "POST", `/tasks/${r.body.task.id}/cancel`, u.token);
		expect(c.status).toBe(409);
		expect(c.body.error.code).toBe("TASK_FINISHED");
	});
});

describe("drain (operators)", () => {
	test("a drained node leases nothing while its in-flight task finishes; undo resumes leasing", async () => {
		const u = await makeUser(node, "pro");
		const nodeID = node.broker.nodeID; // the fake worker runs on this node
		const slow = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "slow drain"
		});
		await waitFor(
			async () => (await api(node, "GET", `/tasks/${slow.body.task.id}`, u.token)).body.state === "running"
		);
		expect(await node.broker.call("tasks.drain", { nodeID })).toEqual({ nodeID, drained: true });

		const queued = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "after drain"
		});
		expect(queued.status).toBe(202);
		// Asked directly, the drained node gets nothing although a task waits; another node would.
		expect(await node.broker.call("tasks.lease", { nodeID, slots: 2 })).toEqual([]);
		// The in-flight task finishes and settles; the queued one is still waiting (the worker has polled
		// many times meanwhile: every 100 ms and on each submission).
		expect((await finished(u.token, slow.body.task.id)).state).toBe("succeeded");
		expect((await api(node, "GET", `/tasks/${queued.body.task.id}`, u.token)).body.state).toBe("queued");

		expect(await node.broker.call("tasks.drain", { nodeID, undo: true })).toEqual({
			nodeID,
			drained: false,
			changed: true
		});
		expect((await finished(u.token, queued.body.task.id)).state).toBe("succeeded");
		expect(await node.broker.call("tasks.drain", { nodeID, undo: true })).toEqual({
			nodeID,
			drained: false,
			changed: false
		});
	});
});

describe("failures", () => {
	test("a retryable failure is retried with backoff and then succeeds; a terminal one fails with the reason", async () => {
		const u = await makeUser(node, "team");
		const flaky = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "flaky"
		});
		const broken = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "broken"
		});
		const f = await finished(u.token, flaky.body.task.id);
		expect(f).toMatchObject({ state: "succeeded", attempts: 2 });
		const b = await finished(u.token, broken.body.task.id);
		expect(b).toMatchObject({ state: "failed", attempts: 1, error: { code: "BAD_OUTPUT", message: "unusable" } });
		await waitFor(async () => (await holdOf(node, broken.body.task.id))?.state === "released");
	});

	test("a stale lease gets 409 LEASE_LOST on heartbeat, complete and fail", async () => {
		const id = randomUUID();
		const lease = randomUUID();
		for (const [action, params] of [
			["tasks.heartbeat", { taskId: id, leaseId: lease }],
			["tasks.complete", { taskId: id, leaseId: lease, result: {}, usage: {}, costCredits: 0 }],
			["tasks.fail", { taskId: id, leaseId: lease, error: { code: "X", message: "x" }, retryable: true }]
		] as const) {
			await expect(node.broker.call(action, params)).rejects.toMatchObject({ code: 409, type: "LEASE_LOST" });
		}
	});
});

describe("events (SSE)", () => {
	test("queued → started → deltas → completed, with ids, then the stream ends; a reconnect gets the final state", async () => {
		const u = await makeUser(node, "enterprise");
		const r = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "stream me"
		});
		const sse = await readSse(node.baseUrl, `/tasks/${r.body.task.id}/events`, u.token);
		expect(sse.status).toBe(200);
		expect(sse.headers["content-type"]).toMatch(/^text\/event-stream/);
		const names = sse.events.map(e => e.event);
		expect(names[names.length - 1]).toBe("completed");
		expect(names).toContain("started");
		const deltas = sse.events.filter(e => e.event === "delta");
		expect(deltas.map(d => (d.data as { text: string }).text)).toEqual(["part 0 ", "part 1 ", "part 2 "]);
		const completed = sse.events[sse.events.length - 1];
		expect(completed.data).toMatchObject({
			taskId: r.body.task.id,
			state: "succeeded",
			result: { text: `done ${r.body.task.id}` },
			costCredits: 40
		});
		// ids grow along the stream
		const ids = sse.events.filter(e => e.id).map(e => e.id!.split(":").map(Number));
		for (let i = 1; i < ids.length; i++)
			expect(ids[i][0] * 1e6 + ids[i][1]).toBeGreaterThan(ids[i - 1][0] * 1e6 + ids[i - 1][1]);

		const late = await readSse(node.baseUrl, `/tasks/${r.body.task.id}/events`, u.token);
		expect(late.events.map(e => e.event)).toEqual(["completed"]);
		const caughtUp = await readSse(node.baseUrl, `/tasks/${r.body.task.id}/events`, u.token, {
			lastEventId: completed.id
		});
		expect(caughtUp.events).toEqual([]);
	});

	test("Last-Event-ID mid-run replays only the deltas after it", async () => {
		const u = await makeUser(node, "enterprise");
		const r = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "slow stream"
		});
		const first = await readSse(node.baseUrl, `/tasks/${r.body.task.id}/events`, u.token, {
			until: ev => ev.event === "delta"
		});
		const lastDelta = first.events[first.events.length - 1];
		expect(lastDelta.data).toMatchObject({ seq: 0 });
		const rest = await readSse(node.baseUrl, `/tasks/${r.body.task.id}/events`, u.token, {
			lastEventId: lastDelta.id
		});
		expect(rest.events.map(e => e.event)).toEqual(["delta", "delta", "completed"]);
		expect(rest.events.filter(e => e.event === "delta").map(e => (e.data as { seq: number }).seq)).toEqual([1, 2]);
	});

	test("keep-alive comments flow while a task waits, and the client going away cleans up", async () => {
		const u = await makeUser(node, "free");
		const blocker = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "slow blocker"
		});
		await waitFor(
			async () => (await api(node, "GET", `/tasks/${blocker.body.task.id}`, u.token)).body.state === "running"
		);
		const waiting = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "patient"
		});
		const { taskStreamHubOf } = await import("../../../src/tasks/stream-hub");
		const hub = taskStreamHubOf(node.broker);
		const sse = await readSse(node.baseUrl, `/tasks/${waiting.body.task.id}/events`, u.token, { timeoutMs: 1_500 });
		expect(sse.events[0]).toMatchObject({ event: "queued", data: { state: "queued" } });
		expect(sse.comments).toBeGreaterThanOrEqual(1);
		await waitFor(async () => hub.listenerCount(waiting.body.task.id) === 0);
		await finished(u.token, waiting.body.task.id);
	});
});

describe("event stream cap", () => {
	test("a user holds at most TASKS_SSE_MAX_PER_USER open streams: one more is 429 TOO_MANY_STREAMS; closing one frees a place; other users are not affected", async () => {
		const u = await makeUser(node, "free");
		const other = await makeUser(node, "free");
		const blocker = await api(node, "POST", "/tasks", u.token, {
			projectId: u.projectId,
			kind: "chat",
			prompt: "slow cap blocker"
		});
		const { taskStreamHubOf } = await import("../../../src/tasks/stream-hub");
		const hub = taskStreamHubOf(node.broker);
		const id = blocker.body.task.id as string;
		const open = (token: string, timeoutMs: number) =>
			readSse(node.baseUrl, `/tasks/${id}/events`, token, { timeoutMs });
		// Two long-lived streams (they stay open while the blocker runs), then a third.
		const first = open(u.token, 1_200);
		const second = open(u.token, 1_200);
		await waitFor(async () => hub.openStreams(u.id) === 2);
		const third = await open(u.token, 1_000);
		expect(third.status).toBe(429);
		expect(third.headers["retry-after"]).toBe("5");
		expect(JSON.parse(third.body!)).toMatchObject({ error: { code: "TOO_MANY_STREAMS" } });
		expect(hub.openStreams(u.id)).toBe(2);
		// Someone else's task is a 404 and counts nothing; another user's own streams are independent.
		const foreign = await open(other.token, 1_000);
		expect(foreign.status).toBe(404);
		expect(hub.openStreams(other.id)).toBe(0);
		// The two close (client timeout): the places are free again.
		await Promise.all([first, second]);
		await waitFor(async () => hub.openStreams(u.id) === 0);
		const again = await open(u.token, 300);
		expect(again.status).toBe(200);
		await waitFor(async () => hub.openStreams(u.id) === 0);
		await finished(u.token, id);
	});
});

describe("event stream cap across gateway nodes", () => {
	test("places are counted in Redis: streams open on one gateway node count on another", async () => {
		// A second gateway node (with its own tasks replica) on the same database and Redis prefix.
		const b = await startTasksNode(db, [], {
			REDIS_PREFIX: node.config.redisPrefix,
			TASKS_SSE_MAX_PER_USER: "2",
			TASKS_SSE_KEEPALIVE_MS: "300"
		});
		try {
			const u = await makeUser(node, "free");
			const blocker = await api(node, "POST", "/tasks", u.token, {
				projectId: u.projectId,
				kind: "chat",
				prompt: "slow cross-node cap"
			});
			const id = blocker.body.task.id as string;
			const { taskStreamHubOf } = await import("../../../src/tasks/stream-hub");
			const [hubA, hubB] = [taskStreamHubOf(node.broker), taskStreamHubOf(b.broker)];
			const open = (base: string, timeoutMs: number) =>
				readSse(base, `/tasks/${id}/events`, u.token, { timeoutMs });
			const first = open(node.baseUrl, 1_500);
			const second = open(b.baseUrl, 1_500);
			await waitFor(async () => hubA.openStreams(u.id) === 1 && hubB.openStreams(u.id) === 1);
			// Each node holds only one of the user's streams, yet both refuse a third.
			for (const base of [b.baseUrl, node.baseUrl]) {
				const third = await open(base, 1_000);
				expect(third.status).toBe(429);
				expect(JSON.parse(third.body!)).toMatchObject({ error: { code: "TOO_MANY_STREAMS" } });
			}
			await Promise.all([first, second]);
			await waitFor(async () => hubA.openStreams(u.id) === 0 && hubB.openStreams(u.id) === 0);
			expect((await open(b.baseUrl, 300)).status).toBe(200);
			await finished(u.token, id);
		} finally {
			await b.stop();
		}
	});
});

describe("stats and metrics", () => {
	test("GET /queue/stats shows depth and expected wait per tier; /metrics has the queue metrics", async () => {
		const u = await makeUser(node, "pro");
		await node.broker.call("tasks.refreshStats");
		const s = await api(node, "GET", "/queue/stats", u.token);
		expect(s.status).toBe(200);
		expect(Object.keys(s.body.tiers)).toEqual(["free", "pro", "team", "enterprise"]);
		expect(s.body.capacity).toBe(2);
		expect(s.body.tiers.enterprise).toMatchObject({ depth: expect.any(Number), waitTargetMs: 30_000 });
		expect(typeof s.body.tiers.free.expectedWaitMs).toBe("number");
		expect(s.body.tiers.pro.waitP50Ms).toEqual(expect.any(Number));
		const metrics = await (await fetch(`${node.baseUrl}/metrics`)).text();
		expect(metrics).toMatch(/tasks_queue_depth\{.*tier="free".*\} \d+/);
		expect(metrics).toMatch(/tasks_dispatched_total\{.*tier="pro".*\} \d+/);
		expect(metrics).toMatch(/tasks_queue_wait_seconds_bucket\{/);
		expect((await api(node, "GET", "/queue/stats", null)).status).toBe(401);
	});
});

describe("list pages", () => {
	test("newest first in pages of `limit`; the last page has no cursor, even when it is exactly full", async () => {
		const u = await makeUser(node, "pro");
		const ids: string[] = [];
		for (const prompt of ["one", "two", "three", "four"]) {
			const r = await api(node, "POST", "/tasks", u.token, { projectId: u.projectId, kind: "chat", prompt });
			expect(r.status).toBe(202);
			ids.unshift(r.body.task.id);
		}
		const first = await api(node, "GET", "/tasks?limit=2", u.token);
		expect(first.body.items.map((t: { id: string }) => t.id)).toEqual(ids.slice(0, 2));
		expect(first.body.nextCursor).toMatch(/^c1\./);
		const second = await api(node, "GET", `/tasks?limit=2&cursor=${first.body.nextCursor}`, u.token);
		expect(second.status).toBe(200);
		expect(second.body.items.map((t: { id: string }) => t.id)).toEqual(ids.slice(2));
		expect(second.body.nextCursor).toBeNull();
		const all = await api(node, "GET", "/tasks?limit=4", u.token);
		expect(all.body.items).toHaveLength(4);
		expect(all.body.nextCursor).toBeNull();
	});

	test("a cursor that is not one of this list's → 422 on the cursor field", async () => {
		const u = await makeUser(node, "free", 0);
		const other = Buffer.from(JSON.stringify([42])).toString("base64url");
		for (const cursor of ["abc", `${"1".repeat(13)}.${randomUUID()}`, `c1.${other}`]) {
			const r = await api(node, "GET", `/tasks?cursor=${cursor}`, u.token);
			expect(r.status).toBe(422);
			expect(r.body.error).toMatchObject({
				code: "VALIDATION_ERROR",
				details: [{ field: "cursor", message: "not a cursor from this list", type: "cursor" }]
			});
		}
	});
});

describe("API keys and credit-spending routes", () => {
	async function keyOf(u: { token: string }, scopes: string[]) {
		const r = await api(node, "POST", "/users/me/api-keys", u.token, { name: `k-${randomUUID()}`, scopes });
		expect(r.status).toBe(201);
		return { "X-API-Key": r.body.key as string };
	}

	test("POST /tasks needs ai:use as well as tasks:write; a key holding both submits", async () => {
		const u = await makeUser(node, "pro");
		const body = { projectId: u.projectId, kind: "chat", prompt: "by key" };
		for (const scopes of [["tasks:write", "tasks:read"], ["ai:use"]]) {
			const r = await api(node, "POST", "/tasks", null, body, await keyOf(u, scopes));
			expect(r.status).toBe(403);
			expect(r.body.error).toMatchObject({ code: "INSUFFICIENT_SCOPE" });
		}
		const ok = await api(node, "POST", "/tasks", null, body, await keyOf(u, ["tasks:write", "ai:use"]));
		expect(ok.status).toBe(202);
		await finished(u.token, ok.body.task.id);
	});

	test("payments.reserve refuses a caller's key without ai:use; the platform's own calls are not narrowed", async () => {
		const u = await makeUser(node, "pro");
		const input = { userId: u.id, taskId: randomUUID(), maxCost: 10, tier: "pro" };
		const key = { id: u.id, role: "user", keyId: "k1", scopes: ["tasks:write"] };
		await expect(node.broker.call("payments.reserve", input, { meta: { user: key } })).rejects.toMatchObject({
			code: 403,
			type: "INSUFFICIENT_SCOPE"
		});
		await expect(node.broker.call("payments.reserve", input)).resolves.toMatchObject({ taskId: input.taskId });
		await node.broker.call("payments.release", { userId: u.id, taskId: input.taskId });
	});

	test("the OpenAPI document declares the 403 of POST /tasks", async () => {
		const doc = (await (await fetch(`${node.baseUrl}/api/openapi.json`)).json()) as {
			paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
		};
		expect(Object.keys(doc.paths["/api/v1/tasks"].post.responses)).toContain("403");
	});
});
