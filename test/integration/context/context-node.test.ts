/**
 * The Python context node against real TS brokers over the real NATS and PostgreSQL: discovery both
 * ways, requests both ways (it reads projects over the transporter), errors with code, type and data,
 * events both ways, timeouts, and a node leaving (DISCONNECT) with calls rebalanced to the other.
 * Then its METRICS_PORT is scraped: what those requests, calls and index runs left there, in a page
 * `promtool check metrics` accepts (promtool is Debian's `prometheus` package; .ci/run installs it).
 */
import { spawnSync } from "node:child_process";
import { namesHost } from "../../support/host-name";
import { Errors, ServiceBroker } from "moleculer";
import {
	bearerFor,
	createTestDatabase,
	eventually,
	freePort,
	NATS_URL,
	startTestNode,
	TestDatabase
} from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { client } from "../projects/http";
import { ContextNode, startContextNode } from "../../support/context-node";

jest.setTimeout(120_000);

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let ctxNode: ContextNode;
let api: ReturnType<typeof client>;
let alice: string;
let bob: string;
let metricsPort: number;
const indexed: Array<{ projectId: string; version: number }> = [];

function contextEnv(nodeId: string, extra: Record<string, string> = {}): Record<string, string> {
	return {
		TRANSPORTER: NATS_URL,
		NAMESPACE: node.config.namespace,
		NODE_ID: nodeId,
		DATABASE_URL: db.url,
		LOG_LEVEL: "warn",
		HEARTBEAT_INTERVAL_S: "1",
		HEARTBEAT_TIMEOUT_S: "4",
		...extra
	};
}

const FILES: Record<string, string> = {
	"README.md": "# demo\n\nA demo project.\n",
	LICENSE: "MIT License\n\nPermission is hereby granted...\n",
	"src/ledger.ts": [
		"import { Money } from './money';",
		"",
		"/** Reserves credits for a task before it runs. */",
		"export function reserveCredits(balance: Money, amount: Money): Money {",
		"\tif (amount > balance) throw new Error('insufficient credits');",
		"\treturn balance - amount;",
		"}",
		"",
		"export function releaseCredits(balance: Money, amount: Money): Money {",
		"\treturn balance + amount;",
		"}",
		""
	].join("\n"),
	"src/money.ts": "export type Money = number;\nexport const ZERO: Money = 0;\n",
	"src/tokenizer.py": "def count_words(text: str) -> int:\n    return len(text.split())\n",
	"src/server.go": 'package main\n\nfunc ServeHTTP() {\n\tprintln("hi")\n}\n'
};

async function newProject(token: string): Promise<string> {
	const r = await api.call("POST", "/api/v1/projects", { token, body: { name: "ctx" } });
	expect(r.status).toBe(201);
	return r.json.id;
}

async function commit(id: string, baseVersion: number, files: Record<string, string>, token = alice): Promise<number> {
	const changes = Object.entries(files).map(([path, content]) => ({
		op: baseVersion === 0 ? "add" : "modify",
		path,
		content
	}));
	const r = await api.call("POST", `/api/v1/projects/${id}/versions`, {
		token,
		body: { baseVersion, message: "files", changes }
	});
	expect(r.status).toBe(201);
	return r.json.number ?? r.json.version;
}

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "projects"],
		env: {
			TRANSPORTER: NATS_URL,
			NODE_ID: "ts-projects",
			RATE_LIMIT_PER_MINUTE: "100000",
			HEARTBEAT_INTERVAL_S: "1",
			HEARTBEAT_TIMEOUT_S: "4"
		},
		extraServices: [
			{
				name: "ctxwatch",
				events: {
					"context.indexed"(ctx: { params: { projectId: string; version: number } }) {
						indexed.push(ctx.params);
					}
				}
			}
		]
	});
	api = client(node.baseUrl);
	alice = bearerFor(node.config, "alice");
	bob = bearerFor(node.config, "bob");
	metricsPort = await freePort();
	ctxNode = await startContextNode(
		contextEnv("py-context-1", { METRICS_PORT: String(metricsPort), HEALTH_HOST: "127.0.0.1" })
	);
	await node.broker.waitForServices(["context"], 30_000);
});

