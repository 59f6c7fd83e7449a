import type { MigrationParams } from "../src/db/migrate";
import { queueHeadSql, SETTINGS, tasksLeaseSql } from "./20261126-4002-tasks-lease-function";

/**
 * The lease's plans no longer depend on the table's statistics (issue #16: lease and admission within
 * 10 % of an empty table's with 1,000,000 finished tasks, stale statistics included). The plans of
 * tasks_lease and tasks_queue_head, nested statements included (auto_explain,
 * test/integration/tasks/queue-plans.test.ts), differed with the statistics before this:
 *   - on a small table (400 queued tasks, analyzed) the skip scan of the queued users walked the unique
 *     index tasks_idempotency (user_id, idempotency_key: every row, finished ones too) with the state as
 *     a filter, because it gives user_id order as well as tasks_queued does. The plan is generic and
 *     kept for the session, so a connection that planned while the table was small kept it while
 *     finished rows piled up under statistics that did not change (no ANALYZE): each descent would
 *     then step over a user's finished rows;
 *   - with 1,000,000 finished rows, analyzed, the one-pass branch for many users with few tasks each read
 *     tasks_queued_boost and sorted, where the small table's plan walks tasks_queued in order.
 * Now the skip scan orders by tasks_queued's full key (user_id, enqueued_at, id; the same first row per
 * user), which no other index gives, and both functions run with sorts off (as tasks_eligible_ranked
 * does): a plan that needs a sort its rivals do not costs more than any of them, so the only plans left
 * read tasks_queued in order. The settings otherwise stay: generic plans, no bitmap or sequential scans,
 * no JIT.
 */
const NEW_SETTINGS = `${SETTINGS} SET enable_seqscan = off SET enable_sort = off`;
const OLD_SETTINGS = `${SETTINGS} SET enable_seqscan = off`;

function sql(settings: string, queueOrder: boolean) {
	const opts = { replace: true, settings, queueOrder };
	return `${queueHeadSql(opts)}
		${tasksLeaseSql(false, opts)}
		${tasksLeaseSql(true, opts)}`;
}

export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(sql(NEW_SETTINGS, true));
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(sql(OLD_SETTINGS, false));
}
