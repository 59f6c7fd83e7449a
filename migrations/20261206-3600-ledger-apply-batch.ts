import type { MigrationParams } from "../src/db/migrate";

/**
 * `ledger_apply` processes a whole batch at once (issue #16 part 2, "the ledger under load").
 *
 * Measured before (auto_explain of nested statements, track_functions; a batch of 64 reserves then
 * 64 settles): about 0.8 ms per operation inside the function, most of it per-operation statements
 * (two user locks, a hold read, the lots, the transaction, two account updates, a lot update, the
 * entries, the hold, the counters: 12–16 statements each), the foreign-key checks of every entry row
 * taken in one subtransaction per operation (each subtransaction's KEY SHARE lock on `sys:revenue`
 * makes a new MultiXact that names every earlier subtransaction of the batch, so that cost grew with
 * the batch: 0.16 ms for the first entries insert, 1.9 ms for the last), and the deferred balance
 * trigger run once per entry row at commit.
 *
 * Now, for a batch:
 *   1. every user of the batch is locked once, in key order (one statement: the per-user mutex);
 *   2. the batch's holds (with their allocations and counters), the lots of every user that reserves
 *      (in spend order) and the spend counters it names are read once, the counters locked;
 *   3. the operations are decided in order in memory, with exactly the rules of migrations
 *      20261202-3003 and 20261205-3500 (the same answers, refusals included, and the same effects);
 *      a refused operation changes nothing, so no subtransaction is needed;
 *   4. the effects are written set-based: one INSERT for the transactions, one for the entries, one
 *      UPDATE for the user balances (net per account, conditional: never below zero), one for the
 *      lots (net per lot, conditional: 0 <= remaining <= original), one INSERT and one UPDATE for the
 *      holds, one UPDATE and one INSERT for the counters. A write that does not match the decisions
 *      (a cause posted meanwhile by another user's batch, a counter created meanwhile) fails the
 *      batch with SQLSTATE 40001; the caller retries each operation alone (src/payments/ledger.ts).
 * Double entry is checked once per statement (`ledger_entries_balanced`, FOR EACH STATEMENT, on the
 * inserted rows' transactions) instead of once per entry row at commit: every writer inserts a
 * transaction's entries in one statement (Ledger.post, ledger_post, this function), and entries are
 * append-only. Fill factors leave room for HOT updates of balances, holds and lots, and the lots'
 * spend-order index no longer has `remaining` in its predicate (an update of `remaining` was never
 * HOT, so every reserve and settle added index entries for the lot).
 */
