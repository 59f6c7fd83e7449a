import type { MigrationParams } from "../src/db/migrate";

/**
 * The queue head and the lease as PostgreSQL functions (issue #6: a one-slot lease under 2 ms at p50
 * on 2,000 queued tasks): one round trip with cached plans, and a ranking that reads only the part of
 * each user's queue that can reach the head instead of a window over the whole queue. The order is
 * THE RULE of src/tasks/scheduling.ts, exactly. The tier ceilings, the fairness quantum and the caps
 * are arguments that TaskStore builds from the TypeScript tier table (boostCeilingMs,
 * FAIRNESS_QUANTUM_MS, perUserConcurrency, tierConcurrencyCap), so nothing here goes stale when the
 * table changes; only the formula lives here too (`vst` below, the same as vstSql).
 *
 * tasks_queue_head(now, limit, tiers, ceilings, quantum_ms): the first `limit` time-eligible queued
 * tasks in queue order (vst, enqueued_at, id), with their vst. Exact for any data:
 *   - vst = enqueued_at − bounded boost + rank × quantum, and 0 ≤ bounded boost ≤ B, B = the largest
 *     stored boost of the queue clamped to [0, largest ceiling] (the end of index tasks_queued_boost);
 *   - phase 1 reads each user's first m time-eligible tasks from index tasks_queued, in rank order,
 *     so their ranks and vsts are exact (m ≥ 4, and enough for `limit` tasks in all). Let V* be the
 *     limit-th smallest of those vsts: the limit-th smallest vst of the whole queue is ≤ V*, so no
 *     task with vst > V* is in the answer;
 *   - enqueued_at does not decrease with rank, so a user's task at rank k ≥ m has
 *     vst ≥ enqueued_at(rank m − 1) − B + k × quantum and enqueued_at ≤ vst + B: only ranks
 *     k ≤ (V* + B − enqueued_at(rank m − 1)) / quantum with enqueued_at ≤ V* + B can be in the answer.
 *     Phase 2 reads exactly those, for the users that have any (often none);
 *   - the answer is the first `limit` of both phases. When phase 1 saw fewer than `limit` tasks (or
 *     the quantum is not positive), V* is +infinity and phase 2 reads every eligible task;
 *   - the per-user reads cost ~10 µs a user, a pass over the whole queue ~1 µs a task: with more
 *     users than about one per 16 queued tasks (many users, few tasks each), the head is one ordered
 *     pass over tasks_queued with the rank window instead (the same rule).
 *
 * tasks_lease(now, window, slots, node, lease_expires_at, tiers, ceilings, quantum_ms, user_caps,
 * tier_caps): walks the first `window` tasks of the head in order and takes up to `slots` of them,
 * with the cap walk of pickNext (src/tasks/scheduling.ts): a task whose user runs user_caps[tier] or
 * more, or whose tier occupies tier_caps[tier] or more (NULL: no cap), counting running tasks and the
 * picks before it, is skipped, not a barrier; so is a task another leaser holds (FOR UPDATE SKIP
 * LOCKED, state re-checked on the latest row version), so no task is handed out twice. Only the tasks
 * taken are locked; they move to running with a fresh lease and come back in pick order. A task of a
 * tier the table does not know is ordered (ceiling 0, as vstSql) but never leased.
 */
/** vst of a row of `a` with columns enqueued_at, boost_ms, tier, user_rank (THE RULE, 3; as vstSql). */
const vst = (a: string, rank = `${a}.user_rank`) =>
	`${a}.enqueued_at + (${rank} * p_quantum_ms - LEAST(GREATEST(${a}.boost_ms, 0), COALESCE(p_ceilings[array_position(p_tiers, ${a}.tier)], 0))) * interval '1 millisecond'`;

const ELIGIBLE = `t.state = 'queued' AND (t.not_before IS NULL OR t.not_before <= p_now)`;

/**
 * The order of the users' skip scan: by user_id alone (this migration), or in the full order of
 * tasks_queued (migration 20261209-4900: with sorts off, no other index can give it, so the descents
 * cannot be planned on an index that also holds finished rows).
 */
