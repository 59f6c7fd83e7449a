/**
 * Running one leased task end to end (docs/task-lifecycle.md, worker side): heartbeat, prompt
 * from the project's files, generation(s), change set → project version, then exactly one of
 * `tasks.complete` / `tasks.fail` (none when the lease was lost: someone else owns the task now).
 */
import type { CheckedAccess, LeasedTask } from "../tasks/contract";
import type { TierName } from "../domain/tiers";
import type { ChangeOp } from "../projects/changeset";
import type { AiConfig } from "./config";
import { CatalogModel, findModel } from "./catalog";
import { parseCodeOutput, toChangeOps } from "./code-output";
import { type AttemptEvent, GenerationError, GenerationResult, ModelUsage, generate } from "./generate";
import { PrepareError, prepareTask, servedModels, worstCaseTokens } from "./prompt";
import { type ContextRecord, contextMessages, shownFrames } from "./context-frames";
import { type ContextSourceDeps, taskContext } from "./context-source";
import type { StreamEvent, StreamRequest } from "./providers";
import type { DeploymentRouter } from "./router";
import { reportDurably } from "./report";
import type { OutcomeSpool } from "./outcome-spool";

export type { LeasedTask };

export interface RunnerDeps {
	cfg: AiConfig;
	router: DeploymentRouter;
	call<T = unknown>(action: string, params: unknown, opts?: { timeout?: number; retries?: number }): Promise<T>;
	/** How long `context.select` may take before the task runs on the degraded context. */
	contextTimeoutMs: number;
	onContext?: ContextSourceDeps["onOutcome"];
	broadcast(event: string, payload: unknown): void;
	onAttempt?(ev: AttemptEvent): void;
	onFallback?(ev: { from: string; to: string; reason: string }): void;
	/** Brings the user's tokens-per-minute count to what this attempt used (see UsageLimiter.settle). */
	settleTokens?(
		userId: string,
		tier: TierName,
		p: { counted: number; used: number; windowEndMs: number | null; firstAttempt: boolean }
	): Promise<void>;
	logger: { warn(...a: unknown[]): void; info(...a: unknown[]): void };
	stream?: (req: StreamRequest) => AsyncIterable<StreamEvent>;
	/** True once the worker is stopping: an outcome still unreported is then given up (src/ai/report.ts). */
	stopping?: () => boolean;
	/** Backoff of the report loop (defaults: 100 ms doubling to 1 s). */
	reportDelayMs?: { base: number; max: number };
	/** Keeps each outcome on disk until the tasks service has it (src/ai/outcome-spool.ts). */
	spool?: OutcomeSpool | null;
}

export interface RunningTask {
	abort: AbortController;
	cancelled: boolean;
	leaseLost: boolean;
}

interface ContextResult {
	version: number;
	files: Array<{ path: string; content: string }>;
	omitted: Array<{ path: string; reason: string }>;
}

export interface Candidate {
	model: string;
	text: string;
	finishReason: string;
	usage: ModelUsage;
	costCredits: number;
	error?: { code: string; message: string };
}

/**
 * The task's event stream. Leading edge, then coalescing: a delta that finds the stream idle is
 * sent at once (time to first token and paced streams pay no deferral), and deltas arriving after
 * it within the same event-loop turn are gathered into one `tasks.stream` event sent on the next
 * turn (fewer broadcasts when a burst arrives at once). Every other event flushes pending text
 * first, so `seq` order is arrival order.
 */
export function streamPublisher(send: (ev: Record<string, unknown>) => void) {
	let seq = 0;
	let pending: { text: string; model?: string } | null = null;
	/** A delta was sent this turn: later ones wait for the turn to end. */
	let busy = false;
	const sendDelta = (p: { text: string; model?: string }) =>
		send({ seq: seq++, type: "delta", text: p.text, ...(p.model ? { model: p.model } : {}) });
	const flush = () => {
		if (!pending) return;
		const p = pending;
		pending = null;
		sendDelta(p);
	};
	const endOfTurn = () => {
		busy = false;
		flush();
	};
	return {
		delta(text: string, model?: string) {
			if (pending && pending.model !== model) flush();
			if (!busy) {
				// Nothing is pending while idle: every turn ends with a flush.
				busy = true;
				setImmediate(endOfTurn);
				return sendDelta({ text, model });
			}
			if (pending) pending.text += text;
			else pending = { text, model };
		},
		event(ev: Record<string, unknown>) {
			flush();
			send({ seq: seq++, ...ev });
		},
		flush
	};
}

