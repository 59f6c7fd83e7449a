/**
 * Retention of finished tasks (docs/retention.md, issue #16 part 3). A task is prunable once it has
 * finished and its hold is settled or released (a pending settlement is still money in flight: the
 * sweeper needs the row) and its finish is older than TASKS_RETENTION_DAYS. One batch is one statement:
 * it deletes up to a batch of such rows and adds what they were to `task_daily_summaries` (per UTC day
 * of the finish, payer, user, project, model, kind and final state) in data-modifying CTEs, so a row
 * is summed exactly once: it is either still in `tasks` or counted in the summary, never both, never
 * neither. Its recorded context (task_contexts) goes with it (ON DELETE CASCADE). Ledger rows, usage
 * attributions and settlement facts are payments' and are never touched.
 */
import { QueryTypes, type Sequelize } from "sequelize";
import type { PruneRule } from "../db/retention";
import { settlementFor, type TaskState } from "./rules";

/** States a task can end in, the only ones retention removes. */
export const FINISHED_STATES: readonly TaskState[] = ["succeeded", "failed", "cancelled"];

/** What a task's row must show to be prunable at `cutoff` (the SQL of the rule says the same). */
export function isPrunable(
	row: { state: TaskState; settlement: string; finished_at: Date | null },
	cutoff: Date | null
): boolean {
	return (
		cutoff !== null &&
		FINISHED_STATES.includes(row.state) &&
		(row.settlement === "settled" || row.settlement === "released") &&
		row.finished_at !== null &&
		row.finished_at.getTime() < cutoff.getTime()
	);
}

/** What a finished task's settlement charged: settlementFor (src/tasks/sweep.ts settleTask), 0 when its hold was released. */
export function chargedCredits(row: {
	state: TaskState;
	settlement: string;
	spent_credits: string | number;
	cost_credits: string | number | null;
	max_cost_credits: string | number;
}): number {
	if (row.settlement !== "settled") return 0;
	const spent = Number(row.spent_credits);
	const s = settlementFor(
		spent,
		row.state === "succeeded" ? Number(row.cost_credits ?? 0) - spent : 0,
		Number(row.max_cost_credits)
	);
	return s.action === "settle" ? s.actualCost : 0;
}

/** A token count out of a worker's usage report; 0 when absent or not a non-negative integer. */
export function usageTokens(usage: unknown, field: "promptTokens" | "completionTokens"): number {
	const v = usage && typeof usage === "object" ? (usage as Record<string, unknown>)[field] : undefined;
	return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0;
}

const tokens = (field: string) =>
	`CASE WHEN jsonb_typeof(g.usage -> '${field}') = 'number' AND (g.usage ->> '${field}')::numeric >= 0
		THEN floor((g.usage ->> '${field}')::numeric)::bigint ELSE 0 END`;

/** chargedCredits in SQL, over a row `g` of tasks. */
const CHARGED = `CASE WHEN g.settlement = 'settled' THEN LEAST(
		GREATEST(g.spent_credits, 0) + GREATEST(CASE WHEN g.state = 'succeeded' THEN COALESCE(g.cost_credits, 0) - g.spent_credits ELSE 0 END, 0),
		g.max_cost_credits) ELSE 0 END`;

const PRUNABLE = `settlement IN ('settled', 'released') AND finished_at < $1`;