const BATCH = `
		-- The planner cannot estimate the array expressions (it guesses 1,000 rows each): with its defaults
		-- it would JIT-compile them and hash-join whole tables (credit_holds grows with every task) for
		-- every batch. Every statement here reads a few rows by key: index scans and nested loops.
		CREATE OR REPLACE FUNCTION ledger_apply(p_ops jsonb) RETURNS jsonb LANGUAGE plpgsql
			SET jit = off SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
		DECLARE
			v_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
			v_month_text text := date_trunc('month', now() AT TIME ZONE 'UTC')::date::text;
			n int;
			-- the operations
			o_op text[]; o_user text[]; o_task text[]; o_max bigint[]; o_boost_ms int[]; o_boost_fee bigint[];
			o_amount bigint[]; o_tier text[]; o_disc int[]; o_caps jsonb[]; o_actual bigint[];
			-- users: locked (their available account exists) or not; accounts to create
			v_locked text[];
			v_create text[] := '{}';
			-- lots of the reserving users, in spend order per user
			l_id bigint[] := '{}'; l_user text[] := '{}'; l_rem bigint[] := '{}'; l_expired boolean[] := '{}';
			-- holds: loaded or created; allocations and counters flattened (a_*, hc_*) with ranges
			h_task text[] := '{}'; h_user text[] := '{}'; h_state text[] := '{}'; h_max bigint[] := '{}';
			h_boost_ms int[] := '{}'; h_boost_fee bigint[] := '{}'; h_amount bigint[] := '{}'; h_tier text[] := '{}';
			h_disc int[] := '{}'; h_alloc jsonb[] := '{}'; h_actual bigint[] := '{}'; h_charged bigint[] := '{}';
			h_month date[] := '{}'; h_a_from int[] := '{}'; h_a_to int[] := '{}'; h_c_from int[] := '{}'; h_c_to int[] := '{}';
			h_new boolean[] := '{}'; h_dirty boolean[] := '{}';
			a_lot bigint[] := '{}'; a_amt bigint[] := '{}';
			hc_name text[] := '{}';
			-- spend counters: name@month
			c_key text[] := '{}'; c_name text[] := '{}'; c_month date[] := '{}'; c_spent bigint[] := '{}';
			c_before bigint[] := '{}'; c_existed boolean[] := '{}'; c_present boolean[] := '{}'; c_dirty boolean[] := '{}';
			-- what is written
			t_id bigint[] := '{}'; t_kind text[] := '{}'; t_user text[] := '{}'; t_ctype text[] := '{}'; t_cid text[] := '{}';
			t_ad bigint[] := '{}'; t_hd bigint[] := '{}'; t_tier text[] := '{}'; t_disc int[] := '{}'; t_list bigint[] := '{}';
			t_desc text[] := '{}'; t_meta jsonb[] := '{}';
			e_tx bigint[] := '{}'; e_acc text[] := '{}'; e_lot bigint[] := '{}'; e_amt bigint[] := '{}';
			v_out jsonb[] := '{}';
			-- scratch
			r record;
			i int; j int; k int; hi int; li int; ci int;
			v_user text; v_avail text; v_held text; v_res jsonb; v_tx bigint;
			v_left bigint; v_take bigint; v_live bigint; v_expired boolean; v_ok boolean;
			v_cap bigint; v_counted int[]; v_cnames text[]; v_takes_lot bigint[]; v_takes_amt bigint[];
			v_exp_ids bigint[]; v_exp_rem bigint[]; v_total bigint; v_charge bigint; v_back bigint; v_use bigint;
			v_expected int; v_done int; v_c jsonb; v_alloc jsonb;
		BEGIN
			SELECT count(*)::int, array_agg(x.value->>'op' ORDER BY x.n), array_agg(x.value->>'userId' ORDER BY x.n),
				array_agg(x.value->>'taskId' ORDER BY x.n), array_agg((x.value->>'listMaxCost')::bigint ORDER BY x.n),
				array_agg((x.value->>'boostMs')::integer ORDER BY x.n), array_agg((x.value->>'boostFee')::bigint ORDER BY x.n),
				array_agg((x.value->>'amount')::bigint ORDER BY x.n), array_agg(x.value->>'tier' ORDER BY x.n),
				array_agg((x.value->>'discountBps')::integer ORDER BY x.n), array_agg(x.value->'caps' ORDER BY x.n),
				array_agg((x.value->>'listActualCost')::bigint ORDER BY x.n)
				INTO n, o_op, o_user, o_task, o_max, o_boost_ms, o_boost_fee, o_amount, o_tier, o_disc, o_caps, o_actual
				FROM jsonb_array_elements(p_ops) WITH ORDINALITY AS x(value, n);
			IF n = 0 THEN RETURN '[]'::jsonb; END IF;

			-- 1. The per-user mutex, once per batch, in key order (every batch locks in the same order).
			SELECT coalesce(array_agg(a.user_id), '{}') INTO v_locked FROM (
				SELECT user_id FROM ledger_accounts
				WHERE key = ANY (SELECT DISTINCT 'u:' || u || ':available' FROM unnest(o_user) AS u)
				ORDER BY key FOR UPDATE) a;

			-- 2a. The batch's holds, their allocations and counters.
			FOR r IN
				SELECT h.*, (SELECT coalesce(array_agg((e->>'lotId')::bigint ORDER BY m), '{}') FROM jsonb_array_elements(h.allocations) WITH ORDINALITY AS y(e, m)) AS lots,
					(SELECT coalesce(array_agg((e->>'amount')::bigint ORDER BY m), '{}') FROM jsonb_array_elements(h.allocations) WITH ORDINALITY AS y(e, m)) AS amts
				FROM credit_holds h WHERE h.task_id = ANY (o_task)
			LOOP
				hi := coalesce(array_length(h_task, 1), 0) + 1;
				h_task[hi] := r.task_id; h_user[hi] := r.user_id; h_state[hi] := r.state; h_max[hi] := r.list_max_cost;
				h_boost_ms[hi] := r.boost_ms; h_boost_fee[hi] := r.boost_fee; h_amount[hi] := r.amount; h_tier[hi] := r.tier;
				h_disc[hi] := r.discount_bps; h_alloc[hi] := r.allocations; h_actual[hi] := r.list_actual_cost;
				h_charged[hi] := r.charged; h_month[hi] := r.counted_month; h_new[hi] := false; h_dirty[hi] := false;
				h_a_from[hi] := coalesce(array_length(a_lot, 1), 0) + 1;
				a_lot := a_lot || r.lots; a_amt := a_amt || r.amts;
				h_a_to[hi] := coalesce(array_length(a_lot, 1), 0);
				h_c_from[hi] := coalesce(array_length(hc_name, 1), 0) + 1;
				hc_name := hc_name || coalesce(r.counters, '{}');
				h_c_to[hi] := coalesce(array_length(hc_name, 1), 0);
			END LOOP;

			-- 2b. The lots of every reserving user: credit left, or named by a hold of the batch (a settlement
			-- may return credit to them before a later reserve), in spend order (expiry to the millisecond).
			SELECT coalesce(array_agg(id ORDER BY user_id, priority, exp NULLS LAST, id), '{}'),
				coalesce(array_agg(user_id ORDER BY user_id, priority, exp NULLS LAST, id), '{}'),
				coalesce(array_agg(remaining ORDER BY user_id, priority, exp NULLS LAST, id), '{}'),
				coalesce(array_agg(expired ORDER BY user_id, priority, exp NULLS LAST, id), '{}')
				INTO l_id, l_user, l_rem, l_expired
				FROM (SELECT id, user_id, priority, date_trunc('milliseconds', expires_at) AS exp, remaining,
						COALESCE(expires_at <= now(), false) AS expired
					FROM credit_lots
					WHERE user_id = ANY (SELECT o_user[q] FROM generate_subscripts(o_user, 1) AS q WHERE o_op[q] = 'reserve')
						AND user_id = ANY (v_locked) AND (remaining > 0 OR id = ANY (a_lot))
					ORDER BY id FOR UPDATE) l;

			-- 2c. The spend counters the batch names (the reserves' of this month, the holds' of theirs), locked.
			FOR r IN
				WITH names AS (
					SELECT c->>'counter' AS counter, v_month AS month
					FROM generate_subscripts(o_op, 1) AS q, jsonb_array_elements(coalesce(o_caps[q], '[]'::jsonb)) AS c
					WHERE o_op[q] = 'reserve'
					UNION
					SELECT hc_name[q2], h_month[hq]
					FROM generate_subscripts(h_task, 1) AS hq, generate_series(h_c_from[hq], h_c_to[hq]) AS q2
				)
				SELECT nm.counter, nm.month, s.spent FROM (SELECT * FROM names ORDER BY counter, month) nm
				LEFT JOIN LATERAL (SELECT spent FROM spend_counters s WHERE s.counter = nm.counter AND s.month = nm.month
					FOR UPDATE) s ON true
				ORDER BY nm.counter, nm.month
			LOOP
				ci := coalesce(array_length(c_key, 1), 0) + 1;
				c_key[ci] := r.counter || '@' || r.month::text; c_name[ci] := r.counter; c_month[ci] := r.month;
				c_spent[ci] := coalesce(r.spent, 0); c_before[ci] := coalesce(r.spent, 0); c_existed[ci] := r.spent IS NOT NULL;
				c_present[ci] := r.spent IS NOT NULL; c_dirty[ci] := false;
			END LOOP;

			-- 3. The operations, in order.
			FOR i IN 1 .. n LOOP
				v_user := o_user[i];
				v_avail := 'u:' || v_user || ':available';
				v_held := 'u:' || v_user || ':held';
				hi := array_position(h_task, o_task[i]);
				v_res := NULL;
				IF o_op[i] = 'reserve' THEN
					IF o_amount[i] < 0 OR o_boost_fee[i] < 0 OR o_max[i] < 0 THEN
						v_res := jsonb_build_object('error', 'INTERNAL', 'sqlstate', 'P0001', 'message', 'negative hold amount');
					ELSIF hi IS NOT NULL THEN
						-- ledger_same_hold: the existing hold answers (counting nothing again).
						IF h_user[hi] <> v_user THEN
							v_res := jsonb_build_object('error', 'HOLD_CONFLICT', 'message', 'This task id is already in use', 'details', NULL);
						ELSIF h_max[hi] <> o_max[i] THEN
							v_res := jsonb_build_object('error', 'HOLD_MISMATCH', 'message', 'This task already has a hold with a different amount',
								'details', jsonb_build_object('listMaxCost', h_max[hi]::text));
						ELSE
							v_res := jsonb_build_object('hold', jsonb_build_object('task_id', h_task[hi], 'user_id', h_user[hi], 'state', h_state[hi],
								'list_max_cost', h_max[hi]::text, 'boost_ms', h_boost_ms[hi], 'boost_fee', h_boost_fee[hi]::text,
								'amount', h_amount[hi]::text, 'tier', h_tier[hi], 'discount_bps', h_disc[hi], 'allocations', h_alloc[hi],
								'list_actual_cost', h_actual[hi]::text, 'charged', h_charged[hi]::text), 'duplicate', true);
						END IF;
					ELSE
						-- The caps, in order (ledger_reserve_capped): the first that would pass refuses the hold.
						v_counted := '{}';
						v_cnames := '{}';
						FOR k IN 0 .. coalesce(jsonb_array_length(o_caps[i]), 0) - 1 LOOP
							v_c := o_caps[i]->k;
							v_cap := (v_c->>'cap')::bigint;
							ci := array_position(c_key, (v_c->>'counter') || '@' || v_month_text);
							IF v_cap IS NOT NULL AND (o_amount[i] > v_cap OR (c_present[ci] AND c_spent[ci] + o_amount[i] > v_cap)) THEN
								v_res := jsonb_build_object('error', v_c->>'code', 'message', coalesce(v_c->>'message', 'Monthly spend cap reached'),
									'details', jsonb_build_object('capCredits', v_cap::text,
										'spentCredits', (CASE WHEN c_present[ci] THEN c_spent[ci] ELSE 0 END)::text,
										'requiredCredits', o_amount[i]::text, 'month', v_month_text));
								EXIT;
							END IF;
							v_counted := v_counted || ci;
							v_cnames := v_cnames || (v_c->>'counter');
						END LOOP;
						IF v_res IS NULL THEN
							-- The lots in spend order: expired ones are swept, the rest allocated in order.
							v_expired := false; v_live := 0; v_left := o_amount[i];
							v_takes_lot := '{}'; v_takes_amt := '{}'; v_alloc := '[]'::jsonb;
							li := array_position(l_user, v_user);
							IF li IS NOT NULL THEN
								WHILE li <= array_length(l_user, 1) AND l_user[li] = v_user LOOP
									IF l_rem[li] > 0 THEN
										IF l_expired[li] THEN
											v_expired := true;
										ELSE
											v_live := v_live + l_rem[li];
											IF v_left > 0 THEN
												v_take := least(l_rem[li], v_left);
												v_takes_lot := v_takes_lot || l_id[li];
												v_takes_amt := v_takes_amt || v_take;
												v_alloc := v_alloc || jsonb_build_array(jsonb_build_object('lotId', l_id[li]::text, 'amount', v_take::text));
												v_left := v_left - v_take;
											END IF;
										END IF;
									END IF;
									li := li + 1;
								END LOOP;
							END IF;
							IF v_left > 0 THEN
								-- Refused: the sweep and the counters are not applied (they were rolled back before).
								v_res := jsonb_build_object('error', 'INSUFFICIENT_CREDITS', 'message', 'Not enough credits for this task',
									'details', jsonb_build_object('required', o_amount[i]::text, 'available', v_live::text));
							END IF;
						END IF;
						IF v_res IS NULL THEN
							IF NOT (v_user = ANY (v_locked)) AND NOT (v_user = ANY (v_create)) THEN v_create := v_create || v_user; END IF;
							IF v_expired THEN
								-- Ledger.expireLots: the remainder of every expired lot (by id) to the expired account.
								SELECT array_agg(l_id[q] ORDER BY l_id[q]), array_agg(l_rem[q] ORDER BY l_id[q]), sum(l_rem[q])
									INTO v_exp_ids, v_exp_rem, v_total
									FROM generate_subscripts(l_id, 1) AS q WHERE l_user[q] = v_user AND l_expired[q] AND l_rem[q] > 0;
								v_tx := nextval('ledger_transactions_id_seq');
								t_id := t_id || v_tx; t_kind := t_kind || 'expiry'::text; t_user := t_user || v_user;
								t_ctype := t_ctype || 'credit_lot_expiry'::text; t_cid := t_cid || gen_random_uuid()::text;
								t_ad := t_ad || (-v_total); t_hd := t_hd || 0::bigint; t_tier := t_tier || NULL::text;
								t_disc := t_disc || NULL::int; t_list := t_list || NULL::bigint;
								t_desc := t_desc || 'Promotional credit expired'::text;
								t_meta := t_meta || jsonb_build_object('lots', to_jsonb(v_exp_ids::text[]));
								FOR k IN 1 .. array_length(v_exp_ids, 1) LOOP
									e_tx := e_tx || v_tx; e_acc := e_acc || v_avail; e_lot := e_lot || v_exp_ids[k]; e_amt := e_amt || (-v_exp_rem[k]);
									l_rem[array_position(l_id, v_exp_ids[k])] := 0;
								END LOOP;
								e_tx := e_tx || v_tx; e_acc := e_acc || 'sys:expired'::text; e_lot := e_lot || NULL::bigint; e_amt := e_amt || v_total;
							END IF;
							FOREACH ci IN ARRAY v_counted LOOP
								c_spent[ci] := CASE WHEN c_present[ci] THEN c_spent[ci] ELSE 0 END + o_amount[i];
								c_present[ci] := true; c_dirty[ci] := true;
							END LOOP;
							v_tx := nextval('ledger_transactions_id_seq');
							t_id := t_id || v_tx; t_kind := t_kind || 'reserve'::text; t_user := t_user || v_user;
							t_ctype := t_ctype || 'task'::text; t_cid := t_cid || o_task[i];
							t_ad := t_ad || (-o_amount[i]); t_hd := t_hd || o_amount[i]; t_tier := t_tier || o_tier[i];
							t_disc := t_disc || o_disc[i]; t_list := t_list || o_max[i];
							t_desc := t_desc || 'Credits held for a task'::text;
							t_meta := t_meta || CASE WHEN o_boost_ms[i] <> 0
								THEN jsonb_build_object('boostMs', o_boost_ms[i], 'boostFee', o_boost_fee[i]::text) ELSE '{}'::jsonb END;
							FOR k IN 1 .. coalesce(array_length(v_takes_lot, 1), 0) LOOP
								e_tx := e_tx || v_tx; e_acc := e_acc || v_avail; e_lot := e_lot || v_takes_lot[k]; e_amt := e_amt || (-v_takes_amt[k]);
								li := array_position(l_id, v_takes_lot[k]);
								l_rem[li] := l_rem[li] - v_takes_amt[k];
							END LOOP;
							IF o_amount[i] <> 0 THEN
								e_tx := e_tx || v_tx; e_acc := e_acc || v_held; e_lot := e_lot || NULL::bigint; e_amt := e_amt || o_amount[i];
							END IF;
							hi := coalesce(array_length(h_task, 1), 0) + 1;
							h_task[hi] := o_task[i]; h_user[hi] := v_user; h_state[hi] := 'held'; h_max[hi] := o_max[i];
							h_boost_ms[hi] := o_boost_ms[i]; h_boost_fee[hi] := o_boost_fee[i]; h_amount[hi] := o_amount[i];
							h_tier[hi] := o_tier[i]; h_disc[hi] := o_disc[i]; h_actual[hi] := NULL; h_charged[hi] := NULL;
							h_alloc[hi] := v_alloc;
							h_month[hi] := CASE WHEN array_length(v_cnames, 1) IS NULL THEN NULL ELSE v_month END;
							h_new[hi] := true; h_dirty[hi] := true;
							h_a_from[hi] := coalesce(array_length(a_lot, 1), 0) + 1;
							a_lot := a_lot || v_takes_lot; a_amt := a_amt || v_takes_amt;
							h_a_to[hi] := coalesce(array_length(a_lot, 1), 0);
							h_c_from[hi] := coalesce(array_length(hc_name, 1), 0) + 1;
							hc_name := hc_name || v_cnames;
							h_c_to[hi] := coalesce(array_length(hc_name, 1), 0);
							v_res := jsonb_build_object('hold', jsonb_build_object('task_id', o_task[i], 'user_id', v_user, 'state', 'held',
								'list_max_cost', o_max[i]::text, 'boost_ms', o_boost_ms[i], 'boost_fee', o_boost_fee[i]::text,
								'amount', o_amount[i]::text, 'tier', o_tier[i], 'discount_bps', o_disc[i], 'allocations', h_alloc[hi],
								'list_actual_cost', NULL, 'charged', NULL), 'duplicate', false);
						END IF;
					END IF;
				ELSIF o_op[i] = 'settle' OR o_op[i] = 'release' THEN
					IF o_op[i] = 'settle' AND o_actual[i] < 0 THEN
						v_res := jsonb_build_object('error', 'INTERNAL', 'sqlstate', 'P0001', 'message', 'actual cost must be >= 0, got ' || o_actual[i]);
					ELSIF hi IS NULL OR h_user[hi] <> v_user OR NOT (v_user = ANY (v_locked) OR v_user = ANY (v_create)) THEN
						v_res := jsonb_build_object('error', 'NOT_FOUND', 'message', 'Hold not found', 'details', NULL);
					ELSIF o_op[i] = 'settle' AND h_state[hi] = 'settled' AND coalesce(h_actual[hi], -1) <> o_actual[i] THEN
						v_res := jsonb_build_object('error', 'HOLD_ALREADY_SETTLED', 'message', 'This task was already settled with another cost',
							'details', jsonb_build_object('listActualCost', h_actual[hi]::text));
					ELSIF o_op[i] = 'settle' AND h_state[hi] = 'released' THEN
						v_res := jsonb_build_object('error', 'HOLD_RELEASED', 'message', 'This task''s hold was released', 'details', NULL);
					ELSIF o_op[i] = 'release' AND h_state[hi] = 'settled' THEN
						v_res := jsonb_build_object('error', 'HOLD_ALREADY_SETTLED', 'message', 'This task''s hold was already settled', 'details', NULL);
					ELSIF h_state[hi] <> 'held' THEN
						v_res := jsonb_build_object('hold', jsonb_build_object('task_id', h_task[hi], 'user_id', h_user[hi], 'state', h_state[hi],
							'list_max_cost', h_max[hi]::text, 'boost_ms', h_boost_ms[hi], 'boost_fee', h_boost_fee[hi]::text,
							'amount', h_amount[hi]::text, 'tier', h_tier[hi], 'discount_bps', h_disc[hi], 'allocations', h_alloc[hi],
							'list_actual_cost', h_actual[hi]::text, 'charged', h_charged[hi]::text), 'duplicate', true);
					ELSE
						IF o_op[i] = 'settle' THEN
							-- settlementCharge: applyDiscount rounds up; never more than the hold.
							v_charge := least(div(o_actual[i]::numeric * (10000 - h_disc[hi]) + 9999, 10000)::bigint + h_boost_fee[hi], h_amount[hi]);
						ELSE
							v_charge := 0;
						END IF;
						v_tx := nextval('ledger_transactions_id_seq');
						t_id := t_id || v_tx; t_kind := t_kind || o_op[i]; t_user := t_user || v_user;
						t_ctype := t_ctype || 'task'::text; t_cid := t_cid || o_task[i];
						t_hd := t_hd || (-h_amount[hi]); t_tier := t_tier || h_tier[hi]; t_disc := t_disc || h_disc[hi];
						IF o_op[i] = 'settle' THEN
							t_list := t_list || o_actual[i];
							t_desc := t_desc || 'Task charged'::text;
							t_meta := t_meta || jsonb_build_object('held', h_amount[hi]::text, 'charged', v_charge::text,
								'capped', v_charge = h_amount[hi] AND o_actual[i] > 0);
						ELSE
							t_list := t_list || NULL::bigint;
							t_desc := t_desc || 'Task hold released'::text;
							t_meta := t_meta || '{}'::jsonb;
						END IF;
						IF h_amount[hi] <> 0 THEN
							e_tx := e_tx || v_tx; e_acc := e_acc || v_held; e_lot := e_lot || NULL::bigint; e_amt := e_amt || (-h_amount[hi]);
						END IF;
						IF v_charge <> 0 THEN
							e_tx := e_tx || v_tx; e_acc := e_acc || 'sys:revenue'::text; e_lot := e_lot || NULL::bigint; e_amt := e_amt || v_charge;
						END IF;
						-- splitAllocations: the charge consumes the allocations in the order taken; the tail goes back.
						v_left := v_charge; v_total := 0;
						FOR k IN h_a_from[hi] .. h_a_to[hi] LOOP
							v_use := least(a_amt[k], v_left);
							v_left := v_left - v_use;
							v_back := a_amt[k] - v_use;
							IF v_back > 0 THEN
								e_tx := e_tx || v_tx; e_acc := e_acc || v_avail; e_lot := e_lot || a_lot[k]; e_amt := e_amt || v_back;
								v_total := v_total + v_back;
								li := array_position(l_id, a_lot[k]);
								IF li IS NOT NULL THEN l_rem[li] := l_rem[li] + v_back; END IF;
							END IF;
						END LOOP;
						IF v_left > 0 THEN RAISE EXCEPTION 'charge % outside the allocations of hold %', v_charge, o_task[i]; END IF;
						t_ad := t_ad || v_total;
						-- ledger_uncount: what was not charged goes back to the hold's counters, in its own month.
						IF h_amount[hi] - v_charge <> 0 THEN
							FOR k IN h_c_from[hi] .. h_c_to[hi] LOOP
								ci := array_position(c_key, hc_name[k] || '@' || h_month[hi]::text);
								IF c_present[ci] THEN
									c_spent[ci] := c_spent[ci] - (h_amount[hi] - v_charge);
									c_dirty[ci] := true;
								END IF;
							END LOOP;
						END IF;
						h_state[hi] := CASE WHEN o_op[i] = 'settle' THEN 'settled' ELSE 'released' END;
						IF o_op[i] = 'settle' THEN h_actual[hi] := o_actual[i]; h_charged[hi] := v_charge; END IF;
						h_dirty[hi] := true;
						v_res := jsonb_build_object('hold', jsonb_build_object('task_id', h_task[hi], 'user_id', h_user[hi], 'state', h_state[hi],
							'list_max_cost', h_max[hi]::text, 'boost_ms', h_boost_ms[hi], 'boost_fee', h_boost_fee[hi]::text,
							'amount', h_amount[hi]::text, 'tier', h_tier[hi], 'discount_bps', h_disc[hi], 'allocations', h_alloc[hi],
							'list_actual_cost', h_actual[hi]::text, 'charged', h_charged[hi]::text), 'duplicate', false);
					END IF;
				ELSE
					v_res := jsonb_build_object('error', 'INTERNAL', 'sqlstate', 'P0001', 'message', 'unknown ledger operation ' || coalesce(o_op[i], 'NULL'));
				END IF;
				v_out[i] := v_res;
			END LOOP;

			-- 4. The effects, set-based.
			IF array_length(v_create, 1) IS NOT NULL THEN
				INSERT INTO ledger_accounts (key, user_id, kind, allow_negative)
					SELECT 'u:' || u || s.suffix, u, s.kind, false FROM unnest(v_create) AS u,
						(VALUES (':available', 'available'), (':held', 'held')) AS s(suffix, kind)
					ORDER BY 1 ON CONFLICT (key) DO NOTHING;
			END IF;
			IF array_length(t_id, 1) IS NOT NULL THEN
				INSERT INTO ledger_transactions (id, kind, user_id, cause_type, cause_id, available_delta, held_delta, tier,
					discount_bps, list_amount, description, metadata)
					SELECT * FROM unnest(t_id, t_kind, t_user, t_ctype, t_cid, t_ad, t_hd, t_tier, t_disc, t_list, t_desc, t_meta)
					ORDER BY 1
					ON CONFLICT (kind, cause_type, cause_id) DO NOTHING;
				GET DIAGNOSTICS v_done = ROW_COUNT;
				IF v_done <> array_length(t_id, 1) THEN
					-- Another user's batch took one of these task ids at the same time: decide again, one by one.
					RAISE EXCEPTION 'ledger batch: a cause was posted concurrently' USING ERRCODE = '40001';
				END IF;
			END IF;
			IF array_length(e_tx, 1) IS NOT NULL THEN
				INSERT INTO ledger_entries (transaction_id, account_key, lot_id, amount)
					SELECT tx, acc, lot, amt FROM unnest(e_tx, e_acc, e_lot, e_amt) WITH ORDINALITY AS e(tx, acc, lot, amt, q) ORDER BY q;
				-- Stored balances, net per account, conditionally: a user account never goes below zero.
				WITH d AS (
					SELECT acc, sum(amt) AS delta FROM unnest(e_acc, e_amt) AS e(acc, amt)
					WHERE acc LIKE 'u:%' GROUP BY acc HAVING sum(amt) <> 0
				), u AS (
					UPDATE ledger_accounts a SET balance = a.balance + d.delta FROM d
					WHERE a.key = d.acc AND a.balance + d.delta >= 0 RETURNING 1
				)
				SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u) INTO v_expected, v_done;
				IF v_done <> v_expected THEN RAISE EXCEPTION 'ledger batch: an account would go below zero'; END IF;
				-- Lots, net per lot, conditionally: 0 <= remaining <= original.
				WITH d AS (
					SELECT lot, sum(amt) AS delta FROM unnest(e_lot, e_amt) AS e(lot, amt)
					WHERE lot IS NOT NULL GROUP BY lot HAVING sum(amt) <> 0
				), u AS (
					UPDATE credit_lots l SET remaining = l.remaining + d.delta FROM d
					WHERE l.id = d.lot AND l.remaining + d.delta BETWEEN 0 AND l.original RETURNING 1
				)
				SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u) INTO v_expected, v_done;
				IF v_done <> v_expected THEN RAISE EXCEPTION 'ledger batch: a lot would go below zero'; END IF;
			END IF;
			-- Holds: the new ones as they ended the batch, the others' new state.
			INSERT INTO credit_holds (task_id, user_id, state, list_max_cost, boost_ms, boost_fee, amount, tier, discount_bps,
				allocations, list_actual_cost, charged, finished_at, counters, counted_month)
				SELECT h_task[q], h_user[q], h_state[q], h_max[q], h_boost_ms[q], h_boost_fee[q], h_amount[q], h_tier[q], h_disc[q],
					h_alloc[q], h_actual[q], h_charged[q], CASE WHEN h_state[q] = 'held' THEN NULL ELSE now() END,
					CASE WHEN h_c_to[q] >= h_c_from[q] THEN hc_name[h_c_from[q]:h_c_to[q]] END, h_month[q]
				FROM generate_subscripts(h_task, 1) AS q WHERE h_new[q] ORDER BY q;
			UPDATE credit_holds h SET state = h_state[q], list_actual_cost = h_actual[q], charged = h_charged[q], finished_at = now()
				FROM generate_subscripts(h_task, 1) AS q
				WHERE h_dirty[q] AND NOT h_new[q] AND h.task_id = h_task[q];
			-- Counters: the ones read are locked; the ones created here must still be absent.
			UPDATE spend_counters s SET spent = c_spent[q] FROM generate_subscripts(c_key, 1) AS q
				WHERE c_dirty[q] AND c_existed[q] AND s.counter = c_name[q] AND s.month = c_month[q];
			INSERT INTO spend_counters (counter, month, spent)
				SELECT c_name[q], c_month[q], c_spent[q] FROM generate_subscripts(c_key, 1) AS q
				WHERE c_dirty[q] AND NOT c_existed[q] ORDER BY c_name[q], c_month[q]
				ON CONFLICT (counter, month) DO NOTHING;
			GET DIAGNOSTICS v_done = ROW_COUNT;
			SELECT count(*) INTO v_expected FROM generate_subscripts(c_key, 1) AS q WHERE c_dirty[q] AND NOT c_existed[q];
			IF v_done <> v_expected THEN
				RAISE EXCEPTION 'ledger batch: a spend counter was created concurrently' USING ERRCODE = '40001';
			END IF;
			RETURN to_jsonb(v_out);
		END $$;`;

