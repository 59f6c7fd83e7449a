import type { MigrationParams } from "../src/db/migrate";

/**
 * tasks_running_room(user, tier, user_cap, tier_cap): whether one more running task of `user` in `tier`
 * stays within the caps (the user's running count below user_cap, and the tier's below tier_cap; NULL:
 * no tier cap). The check a submission leased in its own insert makes (src/tasks/store.ts
 * insertWithPosition, docs/task-lifecycle.md "Dispatch"), the same counts as tasks_lease's: running
 * rows committed before the statement. Read from the partial index of running rows only (sequential
 * and bitmap scans off, no JIT, as migration 20261205-4501 does for the queue's other reads), so
 * finished rows never slow it. The SET clause keeps the function from being inlined.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE FUNCTION tasks_running_room(p_user text, p_tier text, p_user_cap integer, p_tier_cap integer) RETURNS boolean
		LANGUAGE sql STABLE SET enable_seqscan = off SET enable_bitmapscan = off SET jit = off AS $fn$
			SELECT count(*) FILTER (WHERE t.user_id = p_user) < p_user_cap
				AND (p_tier_cap IS NULL OR count(*) FILTER (WHERE t.tier = p_tier) < p_tier_cap)
			FROM tasks t WHERE t.state = 'running'
		$fn$;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP FUNCTION IF EXISTS tasks_running_room(text, text, integer, integer)`);
}
