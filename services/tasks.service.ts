/**
 * tasks: the durable, tier-fair, load-aware queue of AI work (docs/tasks.md, docs/task-lifecycle.md).
 * A thin shell: the order is src/tasks/scheduling.ts, the other rules src/tasks/rules.ts, the SQL
 * src/tasks/store.ts, the derived metadata src/tasks/queue-meta.ts.
 */
import type { LeasedTask } from "../src/tasks/contract";
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { durableEvents, type DurableThis } from "../mixins/durable-events.mixin";
import type { AuthUser } from "../src/auth/user";
import { hasScope, type Scope } from "../src/auth/scopes";
import type { Config } from "../src/config";
import { TIERS, TIER_ORDER, isTierName } from "../src/domain/tiers";
import { Conflict, Forbidden, NotFound, Unauthorized, Unavailable } from "../src/errors";
import { runtimeOf } from "../src/runtime/runtime";
import type { TasksConfig } from "../src/tasks/config";
import { emptyByTier, queueMetaOf, type QueueMeta, type QueueSnapshot } from "../src/tasks/queue-meta";
import {
	afterFailure,
	afterLeaseExpiry,
	leaseIsLost,
	isTerminal,
	percentile,
	settlementFor,
	type TaskState
} from "../src/tasks/rules";
import { queuePositions, retryBackoffMs, tierBacklogWaitMs } from "../src/tasks/scheduling";
import { TaskStore, type PreparedTask, type TaskRow } from "../src/tasks/store";
import { submitTask, type SubmitDeps, type SubmitParams } from "../src/tasks/submit";
import type { TaskStateEvent } from "../src/tasks/stream-hub";
import { INTERNAL, type Ctx } from "../src/kit/service";
import { MAX_GLOBS, MAX_GLOB_LENGTH } from "../src/context/globs";

const UUID = { type: "uuid" } as const;
/** Path globs of the context (src/context/globs.ts); the patterns themselves are checked by validateGlobs. */
const GLOBS = {
	type: "array",
	items: { type: "string", min: 1, max: MAX_GLOB_LENGTH },
	max: MAX_GLOBS,
	optional: true
} as const;
const SETTLE_GRACE_MS = 5_000;
/** How long a hold intent may stay without its task before its hold counts as orphaned: well past any reserve call still in flight. */
/** What the worker reports the model was shown (src/ai/context-frames.ts ContextRecord). */
const CONTEXT_RECORD = {
	type: "object",
	optional: true,
	props: {
		state: { type: "enum", values: ["selected", "degraded"] },
		reason: { type: "string", max: 100, optional: true },
		tokenizer: { type: "string", max: 100 },
		version: { type: "number", integer: true, min: 0 },
		frames: {
			type: "array",
			max: 10_000,
			items: {
				type: "object",
				props: {
					kind: { type: "enum", values: ["file", "definitions", "map"] },
					path: { type: "string", max: 4096, optional: true },
					lines: {
						type: "array",
						items: { type: "number", integer: true, min: 0 },
						length: 2,
						optional: true
					},
					tokens: { type: "number", integer: true, min: 0 }
				}
			}
		}
	}
} as const;
const holdIntentGraceMs = (requestTimeoutMs: number) => Math.max(60_000, 3 * requestTimeoutMs);

export type { SubmitParams };

export type { LeasedTask };

interface TasksThis extends Service, DurableThis {
	cfg: TasksConfig;
	config: Config;
	store: TaskStore;
	meta: QueueMeta;
	timers: NodeJS.Timeout[];
	sweeping: Promise<unknown> | null;
	snapshotting: Promise<unknown> | null;
	p50Cache: { at: number; value: number } | null;
	userOf(ctx: Ctx<unknown>, scope: Scope): AuthUser;
	ownTask(ctx: Ctx<unknown>, id: string, scope: Scope): Promise<TaskRow>;
	capacity(): number;
	submitDeps(ctx: Ctx<unknown>): SubmitDeps;
	p50RunMs(): Promise<number>;
	view(row: TaskRow, position?: number | null, context?: unknown): Record<string, unknown>;
	statsView(): Promise<Record<string, unknown>>;
	announce(row: TaskRow, extra?: Partial<TaskStateEvent>): void;
	settle(row: TaskRow): Promise<void>;
	settleThenAnnounce(row: TaskRow): Promise<void>;
	finishing: Set<Promise<void>>;
	sweepOnce(now?: number): Promise<{ expired: number; settled: number; orphansReleased: number }>;
	snapshotOnce(force?: boolean): Promise<QueueSnapshot | null>;
	buildSnapshot(now: number): Promise<{ snapshot: QueueSnapshot; positions: Map<string, number> }>;
	setDepthGauges(snapshot: QueueSnapshot): void;
	startTimers(): void;
}