/** The tasks rule: one batch deletes the oldest prunable tasks and adds them to the daily summaries. */
export function tasksPruneRule(retentionDays: number): PruneRule {
	return {
		table: "tasks",
		retentionDays,
		batchSql: `WITH doomed AS (
				SELECT id FROM tasks WHERE ${PRUNABLE} ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED
			), gone AS (
				DELETE FROM tasks t USING doomed d WHERE t.id = d.id
				RETURNING t.id, t.user_id, t.payer_id, t.project_id, t.kind, t.state, t.request, t.prepared, t.usage, t.attempts, t.settlement,
					t.spent_credits, t.cost_credits, t.max_cost_credits, t.finished_at, t.last_started_at
			), sums AS (
				SELECT (g.finished_at AT TIME ZONE 'UTC')::date AS day,
					COALESCE(g.payer_id, a.payer_id, g.user_id) AS payer_id, g.user_id, g.project_id,
					COALESCE(a.model, g.request ->> 'model', g.prepared -> 'models' -> 0 ->> 'model', '') AS model,
					g.kind, g.state, count(*) AS tasks, sum(g.attempts) AS attempts, sum(${CHARGED}) AS cost_credits,
					sum(${tokens("promptTokens")}) AS input_tokens, sum(${tokens("completionTokens")}) AS output_tokens,
					sum(GREATEST(0, COALESCE(floor(extract(epoch FROM g.finished_at - g.last_started_at) * 1000), 0)))::bigint AS run_ms
				FROM gone g LEFT JOIN usage_attributions a ON a.task_id = g.id::text
				GROUP BY 1, 2, 3, 4, 5, 6, 7
			), kept AS (
				INSERT INTO task_daily_summaries AS s (day, payer_id, user_id, project_id, model, kind, state, tasks, attempts, cost_credits,
					input_tokens, output_tokens, run_ms)
				SELECT day, payer_id, user_id, project_id, model, kind, state, tasks, attempts, cost_credits, input_tokens, output_tokens, run_ms
				FROM sums
				ON CONFLICT (day, payer_id, user_id, project_id, model, kind, state) DO UPDATE SET
					tasks = s.tasks + EXCLUDED.tasks, attempts = s.attempts + EXCLUDED.attempts,
					cost_credits = s.cost_credits + EXCLUDED.cost_credits, input_tokens = s.input_tokens + EXCLUDED.input_tokens,
					output_tokens = s.output_tokens + EXCLUDED.output_tokens, run_ms = s.run_ms + EXCLUDED.run_ms, updated_at = now()
			)
			SELECT count(*)::integer AS n FROM gone`,
		countSql: `SELECT count(*)::integer AS n FROM tasks WHERE ${PRUNABLE}`
	};
}

export interface TaskDaySummary {
	day: string;
	payerId: string;
	userId: string;
	projectId: string;
	model: string;
	kind: string;
	state: string;
	tasks: number;
	attempts: number;
	costCredits: number;
	inputTokens: number;
	outputTokens: number;
	runMs: number;
}

interface SummaryRow {
	day: string;
	payer_id: string;
	user_id: string;
	project_id: string;
	model: string;
	kind: string;
	state: string;
	tasks: string;
	attempts: string;
	cost_credits: string;
	input_tokens: string;
	output_tokens: string;
	run_ms: string;
}

/** A user's (as submitter or payer) summaries of pruned tasks, newest day first. */
export async function taskHistory(sequelize: Sequelize, userId: string, limit: number): Promise<TaskDaySummary[]> {
	const rows = await sequelize.query<SummaryRow>(
		`SELECT to_char(day, 'YYYY-MM-DD') AS day, payer_id, user_id, project_id, model, kind, state, tasks, attempts, cost_credits,
			input_tokens, output_tokens, run_ms
		 FROM task_daily_summaries WHERE user_id = $1 OR payer_id = $1
		 ORDER BY day DESC, project_id, model, kind, state LIMIT $2`,
		{ bind: [userId, limit], type: QueryTypes.SELECT }
	);
	return rows.map(r => ({
		day: r.day,
		payerId: r.payer_id,
		userId: r.user_id,
		projectId: r.project_id,
		model: r.model,
		kind: r.kind,
		state: r.state,
		tasks: Number(r.tasks),
		attempts: Number(r.attempts),
		costCredits: Number(r.cost_credits),
		inputTokens: Number(r.input_tokens),
		outputTokens: Number(r.output_tokens),
		runMs: Number(r.run_ms)
	}));
}
