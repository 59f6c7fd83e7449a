import type { MigrationParams } from "../src/db/migrate";

/**
 * Retention (issue #16 part 3). Finished tasks leave the hot `tasks` table after TASKS_RETENTION_DAYS
 * (src/tasks/retention.ts); what they were stays, summed per UTC day of their finish, payer, user,
 * project, model, kind and final state, in `task_daily_summaries`. The ledger and the usage report
 * never read `tasks` (they read ledger_transactions and usage_attributions, which are never pruned),
 * so the summary is what is left of a pruned task in the tasks service; a ledger settlement names its
 * task id and payer, and its day and payer find the summary row that counts it.
 *
 * The prune finds its rows by index `tasks_prunable` (finished and settled or released, by finish
 * time); the bookkeeping tables that grow with every task get an index on the time they are pruned by.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE task_daily_summaries (
			day DATE NOT NULL,
			payer_id TEXT NOT NULL,          -- who paid: tasks.payer_id, else the usage attribution's payer, else the task's user
			user_id TEXT NOT NULL,           -- who submitted
			project_id TEXT NOT NULL,
			model TEXT NOT NULL,             -- the model used ('' when unknown)
			kind TEXT NOT NULL,
			state TEXT NOT NULL CHECK (state IN ('succeeded', 'failed', 'cancelled')),
			tasks BIGINT NOT NULL CHECK (tasks >= 0),
			attempts BIGINT NOT NULL CHECK (attempts >= 0),
			-- What the settlements charged (settlementFor of src/tasks/rules.ts); 0 for released holds.
			cost_credits BIGINT NOT NULL CHECK (cost_credits >= 0),
			input_tokens BIGINT NOT NULL CHECK (input_tokens >= 0),
			output_tokens BIGINT NOT NULL CHECK (output_tokens >= 0),
			run_ms BIGINT NOT NULL CHECK (run_ms >= 0),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (day, payer_id, user_id, project_id, model, kind, state)
		);
		CREATE INDEX task_daily_summaries_user ON task_daily_summaries (user_id, day DESC);
		CREATE INDEX task_daily_summaries_payer ON task_daily_summaries (payer_id, day DESC);

		CREATE INDEX tasks_prunable ON tasks (finished_at) WHERE settlement IN ('settled', 'released');
		CREATE INDEX outbox_events_published ON outbox_events (published_at) WHERE published_at IS NOT NULL;
		CREATE INDEX inbox_events_processed ON inbox_events (processed_at);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP INDEX IF EXISTS inbox_events_processed;
		DROP INDEX IF EXISTS outbox_events_published;
		DROP INDEX IF EXISTS tasks_prunable;
		DROP TABLE IF EXISTS task_daily_summaries;
	`);
}