function iso(d: Date | null): string | null {
	return d ? new Date(d).toISOString() : null;
}

function num(v: string | number | null): number | null {
	return v === null ? null : Number(v);
}

function isCode(err: unknown, code: string): boolean {
	return (err as { type?: string })?.type === code;
}

const TasksService: ServiceSchema<ServiceSettingSchema, Record<string, never>, Record<string, never>, TasksThis> = {
	name: "tasks",
	mixins: [durableEvents({ group: "tasks" })],

	actions: {
		// ---- Public (through the gateway) ---------------------------------------------------------
		submit: {
			auth: "required",
			params: {
				$$strict: "remove",
				projectId: UUID,
				kind: { type: "enum", values: ["chat", "code", "compare"] },
				prompt: { type: "string", min: 1, max: 10_000_000 },
				model: { type: "string", min: 1, max: 200, optional: true },
				models: {
					type: "array",
					items: { type: "string", min: 1, max: 200 },
					min: 2,
					max: 3,
					unique: true,
					optional: true
				},
				maxOutputTokens: { type: "number", integer: true, min: 1, max: 1_000_000, optional: true },
				priorityBoost: { type: "enum", values: ["none", "paid"], default: "none" },
				include: { ...GLOBS, description: "Path globs the context shows first (e.g. src/**/*.ts)" },
				exclude: { ...GLOBS, description: "Path globs the context leaves out (wins over include)" }
			},
			async handler(this: TasksThis, ctx: Ctx<SubmitParams>) {
				const user = this.userOf(ctx, "tasks:write");
				const out = await submitTask(
					this.submitDeps(ctx),
					user.id,
					ctx.params,
					ctx.meta.idempotencyKey ?? null
				);
				if (out.replayed) {
					ctx.meta.$statusCode = 200;
					return {
						task: this.view(out.row, out.position),
						position: out.position,
						expectedStartAt: null,
						replayed: true
					};
				}
				this.announce(out.row, { position: out.position });
				this.broker.broadcast("tasks.available", { tier: out.row.tier });
				ctx.meta.$statusCode = 202;
				const { position, expectedStartAt, admission } = out;
				return { task: this.view(out.row, position), position, expectedStartAt, admission };
			}
		},

		get: {
			auth: "required",
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Ctx<{ id: string }>) {
				const row = await this.ownTask(ctx, ctx.params.id, "tasks:read");
				let position: number | null = null;
				if (row.state === "queued")
					position = (await this.meta.position(row.id)) ?? (await this.store.positionOf(row.id, Date.now()));
				const contexts = await this.store.contextsOf([row.id]);
				return this.view(row, position, contexts.get(row.id));
			}
		},

		list: {
			auth: "required",
			params: {
				$$strict: "remove",
				limit: { type: "number", integer: true, min: 1, max: 100, default: 20, convert: true },
				cursor: {
					type: "string",
					optional: true,
					pattern: /^\d{13}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
					description: "nextCursor of the previous page"
				},
				state: {
					type: "enum",
					values: ["queued", "running", "succeeded", "failed", "cancelled"],
					optional: true
				}
			},
			async handler(this: TasksThis, ctx: Ctx<{ limit: number; cursor?: string; state?: TaskState }>) {
				const user = this.userOf(ctx, "tasks:read");
				const cursor = ctx.params.cursor
					? { createdAt: new Date(Number(ctx.params.cursor.slice(0, 13))), id: ctx.params.cursor.slice(14) }
					: null;
				const rows = await this.store.list(user.id, ctx.params.limit, cursor, ctx.params.state);
				const last = rows.length === ctx.params.limit ? rows[rows.length - 1] : null;
				const contexts = await this.store.contextsOf(rows.map(r => r.id));
				return {
					items: rows.map(r => this.view(r, null, contexts.get(r.id))),
					nextCursor: last ? `${String(last.created_at.getTime()).padStart(13, "0")}.${last.id}` : null
				};
			}
		},

		cancel: {
			auth: "required",
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Ctx<{ id: string }>) {
				const user = this.userOf(ctx, "tasks:write");
				const now = Date.now();
				const out = await this.store.transaction(async tx => {
					const row = await this.store.lockById(ctx.params.id, tx);
					if (!row || row.user_id !== user.id) throw NotFound("Task");
					if (row.state === "cancelled") return { row, changed: false };
					if (isTerminal(row.state))
						throw Conflict(`The task has already ${row.state}`, "TASK_FINISHED", { state: row.state });
					if (row.state === "queued")
						return {
							row: await this.store.finish(
								row.id,
								{
									state: "cancelled",
									now,
									spentCredits: Number(row.spent_credits),
									costCredits: Number(row.spent_credits),
									error: { code: "CANCELLED", message: "Cancelled by the user" }
								},
								tx
							),
							changed: true
						};
					return { row: await this.store.requestCancel(row.id, now, tx), changed: true };
				});
				if (out.changed && out.row.state === "cancelled") await this.settleThenAnnounce(out.row);
				else if (out.changed) this.broker.broadcast("tasks.cancel", { taskId: out.row.id });
				return this.view((await this.store.byId(out.row.id)) ?? out.row);
			}
		},

		queueStats: {
			auth: "required",
			scope: "tasks:read",
			params: { $$strict: "remove" },
			handler(this: TasksThis) {
				return this.statsView();
			}
		},

		/** The same figures for operators (the REPL has no signed-in user). */
		stats: {
			visibility: INTERNAL,
			handler(this: TasksThis) {
				return this.statsView();
			}
		},

		// ---- Workers (ai nodes) -------------------------------------------------------------------
		lease: {
			visibility: INTERNAL,
			params: {
				nodeID: { type: "string", min: 1, max: 200 },
				slots: { type: "number", integer: true, min: 0, max: 10_000, convert: true }
			},
			async handler(this: TasksThis, ctx: Context<{ nodeID: string; slots: number }>): Promise<LeasedTask[]> {
				const slots = Math.min(ctx.params.slots, this.cfg.maxLeaseSlots);
				if (!slots) return []; // a drained node gets none: the lease statement checks it
				const now = Date.now();
				const rows = await this.store.lease({
					nodeId: ctx.params.nodeID,
					slots,
					now,
					leaseMs: this.cfg.leaseMs,
					totalWorkers: Math.max(this.capacity(), slots)
				});
				for (const row of rows) {
					this.broker.metrics.increment("tasks.dispatched.total", { tier: row.tier });
					if (row.attempts === 1) {
						const waitMs = Math.max(0, now - row.enqueued_at.getTime());
						this.broker.metrics.observe("tasks.queue.wait.seconds", waitMs / 1000, { tier: row.tier });
						this.meta
							.pushWait(row.tier, waitMs)
							.catch(err => this.logger.warn("wait sample not recorded", (err as Error).message));
					}
					this.announce(row);
				}
				return rows.map(r => ({
					taskId: r.id,
					leaseId: r.lease_id!,
					attempt: r.attempts,
					userId: r.user_id,
					tier: r.tier,
					projectId: r.project_id,
					kind: r.kind,
					prompt: r.prompt,
					model: r.prepared.models?.[0]?.model ?? r.request.model ?? null,
					models: (r.prepared.models ?? []).map(m => m.model),
					maxOutputTokens: r.prepared.maxOutputTokens,
					maxCostCredits: Number(r.max_cost_credits),
					idempotencyKey: r.id,
					leaseExpiresAt: r.lease_expires_at!.toISOString(),
					submittedAt: r.created_at.toISOString(),
					rateWindowEndMs: typeof r.prepared.rateWindowEndMs === "number" ? r.prepared.rateWindowEndMs : null,
					include: r.request.include ?? null,
					exclude: r.request.exclude ?? null
				}));
			}
		},

		heartbeat: {
			visibility: INTERNAL,
			params: { taskId: UUID, leaseId: UUID },
			async handler(this: TasksThis, ctx: Context<{ taskId: string; leaseId: string }>) {
				const r = await this.store.heartbeat(
					ctx.params.taskId,
					ctx.params.leaseId,
					Date.now(),
					this.cfg.leaseMs
				);
				if (!r) throw Conflict("This lease is no longer valid", "LEASE_LOST");
				return { ok: true, cancel: r.cancelRequested };
			}
		},

		complete: {
			visibility: INTERNAL,
			params: {
				taskId: UUID,
				leaseId: UUID,
				result: { type: "object" },
				usage: { type: "object" },
				costCredits: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER, convert: true },
				context: CONTEXT_RECORD
			},
			async handler(
				this: TasksThis,
				ctx: Context<{
					taskId: string;
					leaseId: string;
					result: Record<string, unknown>;
					usage: Record<string, unknown>;
					costCredits: number;
					context?: Record<string, unknown>;
				}>
			) {
				const p = ctx.params;
				const row = await this.store.transaction(async tx => {
					const cur = await this.store.lockLeased(p.taskId, p.leaseId, tx);
					if (!cur) throw Conflict("This lease is no longer valid", "LEASE_LOST");
					if (p.context) await this.store.saveContext(cur.id, cur.attempts, p.context, tx);
					const max = Number(cur.max_cost_credits);
					const spent = Number(cur.spent_credits);
					const total = Math.min(spent + p.costCredits, max);
					const done = await this.store.finish(
						cur.id,
						{
							state: "succeeded",
							now: Date.now(),
							result: p.result,
							usage: p.usage,
							costCredits: total,
							spentCredits: spent
						},
						tx
					);
					await this.publishDurable(tx, "tasks.finished", {
						taskId: done.id,
						userId: done.user_id,
						projectId: done.project_id,
						state: done.state,
						kind: done.kind,
						costCredits: total,
						usage: p.usage
					});
					return done;
				});
				// The worker's slot is free once the state is written; settling and announcing follow.
				void this.settleThenAnnounce(row);
				return { ok: true, state: row.state };
			}
		},

		fail: {
			visibility: INTERNAL,
			params: {
				taskId: UUID,
				leaseId: UUID,
				error: {
					type: "object",
					props: { code: { type: "string", min: 1, max: 100 }, message: { type: "string", max: 2000 } }
				},
				retryable: { type: "boolean" },
				usage: { type: "object", optional: true },
				costCredits: {
					type: "number",
					integer: true,
					min: 0,
					max: Number.MAX_SAFE_INTEGER,
					optional: true,
					convert: true
				},
				context: CONTEXT_RECORD
			},
			async handler(
				this: TasksThis,
				ctx: Context<{
					taskId: string;
					leaseId: string;
					error: { code: string; message: string };
					retryable: boolean;
					usage?: Record<string, unknown>;
					costCredits?: number;
					context?: Record<string, unknown>;
				}>
			) {
				const p = ctx.params;
				const now = Date.now();
				const row = await this.store.transaction(async tx => {
					const cur = await this.store.lockLeased(p.taskId, p.leaseId, tx);
					if (!cur) throw Conflict("This lease is no longer valid", "LEASE_LOST");
					if (p.context) await this.store.saveContext(cur.id, cur.attempts, p.context, tx);
					const max = Number(cur.max_cost_credits);
					const spent = Math.min(Number(cur.spent_credits) + (p.costCredits ?? 0), max);
					const next = afterFailure(
						{
							cancelRequested: cur.cancel_requested,
							attempts: cur.attempts,
							maxAttempts: cur.max_attempts
						},
						{ code: p.error.code, retryable: p.retryable }
					);
					const error = { code: p.error.code, message: p.error.message, attempt: cur.attempts };
					if (next === "queued") {
						const delay = retryBackoffMs(cur.attempts, {
							baseMs: this.cfg.retryBaseMs,
							maxMs: this.cfg.retryMaxMs,
							jitter: Math.random
						});
						return this.store.requeue(
							cur.id,
							{ now, notBefore: now + delay, spentCredits: spent, error },
							tx
						);
					}
					const done = await this.store.finish(
						cur.id,
						{ state: next, now, usage: p.usage, costCredits: spent, spentCredits: spent, error },
						tx
					);
					await this.publishDurable(tx, "tasks.finished", {
						taskId: done.id,
						userId: done.user_id,
						projectId: done.project_id,
						state: done.state,
						kind: done.kind,
						costCredits: spent,
						error
					});
					return done;
				});
				if (isTerminal(row.state)) void this.settleThenAnnounce(row);
				else {
					this.announce(row);
					this.broker.broadcast("tasks.available", { tier: row.tier });
				}
				return { ok: true, state: row.state, notBefore: iso(row.not_before) };
			}
		},

		// ---- Operators (REPL) ---------------------------------------------------------------------
		inspect: {
			visibility: INTERNAL,
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Context<{ id: string }>) {
				const row = await this.store.byId(ctx.params.id);
				if (!row) throw NotFound("Task");
				const contexts = await this.store.contextsOf([row.id]);
				return {
					...this.view(
						row,
						row.state === "queued" ? await this.store.positionOf(row.id, Date.now()) : null,
						contexts.get(row.id)
					),
					userId: row.user_id,
					leaseId: row.lease_id,
					leaseExpiresAt: iso(row.lease_expires_at),
					settlement: row.settlement,
					boostMs: row.boost_ms
				};
			}
		},

		requeue: {
			visibility: INTERNAL,
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Context<{ id: string }>) {
				const now = Date.now();
				const row = await this.store.transaction(async tx => {
					const cur = await this.store.lockById(ctx.params.id, tx);
					if (!cur) throw NotFound("Task");
					if (cur.state !== "queued" && cur.state !== "running")
						throw Conflict(`A ${cur.state} task's hold is gone; submit it again instead`, "TASK_FINISHED", {
							state: cur.state
						});
					// Running: the lease is revoked (the worker's next heartbeat gets LEASE_LOST). Queued: any backoff is skipped.
					return this.store.requeue(cur.id, { now, notBefore: null }, tx);
				});
				this.announce(row);
				this.broker.broadcast("tasks.available", { tier: row.tier });
				return this.view(row);
			}
		},

		adminCancel: {
			visibility: INTERNAL,
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Context<{ id: string }>) {
				const row = await this.store.byId(ctx.params.id);
				if (!row) throw NotFound("Task");
				return ctx.call(
					"tasks.cancel",
					{ id: row.id },
					{ meta: { user: { id: row.user_id, role: "operator", scopes: ["*"] } } }
				);
			}
		},

		drain: {
			visibility: INTERNAL,
			params: { nodeID: { type: "string", min: 1, max: 200 }, undo: { type: "boolean", default: false } },
			async handler(this: TasksThis, ctx: Context<{ nodeID: string; undo: boolean }>) {
				if (ctx.params.undo)
					return {
						nodeID: ctx.params.nodeID,
						drained: false,
						changed: await this.store.undrain(ctx.params.nodeID)
					};
				await this.store.drain(ctx.params.nodeID, "operator");
				return { nodeID: ctx.params.nodeID, drained: true };
			}
		},

		/** Runs one sweep now (operators; tests that cannot wait for the timer). */
		sweep: {
			visibility: INTERNAL,
			async handler(this: TasksThis) {
				return this.sweepOnce();
			}
		},

		/** Rebuilds the queue metadata now. */
		refreshStats: {
			visibility: INTERNAL,
			async handler(this: TasksThis) {
				return this.snapshotOnce(true);
			}
		}
	},

	methods: {
		async statsView(this: TasksThis) {
			const s = (await this.meta.readSnapshot()) ?? (await this.snapshotOnce(true));
			if (!s) throw Unavailable("Queue statistics are not available");
			return {
				at: new Date(s.at).toISOString(),
				capacity: s.capacity,
				running: s.running,
				p50RunMs: s.p50RunMs,
				tiers: Object.fromEntries(
					TIER_ORDER.map(t => [
						t,
						{
							depth: s.depth[t],
							waiting: s.waiting[t],
							expectedWaitMs: Number.isFinite(s.expectedWaitMs[t]) ? s.expectedWaitMs[t] : null,
							waitP50Ms: s.waitP50Ms[t],
							waitP99Ms: s.waitP99Ms[t],
							waitTargetMs: TIERS[t].waitTargetMs,
							admission: this.cfg.admission[t]
						}
					])
				)
			};
		},

		userOf(this: TasksThis, ctx: Ctx<unknown>, scope: Scope): AuthUser {
			const user = ctx.meta.user;
			if (!user) throw Unauthorized();
			// Sessions carry every scope of their role; API keys only those chosen for them.
			if (user.keyId && !hasScope(user, scope))
				throw Forbidden(`This needs the '${scope}' scope`, "INSUFFICIENT_SCOPE");
			return user;
		},

		async ownTask(this: TasksThis, ctx: Ctx<unknown>, id: string, scope: Scope) {
			const user = this.userOf(ctx, scope);
			const row = await this.store.byId(id);
			if (!row || row.user_id !== user.id) throw NotFound("Task");
			return row;
		},

		/** Worker slots of the available ai nodes, from each node's `settings.capacity` in the registry. */
		/** The collaborators of a submission, each a call over the broker on behalf of `ctx`. */
		submitDeps(this: TasksThis, ctx: Ctx<unknown>): SubmitDeps {
			return {
				store: this.store,
				services: {
					checkProjectAccess: async (projectId, userId) => {
						await ctx.call("projects.access", { projectId, userId });
					},
					tierOf: async userId => {
						const info = (await ctx.call("users.getTier", { userId })) as { tier?: unknown } | null;
						return isTierName(info?.tier) ? info.tier : "free";
					},
					prepare: input => ctx.call("ai.prepare", input) as Promise<PreparedTask>,
					priorityBoost: input => ctx.call("payments.priorityBoost", input) as Promise<{ boostMs: number }>,
					reserve: input => ctx.call("payments.reserve", input),
					release: input => ctx.call("payments.release", input)
				},
				capacity: () => this.capacity(),
				p50RunMs: () => this.p50RunMs(),
				queuedPosition: taskId => this.meta.position(taskId),
				config: this.cfg,
				now: () => Date.now(),
				newId: () => randomUUID(),
				warn: message => this.logger.warn(message)
			};
		},

		capacity(this: TasksThis): number {
			const list = this.broker.registry.getServiceList({ onlyAvailable: true, withActions: false }) as Array<{
				name: string;
				settings?: { capacity?: unknown };
			}>;
			let total = 0;
			for (const s of list) {
				if (s.name !== "ai") continue;
				// The contract says `settings.capacity`; the ai service publishes it as `{ slots }`. Both count.
				const c = s.settings?.capacity;
				const slots = typeof c === "object" && c !== null ? (c as { slots?: unknown }).slots : c;
				total += Math.max(0, Math.floor(Number(slots ?? 0)) || 0);
			}
			return total;
		},

		async p50RunMs(this: TasksThis) {
			const now = Date.now();
			if (this.p50Cache && now - this.p50Cache.at < this.cfg.snapshotMs) return this.p50Cache.value;
			const value = (await this.store.medianRunMs()) ?? this.cfg.defaultRunMs;
			this.p50Cache = { at: now, value: Math.max(1, value) };
			return this.p50Cache.value;
		},

		view(this: TasksThis, r: TaskRow, position: number | null = null, context: unknown = null) {
			const c = context as { state?: string; reason?: string; frames?: unknown[] } | null;
			return {
				id: r.id,
				projectId: r.project_id,
				kind: r.kind,
				state: r.state,
				tier: r.tier,
				prompt: r.prompt,
				model: r.request.model ?? r.prepared.models?.[0]?.model ?? null,
				models: (r.prepared.models ?? []).map(m => m.model),
				maxOutputTokens: r.prepared.maxOutputTokens ?? r.request.maxOutputTokens ?? null,
				priorityBoost: r.request.priorityBoost ?? "none",
				position: r.state === "queued" ? position : null,
				attempts: r.attempts,
				maxAttempts: r.max_attempts,
				cancelRequested: r.cancel_requested,
				createdAt: iso(r.created_at),
				enqueuedAt: iso(r.enqueued_at),
				notBefore: iso(r.not_before),
				startedAt: iso(r.started_at),
				finishedAt: iso(r.finished_at),
				nodeId: r.node_id,
				maxCostCredits: Number(r.max_cost_credits),
				costCredits: num(r.cost_credits),
				result: r.result ?? null,
				usage: r.usage ?? null,
				error: r.error ?? null,
				// Of the credits held for it: "none" while it is not finished, "pending" for the moment
				// between the final state and the ledger's settlement, then "settled" or "released".
				settlement: r.settlement,
				// What the model was shown on the latest attempt: frames (path, lines, tokens), and whether the
				// context service chose them ("selected") or it did not answer ("degraded": included paths + map).
				context: c?.frames ?? null,
				contextState: c?.state ?? null,
				contextReason: c?.reason ?? null,
				version: r.version
			};
		},

		announce(this: TasksThis, r: TaskRow, extra: Partial<TaskStateEvent> = {}) {
			const ev: TaskStateEvent = {
				taskId: r.id,
				userId: r.user_id,
				state: r.state,
				version: r.version,
				attempt: r.attempts,
				nodeId: r.node_id,
				error: r.error ?? null,
				costCredits: num(r.cost_credits),
				...extra
			};
			this.broker.broadcast("tasks.state", ev);
		},

		/**
		 * Settles a finished task, then announces its final state: a client that sees `completed` sees
		 * the final balance. Every finisher goes through here. A worker reporting its outcome is not
		 * kept waiting for it (its slot is free once the state is written); the settlement is durable
		 * (`settlement = 'pending'` until it went through, the sweeper retries it), and the service
		 * waits for these on stop. Never rejects.
		 */
		settleThenAnnounce(this: TasksThis, row: TaskRow): Promise<void> {
			const p: Promise<void> = this.settle(row)
				.then(() => this.announce(row))
				.catch(err => this.logger.warn(`announcing task ${row.id} failed`, (err as Error).message))
				.finally(() => this.finishing.delete(p));
			this.finishing.add(p);
			return p;
		},

		/** Settles (or releases) a finished task's hold once; a failure leaves it pending for the sweeper. */
		async settle(this: TasksThis, r: TaskRow) {
			if (r.settlement !== "pending") return;
			const s = settlementFor(
				Number(r.spent_credits),
				r.state === "succeeded" ? Number(r.cost_credits ?? 0) - Number(r.spent_credits) : 0,
				Number(r.max_cost_credits)
			);
			try {
				if (s.action === "settle")
					await this.broker.call("payments.settle", {
						userId: r.user_id,
						taskId: r.id,
						actualCost: s.actualCost
					});
				else await this.broker.call("payments.release", { userId: r.user_id, taskId: r.id });
				await this.store.markSettlement(r.id, s.action === "settle" ? "settled" : "released");
			} catch (err) {
				// Settled or released before (a retry after a lost answer): record what payments has.
				// Never throws: callers announce the final state after it, and the sweeper retries what is left pending.
				const known = isCode(err, "HOLD_ALREADY_SETTLED")
					? "settled"
					: isCode(err, "HOLD_RELEASED")
						? "released"
						: null;
				if (known)
					return this.store
						.markSettlement(r.id, known)
						.catch(e =>
							this.logger.warn(
								`settlement mark of task ${r.id} failed; the sweeper retries`,
								(e as Error).message
							)
						);
				this.logger.warn(`settlement of task ${r.id} failed; the sweeper retries`, (err as Error).message);
			}
		},

		async sweepOnce(this: TasksThis, now = Date.now()) {
			const expired = await this.store.transaction(async tx => {
				const rows = await this.store.lockExpired(now, 100, tx);
				const out: TaskRow[] = [];
				for (const cur of rows) {
					const holder = cur.node_id ? this.broker.registry.nodes.get(cur.node_id) : null;
					if (
						!leaseIsLost({
							expiresAt: cur.lease_expires_at!.getTime(),
							now,
							holderAlive: !!holder?.available,
							graceMs: this.cfg.leaseGraceMs
						})
					)
						continue;
					const next = afterLeaseExpiry({
						cancelRequested: cur.cancel_requested,
						attempts: cur.attempts,
						maxAttempts: cur.max_attempts
					});
					const error = {
						code: "LEASE_EXPIRED",
						message: `The worker on ${cur.node_id ?? "an unknown node"} stopped heartbeating`,
						attempt: cur.attempts
					};
					// The old lease id stays until another attempt leases the task: a late report is still taken.
					if (next === "queued")
						out.push(
							await this.store.requeue(cur.id, { now, notBefore: null, error, keepLeaseId: true }, tx)
						);
					else
						out.push(
							await this.store.finish(
								cur.id,
								{
									state: next,
									now,
									spentCredits: Number(cur.spent_credits),
									costCredits: Number(cur.spent_credits),
									error
								},
								tx
							)
						);
				}
				return out;
			});
			for (const row of expired) {
				this.broker.metrics.increment("tasks.lease.expired.total", { tier: row.tier });
				if (isTerminal(row.state)) await this.settleThenAnnounce(row);
				else this.announce(row);
			}
			if (expired.some(r => r.state === "queued")) this.broker.broadcast("tasks.available", {});
			// Settlements whose first try failed (payments down, node died between commit and call).
			const pending = await this.store.transaction(tx =>
				this.store.lockPendingSettlements(now - SETTLE_GRACE_MS, 50, tx)
			);
			for (const row of pending) await this.settle(row);
			// Holds taken for tasks that never came to exist (the node died between reserve and insert,
			// or a reserve committed after its caller gave up). The grace period outlasts any reserve
			// still in flight; release is idempotent, and 404 means there was no hold at all.
			const orphans = await this.store.transaction(tx =>
				this.store.lockStaleHoldIntents(now - holdIntentGraceMs(this.config.requestTimeoutMs), 50, tx)
			);
			let released = 0;
			for (const o of orphans) {
				try {
					await this.broker.call("payments.release", { userId: o.user_id, taskId: o.task_id });
					released++;
				} catch (err) {
					if (!isCode(err, "NOT_FOUND")) {
						this.logger.warn(
							`release of orphaned hold ${o.task_id} failed; the sweeper retries`,
							(err as Error).message
						);
						continue;
					}
				}
				await this.store.dropHoldIntent(o.task_id);
			}
			return { expired: expired.length, settled: pending.length, orphansReleased: released };
		},

		async buildSnapshot(this: TasksThis, now: number) {
			const queued = await this.store.queued();
			const positions = queuePositions(queued, now);
			const depth = emptyByTier(0);
			const waiting = emptyByTier(0);
			for (const t of queued) {
				depth[t.tier]++;
				if (!positions.has(t.id)) waiting[t.tier]++;
			}
			const counts = await this.store.countByState();
			const capacity = this.capacity();
			const p50RunMs = (await this.store.medianRunMs()) ?? this.cfg.defaultRunMs;
			this.p50Cache = { at: Date.now(), value: Math.max(1, p50RunMs) };
			const expected = tierBacklogWaitMs(queued, now, {
				capacity: Math.max(capacity, this.cfg.minCapacity),
				p50RunMs,
				idleWorkers: Math.max(0, capacity - counts.running)
			});
			const waitP50Ms = emptyByTier<number | null>(null);
			const waitP99Ms = emptyByTier<number | null>(null);
			for (const tier of TIER_ORDER) {
				let samples = await this.meta.waits(tier);
				if (!samples.length) {
					// Redis was wiped (or this is a fresh start): rebuild the rolling samples from PostgreSQL.
					samples = await this.store.recentWaits(tier, 1_000);
					if (samples.length) await this.meta.replaceWaits(tier, samples);
				}
				waitP50Ms[tier] = percentile(samples, 50);
				waitP99Ms[tier] = percentile(samples, 99);
			}
			const snapshot: QueueSnapshot = {
				at: now,
				depth,
				waiting,
				running: counts.running,
				capacity,
				p50RunMs,
				expectedWaitMs: expected,
				waitP50Ms,
				waitP99Ms
			};
			return { snapshot, positions };
		},

		async snapshotOnce(this: TasksThis, force = false) {
			if (
				!force &&
				!(await this.meta.tryLead("snapshot", this.broker.nodeID, Math.max(50, this.cfg.snapshotMs - 20)))
			) {
				const s = await this.meta.readSnapshot();
				if (s) this.setDepthGauges(s);
				return s;
			}
			const { snapshot, positions } = await this.buildSnapshot(Date.now());
			await this.meta.writeSnapshot(snapshot, positions);
			this.setDepthGauges(snapshot);
			return snapshot;
		},

		setDepthGauges(this: TasksThis, s: QueueSnapshot) {
			for (const tier of TIER_ORDER) this.broker.metrics.set("tasks.queue.depth", s.depth[tier], { tier });
		},

		startTimers(this: TasksThis) {
			const every = (ms: number, name: string, fn: () => Promise<unknown>, slot: "sweeping" | "snapshotting") => {
				const t = setInterval(() => {
					if (this[slot]) return;
					this[slot] = fn()
						.catch(err => this.logger.warn(`${name} failed`, (err as Error).message))
						.finally(() => {
							this[slot] = null;
						});
				}, ms);
				t.unref();
				this.timers.push(t);
			};
			every(this.cfg.sweepMs, "lease sweep", () => this.sweepOnce(), "sweeping");
			every(this.cfg.snapshotMs, "queue snapshot", () => this.snapshotOnce(), "snapshotting");
		}
	},

	created(this: TasksThis) {
		const rt = runtimeOf(this.broker);
		this.config = rt.config;
		this.cfg = rt.config.tasks;
		this.store = new TaskStore(rt.sequelize, TIERS, rt.config.dbNamedStatements);
		this.meta = queueMetaOf(this.broker);
		this.timers = [];
		this.sweeping = null;
		this.snapshotting = null;
		this.finishing = new Set();
		this.p50Cache = null;
		const m = this.broker.metrics;
		if (!m.hasMetric("tasks.queue.depth")) {
			m.register({
				type: "gauge",
				name: "tasks.queue.depth",
				labelNames: ["tier"],
				description: "Queued tasks per tier"
			});
			m.register({
				type: "histogram",
				name: "tasks.queue.wait.seconds",
				labelNames: ["tier"],
				unit: "seconds",
				description: "Queue wait (submission to first start) per tier",
				buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
			});
			m.register({
				type: "counter",
				name: "tasks.dispatched.total",
				labelNames: ["tier"],
				description: "Tasks leased to workers"
			});
			m.register({
				type: "counter",
				name: "tasks.lease.expired.total",
				labelNames: ["tier"],
				description: "Leases that expired (worker died or stalled)"
			});
		}
	},

	started(this: TasksThis) {
		this.startTimers();
	},

	async stopped(this: TasksThis) {
		for (const t of this.timers) clearInterval(t);
		this.timers = [];
		await Promise.allSettled([this.sweeping, this.snapshotting, ...this.finishing]);
	}
};

export default TasksService;