const usersOrder = (queueOrder: boolean) => (queueOrder ? "t.user_id, t.enqueued_at, t.id" : "t.user_id");

/** m, how many of each user's first tasks phase 1 ranks (over the CTE `users`). */
const depth = (lim: string) =>
	`(SELECT GREATEST(4, ceil(${lim}::numeric / NULLIF(count(*), 0)) + 1)::bigint FROM users)`;

/**
 * The first `lim` time-eligible queued tasks in queue order: (id, user_id, tier, enqueued_at, vst).
 * One text for both functions, over the variables p_now, p_tiers, p_ceilings, p_quantum_ms and `lim`.
 */
const head = (lim: string, queueOrder = false) => `
	WITH RECURSIVE users (user_id) AS (
		-- Each user with a queued task: one index descent per user (tasks_queued leads with user_id).
		(SELECT t.user_id FROM tasks t WHERE t.state = 'queued' ORDER BY ${usersOrder(queueOrder)} LIMIT 1)
		UNION ALL
		SELECT n.user_id FROM users u CROSS JOIN LATERAL (
			SELECT t.user_id FROM tasks t WHERE t.state = 'queued' AND t.user_id > u.user_id ORDER BY ${usersOrder(queueOrder)} LIMIT 1
		) n
	),
	few AS MATERIALIZED (
		-- Whether the users are few enough for the per-user reads (~10 µs a user) to beat one pass over
		-- the queue (~1 µs a task): at most one per 16 queued tasks, the tasks estimated from the size
		-- of tasks_queued (~100 entries a page), and at least 64. Only that many users are enumerated
		-- to find out, so a queue of many users with few tasks each pays ~1/4 of a pass for asking.
		SELECT (SELECT count(*) FROM (SELECT 1 FROM users LIMIT c.n + 1) u) <= c.n AS ok
		FROM (SELECT GREATEST(64, pg_relation_size('tasks_queued') / 8192 * 100 / 16) AS n) c
	),
	seen AS MATERIALIZED (
		-- Phase 1: each user's first m time-eligible tasks, in rank order, so with exact ranks and vsts;
		-- m ≥ 4 so that V* already counts boosted tasks queued just behind unboosted ones and phase 2 is
		-- seldom needed.
		SELECT f.id, f.user_id, f.tier, f.enqueued_at, f.user_rank, ${vst("f")} AS vst
		FROM users u CROSS JOIN LATERAL (
			SELECT t.id, t.user_id, t.tier, t.enqueued_at, t.boost_ms, row_number() OVER (ORDER BY t.enqueued_at, t.id ROWS UNBOUNDED PRECEDING) - 1 AS user_rank
			FROM tasks t
			WHERE ${ELIGIBLE} AND t.user_id = u.user_id
			ORDER BY t.enqueued_at, t.id
			LIMIT ${depth(lim)}
		) f
	),
	top AS MATERIALIZED (
		SELECT s.id, s.user_id, s.tier, s.enqueued_at, s.vst FROM seen s ORDER BY s.vst, s.enqueued_at, s.id LIMIT ${lim}
	),
	bound AS MATERIALIZED (
		-- V* = the ${lim}-th smallest vst seen; x = V* + B. Open (x = +infinity, no rank bound) when
		-- fewer were seen, or when a quantum that is not positive leaves rank no lower bound.
		SELECT v.v = 'infinity' AS open,
			v.v + (SELECT LEAST(GREATEST(max(t.boost_ms), 0), (SELECT GREATEST(0, max(c)) FROM unnest(p_ceilings) c)) FROM tasks t WHERE t.state = 'queued')
				* interval '1 millisecond' AS x
		FROM (SELECT CASE WHEN count(*) < ${lim} OR p_quantum_ms <= 0 THEN 'infinity' ELSE max(top.vst) END AS v FROM top) v
	),
	more AS (
		-- Phase 2: of each user phase 1 read m tasks of (the last has rank m − 1), the ranks m .. K with
		-- enqueued_at <= x, K = floor((x − enqueued_at of rank m − 1) / quantum) (all of them when open:
		-- LIMIT NULL); read only when rank m can be in the answer.
		SELECT c.id, c.user_id, c.tier, c.enqueued_at, ${vst("c")} AS vst
		FROM bound b CROSS JOIN seen l CROSS JOIN LATERAL (
			SELECT t.id, t.user_id, t.tier, t.enqueued_at, t.boost_ms, l.user_rank + row_number() OVER (ORDER BY t.enqueued_at, t.id ROWS UNBOUNDED PRECEDING) AS user_rank
			FROM tasks t
			WHERE ${ELIGIBLE} AND t.user_id = l.user_id AND (t.enqueued_at, t.id) > (l.enqueued_at, l.id) AND t.enqueued_at <= b.x
			ORDER BY t.enqueued_at, t.id
			LIMIT CASE WHEN b.open THEN NULL ELSE GREATEST(0, floor(extract(epoch FROM b.x - l.enqueued_at) * 1000 / p_quantum_ms)::bigint - l.user_rank) END
		) c
		WHERE l.user_rank = ${depth(lim)} - 1
			AND (b.open OR l.enqueued_at + (l.user_rank + 1) * p_quantum_ms * interval '1 millisecond' <= b.x)
	)
	SELECT z.id, z.user_id, z.tier, z.enqueued_at, z.vst FROM (
		SELECT * FROM top WHERE (SELECT f.ok FROM few f)
		UNION ALL
		SELECT * FROM more WHERE (SELECT f.ok FROM few f)
		UNION ALL
		-- Many users with few tasks each: one ordered pass over the whole queue costs less than a
		-- descent or two per user (the same rule, ranked by a window over the index order).
		SELECT r.id, r.user_id, r.tier, r.enqueued_at, ${vst("r")} AS vst FROM (
			SELECT t.id, t.user_id, t.tier, t.enqueued_at, t.boost_ms,
				row_number() OVER (PARTITION BY t.user_id ORDER BY t.enqueued_at, t.id ROWS UNBOUNDED PRECEDING) - 1 AS user_rank
			FROM tasks t WHERE ${ELIGIBLE}
		) r
		WHERE NOT (SELECT f.ok FROM few f)
	) z
	ORDER BY z.vst, z.enqueued_at, z.id LIMIT ${lim}`;

