/**
 * tasks: the durable, tier-fair, load-aware queue of AI work (docs/tasks.md, docs/task-lifecycle.md).
 * A shell: submission is src/tasks/submit.ts, the workers' reports src/tasks/reports.ts, cancelling
 * src/tasks/cancel.ts, the sweeper and settlements src/tasks/sweep.ts, the queue snapshot
 * src/tasks/snapshot.ts, the answers src/tasks/views.ts; the order is src/tasks/scheduling.ts, the
 * SQL src/tasks/store.ts, the derived metadata src/tasks/queue-meta.ts.
 */
import { randomUUID } from "node:crypto";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { durableEvents, type DurableThis } from "../mixins/durable-events.mixin";
import type { Config } from "../src/config";
import { TIERS, TIER_ORDER, isTierName } from "../src/domain/tiers";
import { readCursor, pageOf } from "../src/http/cursor";
import { Conflict, NotFound, Unavailable } from "../src/errors";
import { INTERNAL, currentUser, type Ctx } from "../src/kit/service";
import { orgOfKey } from "../src/auth/org-key";
import { orgPayerId } from "../src/payments/payer";
import { runtimeOf } from "../src/runtime/runtime";
import { cancelTask, requeueTask } from "../src/tasks/cancel";
import type { TasksConfig } from "../src/tasks/config";
import type { LeasedTask } from "../src/tasks/contract";
import { COMPLETE_PARAMS, FAIL_PARAMS, LIST_PARAMS, SUBMIT_PARAMS, UUID } from "../src/tasks/params";
import { registerTasksMetrics } from "../src/tasks/metrics";
import { queueMetaOf, type QueueMeta, type QueueSnapshot } from "../src/tasks/queue-meta";
import { completeTask, failTask, type CompleteReport, type FailReport, type ReportDeps } from "../src/tasks/reports";
import { isTerminal, type TaskState } from "../src/tasks/rules";
import { buildSnapshot, capacityOf } from "../src/tasks/snapshot";
import { TaskStore, type PreparedTask, type TaskRow } from "../src/tasks/store";
import type { TaskStateEvent } from "../src/tasks/stream-hub";
import { submitTask, type SubmitDeps, type SubmitParams } from "../src/tasks/submit";
import { settleTask, sweepOnce, type SettleDeps, type SweepDeps } from "../src/tasks/sweep";
import { inspectView, leasedTask, queueStatsView, taskView } from "../src/tasks/views";
import { cutOffRecently } from "../src/runtime/nats-transporter";
import { registerRetentionMetrics, runPrune, type PruneReport } from "../src/db/retention";
import { eventPruneRules } from "../src/events/retention";
import { taskHistory, tasksPruneRule } from "../src/tasks/retention";

const SETTLE_GRACE_MS = 5_000;
/** How long a hold intent may stay without its task before its hold counts as orphaned: well past any reserve call still in flight. */
const holdIntentGraceMs = (requestTimeoutMs: number) => Math.max(60_000, 3 * requestTimeoutMs);

export type { SubmitParams, LeasedTask };

interface TasksThis extends Service, DurableThis {
	cfg: TasksConfig;
	config: Config;
	store: TaskStore;
	meta: QueueMeta;
	timers: NodeJS.Timeout[];
	sweeping: Promise<unknown> | null;
	snapshotting: Promise<unknown> | null;
	pruning: Promise<unknown> | null;
	stopping: boolean;
	p50Cache: { at: number; value: number } | null;
	finishing: Set<Promise<void>>;
	ownTask(ctx: Ctx<unknown>, id: string): Promise<TaskRow>;
	capacity(): number;
	submitDeps(ctx: Ctx<unknown>): SubmitDeps;
	reportDeps(): ReportDeps;
	settleDeps(): SettleDeps;
	sweepDeps(): SweepDeps;
	p50RunMs(): Promise<number>;
	statsView(): Promise<ReturnType<typeof queueStatsView>>;
	dispatched(row: TaskRow, now: number): void;
	announce(row: TaskRow, extra?: Partial<TaskStateEvent>): void;
	settleThenAnnounce(row: TaskRow): Promise<void>;
	snapshotOnce(force?: boolean): Promise<QueueSnapshot | null>;
	pruneOnce(dryRun?: boolean): Promise<PruneReport | null>;
	setDepthGauges(snapshot: QueueSnapshot): void;
	startTimers(): void;
}

