/**
 * Sandbox status over HTTP and the runner's internal actions, against the real PostgreSQL and Redis:
 * legal and illegal transitions, heartbeats and their timeout sweep (on two nodes at once), durable events.
 */
import { QueryTypes } from "sequelize";
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { client, expectError, text } from "./http";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let second: ForgeNode & { baseUrl: string };
let api: ReturnType<typeof client>;
let owner: string;

const env = {
	RATE_LIMIT_PER_MINUTE: "100000",
	PROJECTS_SANDBOX_HEARTBEAT_TIMEOUT_S: "2", // beats every ~300 ms: a wide margin on a loaded CI machine
	PROJECTS_SANDBOX_PROVISION_TIMEOUT_S: "2",
	PROJECTS_SWEEP_MS: "150"
};

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({ db, services: ["api", "projects"], env });
	// A second node on the same database sweeps too: each timeout must fail a sandbox once.
	second = await startTestNode({ db, services: ["projects"], env });
	api = client(node.baseUrl);
	owner = bearerFor(node.config, "runner-owner");
}, 30_000);
afterAll(async () => {
	await second?.stop();
	await node?.stop();
	await db?.drop();
});

async function project(): Promise<string> {
	const r = await api.call("POST", "/api/v1/projects", { token: owner, body: { name: "sbx" } });
	const id = r.json.id as string;
	for (let v = 0; v < 2; v++) {
		const c = await api.call("POST", `/api/v1/projects/${id}/versions`, {
			token: owner,
			body: { baseVersion: v, message: "m", changes: [text(`f${v}.txt`, `${v}`)] }
		});
		expect(c.status).toBe(201);
	}
	return id;
}

const put = (id: string, body: unknown) => api.call("PUT", `/api/v1/projects/${id}/sandbox`, { token: owner, body });
const get = (id: string) => api.call("GET", `/api/v1/projects/${id}/sandbox`, { token: owner });
const report = (projectId: string, state: string, extra: Record<string, unknown> = {}) =>
	node.broker.call("projects.sandboxReport", { projectId, state, ...extra });
const beat = (projectId: string, version?: number) =>
	node.broker.call("projects.sandboxHeartbeat", { projectId, version });

async function events(
	id: string
): Promise<Array<{ from: string; to: string; actor: string; version: number | null; failureReason: string | null }>> {
	const rows = await node.runtime.sequelize.query<{
		payload: { from: string; to: string; actor: string; version: number | null; failureReason: string | null };
	}>(
		`SELECT payload FROM outbox_events WHERE topic = 'projects.sandbox.changed' AND payload->>'projectId' = $1 ORDER BY id`,
		{ bind: [id], type: QueryTypes.SELECT }
	);
	return rows.map(({ payload: { from, to, actor, version, failureReason } }) => ({
		from,
		to,
		actor,
		version,
		failureReason
	}));
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 6000): Promise<T> {
	const end = Date.now() + ms;
	for (;;) {
		const v = await fn();
		if (ok(v) || Date.now() > end) return v;
		await new Promise(r => setTimeout(r, 100));
	}
}

