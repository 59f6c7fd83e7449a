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
