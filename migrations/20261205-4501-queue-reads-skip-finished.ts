import type { MigrationParams } from "../src/db/migrate";

/**
 * The queue's reads never scan finished rows (issue #16: lease and admission within 10 % of an empty
 * table's with 1,000,000 finished tasks). Measured before this (bench/queue FINISHED_ROWS=1000000): with
 * the planner statistics of the small table the admission backlog query was planned for ~870,000
 * queued rows (the statistics said every row was queued), which also turned on JIT compilation: 457 ms
 * against 3.3 ms; after ANALYZE it read the queue through a bitmap scan of `tasks_queued_boost` and
 * sorted it (12 ms) instead of walking `tasks_queued` in order, and the lease's full-queue branch and
 * running count could be planned as sequential scans of the whole table.
 *
 * Every path the queue reads now has is an index on queued or running rows only:
 *   - tasks_eligible_ranked(now): the time-eligible queued tasks with their user rank, read in
 *     `tasks_queued` order (the window needs that order). Sequential and bitmap scans are off inside it
 *     and so are JIT and sorts (with sorts allowed it read `tasks_queued_boost` and sorted), so whatever the
 *     statistics say the only plan is the ordered scan of the partial index: finished rows are never
 *     visited. The backlog and position queries read it (src/tasks/store.ts);
 *   - tasks_running_count(): running tasks, by the partial index `tasks_running`;
 *   - tasks_queued_rows(): every queued task (the queue snapshot, src/tasks/snapshot.ts), by a partial
 *     index of queued rows;
 *   - tasks_lease (both overloads) and tasks_queue_head: sequential scans off as well (bitmap scans, JIT
 *     and custom plans already were), so no generic plan made on stale statistics can scan the table.
 * A SET clause keeps these SQL functions from being inlined: their settings hold while they run.
 */
const SETTINGS = `SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off`;

const FUNCTIONS = [
	"tasks_lease(timestamptz, integer, integer, text, timestamptz, text[], integer[], integer, integer[], integer[], uuid)",
	"tasks_lease(timestamptz, integer, integer, text, timestamptz, text[], integer[], integer, integer[], integer[])",
	"tasks_queue_head(timestamptz, integer, text[], integer[], integer)"
];

export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE FUNCTION tasks_eligible_ranked(p_now timestamptz)
		RETURNS TABLE (id uuid, user_id text, tier text, enqueued_at timestamptz, boost_ms integer, user_rank bigint)
		LANGUAGE sql STABLE ${SETTINGS} SET enable_sort = off AS $fn$
			SELECT t.id, t.user_id, t.tier, t.enqueued_at, t.boost_ms,
				row_number() OVER (PARTITION BY t.user_id ORDER BY t.enqueued_at, t.id) - 1
			FROM tasks t WHERE t.state = 'queued' AND (t.not_before IS NULL OR t.not_before <= p_now)
		$fn$;

		CREATE FUNCTION tasks_queued_rows()
		RETURNS TABLE (id uuid, user_id text, tier text, enqueued_at timestamptz, boost_ms integer, attempts integer, not_before timestamptz)
		LANGUAGE sql STABLE ${SETTINGS} AS $fn$
			SELECT t.id, t.user_id, t.tier, t.enqueued_at, t.boost_ms, t.attempts, t.not_before FROM tasks t WHERE t.state = 'queued'
		$fn$;

		CREATE FUNCTION tasks_running_count() RETURNS bigint
		LANGUAGE sql STABLE ${SETTINGS} AS $fn$
			SELECT count(*) FROM tasks t WHERE t.state = 'running'
		$fn$;

		${FUNCTIONS.map(f => `ALTER FUNCTION ${f} SET enable_seqscan = off;`).join("\n")}
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		${FUNCTIONS.map(f => `ALTER FUNCTION ${f} RESET enable_seqscan;`).join("\n")}
		DROP FUNCTION IF EXISTS tasks_running_count();
		DROP FUNCTION IF EXISTS tasks_queued_rows();
		DROP FUNCTION IF EXISTS tasks_eligible_ranked(timestamptz);
	`);
}
