/**
 * A TS gateway, a TS projects worker and two Python context nodes over the real NATS and PostgreSQL.
 * One context node is killed (SIGKILL: no goodbye) while selections run: every selection still
 * succeeds (idempotent retry on the other node, then the registry drops the dead one), none hangs.
 * Then the same with tasks: a TS node hosting the whole platform (gateway, users, projects, payments,
 * tasks, ai on the dev model) runs tasks whose prompts come from the Python nodes while one of them is
 * killed: every task succeeds, none waits much beyond CONTEXT_TIMEOUT_MS for its context, and each is
 * either selected or degraded with its reason.
 */
import { Errors } from "moleculer";
import {
	bearerFor,
	createTestDatabase,
	eventually,
	NATS_URL,
	startTestNode,
	TestDatabase,
	uniqueId
} from "../support/env";
import type { ForgeNode } from "../../app/node";
import { client } from "../integration/projects/http";
import { ContextNode, startContextNode } from "../support/context-node";
import { api, makeUser, type TestNode } from "../integration/tasks/helpers";

jest.setTimeout(180_000);

let db: TestDatabase;
let gateway: ForgeNode & { baseUrl: string };
let worker: ForgeNode & { baseUrl: string };
const py: ContextNode[] = [];
const namespace = uniqueId("ffcontext");

function contextEnv(nodeId: string): Record<string, string> {
	return {
		TRANSPORTER: NATS_URL,
		NAMESPACE: namespace,
		NODE_ID: nodeId,
		DATABASE_URL: db.url,
		LOG_LEVEL: "warn",
		HEARTBEAT_INTERVAL_S: "1",
		HEARTBEAT_TIMEOUT_S: "3"
	};
}

beforeAll(async () => {
	db = await createTestDatabase();
	const shared = {
		TRANSPORTER: NATS_URL,
		NAMESPACE: namespace,
		RATE_LIMIT_PER_MINUTE: "100000",
		HEARTBEAT_INTERVAL_S: "1",
		HEARTBEAT_TIMEOUT_S: "3"
	};
	worker = await startTestNode({ db, services: ["projects"], env: { ...shared, NODE_ID: uniqueId("projects") } });
	gateway = await startTestNode({ db, services: ["api"], env: { ...shared, NODE_ID: uniqueId("gateway") } });
	py.push(await startContextNode(contextEnv("py-ctx-a")), await startContextNode(contextEnv("py-ctx-b")));
	await gateway.broker.waitForServices(["projects", "context"], 30_000);
	await eventually(
		() => ["py-ctx-a", "py-ctx-b"].every(id => gateway.broker.registry.nodes.get(id)?.available),
		30_000,
		50
	);
}, 120_000);

afterAll(async () => {
	for (const n of py) await n.stop();
	await gateway?.stop();
	await worker?.stop();
	await db?.drop();
}, 60_000);

test("selections keep succeeding on the surviving context node when the other is killed mid-load", async () => {
	const { call } = client(gateway.baseUrl);
	const token = bearerFor(gateway.config, "carol");
	const p = await call("POST", "/api/v1/projects", { token, body: { name: "ctx-cluster" } });
	expect(p.status).toBe(201);
	const changes = Array.from({ length: 40 }, (_, i) => ({
		op: "add",
		path: `src/mod${i}.ts`,
		content: `export function handler${i}(input: string) {\n\treturn input.repeat(${i});\n}\n`
	}));
	const c = await call("POST", `/api/v1/projects/${p.json.id}/versions`, {
		token,
		body: { baseVersion: 0, message: "m", changes }
	});
	expect(c.status).toBe(201);
	const projectId = p.json.id as string;
	await gateway.broker.call("context.index", { projectId, version: 1 }, { timeout: 60_000 });

	const select = (i: number) =>
		gateway.broker.call<{ frames: Array<{ path?: string }>; usedTokens: number }, object>(
			"context.select",
			{ projectId, version: 1, query: `handler${i % 40}`, budgetTokens: 300, userId: "carol" },
			// selections are reads: the caller may retry one on another node
			{ timeout: 5_000, retries: 3 }
		);

	// both nodes answer before the kill
	const before = new Set<string>();
	for (let i = 0; i < 10; i++)
		before.add(((await gateway.broker.call("context.status", { projectId })) as { node: string }).node);
	expect([...before].sort()).toEqual(["py-ctx-a", "py-ctx-b"]);

	let done = 0;
	const failures: unknown[] = [];
	const started = Date.now();
	const load = (async () => {
		const workers = Array.from({ length: 4 }, async (_, w) => {
			for (let i = w; i < 160; i += 4) {
				const t0 = Date.now();
				try {
					const r = await select(i);
					expect(r.frames[0].path).toBe(`src/mod${i % 40}.ts`);
					expect(r.usedTokens).toBeLessThanOrEqual(300);
				} catch (err) {
					failures.push(err);
				}
				expect(Date.now() - t0).toBeLessThan(20_000); // never hangs
				done++;
			}
		});
		await Promise.all(workers);
	})();
	await eventually(() => done >= 20, 60_000, 20);
	await py[0].kill();
	await load;
	expect(failures.map(e => (e as Errors.MoleculerError).message)).toEqual([]);
	expect(done).toBe(160);
	// the registry has dropped the dead node; the survivor serves everything
	await eventually(() => gateway.broker.registry.nodes.get("py-ctx-a")?.available !== true, 10_000, 50);
	const after = ((await gateway.broker.call("context.status", { projectId })) as { node: string }).node;
	expect(after).toBe("py-ctx-b");
	expect(Date.now() - started).toBeLessThan(120_000);
});

