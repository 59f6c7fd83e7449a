/**
 * A fake `ai` service implementing the ai side of docs/task-lifecycle.md, for the tasks tests:
 * `settings.capacity`, `ai.prepare` with a fixed price, and a worker loop that leases, heartbeats,
 * streams deltas and completes or fails — with configurable run time and failures. The real ai
 * service is tested on its own; these tests must not depend on it.
 */
import { Errors, type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { LeasePump } from "../../src/ai/lease-pump";
import { sentNowhere } from "../../src/runtime/call-errors";
import { replaySpool, reportDurably } from "../../src/ai/report";
import type { OutcomeSpool } from "../../src/ai/outcome-spool";

export interface FakeRun {
	taskId: string;
	nodeID: string;
	attempt: number;
	startedAt: number;
	endedAt?: number;
	outcome?: "complete" | "fail" | "lost" | "cancelled";
}

export interface FakeWorkerOptions {
	slots?: number;
	/** Credits ai.prepare asks to hold (maxCostCredits). */
	price?: number;
	/** Credits a finished run reports (≤ price). */
	cost?: number;
	/** How long a run takes (ms), per task. */
	runMs?: number | ((task: LeasedTaskLike) => number);
	deltas?: number;
	pollMs?: number;
	heartbeatMs?: number;
	/** A failure to report instead of completing, per task and attempt. */
	failWith?: (task: LeasedTaskLike) => { code: string; message?: string; retryable: boolean } | null;
	/** Called at the start and end of each run (for double-run checks). */
	record?: (run: FakeRun) => void;
	/** Prepare refuses prompts containing this (a 422 from the ai side). */
	refusePrompt?: string;
	/** false: publishes its capacity and answers ai.prepare but never leases (the test plays the worker). */
	leases?: boolean;
	/** Keeps outcomes on disk until tasks has them and replays what is left at start, like the real worker. */
	spool?: OutcomeSpool;
}

export interface LeasedTaskLike {
	taskId: string;
	leaseId: string;
	attempt: number;
	userId: string;
	tier: string;
	prompt: string;
	maxCostCredits: number;
}

interface Running {
	task: LeasedTaskLike;
	abort: AbortController;
}

interface FakeThis extends Service<ServiceSettingSchema & { capacity: { slots: number } }> {
	opts: Required<Omit<FakeWorkerOptions, "failWith" | "record" | "refusePrompt" | "leases" | "spool">> &
		FakeWorkerOptions;
	running: Map<string, Running>;
	timer: NodeJS.Timeout | null;
	leasePump: LeasePump<LeasedTaskLike>;
	stopping: boolean;
	pump(): Promise<void>;
	run(task: LeasedTaskLike): Promise<void>;
	report(
		action: "tasks.complete" | "tasks.fail",
		rec: FakeRun,
		params: { taskId: string; leaseId: string } & Record<string, unknown>
	): Promise<void>;
}

const sleep = (ms: number, signal?: AbortSignal) =>
	new Promise<void>(resolve => {
		const t = setTimeout(resolve, ms);
		signal?.addEventListener("abort", () => {
			clearTimeout(t);
			resolve();
		});
	});

export function fakeAiWorker(options: FakeWorkerOptions = {}): ServiceSchema {
	const opts = { slots: 2, price: 100, cost: 40, runMs: 50, deltas: 3, pollMs: 100, heartbeatMs: 200, ...options };
	const schema: ServiceSchema<
		ServiceSettingSchema & { capacity: { slots: number } },
		Record<string, never>,
		Record<string, never>,
		FakeThis
	> = {
		name: "ai",
		settings: { capacity: { slots: opts.slots } },
		actions: {
			prepare: {
				visibility: "public",
				params: {
					userId: "string",
					tier: "string",
					projectId: "string",
					kind: "string",
					prompt: "string",
					model: { type: "string", optional: true },
					models: { type: "array", optional: true },
					maxOutputTokens: { type: "number", optional: true }
				},
				handler(
					this: FakeThis,
					ctx: Context<{ prompt: string; model?: string; models?: string[]; maxOutputTokens?: number }>
				) {
					if (opts.refusePrompt && ctx.params.prompt.includes(opts.refusePrompt)) {
						throw new Errors.MoleculerClientError(
							"The prompt is too long for the model",
							422,
							"PROMPT_TOO_LONG",
							[{ field: "prompt", message: "too long" }]
						);
					}
					const models = ctx.params.models ?? [ctx.params.model ?? "fake-small"];
					return {
						models: models.map(model => ({ model, group: "small", provider: "fake" })),
						promptTokens: Math.ceil(ctx.params.prompt.length / 4),
						contextTokensBudget: 0,
						maxOutputTokens: ctx.params.maxOutputTokens ?? 256,
						maxCostCredits: opts.price
					};
				}
			},
			capacity: {
				visibility: "public",
				handler(this: FakeThis) {
					return { nodeID: this.broker.nodeID, slots: opts.slots, busy: this.running.size };
				}
			}
		},
		events: {
			"tasks.available"(this: FakeThis) {
				void this.pump();
			},
			"tasks.cancel"(this: FakeThis, ctx: Context<{ taskId: string }>) {
				this.running.get(ctx.params.taskId)?.abort.abort();
			}
		},
		methods: {
			async pump(this: FakeThis) {
				await this.leasePump.pump(); // the real worker's pump (src/ai/lease-pump)
			},

			/** Like the real worker: the outcome is sent until tasks has it (src/ai/report.ts). */
			async report(
				this: FakeThis,
				action: "tasks.complete" | "tasks.fail",
				rec: FakeRun,
				params: { taskId: string; leaseId: string } & Record<string, unknown>
			) {
				const r = await reportDurably(
					{
						spool: opts.spool,
						call: (a, p) => this.broker.call(a, p),
						stopping: () => this.stopping,
						logger: this.logger
					},
					action,
					params
				);
				if (r === "lost") rec.outcome = "lost";
			},

			async run(this: FakeThis, task: LeasedTaskLike) {
				const abort = new AbortController();
				this.running.set(task.taskId, { task, abort });
				const rec: FakeRun = {
					taskId: task.taskId,
					nodeID: this.broker.nodeID,
					attempt: task.attempt,
					startedAt: Date.now()
				};
				opts.record?.({ ...rec });
				let lost = false;
				const hb = setInterval(() => {
					this.broker
						.call("tasks.heartbeat", { taskId: task.taskId, leaseId: task.leaseId })
						.then(r => {
							if ((r as { cancel: boolean }).cancel) abort.abort();
						})
						.catch(err => {
							if ((err as { type?: string }).type === "LEASE_LOST") {
								lost = true;
								abort.abort();
							}
						});
				}, opts.heartbeatMs);
				try {
					const total = typeof opts.runMs === "function" ? opts.runMs(task) : opts.runMs;
					for (let i = 0; i < opts.deltas && !abort.signal.aborted; i++) {
						await sleep(total / (opts.deltas + 1), abort.signal);
						if (abort.signal.aborted) break;
						this.broker.broadcast("tasks.stream", {
							taskId: task.taskId,
							userId: task.userId,
							seq: i,
							type: "delta",
							text: `part ${i} `
						});
					}
					if (!abort.signal.aborted) await sleep(total / (opts.deltas + 1), abort.signal);
					if (this.stopping) return;
					if (lost) {
						rec.outcome = "lost";
						return;
					}
					const cost = Math.min(opts.cost, task.maxCostCredits);
					if (abort.signal.aborted) {
						rec.outcome = "cancelled";
						await this.report("tasks.fail", rec, {
							taskId: task.taskId,
							leaseId: task.leaseId,
							error: { code: "CANCELLED", message: "cancelled" },
							retryable: false,
							usage: { promptTokens: 1, completionTokens: 1 },
							costCredits: Math.floor(cost / 2)
						});
						return;
					}
					const failure = opts.failWith?.(task) ?? null;
					if (failure) {
						rec.outcome = "fail";
						await this.report("tasks.fail", rec, {
							taskId: task.taskId,
							leaseId: task.leaseId,
							error: { code: failure.code, message: failure.message ?? failure.code },
							retryable: failure.retryable,
							costCredits: 0
						});
						return;
					}
					rec.outcome = "complete";
					await this.report("tasks.complete", rec, {
						taskId: task.taskId,
						leaseId: task.leaseId,
						result: { text: `done ${task.taskId}` },
						usage: { promptTokens: 10, completionTokens: 20 },
						costCredits: cost
					});
				} catch (err) {
					if ((err as { type?: string }).type === "LEASE_LOST") rec.outcome = "lost";
					else if (!this.stopping) this.logger.warn(`fake worker: ${(err as Error).message}`);
				} finally {
					clearInterval(hb);
					rec.endedAt = Date.now();
					opts.record?.({ ...rec });
					this.running.delete(task.taskId);
					if (!this.stopping) void this.pump();
				}
			}
		},
		created(this: FakeThis) {
			this.opts = opts as FakeThis["opts"];
			this.running = new Map();
			this.timer = null;
			this.leasePump = new LeasePump<LeasedTaskLike>({
				free: () => opts.slots - this.running.size,
				canLease: () => !this.stopping && opts.leases !== false,
				lease: (slots, call) =>
					this.broker.call("tasks.lease", {
						nodeID: this.broker.nodeID,
						slots,
						leaseId: call.leaseId,
						...(call.recover.length ? { recover: call.recover } : {})
					}),
				start: task => void this.run(task),
				isRunning: taskId => this.running.has(taskId),
				mayHaveLeased: err => !sentNowhere(err)
			});
			this.stopping = false;
		},
		started(this: FakeThis) {
			this.timer = setInterval(() => void this.pump(), opts.pollMs);
			this.timer.unref();
			if (opts.spool)
				void replaySpool(
					{ call: (a, p) => this.broker.call(a, p), stopping: () => this.stopping, logger: this.logger },
					opts.spool
				).then(
					s => s.found && this.logger.info(`fake worker: spool replayed ${JSON.stringify(s)}`),
					err => this.logger.warn(`fake worker: spool not replayed: ${(err as Error).message}`)
				);
		},
		stopped(this: FakeThis) {
			this.stopping = true;
			if (this.timer) clearInterval(this.timer);
			for (const r of this.running.values()) r.abort.abort();
		}
	};
	return schema as unknown as ServiceSchema;
}