const TasksService: ServiceSchema<ServiceSettingSchema, Record<string, never>, Record<string, never>, TasksThis> = {
	name: "tasks",
	mixins: [durableEvents({ group: "tasks" })],

	actions: {
		// ---- Public (through the gateway) ---------------------------------------------------------
		submit: {
			auth: "required",
			orgKey: true,
			// Spends credits (the hold, then the run): an API key needs `ai:use` as well as `tasks:write`.
			scope: ["tasks:write", "ai:use"],
			params: SUBMIT_PARAMS,
			async handler(this: TasksThis, ctx: Ctx<SubmitParams>) {
				const user = currentUser(ctx);
				const key = ctx.meta.idempotencyKey ?? null;
				const apiKey = user.keyId
					? { id: user.keyId, monthlyCapCredits: user.keyLimits?.monthlyCapCredits ?? null }
					: null;
				const out = await submitTask(this.submitDeps(ctx), user.id, ctx.params, key, apiKey);
				if (out.replayed) {
					ctx.meta.$statusCode = 200;
					const task = taskView(out.row, out.position);
					return { task, position: out.position, expectedStartAt: null, replayed: true };
				}
				// A task leased in its insert was announced running when it was handed to the worker.
				if (out.row.state === "queued") {
					this.announce(out.row, { position: out.position });
					this.broker.broadcast("tasks.available", { tier: out.row.tier });
				}
				ctx.meta.$statusCode = 202;
				const { position, expectedStartAt, admission } = out;
				return { task: taskView(out.row, position), position, expectedStartAt, admission };
			}
		},

		get: {
			auth: "required",
			orgKey: true,
			scope: "tasks:read",
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Ctx<{ id: string }>) {
				// The context record is read beside the row (it is shown only once the row is the caller's).
				const [row, first] = await Promise.all([
					this.ownTask(ctx, ctx.params.id),
					this.store.contextsOf([ctx.params.id])
				]);
				// The record commits with the attempt's report (the final state's statement), so a read that
				// ran before the row's may have missed it: a finished row without one is read again.
				const contexts = row.finished_at && !first.has(row.id) ? await this.store.contextsOf([row.id]) : first;
				let position: number | null = null;
				if (row.state === "queued")
					position = (await this.meta.position(row.id)) ?? (await this.store.positionOf(row.id, Date.now()));
				return taskView(row, position, contexts.get(row.id));
			}
		},

		list: {
			auth: "required",
			// An organisation API key lists its creator's tasks paid by its organisation (its projects'
			// tasks: src/tasks/submit.ts taskPayer), never the creator's personal ones.
			orgKey: true,
			scope: "tasks:read",
			params: LIST_PARAMS,
			async handler(this: TasksThis, ctx: Ctx<{ limit: number; cursor?: string; state?: TaskState }>) {
				const user = currentUser(ctx);
				const { limit, state } = ctx.params;
				const after = readCursor(ctx.params.cursor, ["time", "uuid"] as const);
				const cursor = after ? { createdAt: new Date(after[0]), id: after[1] } : null;
				const keyOrg = orgOfKey(user);
				const payer = keyOrg ? orgPayerId(keyOrg) : undefined;
				const rows = await this.store.list(user.id, limit + 1, cursor, state, payer);
				const page = pageOf(rows, limit, r => [r.created_at, r.id]);
				const contexts = await this.store.contextsOf(page.items.map(r => r.id));
				return {
					items: page.items.map(r => taskView(r, null, contexts.get(r.id))),
					nextCursor: page.nextCursor
				};
			}
		},

		cancel: {
			auth: "required",
			orgKey: true,
			scope: "tasks:write",
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Ctx<{ id: string }>) {
				if (orgOfKey(ctx.meta.user)) await this.ownTask(ctx, ctx.params.id);
				const out = await cancelTask(this.store, currentUser(ctx).id, ctx.params.id, Date.now());
				if (out.changed && out.row.state === "cancelled") await this.settleThenAnnounce(out.row);
				else if (out.changed) this.broker.broadcast("tasks.cancel", { taskId: out.row.id });
				return taskView((await this.store.byId(out.row.id)) ?? out.row);
			}
		},

		queueStats: {
			auth: "required",
			orgKey: true,
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
				slots: { type: "number", integer: true, min: 0, max: 10_000, convert: true },
				// The lease id this call's tasks get, chosen by the worker (src/ai/lease-pump.ts).
				leaseId: { type: "uuid", optional: true },
				// Lease ids of this worker's earlier calls whose answer it never got: their tasks come back.
				recover: { type: "array", items: "uuid", max: 64, optional: true }
			},
			async handler(
				this: TasksThis,
				ctx: Context<{ nodeID: string; slots: number; leaseId?: string; recover?: string[] }>
			): Promise<LeasedTask[]> {
				const { nodeID, leaseId, recover } = ctx.params;
				const slots = Math.min(ctx.params.slots, this.cfg.maxLeaseSlots);
				const now = Date.now();
				const recovered = recover?.length
					? await this.store.recoverLeases({
							nodeId: nodeID,
							leaseIds: recover,
							now,
							leaseMs: this.cfg.leaseMs
						})
					: [];
				if (recovered.length)
					this.broker.metrics.increment("tasks.lease.recovered.total", {}, recovered.length);
				// A drained node gets none: the lease statement checks it.
				const rows = slots
					? await this.store.lease({
							nodeId: nodeID,
							slots,
							now,
							leaseMs: this.cfg.leaseMs,
							totalWorkers: Math.max(this.capacity(), slots),
							leaseId: leaseId ?? null
						})
					: [];
				for (const row of rows) this.dispatched(row, now);
				return [...recovered, ...rows].map(leasedTask);
			}
		},

		heartbeat: {
			visibility: INTERNAL,
			params: { taskId: UUID, leaseId: UUID },
			async handler(this: TasksThis, ctx: Context<{ taskId: string; leaseId: string }>) {
				const { taskId, leaseId } = ctx.params;
				const r = await this.store.heartbeat(taskId, leaseId, Date.now(), this.cfg.leaseMs);
				if (!r) throw Conflict("This lease is no longer valid", "LEASE_LOST");
				return { ok: true, cancel: r.cancelRequested };
			}
		},

		complete: {
			visibility: INTERNAL,
			params: COMPLETE_PARAMS,
			async handler(this: TasksThis, ctx: Context<CompleteReport>) {
				const row = await completeTask(this.reportDeps(), ctx.params);
				// The worker's slot is free once the state is written; settling and announcing follow.
				void this.settleThenAnnounce(row);
				return { ok: true, state: row.state };
			}
		},

		fail: {
			visibility: INTERNAL,
			params: FAIL_PARAMS,
			async handler(this: TasksThis, ctx: Context<FailReport>) {
				const row = await failTask(this.reportDeps(), ctx.params);
				if (isTerminal(row.state)) void this.settleThenAnnounce(row);
				else {
					this.announce(row);
					this.broker.broadcast("tasks.available", { tier: row.tier });
				}
				return { ok: true, state: row.state, notBefore: row.not_before?.toISOString() ?? null };
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
				const position = row.state === "queued" ? await this.store.positionOf(row.id, Date.now()) : null;
				return inspectView(row, position, contexts.get(row.id));
			}
		},

		requeue: {
			visibility: INTERNAL,
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Context<{ id: string }>) {
				const row = await requeueTask(this.store, ctx.params.id, Date.now());
				this.announce(row);
				this.broker.broadcast("tasks.available", { tier: row.tier });
				return taskView(row);
			}
		},

		adminCancel: {
			visibility: INTERNAL,
			params: { id: UUID },
			async handler(this: TasksThis, ctx: Context<{ id: string }>) {
				const row = await this.store.byId(ctx.params.id);
				if (!row) throw NotFound("Task");
				const operator = { id: row.user_id, role: "operator", scopes: ["*"] };
				return ctx.call("tasks.cancel", { id: row.id }, { meta: { user: operator } });
			}
		},

		drain: {
			visibility: INTERNAL,
			params: { nodeID: { type: "string", min: 1, max: 200 }, undo: { type: "boolean", default: false } },
			async handler(this: TasksThis, ctx: Context<{ nodeID: string; undo: boolean }>) {
				const { nodeID, undo } = ctx.params;
				if (undo) return { nodeID, drained: false, changed: await this.store.undrain(nodeID) };
				await this.store.drain(nodeID, "operator");
				return { nodeID, drained: true };
			}
		},

		/** Runs one sweep now (operators; tests that cannot wait for the timer). */
		sweep: {
			visibility: INTERNAL,
			async handler(this: TasksThis) {
				return sweepOnce(this.sweepDeps(), Date.now());
			}
		},

		/**
		 * One retention run now (REPL tasks-prune): finished tasks past TASKS_RETENTION_DAYS into the
		 * daily summaries, then the event bookkeeping; `dryRun` counts what would go. `ran: false` when
		 * another node's run holds the lock.
		 */
		prune: {
			visibility: INTERNAL,
			params: { dryRun: { type: "boolean", default: false, convert: true } },
			async handler(this: TasksThis, ctx: Context<{ dryRun: boolean }>) {
				const report = await this.pruneOnce(ctx.params.dryRun);
				return report
					? { ran: true, ...report }
					: { ran: false, dryRun: ctx.params.dryRun, tables: {}, unfinished: [] };
			}
		},

		/** A user's daily summaries of pruned tasks (REPL tasks-history), newest first. */
		history: {
			visibility: INTERNAL,
			params: {
				userId: { type: "string", min: 1, max: 200 },
				limit: { type: "number", integer: true, min: 1, max: 10_000, default: 100, convert: true }
			},
			async handler(this: TasksThis, ctx: Context<{ userId: string; limit: number }>) {
				const { userId, limit } = ctx.params;
				return {
					userId,
					retentionDays: this.config.retention.days.tasks,
					days: await taskHistory(this.store.sequelize, userId, limit)
				};
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
			return queueStatsView(s, this.cfg.admission);
		},

		/**
		 * The caller's task; someone else's is 404 like a missing one. So is a task retention pruned
		 * (its finish older than TASKS_RETENTION_DAYS): the details say how long finished tasks are kept.
		 */
		async ownTask(this: TasksThis, ctx: Ctx<unknown>, id: string) {
			const user = currentUser(ctx);
			const row = await this.store.byId(id);
			if (!row || row.user_id !== user.id) {
				const days = this.config.retention.days.tasks;
				throw NotFound("Task", days > 0 ? { finishedTasksKeptDays: days } : undefined);
			}
			// An organisation API key sees only tasks in its organisation's projects (the projects
			// service keeps it there: src/auth/org-key.ts).
			if (orgOfKey(user))
				await ctx
					.call("projects.access", { projectId: row.project_id, userId: user.id })
					.catch((err: Error) => {
						throw (err as { code?: number }).code === 404 ? NotFound("Task") : err;
					});
			return row;
		},

		/** One retention run of this service's rules under the shared lock (null: another node runs one). */
		pruneOnce(this: TasksThis, dryRun = false) {
			const r = this.config.retention;
			return runPrune(this.store.sequelize, "tasks", [tasksPruneRule(r.days.tasks), ...eventPruneRules(r.days)], {
				now: Date.now(),
				batchRows: r.batchRows,
				maxBatches: r.maxBatches,
				pauseMs: r.pauseMs,
				dryRun,
				onPruned: (table, rows) =>
					this.broker.metrics.increment("retention.pruned.rows.total", { table }, rows),
				stopping: () => this.stopping
			});
		},

		/** The collaborators of a submission, each a call over the broker on behalf of `ctx`. */
		submitDeps(this: TasksThis, ctx: Ctx<unknown>): SubmitDeps {
			return {
				store: this.store,
				services: {
					checkProjectAccess: async (projectId, userId) => {
						const a = (await ctx.call("projects.access", { projectId, userId })) as {
							orgId?: string | null;
							headVersion?: unknown;
						};
						return {
							orgId: a?.orgId ?? null,
							headVersion: Number.isSafeInteger(a?.headVersion) ? (a.headVersion as number) : null
						};
					},
					orgSpending: async (orgId, userId) => {
						const m = (await ctx.call("orgs.roleOf", { orgId, userId })) as {
							monthlyCapCredits: number | null;
							orgMonthlyCapCredits?: number | null;
						} | null;
						return m
							? { memberCapCredits: m.monthlyCapCredits, orgCapCredits: m.orgMonthlyCapCredits ?? null }
							: null;
					},
					tierOf: async userId => {
						const info = (await ctx.call("users.getTier", { userId })) as { tier?: unknown } | null;
						return isTierName(info?.tier) ? info.tier : "free";
					},
					orgTierOf: async orgId => {
						const facts = (await ctx.call("payments.facts", { userId: orgPayerId(orgId) })) as {
							tier?: unknown;
						} | null;
						return isTierName(facts?.tier) ? facts.tier : "free";
					},
					prepare: input => ctx.call("ai.prepare", input) as Promise<PreparedTask>,
					priorityBoost: input => ctx.call("payments.priorityBoost", input) as Promise<{ boostMs: number }>,
					reserve: input => ctx.call("payments.reserve", input),
					release: input => ctx.call("payments.release", input)
				},
				capacity: () => this.capacity(),
				p50RunMs: () => this.p50RunMs(),
				queuedPosition: taskId => this.meta.position(taskId),
				claimWorkerSlot: () => {
					const worker = runtimeOf(this.broker).localWorker;
					const claim = this.stopping ? null : (worker?.claim() ?? null);
					if (!worker || !claim) return null;
					return {
						lease: {
							nodeId: worker.nodeId,
							leaseId: claim.leaseId,
							leaseMs: this.cfg.leaseMs,
							totalWorkers: this.capacity()
						},
						start: (row, access) => {
							// Announced running before the worker can stream a delta of it. The worker starts
							// once the submission's answer is on its way: the client opens the task's stream
							// on that answer, and the first delta waits for both.
							this.dispatched(row, Date.now());
							setImmediate(() => claim.start(leasedTask(row), access ?? undefined));
						},
						release: () => claim.release()
					};
				},
				config: this.cfg,
				now: () => Date.now(),
				newId: () => randomUUID(),
				warn: message => this.logger.warn(message)
			};
		},

		reportDeps(this: TasksThis): ReportDeps {
			return {
				store: this.store,
				publish: (tx, topic, payload) => this.publishDurable(tx, topic, payload),
				published: () => runtimeOf(this.broker).relay.kick(),
				retry: { baseMs: this.cfg.retryBaseMs, maxMs: this.cfg.retryMaxMs },
				now: () => Date.now(),
				random: Math.random
			};
		},

		settleDeps(this: TasksThis): SettleDeps {
			return {
				store: this.store,
				payments: {
					settle: input => this.broker.call("payments.settle", input),
					release: input => this.broker.call("payments.release", input)
				},
				warn: (message, detail) => this.logger.warn(message, detail)
			};
		},

		sweepDeps(this: TasksThis): SweepDeps {
			return {
				...this.settleDeps(),
				store: this.store,
				// A holder missing from the registry counts as alive while this node was itself cut off from
				// NATS (everyone looked gone) and for twice the heartbeat timeout after, until nodes re-register.
				holderAlive: nodeId =>
					!!(nodeId && this.broker.registry.nodes.get(nodeId)?.available) ||
					cutOffRecently(this.broker, 2000 * (this.broker.options.heartbeatTimeout ?? 30)),
				onExpired: async rows => {
					for (const row of rows) {
						this.broker.metrics.increment("tasks.lease.expired.total", { tier: row.tier });
						if (isTerminal(row.state)) await this.settleThenAnnounce(row);
						else this.announce(row);
					}
					if (rows.some(r => r.state === "queued")) this.broker.broadcast("tasks.available", {});
				},
				graceMs: {
					lease: this.cfg.leaseGraceMs,
					settlement: SETTLE_GRACE_MS,
					holdIntent: holdIntentGraceMs(this.config.requestTimeoutMs)
				}
			};
		},

		capacity(this: TasksThis): number {
			return capacityOf(this.broker.registry.getServiceList({ onlyAvailable: true, withActions: false }));
		},

		async p50RunMs(this: TasksThis) {
			const now = Date.now();
			if (this.p50Cache && now - this.p50Cache.at < this.cfg.snapshotMs) return this.p50Cache.value;
			const value = (await this.store.medianRunMs()) ?? this.cfg.defaultRunMs;
			this.p50Cache = { at: now, value: Math.max(1, value) };
			return this.p50Cache.value;
		},

		/** A leased row: counted, its first wait sampled (metrics and the rolling percentiles), announced. */
		dispatched(this: TasksThis, row: TaskRow, now: number) {
			this.broker.metrics.increment("tasks.dispatched.total", { tier: row.tier });
			if (row.attempts === 1) {
				const waitMs = Math.max(0, now - row.enqueued_at.getTime());
				this.broker.metrics.observe("tasks.queue.wait.seconds", waitMs / 1000, { tier: row.tier });
				this.meta
					.pushWait(row.tier, waitMs)
					.catch(err => this.logger.warn("wait sample not recorded", (err as Error).message));
			}
			this.announce(row);
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
				costCredits: r.cost_credits === null ? null : Number(r.cost_credits),
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
			const p: Promise<void> = settleTask(this.settleDeps(), row)
				.then(() => this.announce(row))
				.catch(err => this.logger.warn(`announcing task ${row.id} failed`, (err as Error).message))
				.finally(() => this.finishing.delete(p));
			this.finishing.add(p);
			return p;
		},

		async snapshotOnce(this: TasksThis, force = false) {
			const ttl = Math.max(50, this.cfg.snapshotMs - 20);
			if (!force && !(await this.meta.tryLead("snapshot", this.broker.nodeID, ttl))) {
				const s = await this.meta.readSnapshot();
				if (s) this.setDepthGauges(s);
				return s;
			}
			const deps = { store: this.store, meta: this.meta, capacity: this.capacity(), config: this.cfg };
			const { snapshot, positions } = await buildSnapshot(deps, Date.now());
			this.p50Cache = { at: Date.now(), value: Math.max(1, snapshot.p50RunMs) };
			await this.meta.writeSnapshot(snapshot, positions);
			this.setDepthGauges(snapshot);
			return snapshot;
		},

		setDepthGauges(this: TasksThis, s: QueueSnapshot) {
			for (const tier of TIER_ORDER) this.broker.metrics.set("tasks.queue.depth", s.depth[tier], { tier });
		},

		startTimers(this: TasksThis) {
			const every = (
				ms: number,
				name: string,
				fn: () => Promise<unknown>,
				slot: "sweeping" | "snapshotting" | "pruning"
			) => {
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
			every(this.cfg.sweepMs, "lease sweep", () => sweepOnce(this.sweepDeps(), Date.now()), "sweeping");
			every(this.cfg.snapshotMs, "queue snapshot", () => this.snapshotOnce(), "snapshotting");
			every(this.config.retention.everyMs, "retention", () => this.pruneOnce(), "pruning");
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
		this.pruning = null;
		this.stopping = false;
		this.finishing = new Set();
		this.p50Cache = null;
		registerTasksMetrics(this.broker.metrics);
		registerRetentionMetrics(this.broker.metrics);
	},

	started(this: TasksThis) {
		this.startTimers();
	},

	async stopped(this: TasksThis) {
		this.stopping = true;
		for (const t of this.timers) clearInterval(t);
		this.timers = [];
		await Promise.allSettled([this.sweeping, this.snapshotting, this.pruning, ...this.finishing]);
	}
};

export default TasksService;