export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		-- Double entry, once per statement: every transaction an INSERT touched sums to zero.
		CREATE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql
			SET jit = off SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off AS $$
		DECLARE v_tx bigint; v_sum numeric;
		BEGIN
			SELECT e.transaction_id, sum(e.amount) INTO v_tx, v_sum
				FROM ledger_entries e WHERE e.transaction_id IN (SELECT DISTINCT transaction_id FROM new_entries)
				GROUP BY e.transaction_id HAVING sum(e.amount) <> 0 LIMIT 1;
			IF FOUND THEN
				RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', v_tx, v_sum;
			END IF;
			RETURN NULL;
		END $$;
		DROP TRIGGER ledger_entries_balanced ON ledger_entries;
		CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries REFERENCING NEW TABLE AS new_entries
			FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_balanced();
		DROP FUNCTION ledger_transaction_balanced();

		-- Room for HOT updates (no index column changes): balances, holds, lots.
		ALTER TABLE ledger_accounts SET (fillfactor = 50);
		ALTER TABLE credit_holds SET (fillfactor = 50);
		ALTER TABLE spend_counters SET (fillfactor = 50);
		ALTER TABLE credit_lots SET (fillfactor = 70);
		DROP INDEX credit_lots_spendable;
		CREATE INDEX credit_lots_spendable ON credit_lots (user_id, priority, expires_at, id);
		${BATCH}
	`);
}

/**
 * The batch runner of migration 20261205-3500 (one subtransaction per operation, each calling the
 * per-operation functions, which stay): what `down` restores, and the reference the batch tests
 * compare the batch function against (test/integration/payments/ledger-batch.test.ts).
 */
export const PER_OPERATION_APPLY = `
		CREATE OR REPLACE FUNCTION ledger_apply(p_ops jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
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
						WHEN 'reserve' THEN ledger_reserve_capped(op->>'userId', op->>'taskId', (op->>'listMaxCost')::bigint,
							(op->>'boostMs')::integer, (op->>'boostFee')::bigint, (op->>'amount')::bigint, op->>'tier',
							(op->>'discountBps')::integer, op->'caps')
						WHEN 'settle' THEN ledger_settle_counted(op->>'userId', op->>'taskId', (op->>'listActualCost')::bigint)
						WHEN 'release' THEN ledger_release_counted(op->>'userId', op->>'taskId')
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
		END $$;`;

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		${PER_OPERATION_APPLY}
		DROP INDEX credit_lots_spendable;
		CREATE INDEX credit_lots_spendable ON credit_lots (user_id, priority, expires_at, id) WHERE remaining > 0;
		ALTER TABLE credit_lots RESET (fillfactor);
		ALTER TABLE credit_holds RESET (fillfactor);
		ALTER TABLE spend_counters RESET (fillfactor);
		ALTER TABLE ledger_accounts RESET (fillfactor);
		CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE total NUMERIC;
		BEGIN
			SELECT COALESCE(SUM(amount), 0) INTO total FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
			IF total <> 0 THEN
				RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.transaction_id, total;
			END IF;
			RETURN NULL;
		END $$;
		DROP TRIGGER ledger_entries_balanced ON ledger_entries;
		CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();
		DROP FUNCTION ledger_entries_balanced();
	`);
}