/**
 * Plans are made once per connection and kept (generic plans: re-planning this query costs more than
 * running it); the per-user descents must be ordered index scans, which a planner without statistics
 * on a young table would trade for bitmap scans plus sorts of every later user's rows; and no JIT
 * compilation for a query that runs in a millisecond.
 */
export const SETTINGS = `SET plan_cache_mode = force_generic_plan SET enable_bitmapscan = off SET jit = off`;

/**
 * The CREATE FUNCTION text of tasks_lease. `leaseIdParam` (migration 20261204-4005): an 11th argument,
 * the lease id the leaser chose for this call (every task it takes gets it; NULL: a fresh one each).
 */
export function tasksLeaseSql(
	leaseIdParam: boolean,
	opts: { replace?: boolean; settings?: string; queueOrder?: boolean } = {}
): string {
	return `
		CREATE ${opts.replace ? "OR REPLACE " : ""}FUNCTION tasks_lease(p_now timestamptz, p_window integer, p_slots integer, p_node text, p_lease_expires timestamptz,
			p_tiers text[], p_ceilings integer[], p_quantum_ms integer, p_user_caps integer[], p_tier_caps integer[]${leaseIdParam ? ", p_lease_id uuid" : ""})
		RETURNS SETOF tasks
		LANGUAGE plpgsql ${opts.settings ?? SETTINGS} AS $fn$
		DECLARE
			cur record;
			leased tasks;
			taken integer := 0;
			walked uuid[] := '{}';
			rows_seen integer;
			lim integer := LEAST(p_window, 2 * p_slots + 2);
			-- Running tasks per user ('u:' || user_id) and per tier ('t:' || tier), then plus the picks.
			running jsonb;
			ti integer;
			un integer;
			tn integer;
		BEGIN
			IF p_slots <= 0 OR p_window <= 0 THEN RETURN; END IF;
			SELECT COALESCE(jsonb_object_agg(CASE WHEN r.user_id IS NOT NULL THEN 'u:' || r.user_id ELSE 't:' || r.tier END, r.n), '{}') INTO running
			FROM (SELECT t.user_id, t.tier, count(*)::integer AS n FROM tasks t WHERE t.state = 'running' GROUP BY GROUPING SETS ((t.user_id), (t.tier))) r;
			-- The window is walked in two steps: its first 2 × slots + 2 tasks, which rank cheaply (a low V*)
			-- and usually suffice, then, only if caps or other leasers left slots open, the rest of it.
			LOOP
				rows_seen := 0;
				FOR cur IN ${head("lim", opts.queueOrder)} LOOP
					rows_seen := rows_seen + 1;
					CONTINUE WHEN cur.id = ANY (walked);
					walked := walked || cur.id;
					ti := array_position(p_tiers, cur.tier);
					-- A tier the table does not know has no caps to stay within: such a row is never leased.
					CONTINUE WHEN ti IS NULL;
					un := COALESCE((running ->> ('u:' || cur.user_id))::integer, 0);
					tn := COALESCE((running ->> ('t:' || cur.tier))::integer, 0);
					CONTINUE WHEN un >= p_user_caps[ti] OR (p_tier_caps[ti] IS NOT NULL AND tn >= p_tier_caps[ti]);
					UPDATE tasks t SET state = 'running', lease_id = ${leaseIdParam ? "COALESCE(p_lease_id, gen_random_uuid())" : "gen_random_uuid()"}, lease_expires_at = p_lease_expires, node_id = p_node,
						attempts = t.attempts + 1, started_at = COALESCE(t.started_at, p_now), last_started_at = p_now, not_before = NULL,
						version = t.version + 1, updated_at = p_now
					WHERE t.id = (SELECT q.id FROM tasks q WHERE q.id = cur.id AND q.state = 'queued' FOR UPDATE SKIP LOCKED)
					RETURNING t.* INTO leased;
					CONTINUE WHEN NOT FOUND;
					RETURN NEXT leased;
					taken := taken + 1;
					running := running || jsonb_build_object('u:' || cur.user_id, un + 1, 't:' || cur.tier, tn + 1);
					EXIT WHEN taken >= p_slots;
				END LOOP;
				EXIT WHEN taken >= p_slots OR lim >= p_window OR rows_seen < lim;
				lim := p_window;
			END LOOP;
		END
		$fn$;
	`;
}