test("tasks never hang, and keep getting context, when a context node is killed mid-load", async () => {
	const CONTEXT_TIMEOUT_MS = 1500;
	const nodeIds = ["py-ctx-c", "py-ctx-d"];
	const nodes = [await startContextNode(contextEnv(nodeIds[0])), await startContextNode(contextEnv(nodeIds[1]))];
	py.push(...nodes);
	const platform: TestNode = await startTestNode({
		db,
		services: ["api", "users", "projects", "payments", "tasks", "ai"],
		env: {
			TRANSPORTER: NATS_URL,
			NAMESPACE: namespace,
			NODE_ID: uniqueId("platform"),
			RATE_LIMIT_PER_MINUTE: "100000",
			HEARTBEAT_INTERVAL_S: "1",
			HEARTBEAT_TIMEOUT_S: "3",
			TASKS_SWEEP_MS: "200",
			TASKS_SNAPSHOT_MS: "200",
			AI_DEV_PROVIDER: "true",
			AI_POLL_MS: "50",
			AI_CONCURRENCY: "8",
			CONTEXT_TIMEOUT_MS: String(CONTEXT_TIMEOUT_MS)
		}
	});
	try {
		await eventually(() => nodeIds.every(id => platform.broker.registry.nodes.get(id)?.available), 30_000, 50);
		const user = await makeUser(platform, "team");
		const files = Array.from({ length: 30 }, (_, i) => ({
			op: "add",
			path: `lib/part${i}.py`,
			content: `def part_${i}(value):\n    return value * ${i}\n`
		}));
		const v = await api(platform, "POST", `/projects/${user.projectId}/versions`, user.token, {
			baseVersion: 0,
			message: "parts",
			changes: files
		});
		expect(v.status).toBe(201);
		await platform.broker.call("context.index", { projectId: user.projectId, version: 1 }, { timeout: 60_000 });

		const run = async (i: number) => {
			const t0 = Date.now();
			const submit = await api(platform, "POST", "/tasks", user.token, {
				projectId: user.projectId,
				kind: "chat",
				model: "dev-echo",
				prompt: `What does part_${i % 30} return?`
			});
			expect(submit.status).toBe(202);
			const id: string = submit.body.task.id;
			let view: Record<string, any> = {};
			await eventually(
				async () => {
					view = (await api(platform, "GET", `/tasks/${id}`, user.token)).body;
					return ["succeeded", "failed", "cancelled"].includes(view.state);
				},
				60_000,
				50
			);
			return { view, ms: Date.now() - t0 };
		};
		const results: Array<{ view: Record<string, any>; ms: number }> = [];
		let started = 0;
		const load = Promise.all(
			Array.from({ length: 4 }, async (_, w) => {
				for (let i = w; i < 40; i += 4) {
					started++;
					results.push(await run(i));
				}
			})
		);
		await eventually(() => started >= 8, 60_000, 20);
		await nodes[0].kill();
		await load;

		expect(results).toHaveLength(40);
		expect(results.filter(r => r.view.state !== "succeeded").map(r => r.view)).toEqual([]);
		for (const r of results) {
			expect(["selected", "degraded"]).toContain(r.view.contextState);
			if (r.view.contextState === "degraded") expect(String(r.view.contextReason)).toMatch(/^CONTEXT_/);
			// never hangs: a lost context node costs at most the context timeout, not the request timeout
			expect(r.ms).toBeLessThan(CONTEXT_TIMEOUT_MS + 8_000);
		}
		// the survivor keeps selecting: the tasks after the kill got their context from it
		expect(results.slice(-8).every(r => r.view.contextState === "selected")).toBe(true);
	} finally {
		await platform.stop();
	}
});
