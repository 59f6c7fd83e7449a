/**
 * A small in-memory stand-in for the tasks service's side of docs/task-lifecycle.md, to drive the
 * ai worker in tests: submit (ai.prepare → payments.reserve → queued → `tasks.available`), lease,
 * heartbeat (409 LEASE_LOST on a stale lease, `cancel` flag), complete (→ payments.settle),
 * fail (retry or dead-letter; partial usage settled), cancel (`tasks.cancel` hint), and the
 * `tasks.stream` events it receives, kept per task.
 */
import { randomUUID } from "node:crypto";
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import type { TierName } from "../../src/domain/tiers";

export interface FakeTask {
	taskId: string;
	userId: string;
	tier: TierName;
	projectId: string;
	kind: "chat" | "code" | "compare";
	prompt: string;
	model?: string;
	models?: string[];
	maxOutputTokens?: number;
	maxCostCredits: number;
	/** Submission time (epoch ms): just after ai.prepare counted the rate limits. */
	submittedAt: number;
	rateWindowEndMs: number | null;
	state: "queued" | "running" | "succeeded" | "failed" | "cancelled";
	leaseId: string | null;
	attempt: number;
	cancelRequested: boolean;
	result?: Record<string, unknown>;
	usage?: Record<string, unknown>;
	costCredits?: number;
	error?: { code: string; message: string };
	retryable?: boolean;
	events: Array<Record<string, unknown>>;
	settleCalls: number;
	leasedBy: string[];
}

export interface FakeTasksState {
	tasks: Map<string, FakeTask>;
	maxAttempts: number;
	/** Resolves when the task reaches a final state. */
	waitFinal(taskId: string, timeoutMs?: number): Promise<FakeTask>;
}

const FINAL = new Set(["succeeded", "failed", "cancelled"]);