const isLeaseLost = (err: unknown) =>
	(err as { code?: string; type?: string })?.code === "LEASE_LOST" ||
	(err as { type?: string })?.type === "LEASE_LOST";

export async function runTask(
	deps: RunnerDeps,
	task: LeasedTask,
	running: RunningTask,
	/** The access check the task's submission made moments before (a task leased at insert). */
	access?: CheckedAccess
): Promise<"complete" | "fail" | "lost" | "abandoned"> {
	const { cfg } = deps;
	// The outcome is kept (on disk with a spool) and sent until the tasks service has it (or the lease
	// is definitely another's).
	const report = async (
		action: "tasks.complete" | "tasks.fail",
		params: { taskId: string; leaseId: string } & Record<string, unknown>
	) => {
		const r = await reportDurably(
			{
				spool: deps.spool,
				call: deps.call,
				stopping: deps.stopping ?? (() => false),
				logger: deps.logger,
				baseDelayMs: deps.reportDelayMs?.base,
				maxDelayMs: deps.reportDelayMs?.max
			},
			action,
			params
		);
		return r === "accepted" ? (action === "tasks.complete" ? ("complete" as const) : ("fail" as const)) : r;
	};
	const stream = streamPublisher(ev =>
		deps.broadcast("tasks.stream", { taskId: task.taskId, userId: task.userId, ...ev })
	);
	const heartbeat = setInterval(() => {
		deps.call<{ ok: boolean; cancel: boolean }>("tasks.heartbeat", {
			taskId: task.taskId,
			leaseId: task.leaseId
		}).then(
			r => {
				if (r?.cancel) {
					running.cancelled = true;
					running.abort.abort();
				}
			},
			err => {
				if (isLeaseLost(err)) {
					running.leaseLost = true;
					running.abort.abort();
				} else deps.logger.warn(`heartbeat of task ${task.taskId} failed: ${(err as Error).message}`);
			}
		);
	}, cfg.heartbeatMs);
	heartbeat.unref?.();

	let byModel: Record<string, ModelUsage> = {};
	let micro = 0;
	const usageOf = () => {
		const u = Object.values(byModel).reduce(
			(a, m) => ({
				promptTokens: a.promptTokens + m.promptTokens,
				completionTokens: a.completionTokens + m.completionTokens
			}),
			{ promptTokens: 0, completionTokens: 0 }
		);
		return { ...u, byModel };
	};
	const costOf = () => Math.min(Math.ceil(micro / 1_000_000), task.maxCostCredits);
	/** What the model was shown, reported with the outcome (GET /tasks/:id shows it). */
	let contextRecord: ContextRecord | undefined;
	let finished = false;
	const fail = async (code: string, message: string, retryable: boolean) => {
		if (running.leaseLost) return "lost" as const;
		return report("tasks.fail", {
			taskId: task.taskId,
			leaseId: task.leaseId,
			error: { code, message },
			retryable,
			usage: usageOf(),
			costCredits: costOf(),
			...(contextRecord ? { context: contextRecord } : {})
		});
	};

	try {
		let prepared;
		try {
			prepared = prepareTask(cfg, {
				tier: task.tier,
				kind: task.kind,
				prompt: task.prompt,
				model: task.model ?? undefined,
				models: task.models ?? undefined,
				maxOutputTokens: task.maxOutputTokens ?? undefined
			});
		} catch (err) {
			if (err instanceof PrepareError) return await fail(err.code, err.message, err.code === "MODEL_UNAVAILABLE");
			throw err;
		}
		const served = servedModels(cfg);
		const budget = Math.max(0, ...prepared.models.map(m => m.contextTokensBudget));
		// Read even with no room for files: the version read is the base a code task commits on.
		const context = await taskContext(
			{ call: deps.call, timeoutMs: deps.contextTimeoutMs, logger: deps.logger, onOutcome: deps.onContext },
			{
				taskId: task.taskId,
				projectId: task.projectId,
				userId: task.userId,
				prompt: task.prompt,
				include: task.include ?? undefined,
				exclude: task.exclude ?? undefined,
				...(access ? { checkedHeadVersion: access.headVersion } : {})
			},
			budget
		);

		// Each fan-out model gets the budget it was reserved for, never more than what is left of the hold.
		let holdLeft = task.maxCostCredits;
		const runs = prepared.models.map(pm => {
			const model = findModel(pm.model) as CatalogModel;
			const budgetCredits = Math.min(pm.maxCostCredits, holdLeft);
			holdLeft -= budgetCredits;
			const built = contextMessages(task.kind, task.prompt, context.frames, pm.contextTokensBudget);
			return {
				model,
				budgetCredits,
				messages: built.messages,
				frames: built.frames,
				budget: pm.contextTokensBudget,
				maxOutputTokens: pm.maxOutputTokens
			};
		});
		// The frames of the largest budget (a compare task's models may have smaller windows).
		const widest = runs.reduce((a, r) => (r.budget > a.budget ? r : a), runs[0]);
		contextRecord = {
			state: context.state,
			...(context.reason ? { reason: context.reason } : {}),
			tokenizer: context.tokenizer,
			version: context.version,
			frames: shownFrames(widest?.frames ?? [])
		};

		const tagged = task.kind === "compare";
		const results = await Promise.allSettled(
			runs.map(r =>
				generate({
					cfg,
					router: deps.router,
					model: r.model,
					messages: r.messages,
					maxOutputTokens: r.maxOutputTokens,
					budgetCredits: r.budgetCredits,
					signal: running.abort.signal,
					servedModels: served,
					stream: deps.stream,
					onDelta: text => stream.delta(text, tagged ? r.model.id : undefined),
					onFallback: ev => {
						deps.onFallback?.(ev);
						stream.event({ type: "fallback", ...ev, ...(tagged ? { model: r.model.id } : {}) });
					},
					onAttempt: deps.onAttempt
				})
			)
		);
		stream.flush();
		const merged: Record<string, ModelUsage> = {};
		const mergeUsage = (u: Record<string, ModelUsage>) => {
			for (const [k, v] of Object.entries(u)) {
				const t = (merged[k] ??= { promptTokens: 0, completionTokens: 0 });
				t.promptTokens += v.promptTokens;
				t.completionTokens += v.completionTokens;
			}
		};
		const candidates: Candidate[] = [];
		for (const [i, r] of results.entries()) {
			const u =
				r.status === "fulfilled"
					? r.value.byModel
					: r.reason instanceof GenerationError
						? r.reason.partial.byModel
						: {};
			const m =
				r.status === "fulfilled"
					? r.value.microCredits
					: r.reason instanceof GenerationError
						? r.reason.partial.microCredits
						: 0;
			mergeUsage(u);
			micro += m;
			const g: GenerationResult | null = r.status === "fulfilled" ? r.value : null;
			candidates.push({
				model: g?.model ?? runs[i].model.id,
				text: g?.text ?? "",
				finishReason: g?.finishReason ?? "error",
				usage: g?.usage ?? { promptTokens: 0, completionTokens: 0 },
				costCredits: Math.min(Math.ceil(m / 1_000_000), runs[i].budgetCredits),
				...(r.status === "rejected"
					? {
							error: {
								code: (r.reason as GenerationError).code ?? "INTERNAL",
								message: (r.reason as Error).message
							}
						}
					: {})
			});
		}
		byModel = merged;
		if (deps.settleTokens) {
			const counted = worstCaseTokens(prepared);
			const used = usageOf();
			await deps
				.settleTokens(task.userId, task.tier, {
					counted,
					used: used.promptTokens + used.completionTokens,
					windowEndMs: task.rateWindowEndMs ?? null,
					firstAttempt: task.attempt <= 1
				})
				.catch(() => undefined);
		}

		if (running.leaseLost) return "lost";
		if (running.cancelled || running.abort.signal.aborted)
			return await fail("CANCELLED", "The task was cancelled", false);
		const failures = results.filter(r => r.status === "rejected");
		if (failures.length === results.length) {
			const e = (failures[0] as PromiseRejectedResult).reason;
			if (e instanceof GenerationError) return await fail(e.code, e.message, e.retryable);
			throw e;
		}

		let result: Record<string, unknown>;
		if (task.kind === "compare") {
			const ok = candidates.filter(c => !c.error);
			result = {
				text: ok.map(c => `### ${c.model}\n\n${c.text}`).join("\n\n"),
				candidates,
				finishReason: ok.every(c => c.finishReason === "stop") ? "stop" : "partial"
			};
		} else {
			const g = (results[0] as PromiseFulfilledResult<GenerationResult>).value;
			result = { text: g.text, finishReason: g.finishReason, model: g.model };
			if (task.kind === "code") {
				const parsed = parseCodeOutput(g.text);
				if (parsed.files.length) {
					try {
						const ops = await changeOpsAgainst(deps, task, context.version, parsed.files);
						result.changeSet = ops.map(o =>
							"content" in o ? { op: o.op, path: o.path, bytes: Buffer.byteLength(o.content, "utf8") } : o
						);
						if (ops.length) {
							const version = await deps.call<{ number: number }>("projects.commitAsUser", {
								projectId: task.projectId,
								userId: task.userId,
								taskId: task.taskId,
								idempotencyKey: `task:${task.taskId}`,
								baseVersion: context.version,
								message: `AI task ${task.taskId}: ${task.prompt.slice(0, 200)}`,
								changes: ops
							});
							result.version = version.number;
						}
					} catch (err) {
						// The answer was paid for and is kept; a change set the project refuses (bad path,
						// head moved, limits) is reported with the result instead of failing the task.
						const e = err as { code?: number; type?: string; message?: string };
						if (typeof e.code !== "number" || e.code >= 500) throw err;
						result.commitError = { code: e.type ?? "COMMIT_REFUSED", message: e.message };
					}
				}
				if (parsed.unclosed.length) result.droppedFiles = parsed.unclosed;
			}
		}
		if (running.leaseLost) return "lost";
		// Past this point the work is done: a report that fails is sent again, never turned into tasks.fail.
		finished = true;
		return await report("tasks.complete", {
			taskId: task.taskId,
			leaseId: task.leaseId,
			result,
			usage: usageOf(),
			costCredits: costOf(),
			context: contextRecord
		});
	} catch (err) {
		if (finished) throw err;
		if (running.leaseLost || isLeaseLost(err)) return "lost";
		const e = err as { code?: string | number; type?: string; message?: string; retryable?: boolean };
		deps.logger.warn(`task ${task.taskId} failed: ${e.message}`);
		const code = typeof e.type === "string" ? e.type : typeof e.code === "string" ? e.code : "INTERNAL";
		return await fail(code, e.message ?? String(err), !!e.retryable);
	} finally {
		clearInterval(heartbeat);
	}
}

/** add vs. modify vs. delete, decided against the base version's paths. */
async function changeOpsAgainst(
	deps: RunnerDeps,
	task: LeasedTask,
	version: number,
	files: ReturnType<typeof parseCodeOutput>["files"]
): Promise<ChangeOp[]> {
	// With maxBytes 1 nothing is read: a path comes back omitted as "budget" (exists) or "not-found".
	const probe = await deps.call<ContextResult>("projects.readContext", {
		projectId: task.projectId,
		userId: task.userId,
		version,
		maxBytes: 1,
		paths: files.map(f => f.path)
	});
	const exists = new Set([
		...probe.files.map(f => f.path),
		...probe.omitted.filter(o => o.reason !== "not-found").map(o => o.path)
	]);
	return toChangeOps(files, p => exists.has(p));
}
