import type { MigrationParams } from "../src/db/migrate";

/**
 * The admission read's gate, and the queue reads' functions with their plans kept (issue #16).
 *
 * tasks_eligible_count(now): how many queued tasks are time-eligible now. A submission ranks the queue
 * per tier (tasks_eligible_ranked) only when more tasks than this could make it wait past its tier's
 * defer threshold; below that the count alone decides (src/tasks/store.ts admit).
 *
 * tasks_eligible_ranked, tasks_running_count (migration 20261205-4501) and the new count are PL/pgSQL:
 * a SQL function with SET clauses is never inlined, and its body is parsed and planned again on every
 * call; PL/pgSQL keeps the plan for the session. Measured on a 20-task queue, PostgreSQL backend CPU
 * per call: the SQL ranking 170–190 µs, PL/pgSQL 77 µs; the SQL count 225–258 µs. The SET clauses stay
 * (sequential and bitmap scans, JIT and, for the ranking, sorts off), and they hold while a plan is
 * made, so as before no plan made on any statistics visits a finished row.
 */
const SETTINGS = `SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off`;

const ELIGIBLE = `t.state = 'queued' AND (t.not_before IS NULL OR t.not_before <= p_now)`;
const RANKED = `SELECT t.id, t.user_id, t.tier, t.enqueued_at, t.boost_ms,
				row_number() OVER (PARTITION BY t.user_id ORDER BY t.enqueued_at, t.id) - 1
			FROM tasks t WHERE ${ELIGIBLE}`;
const RANKED_RETURNS = `TABLE (id uuid, user_id text, tier text, enqueued_at timestamptz, boost_ms integer, user_rank bigint)`;

export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE FUNCTION tasks_eligible_count(p_now timestamptz) RETURNS bigint
		LANGUAGE plpgsql STABLE ${SETTINGS} AS $fn$
		BEGIN
			RETURN (SELECT count(*) FROM tasks t WHERE ${ELIGIBLE});
		END $fn$;

		CREATE OR REPLACE FUNCTION tasks_running_count() RETURNS bigint
		LANGUAGE plpgsql STABLE ${SETTINGS} AS $fn$
		BEGIN
			RETURN (SELECT count(*) FROM tasks t WHERE t.state = 'running');
		END $fn$;

		CREATE OR REPLACE FUNCTION tasks_eligible_ranked(p_now timestamptz) RETURNS ${RANKED_RETURNS}
		LANGUAGE plpgsql STABLE ${SETTINGS} SET enable_sort = off AS $fn$
		BEGIN
			RETURN QUERY ${RANKED};
		END $fn$;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP FUNCTION IF EXISTS tasks_eligible_count(timestamptz);
		CREATE OR REPLACE FUNCTION tasks_running_count() RETURNS bigint
		LANGUAGE sql STABLE ${SETTINGS} AS $fn$
			SELECT count(*) FROM tasks t WHERE t.state = 'running'
		$fn$;
		CREATE OR REPLACE FUNCTION tasks_eligible_ranked(p_now timestamptz) RETURNS ${RANKED_RETURNS}
		LANGUAGE sql STABLE ${SETTINGS} SET enable_sort = off AS $fn$
			${RANKED}
		$fn$;
	`);
}