/** The CREATE FUNCTION text of tasks_queue_head (options as tasksLeaseSql's). */
export function queueHeadSql(opts: { replace?: boolean; settings?: string; queueOrder?: boolean } = {}): string {
	return `
		CREATE ${opts.replace ? "OR REPLACE " : ""}FUNCTION tasks_queue_head(p_now timestamptz, p_limit integer, p_tiers text[], p_ceilings integer[], p_quantum_ms integer)
		RETURNS TABLE (id uuid, user_id text, tier text, enqueued_at timestamptz, vst timestamptz)
		LANGUAGE plpgsql STABLE ${opts.settings ?? SETTINGS} AS $fn$
		#variable_conflict use_column
		BEGIN
			IF p_limit <= 0 THEN RETURN; END IF;
			RETURN QUERY ${head("p_limit", opts.queueOrder)};
		END
		$fn$;
	`;
}

export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		-- B in the queue head: the largest stored boost of the queue, read from the index end.
		CREATE INDEX tasks_queued_boost ON tasks (boost_ms) WHERE state = 'queued';

		${queueHeadSql()}

		${tasksLeaseSql(false)}
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP FUNCTION IF EXISTS tasks_lease(timestamptz, integer, integer, text, timestamptz, text[], integer[], integer, integer[], integer[]);
		DROP FUNCTION IF EXISTS tasks_queue_head(timestamptz, integer, text[], integer[], integer);
		DROP INDEX IF EXISTS tasks_queued_boost;
	`);
}
