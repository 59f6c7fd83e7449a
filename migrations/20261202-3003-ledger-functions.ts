import type { MigrationParams } from "../src/db/migrate";

/**
 * The task holds of the ledger as PostgreSQL functions (issue #16): reserve, settle and release
 * each ran about ten statements in their own transaction, with a pool wait and a round trip per
 * statement while the user's lock was held. Here each is one function, and `ledger_apply(ops)`
 * runs a batch of them in one statement and one commit (the group commit of src/payments/ledger.ts).
 *
 * The rules are those of src/payments/ledger-rules.ts and of the TypeScript they replace, exactly
 * (test/integration/payments/ledger-functions.test.ts replays adversarial sequences against a model
 * built from ledger-rules.ts):
 *   - every operation first locks the user's `available` account row (the per-user mutex; reserve
 *     creates the user's accounts when missing), then reads the hold;
 *   - reserve: an existing hold of the task is the answer (HOLD_CONFLICT for another user's,
 *     HOLD_MISMATCH for another amount); one locked read of the user's lots with credit left, in
 *     spend order (priority, expiry to the millisecond with never-expiring last, id); the expired
 *     ones are swept to `sys:expired` (ordered by id), the rest allocated in that order; a shortfall
 *     is INSUFFICIENT_CREDITS and rolls the sweep back with the rest;
 *   - settle: the charge is the discounted actual cost (rounded up, as applyDiscount) plus the boost
 *     fee, capped at the hold; allocations are consumed in the order taken, the tail is returned;
 *   - release: every allocation goes back to its lot;
 *   - ledger_post: one balanced transaction, idempotent on (kind, cause) (a duplicate touches
 *     nothing), stored user balances moved by conditional updates, lots by conditional updates,
 *     entries in order; the deferred balance trigger still checks every transaction at commit.
 * Refusals are raised with SQLSTATE class FF and a JSON detail `{ error, message, details }`;
 * ledger_apply runs each operation in its own subtransaction, so a refused or failed operation rolls
 * back alone and the others of the batch commit.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE FUNCTION ledger_refuse(p_state text, p_code text, p_message text, p_details jsonb DEFAULT NULL)
		RETURNS void LANGUAGE plpgsql AS $$
		BEGIN
			RAISE EXCEPTION USING ERRCODE = p_state, MESSAGE = p_message,
				DETAIL = jsonb_build_object('error', p_code, 'message', p_message, 'details', p_details)::text;
		END $$;

		-- The per-user mutex. Returns false when the user has no accounts (and p_create is false).
		CREATE FUNCTION ledger_lock_user(p_user text, p_create boolean) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM 1 FROM ledger_accounts WHERE key = 'u:' || p_user || ':available' FOR UPDATE;
			IF FOUND THEN RETURN true; END IF;
			IF NOT p_create THEN RETURN false; END IF;
			INSERT INTO ledger_accounts (key, user_id, kind, allow_negative)
				VALUES ('u:' || p_user || ':available', p_user, 'available', false), ('u:' || p_user || ':held', p_user, 'held', false)
				ON CONFLICT (key) DO NOTHING;
			PERFORM 1 FROM ledger_accounts WHERE key = 'u:' || p_user || ':available' FOR UPDATE;
			RETURN true;
		END $$;

		-- One balanced ledger transaction (Ledger.post). NULL when the cause was already posted.
		CREATE FUNCTION ledger_post(p_kind text, p_user text, p_cause_type text, p_cause_id text, p_tier text,
			p_discount_bps integer, p_list_amount bigint, p_description text, p_metadata jsonb,
			p_accounts text[], p_lots bigint[], p_amounts bigint[])
		RETURNS bigint LANGUAGE plpgsql AS $$
		DECLARE
			v_avail text := 'u:' || p_user || ':available';
			v_held text := 'u:' || p_user || ':held';
			v_id bigint;
			v_sum bigint := 0;
			v_ad bigint := 0;
			v_hd bigint := 0;
			r record;
		BEGIN
			FOR i IN 1 .. coalesce(array_length(p_amounts, 1), 0) LOOP
				v_sum := v_sum + p_amounts[i];
				IF p_accounts[i] = v_avail THEN v_ad := v_ad + p_amounts[i]; END IF;
				IF p_accounts[i] = v_held THEN v_hd := v_hd + p_amounts[i]; END IF;
			END LOOP;
			IF v_sum <> 0 THEN
				RAISE EXCEPTION 'unbalanced ledger transaction %/%: sum %', p_kind, p_cause_id, v_sum;
			END IF;
			INSERT INTO ledger_transactions (kind, user_id, cause_type, cause_id, available_delta, held_delta, tier,
				discount_bps, list_amount, description, metadata)
				VALUES (p_kind, p_user, p_cause_type, p_cause_id, v_ad, v_hd, p_tier, p_discount_bps, p_list_amount,
					p_description, p_metadata)
				ON CONFLICT (kind, cause_type, cause_id) DO NOTHING RETURNING id INTO v_id;
			IF v_id IS NULL THEN RETURN NULL; END IF;
			-- Stored balances first, conditionally: a user account never goes below zero.
			FOR r IN
				SELECT e.account, sum(e.amount) AS delta, min(e.n) AS first
				FROM unnest(p_accounts, p_amounts) WITH ORDINALITY AS e(account, amount, n)
				WHERE e.account LIKE 'u:%' AND e.amount <> 0 GROUP BY e.account ORDER BY first
			LOOP
				CONTINUE WHEN r.delta = 0;
				UPDATE ledger_accounts SET balance = balance + r.delta WHERE key = r.account AND balance + r.delta >= 0;
				IF NOT FOUND THEN RAISE EXCEPTION 'account % would go below zero', r.account; END IF;
			END LOOP;
			FOR i IN 1 .. coalesce(array_length(p_amounts, 1), 0) LOOP
				CONTINUE WHEN p_lots[i] IS NULL OR p_amounts[i] = 0;
				UPDATE credit_lots SET remaining = remaining + p_amounts[i]
					WHERE id = p_lots[i] AND remaining + p_amounts[i] BETWEEN 0 AND original;
				IF NOT FOUND THEN RAISE EXCEPTION 'account lot % would go below zero', p_lots[i]; END IF;
			END LOOP;
			INSERT INTO ledger_entries (transaction_id, account_key, lot_id, amount)
				SELECT v_id, e.account, e.lot, e.amount
				FROM unnest(p_accounts, p_lots, p_amounts) WITH ORDINALITY AS e(account, lot, amount, n)
				WHERE e.amount <> 0 ORDER BY e.n;
			RETURN v_id;
		END $$;

		-- A hold as the TypeScript reads it (bigints as text, as node-postgres returns them).
		CREATE FUNCTION ledger_hold_json(h credit_holds, p_duplicate boolean) RETURNS jsonb LANGUAGE plpgsql AS $$
		BEGIN
			-- plpgsql, not sql: a non-inlined SQL function is planned again on every call.
			RETURN jsonb_build_object('hold', jsonb_build_object(
				'task_id', h.task_id, 'user_id', h.user_id, 'state', h.state, 'list_max_cost', h.list_max_cost::text,
				'boost_ms', h.boost_ms, 'boost_fee', h.boost_fee::text, 'amount', h.amount::text, 'tier', h.tier,
				'discount_bps', h.discount_bps, 'allocations', h.allocations,
				'list_actual_cost', h.list_actual_cost::text, 'charged', h.charged::text), 'duplicate', p_duplicate);
		END $$;

		-- An existing hold answering a reserve of the same task (Ledger.sameHold).
		CREATE FUNCTION ledger_same_hold(h credit_holds, p_user text, p_list_max_cost bigint) RETURNS jsonb
		LANGUAGE plpgsql AS $$
		BEGIN
			IF h.user_id <> p_user THEN
				PERFORM ledger_refuse('FF409', 'HOLD_CONFLICT', 'This task id is already in use');
			END IF;
			IF h.list_max_cost <> p_list_max_cost THEN
				PERFORM ledger_refuse('FF409', 'HOLD_MISMATCH', 'This task already has a hold with a different amount',
					jsonb_build_object('listMaxCost', h.list_max_cost::text));
			END IF;
			RETURN ledger_hold_json(h, true);
		END $$;

		CREATE FUNCTION ledger_reserve(p_user text, p_task text, p_list_max_cost bigint, p_boost_ms integer,
			p_boost_fee bigint, p_amount bigint, p_tier text, p_discount_bps integer)
		RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE
			v_avail text := 'u:' || p_user || ':available';
			h credit_holds;
			r record;
			v_expired boolean := false;
			v_live bigint := 0;
			v_left bigint := p_amount;
			v_take bigint;
			v_lots bigint[] := '{}';
			v_takes bigint[] := '{}';
			v_exp_ids bigint[];
			v_exp_rem bigint[];
			v_exp_total bigint;
			v_accounts text[];
		BEGIN
			IF p_amount < 0 OR p_boost_fee < 0 OR p_list_max_cost < 0 THEN
				RAISE EXCEPTION 'negative hold amount';
			END IF;
			PERFORM ledger_lock_user(p_user, true);
			SELECT * INTO h FROM credit_holds WHERE task_id = p_task;
			IF FOUND THEN RETURN ledger_same_hold(h, p_user, p_list_max_cost); END IF;
			-- One locked read of every lot with credit left, in spend order (spendOrder: expiry to the ms).
			FOR r IN
				SELECT id, remaining, COALESCE(expires_at <= now(), false) AS expired FROM credit_lots
				WHERE user_id = p_user AND remaining > 0
				ORDER BY priority, date_trunc('milliseconds', expires_at) NULLS LAST, id FOR UPDATE
			LOOP
				IF r.expired THEN v_expired := true; CONTINUE; END IF;
				v_live := v_live + r.remaining;
				IF v_left > 0 THEN
					v_take := least(r.remaining, v_left);
					v_lots := v_lots || r.id;
					v_takes := v_takes || v_take;
					v_left := v_left - v_take;
				END IF;
			END LOOP;
			IF v_expired THEN
				-- Ledger.expireLots: the remainder of every expired lot to the expired account.
				SELECT array_agg(id ORDER BY id), array_agg(remaining ORDER BY id), sum(remaining)
					INTO v_exp_ids, v_exp_rem, v_exp_total
					FROM credit_lots WHERE user_id = p_user AND remaining > 0 AND expires_at <= now();
				PERFORM ledger_post('expiry', p_user, 'credit_lot_expiry', gen_random_uuid()::text, NULL, NULL, NULL,
					'Promotional credit expired',
					jsonb_build_object('lots', (SELECT jsonb_agg(x::text ORDER BY n) FROM unnest(v_exp_ids) WITH ORDINALITY AS u(x, n))),
					array_fill(v_avail, ARRAY[array_length(v_exp_ids, 1)]) || 'sys:expired'::text,
					v_exp_ids || NULL::bigint,
					(SELECT array_agg(-x ORDER BY n) FROM unnest(v_exp_rem) WITH ORDINALITY AS u(x, n)) || v_exp_total);
			END IF;
			IF v_left > 0 THEN
				PERFORM ledger_refuse('FF402', 'INSUFFICIENT_CREDITS', 'Not enough credits for this task',
					jsonb_build_object('required', p_amount::text, 'available', v_live::text));
			END IF;
			v_accounts := CASE WHEN array_length(v_lots, 1) IS NULL THEN '{}'::text[]
				ELSE array_fill(v_avail, ARRAY[array_length(v_lots, 1)]) END;
			IF ledger_post('reserve', p_user, 'task', p_task, p_tier, p_discount_bps, p_list_max_cost,
				'Credits held for a task',
				CASE WHEN p_boost_ms <> 0 THEN jsonb_build_object('boostMs', p_boost_ms, 'boostFee', p_boost_fee::text)
					ELSE '{}'::jsonb END,
				v_accounts || ('u:' || p_user || ':held'),
				v_lots || NULL::bigint,
				(SELECT coalesce(array_agg(-x ORDER BY n), '{}') FROM unnest(v_takes) WITH ORDINALITY AS u(x, n)) || p_amount)
				IS NULL
			THEN
				-- The same task id reserved under another user at the same moment (other user locks).
				SELECT * INTO h FROM credit_holds WHERE task_id = p_task;
				IF FOUND THEN RETURN ledger_same_hold(h, p_user, p_list_max_cost); END IF;
				PERFORM ledger_refuse('FF409', 'HOLD_CONFLICT', 'This task already has a hold');
			END IF;
			INSERT INTO credit_holds (task_id, user_id, state, list_max_cost, boost_ms, boost_fee, amount, tier,
				discount_bps, allocations)
				VALUES (p_task, p_user, 'held', p_list_max_cost, p_boost_ms, p_boost_fee, p_amount, p_tier, p_discount_bps,
					(SELECT coalesce(jsonb_agg(jsonb_build_object('lotId', l::text, 'amount', a::text) ORDER BY n), '[]'::jsonb)
					 FROM unnest(v_lots, v_takes) WITH ORDINALITY AS u(l, a, n)))
				RETURNING * INTO h;
			RETURN ledger_hold_json(h, false);
		END $$;

		-- The hold of a settle or release, locked, after the user's lock (NOT_FOUND for another user's).
		CREATE FUNCTION ledger_own_hold(p_user text, p_task text) RETURNS credit_holds LANGUAGE plpgsql AS $$
		DECLARE h credit_holds;
		BEGIN
			PERFORM ledger_lock_user(p_user, false);
			SELECT * INTO h FROM credit_holds WHERE task_id = p_task FOR UPDATE;
			IF NOT FOUND OR h.user_id <> p_user THEN
				PERFORM ledger_refuse('FF404', 'NOT_FOUND', 'Hold not found');
			END IF;
			RETURN h;
		END $$;

		CREATE FUNCTION ledger_settle(p_user text, p_task text, p_list_actual_cost bigint)
		RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE
			h credit_holds;
			v_charge bigint;
			v_left bigint;
			v_use bigint;
			a record;
			v_lots bigint[] := '{}';
			v_back bigint[] := '{}';
		BEGIN
			IF p_list_actual_cost < 0 THEN RAISE EXCEPTION 'actual cost must be >= 0, got %', p_list_actual_cost; END IF;
			h := ledger_own_hold(p_user, p_task);
			IF h.state = 'settled' THEN
				IF coalesce(h.list_actual_cost, -1) = p_list_actual_cost THEN RETURN ledger_hold_json(h, true); END IF;
				PERFORM ledger_refuse('FF409', 'HOLD_ALREADY_SETTLED', 'This task was already settled with another cost',
					jsonb_build_object('listActualCost', h.list_actual_cost::text));
			END IF;
			IF h.state = 'released' THEN
				PERFORM ledger_refuse('FF409', 'HOLD_RELEASED', 'This task''s hold was released');
			END IF;
			-- settlementCharge: applyDiscount rounds up; never more than the hold.
			v_charge := least(div(p_list_actual_cost::numeric * (10000 - h.discount_bps) + 9999, 10000)::bigint + h.boost_fee,
				h.amount);
			-- splitAllocations: the charge consumes the allocations in the order taken; the tail goes back.
			v_left := v_charge;
			FOR a IN SELECT (e->>'lotId')::bigint AS lot, (e->>'amount')::bigint AS amount
				FROM jsonb_array_elements(h.allocations) WITH ORDINALITY AS x(e, n) ORDER BY n
			LOOP
				v_use := least(a.amount, v_left);
				v_left := v_left - v_use;
				IF a.amount - v_use > 0 THEN
					v_lots := v_lots || a.lot;
					v_back := v_back || (a.amount - v_use);
				END IF;
			END LOOP;
			IF v_left > 0 THEN RAISE EXCEPTION 'charge % outside the allocations of hold %', v_charge, p_task; END IF;
			PERFORM ledger_post('settle', p_user, 'task', p_task, h.tier, h.discount_bps, p_list_actual_cost, 'Task charged',
				jsonb_build_object('held', h.amount::text, 'charged', v_charge::text,
					'capped', v_charge = h.amount AND p_list_actual_cost > 0),
				ARRAY['u:' || p_user || ':held', 'sys:revenue']
					|| CASE WHEN array_length(v_lots, 1) IS NULL THEN '{}'::text[]
						ELSE array_fill('u:' || p_user || ':available', ARRAY[array_length(v_lots, 1)]) END,
				ARRAY[NULL, NULL]::bigint[] || v_lots,
				ARRAY[-h.amount, v_charge] || v_back);
			UPDATE credit_holds SET state = 'settled', list_actual_cost = p_list_actual_cost, charged = v_charge,
				finished_at = now() WHERE task_id = p_task RETURNING * INTO h;
			RETURN ledger_hold_json(h, false);
		END $$;

		CREATE FUNCTION ledger_release(p_user text, p_task text) RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE
			h credit_holds;
			v_lots bigint[];
			v_back bigint[];
		BEGIN
			h := ledger_own_hold(p_user, p_task);
			IF h.state = 'released' THEN RETURN ledger_hold_json(h, true); END IF;
			IF h.state = 'settled' THEN
				PERFORM ledger_refuse('FF409', 'HOLD_ALREADY_SETTLED', 'This task''s hold was already settled');
			END IF;
			SELECT coalesce(array_agg((e->>'lotId')::bigint ORDER BY n), '{}'), coalesce(array_agg((e->>'amount')::bigint ORDER BY n), '{}')
				INTO v_lots, v_back FROM jsonb_array_elements(h.allocations) WITH ORDINALITY AS x(e, n);
			PERFORM ledger_post('release', p_user, 'task', p_task, h.tier, h.discount_bps, NULL, 'Task hold released', '{}'::jsonb,
				ARRAY['u:' || p_user || ':held']
					|| CASE WHEN array_length(v_lots, 1) IS NULL THEN '{}'::text[]
						ELSE array_fill('u:' || p_user || ':available', ARRAY[array_length(v_lots, 1)]) END,
				ARRAY[NULL]::bigint[] || v_lots,
				ARRAY[-h.amount] || v_back);
			UPDATE credit_holds SET state = 'released', finished_at = now() WHERE task_id = p_task RETURNING * INTO h;
			RETURN ledger_hold_json(h, false);
		END $$;

		-- A batch of operations in order, each in its own subtransaction: one statement, one commit.
		-- Each answer is { hold, duplicate } or { error, message, details } (a refusal, SQLSTATE class FF)
		-- or { error: 'INTERNAL', sqlstate, message } (anything else; the caller retries or reports it).
		CREATE FUNCTION ledger_apply(p_ops jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE
			op jsonb;
			v_out jsonb := '[]'::jsonb;
			v_res jsonb;
			v_state text;
			v_message text;
			v_detail text;
		BEGIN
			FOR op IN SELECT value FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS x(value, n) ORDER BY n LOOP
				BEGIN
					v_res := CASE op->>'op'
						WHEN 'reserve' THEN ledger_reserve(op->>'userId', op->>'taskId', (op->>'listMaxCost')::bigint,
							(op->>'boostMs')::integer, (op->>'boostFee')::bigint, (op->>'amount')::bigint, op->>'tier',
							(op->>'discountBps')::integer)
						WHEN 'settle' THEN ledger_settle(op->>'userId', op->>'taskId', (op->>'listActualCost')::bigint)
						WHEN 'release' THEN ledger_release(op->>'userId', op->>'taskId')
					END;
					IF v_res IS NULL THEN RAISE EXCEPTION 'unknown ledger operation %', op->>'op'; END IF;
				EXCEPTION WHEN OTHERS THEN
					GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
					v_res := CASE WHEN v_state LIKE 'FF%' THEN v_detail::jsonb
						ELSE jsonb_build_object('error', 'INTERNAL', 'sqlstate', v_state, 'message', v_message) END;
				END;
				v_out := v_out || jsonb_build_array(v_res);
			END LOOP;
			RETURN v_out;
		END $$;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP FUNCTION IF EXISTS ledger_apply(jsonb);
		DROP FUNCTION IF EXISTS ledger_release(text, text);
		DROP FUNCTION IF EXISTS ledger_settle(text, text, bigint);
		DROP FUNCTION IF EXISTS ledger_own_hold(text, text);
		DROP FUNCTION IF EXISTS ledger_reserve(text, text, bigint, integer, bigint, bigint, text, integer);
		DROP FUNCTION IF EXISTS ledger_same_hold(credit_holds, text, bigint);
		DROP FUNCTION IF EXISTS ledger_hold_json(credit_holds, boolean);
		DROP FUNCTION IF EXISTS ledger_post(text, text, text, text, text, integer, bigint, text, jsonb, text[], bigint[], bigint[]);
		DROP FUNCTION IF EXISTS ledger_lock_user(text, boolean);
		DROP FUNCTION IF EXISTS ledger_refuse(text, text, text, jsonb);
	`);
}