export function fakeTasksService(opts: { maxAttempts?: number } = {}): {
	schema: ServiceSchema;
	state: FakeTasksState;
} {
	const tasks = new Map<string, FakeTask>();
	const waiters = new Map<string, Array<(t: FakeTask) => void>>();
	const finalise = (t: FakeTask) => {
		for (const w of waiters.get(t.taskId) ?? []) w(t);
		waiters.delete(t.taskId);
	};
	const state: FakeTasksState = {
		tasks,
		maxAttempts: opts.maxAttempts ?? 3,
		waitFinal(taskId, timeoutMs = 20_000) {
			const t = tasks.get(taskId);
			if (t && FINAL.has(t.state)) return Promise.resolve(t);
			return new Promise((resolve, reject) => {
				const timer = setTimeout(
					() =>
						reject(
							new Error(
								`task ${taskId} not final after ${timeoutMs} ms (state ${tasks.get(taskId)?.state})`
							)
						),
					timeoutMs
				);
				const list = waiters.get(taskId) ?? [];
				list.push(t2 => {
					clearTimeout(timer);
					resolve(t2);
				});
				waiters.set(taskId, list);
			});
		}
	};
	const own = (taskId: string, leaseId: string) => {
		const t = tasks.get(taskId);
		if (!t || t.state !== "running" || t.leaseId !== leaseId)
			throw new Errors.MoleculerClientError("The lease is no longer held", 409, "LEASE_LOST");
		return t;
	};

	const schema: ServiceSchema = {
		name: "tasks",
		actions: {
			submit: {
				async handler(
					ctx: Context<
						Omit<
							FakeTask,
							| "taskId"
							| "state"
							| "leaseId"
							| "attempt"
							| "cancelRequested"
							| "events"
							| "maxCostCredits"
							| "settleCalls"
							| "leasedBy"
							| "submittedAt"
							| "rateWindowEndMs"
						>
					>
				) {
					const p = ctx.params;
					const prepared = await ctx.call<
						{ maxCostCredits: number; rateWindowEndMs: number | null },
						unknown
					>("ai.prepare", p);
					const taskId = randomUUID();
					await ctx.call("payments.reserve", {
						userId: p.userId,
						taskId,
						maxCost: prepared.maxCostCredits,
						tier: p.tier
					});
					const t: FakeTask = {
						...p,
						taskId,
						maxCostCredits: prepared.maxCostCredits,
						rateWindowEndMs: prepared.rateWindowEndMs,
						submittedAt: Date.now(),
						state: "queued",
						leaseId: null,
						attempt: 0,
						cancelRequested: false,
						events: [],
						settleCalls: 0,
						leasedBy: []
					};
					tasks.set(taskId, t);
					ctx.broadcast("tasks.available", {});
					return { taskId, maxCostCredits: prepared.maxCostCredits };
				}
			},
			lease: {
				// The call's lease id (the worker's, as the real tasks.lease takes it); recovery is not faked.
				handler(ctx: Context<{ nodeID: string; slots: number; leaseId?: string }>) {
					const out = [];
					for (const t of tasks.values()) {
						if (out.length >= ctx.params.slots) break;
						if (t.state !== "queued") continue;
						t.state = "running";
						t.leaseId = ctx.params.leaseId ?? randomUUID();
						t.attempt++;
						t.leasedBy.push(ctx.params.nodeID);
						out.push({
							taskId: t.taskId,
							leaseId: t.leaseId,
							attempt: t.attempt,
							userId: t.userId,
							tier: t.tier,
							projectId: t.projectId,
							kind: t.kind,
							prompt: t.prompt,
							model: t.model,
							models: t.models,
							maxOutputTokens: t.maxOutputTokens,
							maxCostCredits: t.maxCostCredits,
							idempotencyKey: t.taskId,
							submittedAt: new Date(t.submittedAt).toISOString(),
							rateWindowEndMs: t.rateWindowEndMs
						});
					}
					return out;
				}
			},
			heartbeat: {
				handler(ctx: Context<{ taskId: string; leaseId: string }>) {
					const t = own(ctx.params.taskId, ctx.params.leaseId);
					return { ok: true, cancel: t.cancelRequested };
				}
			},
			complete: {
				async handler(
					ctx: Context<{
						taskId: string;
						leaseId: string;
						result: Record<string, unknown>;
						usage: Record<string, unknown>;
						costCredits: number;
					}>
				) {
					const t = own(ctx.params.taskId, ctx.params.leaseId);
					if (ctx.params.costCredits > t.maxCostCredits)
						throw new Errors.MoleculerClientError(
							"cost over the reservation",
							422,
							"COST_OVER_RESERVATION"
						);
					t.settleCalls++;
					await ctx.call("payments.settle", {
						userId: t.userId,
						taskId: t.taskId,
						actualCost: ctx.params.costCredits
					});
					Object.assign(t, {
						state: "succeeded",
						result: ctx.params.result,
						usage: ctx.params.usage,
						costCredits: ctx.params.costCredits,
						leaseId: null
					});
					finalise(t);
					return { ok: true };
				}
			},
			fail: {
				async handler(
					ctx: Context<{
						taskId: string;
						leaseId: string;
						error: { code: string; message: string };
						retryable: boolean;
						usage?: Record<string, unknown>;
						costCredits?: number;
					}>
				) {
					const t = own(ctx.params.taskId, ctx.params.leaseId);
					const p = ctx.params;
					t.error = p.error;
					t.retryable = p.retryable;
					t.usage = p.usage;
					t.leaseId = null;
					if (p.error.code !== "CANCELLED" && p.retryable && t.attempt < state.maxAttempts) {
						t.state = "queued";
						ctx.broadcast("tasks.available", {});
						return { ok: true, requeued: true };
					}
					if ((p.costCredits ?? 0) > t.maxCostCredits)
						throw new Errors.MoleculerClientError(
							"cost over the reservation",
							422,
							"COST_OVER_RESERVATION"
						);
					t.costCredits = p.costCredits ?? 0;
					t.settleCalls++;
					await ctx.call("payments.settle", {
						userId: t.userId,
						taskId: t.taskId,
						actualCost: t.costCredits
					});
					t.state = p.error.code === "CANCELLED" ? "cancelled" : "failed";
					finalise(t);
					return { ok: true, requeued: false };
				}
			},
			cancel: {
				async handler(ctx: Context<{ taskId: string }>) {
					const t = tasks.get(ctx.params.taskId);
					if (!t) throw new Errors.MoleculerClientError("Task not found", 404, "NOT_FOUND");
					if (t.state === "queued") {
						t.state = "cancelled";
						await ctx.call("payments.release", { userId: t.userId, taskId: t.taskId });
						finalise(t);
					} else if (t.state === "running") {
						t.cancelRequested = true;
						ctx.broadcast("tasks.cancel", { taskId: t.taskId });
					}
					return { state: t.state };
				}
			}
		},
		events: {
			"tasks.stream"(ctx: Context<Record<string, unknown>>) {
				tasks.get(String(ctx.params.taskId))?.events.push(ctx.params);
			}
		}
	};
	return { schema, state };
}
