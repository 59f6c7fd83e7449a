/**
 * Wire types of the task lifecycle shared by the `tasks` service (producer) and the `ai` workers
 * (consumer); docs/task-lifecycle.md describes the protocol. One definition, imported by both sides.
 */
import type { TierName } from "../domain/tiers";

export type TaskKind = "chat" | "code" | "compare";

/** What `ai.prepare` is asked at submission: the model plan, the worst-case cost, the rate limits counted. */
export interface PrepareInput {
	userId: string;
	tier: TierName;
	projectId: string;
	kind: TaskKind;
	prompt: string;
	model?: string;
	models?: string[];
	maxOutputTokens?: number;
}

/** What `tasks.lease` hands a worker for each task it leased. */
export interface LeasedTask {
	taskId: string;
	leaseId: string;
	attempt: number;
	userId: string;
	tier: TierName;
	projectId: string;
	kind: TaskKind;
	prompt: string;
	model: string | null;
	models: string[];
	maxOutputTokens: number;
	maxCostCredits: number;
	/** The task id: payments settle once per task however often it runs. */
	idempotencyKey: string;
	leaseExpiresAt: string;
	/** When the task was submitted (ISO; just after `ai.prepare` counted its rate limits), kept across retries and deferrals. */
	submittedAt: string;
	/** When the rate-limit window that counted the task's tokens at submission ends (Redis's clock, epoch ms); null: unknown. */
	rateWindowEndMs: number | null;
	/** Path globs the context must include first / leave out (src/context/globs.ts); null: none given. */
	include: string[] | null;
	exclude: string[] | null;
}

/** A project access check already made for a task: the head version it read. */
export interface CheckedAccess {
	headVersion: number;
}

/**
 * The ai worker of this node, as the tasks service of the same node sees it (Runtime.localWorker): a
 * submission may be leased in its own insert to a free slot here (docs/task-lifecycle.md, "Dispatch").
 */
export interface LocalWorker {
	nodeId: string;
	/** Takes one free slot for a task about to be inserted; null when none is free or the worker is stopping. */
	claim(): WorkerSlotClaim | null;
}

/** A slot taken by LocalWorker.claim: exactly one of `start` or `release` follows (later calls do nothing). */
export interface WorkerSlotClaim {
	/** The lease id the task is inserted under. */
	leaseId: string;
	/**
	 * Runs the task leased in its insert, in the claimed slot. `access`: what the submission's own
	 * access check read moments before (the worker checks access again only without it).
	 */
	start(task: LeasedTask, access?: CheckedAccess): void;
	/** Gives the slot back (the task was queued instead, or the insert failed). */
	release(): void;
}