describe("sandbox state machine", () => {
	test("a new project's sandbox is none", async () => {
		const id = await project();
		const r = await get(id);
		expect(r.status).toBe(200);
		expect(r.json).toEqual({
			projectId: id,
			state: "none",
			version: null,
			stateChangedAt: expect.any(String),
			startedAt: null,
			stoppedAt: null,
			lastHeartbeatAt: null,
			failureReason: null,
			heartbeatTimeoutS: 2
		});
	});

	test("legal path: start, runner reports running, heartbeats, stop, start again at an older version", async () => {
		const id = await project();
		const started = await put(id, { state: "provisioning" });
		expect(started.json).toMatchObject({ state: "provisioning", version: 2 });
		expect(await report(id, "running", { version: 2 })).toMatchObject({
			state: "running",
			version: 2,
			startedAt: expect.any(String)
		});
		const b = (await beat(id, 2)) as { lastHeartbeatAt: string };
		expect(new Date(b.lastHeartbeatAt).getTime()).toBeGreaterThan(Date.now() - 5000);
		expect((await put(id, { state: "stopped" })).json).toMatchObject({
			state: "stopped",
			stoppedAt: expect.any(String)
		});
		expect((await put(id, { state: "stopped" })).json.state).toBe("stopped"); // a retried stop is a no-op
		expect((await put(id, { state: "provisioning", version: 1 })).json).toMatchObject({
			state: "provisioning",
			version: 1,
			stoppedAt: null
		});
		expect(await report(id, "failed", { reason: "image pull failed" })).toMatchObject({
			state: "failed",
			failureReason: "image pull failed"
		});
		expect(await events(id)).toEqual([
			{ from: "none", to: "provisioning", actor: "user", version: 2, failureReason: null },
			{ from: "provisioning", to: "running", actor: "runner", version: 2, failureReason: null },
			{ from: "running", to: "stopped", actor: "user", version: 2, failureReason: null },
			{ from: "stopped", to: "provisioning", actor: "user", version: 1, failureReason: null },
			{ from: "provisioning", to: "failed", actor: "runner", version: 1, failureReason: "image pull failed" }
		]);
	});

	test("illegal transitions are 409 and change nothing", async () => {
		const id = await project();
		expectError(await put(id, { state: "running" }), 409, "ILLEGAL_SANDBOX_TRANSITION");
		expectError(await put(id, { state: "stopped" }), 409, "ILLEGAL_SANDBOX_TRANSITION");
		await expect(report(id, "running")).rejects.toMatchObject({ code: 409, type: "ILLEGAL_SANDBOX_TRANSITION" });
		await put(id, { state: "provisioning" });
		// Only the runner says it runs; the user cannot claim it.
		expectError(await put(id, { state: "running" }), 409, "SANDBOX_TRANSITION_NOT_ALLOWED");
		expectError(await put(id, { state: "failed" }), 409, "SANDBOX_TRANSITION_NOT_ALLOWED");
		expectError(await put(id, { state: "provisioning", version: 1 }), 409, "ILLEGAL_SANDBOX_TRANSITION");
		await expect(beat(id)).rejects.toMatchObject({ code: 409, type: "SANDBOX_NOT_RUNNING" });
		expect((await get(id)).json).toMatchObject({ state: "provisioning", version: 2 });
		expectError(await put(id, { state: "exploded" }), 422, "VALIDATION_ERROR");
		expectError(await put(id, { state: "stopped", version: "2" }), 422, "VALIDATION_ERROR");
		expect(await events(id)).toHaveLength(1);
	});

	test("starting at a version the project does not have is a 404; an archived project cannot start", async () => {
		const id = await project();
		expectError(await put(id, { state: "provisioning", version: 3 }), 404, "NOT_FOUND");
		await api.call("PATCH", `/api/v1/projects/${id}`, { token: owner, body: { archived: true } });
		expectError(await put(id, { state: "provisioning" }), 409, "PROJECT_ARCHIVED");
		expect((await get(id)).json.state).toBe("none");
	});

	test("a running sandbox whose heartbeats stop becomes failed, once, even with two nodes sweeping", async () => {
		const id = await project();
		await put(id, { state: "provisioning" });
		await report(id, "running");
		// Heartbeats keep it alive past the timeout...
		for (let i = 0; i < 6; i++) {
			await beat(id);
			await new Promise(r => setTimeout(r, 300));
		}
		expect((await get(id)).json.state).toBe("running");
		// ...and without them it fails.
		const failed = await until(
			() => get(id),
			r => r.json.state === "failed"
		);
		expect(failed.json).toMatchObject({
			state: "failed",
			failureReason: "heartbeat timeout",
			stoppedAt: expect.any(String)
		});
		await expect(beat(id)).rejects.toMatchObject({
			code: 409,
			type: "SANDBOX_NOT_RUNNING",
			data: { state: "failed" }
		});
		await new Promise(r => setTimeout(r, 500));
		expect((await events(id)).slice(2)).toEqual([
			{ from: "running", to: "failed", actor: "sweep", version: 2, failureReason: "heartbeat timeout" }
		]);
		// It can be started again.
		expect((await put(id, { state: "provisioning" })).json.state).toBe("provisioning");
	}, 20_000);

	test("a sandbox stuck in provisioning fails after the provisioning timeout", async () => {
		const id = await project();
		await put(id, { state: "provisioning" });
		const failed = await until(
			() => get(id),
			r => r.json.state === "failed"
		);
		expect(failed.json).toMatchObject({ state: "failed", failureReason: "provisioning timeout" });
		expect((await events(id)).map(e => `${e.from}->${e.to}:${e.actor}`)).toEqual([
			"none->provisioning:user",
			"provisioning->failed:sweep"
		]);
	}, 20_000);

	test("deleting a project stops its sandbox", async () => {
		const id = await project();
		await put(id, { state: "provisioning" });
		await report(id, "running");
		expect((await api.call("DELETE", `/api/v1/projects/${id}`, { token: owner })).status).toBe(200);
		expect((await events(id)).map(e => e.to)).toEqual(["provisioning", "running", "stopped"]);
	});
});
