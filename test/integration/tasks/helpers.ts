/** Shared fixtures of the tasks integration tests: users with a tier, projects, credits, HTTP and SSE. */
import { QueryTypes } from "sequelize";
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { ServiceSchema } from "moleculer";
import type { TierName } from "../../../src/domain/tiers";
import { bearerFor, startTestNode, type TestDatabase } from "../../support/env";

export type TestNode = Awaited<ReturnType<typeof startTestNode>>;

export const ALL = ["api", "tasks", "users", "projects", "payments"] as const;

export async function startTasksNode(
	db: TestDatabase,
	extraServices: ServiceSchema[],
	env: Record<string, string> = {}
): Promise<TestNode> {
	return startTestNode({
		db,
		services: [...ALL],
		extraServices,
		env: { RATE_LIMIT_PER_MINUTE: "100000", TASKS_SWEEP_MS: "200", TASKS_SNAPSHOT_MS: "200", ...env }
	});
}

export interface TestUser {
	id: string;
	token: string;
	projectId: string;
}

/** A user row with a tier override (the users service resolves the tier from it), a project and credits. */
export async function makeUser(node: TestNode, tier: TierName, credits = 1_000_000): Promise<TestUser> {
	const id = randomUUID();
	await node.runtime.sequelize.query(`INSERT INTO users (id, email, tier_override) VALUES ($1, $2, $3)`, {
		bind: [id, `${id}@example.test`, tier === "free" ? null : tier]
	});
	const token = bearerFor(node.config, id);
	const project = await api(node, "POST", "/projects", token, { name: `p-${id.slice(0, 8)}` });
	if (project.status !== 201)
		throw new Error(`project not created: ${project.status} ${JSON.stringify(project.body)}`);
	if (credits > 0)
		await node.broker.call("payments.grant", {
			userId: id,
			credits,
			operator: "test",
			reason: "test credits",
			key: `grant-${id}`
		});
	return { id, token, projectId: (project.body as { id: string }).id };
}

export interface ApiResult<T = Record<string, unknown>> {
	status: number;
	headers: Headers;
	body: T;
}

export async function api<T = any>(
	node: TestNode,
	method: string,
	path: string,
	token: string | null,
	body?: unknown,
	headers: Record<string, string> = {}
): Promise<ApiResult<T>> {
	const res = await fetch(`${node.baseUrl}/api/v1${path}`, {
		method,
		headers: {
			...(token ? { Authorization: `Bearer ${token}` } : {}),
			...(body !== undefined ? { "Content-Type": "application/json" } : {}),
			...headers
		},
		body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body)
	});
	const text = await res.text();
	return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : null) as T };
}

export interface SseEvent {
	id?: string;
	event: string;
	data: unknown;
}

/**
 * Reads the SSE response `res` of `req` until it ends, `timeoutMs` passes or `until` says stop (then
 * disconnects): splits the text into frames on blank lines, reads each frame's `id:`, `event:` and
 * `data:` (JSON) lines and counts its `:` comment lines. Returns the frames that have an `event:` line,
 * the comments, the raw text and whether the response ended (rather than the timeout or `until`).
 */
export function readSseResponse(
	req: http.ClientRequest,
	res: http.IncomingMessage,
	opts: { until?: (ev: SseEvent, all: SseEvent[]) => boolean; timeoutMs: number }
): Promise<{ events: SseEvent[]; comments: number; raw: string; ended: boolean }> {
	return new Promise(resolve => {
		const events: SseEvent[] = [];
		let comments = 0;
		let buf = "";
		let raw = "";
		const done = (ended: boolean) => resolve({ events, comments, raw, ended });
		const timer = setTimeout(() => {
			req.destroy();
			done(false);
		}, opts.timeoutMs);
		res.setEncoding("utf8");
		res.on("data", (chunk: string) => {
			raw += chunk;
			buf += chunk;
			let idx;
			while ((idx = buf.indexOf("\n\n")) >= 0) {
				const frame = buf.slice(0, idx);
				buf = buf.slice(idx + 2);
				const ev: Partial<SseEvent> = {};
				let isEvent = false;
				for (const line of frame.split("\n")) {
					if (line.startsWith(":")) comments++;
					else if (line.startsWith("id: ")) ev.id = line.slice(4);
					else if (line.startsWith("event: ")) {
						ev.event = line.slice(7);
						isEvent = true;
					} else if (line.startsWith("data: ")) ev.data = JSON.parse(line.slice(6));
				}
				if (isEvent) {
					events.push(ev as SseEvent);
					if (opts.until?.(ev as SseEvent, events)) {
						clearTimeout(timer);
						req.destroy();
						return done(false);
					}
				}
			}
		});
		res.on("end", () => {
			clearTimeout(timer);
			done(true);
		});
	});
}

/** Reads an SSE stream until it ends or `until` says stop; returns the parsed events and comments seen. */
export function readSse(
	baseUrl: string,
	path: string,
	token: string,
	opts: { lastEventId?: string; until?: (ev: SseEvent, all: SseEvent[]) => boolean; timeoutMs?: number } = {}
): Promise<{ status: number; headers: http.IncomingHttpHeaders; events: SseEvent[]; comments: number; body?: string }> {
	return new Promise((resolve, reject) => {
		const url = new URL(`${baseUrl}/api/v1${path}`);
		const req = http.get(
			url,
			{
				headers: {
					Authorization: `Bearer ${token}`,
					Accept: "text/event-stream",
					...(opts.lastEventId ? { "Last-Event-ID": opts.lastEventId } : {})
				}
			},
			res =>
				void readSseResponse(req, res, { until: opts.until, timeoutMs: opts.timeoutMs ?? 15_000 }).then(r =>
					resolve({
						status: res.statusCode ?? 0,
						headers: res.headers,
						events: r.events,
						comments: r.comments,
						body: r.ended && res.statusCode !== 200 ? r.raw : undefined
					})
				)
		);
		req.on("error", err => {
			if ((err as NodeJS.ErrnoException).code === "ECONNRESET") return;
			reject(err);
		});
	});
}

export async function waitFor<T>(
	fn: () => Promise<T | null | undefined | false>,
	timeoutMs = 15_000,
	stepMs = 50
): Promise<T> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const v = await fn();
		if (v) return v;
		if (Date.now() > end) throw new Error("condition not reached in time");
		await new Promise(r => setTimeout(r, stepMs));
	}
}

export async function holdOf(
	node: TestNode,
	taskId: string
): Promise<{ state: string; list_actual_cost: string | null } | null> {
	const [row] = (await node.runtime.sequelize.query(`SELECT * FROM credit_holds WHERE task_id = $1`, {
		bind: [taskId],
		type: QueryTypes.SELECT
	})) as unknown as Array<{ state: string; list_actual_cost: string | null }>;
	return row ?? null;
}