afterAll(async () => {
	await ctxNode?.stop();
	await node?.stop();
	await db?.drop();
});

describe("the Python context node in a TS cluster", () => {
	let projectId: string;
	let version: number;

	beforeAll(async () => {
		projectId = await newProject(alice);
		version = await commit(projectId, 0, FILES);
	});

	it("is discovered by the TS registry with its actions, and discovers projects (it reads them over NATS)", async () => {
		const nodes = node.broker.registry.getNodeList({
			onlyAvailable: true,
			withServices: true
		}) as unknown as Array<{
			id: string;
			client: { type: string };
			services: Array<{ name: string; actions: Record<string, unknown> }>;
		}>;
		const py = nodes.find(n => n.id === "py-context-1");
		expect(py?.client.type).toBe("python");
		const svc = py!.services.find(s => s.name === "context");
		expect(Object.keys(svc!.actions).sort()).toEqual(["context.index", "context.select", "context.status"]);
		const result = await node.broker.call("context.index", { projectId, version }, { timeout: 60_000 });
		expect(result).toMatchObject({ projectId, version, files: Object.keys(FILES).length });
	});

	it("selects the relevant code under the budget, with paths, line ranges and real token counts", async () => {
		const r = await node.broker.call<
			{
				usedTokens: number;
				budgetTokens: number;
				tokenizer: string;
				indexed: boolean;
				frames: Array<{ kind: string; path?: string; lines?: number[]; tokens: number; text: string }>;
			},
			object
		>("context.select", {
			projectId,
			version,
			query: "reserveCredits should refuse when credits are insufficient",
			budgetTokens: 400,
			userId: "alice"
		});
		expect(r.indexed).toBe(true);
		expect(r.tokenizer).toBe("cl100k_base");
		expect(r.usedTokens).toBeLessThanOrEqual(400);
		expect(r.usedTokens).toBe(r.frames.reduce((s, f) => s + f.tokens, 0));
		const first = r.frames[0];
		expect(first.path).toBe("src/ledger.ts");
		expect(first.text).toContain("export function reserveCredits");
		expect(first.lines![0]).toBeGreaterThanOrEqual(1);
		expect(r.frames.some(f => f.kind === "map")).toBe(true);
	});

	it("puts included paths first and never shows excluded ones", async () => {
		const r = await node.broker.call<{ frames: Array<{ kind: string; path?: string; text: string }> }, object>(
			"context.select",
			{
				projectId,
				version,
				query: "reserveCredits",
				budgetTokens: 2000,
				userId: "alice",
				include: ["src/*.go"],
				exclude: ["src/ledger.ts", "LICENSE"]
			}
		);
		expect(r.frames[0].path).toBe("src/server.go");
		expect(r.frames.some(f => f.path === "src/ledger.ts")).toBe(false);
		expect(r.frames.find(f => f.kind === "map")?.text ?? "").not.toContain("LICENSE");
	});

	it("answers bad input with MoleculerErrors carrying code, type and data, and keeps serving", async () => {
		const call = (params: object) =>
			node.broker.call("context.select", params).then(
				() => null,
				(e: Errors.MoleculerError) => e
			);
		const base = { projectId, version, query: "x", budgetTokens: 100, userId: "alice" };
		const unknown = await call({ ...base, projectId: "prj_doesnotexist" });
		expect(unknown).toMatchObject({ name: "MoleculerClientError", code: 404, type: "PROJECT_NOT_FOUND" });
		const foreign = await call({ ...base, userId: "bob" });
		expect(foreign).toMatchObject({ code: 404, type: "PROJECT_NOT_FOUND" });
		const noVersion = await call({ ...base, version: 99 });
		expect(noVersion).toMatchObject({ code: 404, type: "VERSION_NOT_FOUND", data: { field: "version" } });
		for (const budgetTokens of [0, 1e9, -5, 1.5, "many"]) {
			const bad = await call({ ...base, budgetTokens });
			expect(bad).toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
			expect((bad!.data as Array<{ field: string }>)[0].field).toBe("budgetTokens");
		}
		const badGlobs = await call({ ...base, include: "src" });
		expect(badGlobs).toMatchObject({ code: 422, type: "VALIDATION_ERROR" });
		const nothing = (await node.broker.call("context.select", {
			...base,
			include: ["no/such/**"],
			exclude: ["**"]
		})) as { frames: unknown[]; usedTokens: number };
		expect(nothing.frames).toEqual([]);
		expect(nothing.usedTokens).toBe(0);
		// still alive and answering
		const ok = (await node.broker.call("context.status", { projectId })) as { latest: number };
		expect(ok.latest).toBe(version);
		void bob;
	});

	it("reindexes incrementally: a changed file is parsed, unchanged blobs are reused", async () => {
		const v2 = await commit(projectId, version, {
			"src/money.ts": "export type Money = bigint;\nexport const ZERO: Money = 0n;\n"
		});
		const r = (await node.broker.call("context.index", { projectId, version: v2 })) as {
			parsed: number;
			reused: number;
		};
		expect(r.parsed).toBe(1);
		expect(r.reused).toBe(Object.keys(FILES).length - 1);
		const again = (await node.broker.call("context.index", { projectId, version: v2 })) as { parsed: number };
		expect(again.parsed).toBe(0);
	});

	it("emits context.indexed to TS services, and handles events TS emits", async () => {
		await eventually(() => indexed.some(e => e.projectId === projectId), 20_000, 50);
		const other = await newProject(alice);
		const v = await commit(other, 0, { "a.py": "def alpha():\n    return 1\n" });
		await node.broker.emit("context.index.requested", { projectId: other, version: v });
		await eventually(() => indexed.some(e => e.projectId === other && e.version === v), 20_000, 50);
	});

	it("times out: a TS caller's timeout is a RequestTimeoutError, and the node's own calls time out too", async () => {
		const err = await node.broker
			.call(
				"context.select",
				{ projectId, version, query: "q", budgetTokens: 100, userId: "alice" },
				{ timeout: 1, retries: 0 }
			)
			.catch((e: Errors.MoleculerError) => e);
		expect(err).toMatchObject({ name: "RequestTimeoutError", code: 504 });

		// a node whose projects calls must answer within 300 ms, with a projects.access that never does
		const slow = new ServiceBroker({
			namespace: node.config.namespace + "-slow",
			nodeID: "ts-slow",
			transporter: { type: "NATS", options: { url: NATS_URL } },
			logger: false,
			heartbeatInterval: 1,
			heartbeatTimeout: 4
		});
		let release: (v: unknown) => void = () => undefined;
		slow.createService({ name: "projects", actions: { access: () => new Promise(r => (release = r)) } });
		await slow.start();
		const py = await startContextNode({
			...contextEnv("py-context-slow", { CONTEXT_PROJECTS_TIMEOUT_MS: "300" }),
			NAMESPACE: node.config.namespace + "-slow"
		});
		try {
			await slow.waitForServices(["context"], 30_000);
			const e = await slow
				.call(
					"context.select",
					{ projectId: "prj_x", query: "q", budgetTokens: 10, userId: "u" },
					{ timeout: 10_000 }
				)
				.catch((x: Errors.MoleculerError) => x);
			expect(e).toMatchObject({ code: 504, type: "REQUEST_TIMEOUT", data: { action: "projects.access" } });
		} finally {
			release(null);
			await py.stop();
			await slow.stop();
		}
	});

	it("serves /metrics: its requests, calls and index runs by outcome, sizes and queues, in Prometheus' text format", async () => {
		const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
		expect(res.status).toBe(200);
		expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
		const text = await res.text();
		/** The value of the one sample of `name` whose labels include `labels` (namespace aside). */
		const sample = (name: string, labels: Record<string, string> = {}) => {
			const hits = [...text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, "gm"))].filter(m =>
				Object.entries(labels).every(([k, v]) => m[1].split(",").includes(`${k}="${v}"`))
			);
			expect({ name, labels, hits: hits.length }).toEqual({ name, labels, hits: 1 });
			return Number(hits[0][2]);
		};
		const select = (outcome: string) => sample("context_actions_total", { action: "context.select", outcome });
		expect(select("ok")).toBeGreaterThanOrEqual(3);
		// unknown project, foreign project, no such version, five bad budgets, bad globs
		expect(select("rejected")).toBeGreaterThanOrEqual(9);
		// the 1 ms timeout the TS caller set
		expect(select("timeout")).toBeGreaterThanOrEqual(1);
		expect(sample("context_action_seconds_count", { action: "context.select", outcome: "ok" })).toBe(select("ok"));
		expect(sample("context_actions_total", { action: "context.index", outcome: "ok" })).toBeGreaterThanOrEqual(2);
		expect(sample("context_actions_total", { action: "context.status", outcome: "ok" })).toBeGreaterThanOrEqual(1);
		expect(
			sample("context_call_seconds_count", { action: "projects.access", outcome: "ok" })
		).toBeGreaterThanOrEqual(3);
		expect(
			sample("context_call_seconds_count", { action: "projects.access", outcome: "rejected" })
		).toBeGreaterThanOrEqual(2);
		expect(
			sample("context_call_seconds_count", { action: "projects.contextManifest", outcome: "ok" })
		).toBeGreaterThanOrEqual(2);
		// the first version, v2 twice, the other project's (by event)
		expect(sample("context_index_seconds_count", { outcome: "ok" })).toBeGreaterThanOrEqual(4);
		expect(sample("context_index_files_total", { result: "parsed" })).toBeGreaterThanOrEqual(
			Object.keys(FILES).length + 2
		);
		expect(sample("context_index_files_total", { result: "reused" })).toBeGreaterThanOrEqual(
			2 * Object.keys(FILES).length - 1
		);
		expect(sample("context_version_indexes")).toBeGreaterThanOrEqual(1);
		expect(sample("context_version_index_files")).toBeGreaterThanOrEqual(Object.keys(FILES).length);
		expect(sample("context_file_facts_cached")).toBeGreaterThanOrEqual(Object.keys(FILES).length);
		expect(sample("context_registry_nodes")).toBeGreaterThanOrEqual(1);
		expect(sample("context_requests_in_flight")).toBe(0);
		expect(sample("context_indexing_versions")).toBe(0);
		expect(sample("context_nodes_dropped_total", { reason: "heartbeat_timeout" })).toBe(0);
		// every sample carries the namespace, none the host
		for (const [, labels] of text.matchAll(/^\w+\{([^}]*)\} \S+$/gm))
			expect(labels.split(",")).toContain(`namespace="${node.config.namespace}"`);
		expect(text).not.toMatch(/^\w+ \S+$/m);
		expect(namesHost(text)).toBe(false);
		const check = spawnSync(process.env.PROMTOOL ?? "promtool", ["check", "metrics"], {
			input: text,
			encoding: "utf8"
		});
		if (check.error)
			throw new Error("promtool not found: install Debian's prometheus package (.ci/run does), or set PROMTOOL");
		expect(`${check.stdout}${check.stderr}`.trim()).toBe("");
		expect(check.status).toBe(0);
		// the page only: the probes are on HEALTH_PORT (off here)
		expect((await fetch(`http://127.0.0.1:${metricsPort}/health/live`)).status).toBe(404);
	});

	it("says goodbye on SIGTERM: the registry drops it at once and calls go to the node that stays", async () => {
		const second = await startContextNode(contextEnv("py-context-2"));
		await eventually(() => node.broker.registry.nodes.get("py-context-2")?.available === true, 20_000, 50);
		const seen = new Set<string>();
		for (let i = 0; i < 8; i++)
			seen.add(((await node.broker.call("context.status", { projectId })) as { node: string }).node);
		expect([...seen].sort()).toEqual(["py-context-1", "py-context-2"]);
		expect(await second.stop()).toBe(0);
		await eventually(() => node.broker.registry.nodes.get("py-context-2")?.available !== true, 2_000, 20);
		for (let i = 0; i < 6; i++) {
			const r = (await node.broker.call("context.status", { projectId })) as { node: string };
			expect(r.node).toBe("py-context-1");
		}
	});
});
