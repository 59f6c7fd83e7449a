import type { MigrationParams } from "../src/db/migrate";

/**
 * Monthly spend caps enforced at the hold (issue 19 part 2; the rules in src/payments/spend-caps.ts).
 *
 * `spend_counters` holds, per counter (`member:<payer>:<user>`, `key:<keyId>`, `payer:<payer>`) and
 * calendar month (UTC), the credits held + settled in that month. `ledger_reserve_capped` is the
 * reserve of migration 20261202-3003 with the counters in the same subtransaction: after the payer's
 * lock and the idempotency check, each counter of the hold is raised by one conditional upsert
 * (`spent + amount <= cap`, the row locked until commit), in the order given; the first that would
 * pass its cap refuses the hold with its code (FF402), and a shortfall of credits afterwards rolls the
 * counters back with the rest. The hold remembers its counters and month, so its settlement gives back
 * what it did not charge, and its release the whole hold, to the month it was counted in.
 * `ledger_apply` now runs these; holds taken before this migration have no counters and move none.
 */
const APPLY_BEFORE = `
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
		END $$;`;

/** The same batch runner, on the counted operations. */
const APPLY_AFTER = APPLY_BEFORE.replace(
	`ledger_reserve(op->>'userId', op->>'taskId', (op->>'listMaxCost')::bigint,
							(op->>'boostMs')::integer, (op->>'boostFee')::bigint, (op->>'amount')::bigint, op->>'tier',
							(op->>'discountBps')::integer)`,
	`ledger_reserve_capped(op->>'userId', op->>'taskId', (op->>'listMaxCost')::bigint,
							(op->>'boostMs')::integer, (op->>'boostFee')::bigint, (op->>'amount')::bigint, op->>'tier',
							(op->>'discountBps')::integer, op->'caps')`
)
	.replace("THEN ledger_settle(", "THEN ledger_settle_counted(")
	.replace("THEN ledger_release(", "THEN ledger_release_counted(");
if (!APPLY_AFTER.includes("ledger_reserve_capped")) throw new Error("ledger_apply: reserve not replaced");

export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE spend_counters (
			counter TEXT NOT NULL,
			month DATE NOT NULL,
			spent BIGINT NOT NULL DEFAULT 0 CHECK (spent >= 0),
			PRIMARY KEY (counter, month)
		);
		ALTER TABLE credit_holds ADD COLUMN counters TEXT[], ADD COLUMN counted_month DATE;

		-- The hold's amount off its counters (settle: the uncharged part; release: all of it).
		CREATE FUNCTION ledger_uncount(p_task text, p_amount bigint) RETURNS void LANGUAGE plpgsql AS $$
		DECLARE
			v_counters text[];
			v_month date;
			c text;
		BEGIN
			SELECT counters, counted_month INTO v_counters, v_month FROM credit_holds WHERE task_id = p_task;
			IF v_counters IS NULL OR p_amount = 0 THEN RETURN; END IF;
			FOREACH c IN ARRAY v_counters LOOP
				UPDATE spend_counters SET spent = spent - p_amount WHERE counter = c AND month = v_month;
			END LOOP;
		END $$;

		-- p_caps: [{ counter, cap (text or null), code, message }] in the order they are checked.
		CREATE FUNCTION ledger_reserve_capped(p_user text, p_task text, p_list_max_cost bigint, p_boost_ms integer,
			p_boost_fee bigint, p_amount bigint, p_tier text, p_discount_bps integer, p_caps jsonb)
		RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE
			v_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
			v_res jsonb;
			v_counters text[] := '{}';
			v_cap bigint;
			v_spent bigint;
			c jsonb;
		BEGIN
			PERFORM ledger_lock_user(p_user, true);
			-- A retried reserve answers its hold (or its conflict) and counts nothing again.
			IF EXISTS (SELECT 1 FROM credit_holds WHERE task_id = p_task) THEN
				RETURN ledger_reserve(p_user, p_task, p_list_max_cost, p_boost_ms, p_boost_fee, p_amount, p_tier,
					p_discount_bps);
			END IF;
			FOR c IN SELECT value FROM jsonb_array_elements(coalesce(p_caps, '[]'::jsonb)) WITH ORDINALITY AS x(value, n) ORDER BY n
			LOOP
				v_cap := (c->>'cap')::bigint;
				v_spent := NULL;
				IF v_cap IS NULL OR p_amount <= v_cap THEN
					INSERT INTO spend_counters AS s (counter, month, spent) VALUES (c->>'counter', v_month, p_amount)
						ON CONFLICT (counter, month) DO UPDATE SET spent = s.spent + EXCLUDED.spent
							WHERE v_cap IS NULL OR s.spent + EXCLUDED.spent <= v_cap
						RETURNING spent INTO v_spent;
				END IF;
				IF v_spent IS NULL THEN
					SELECT spent INTO v_spent FROM spend_counters WHERE counter = c->>'counter' AND month = v_month;
					PERFORM ledger_refuse('FF402', c->>'code', coalesce(c->>'message', 'Monthly spend cap reached'),
						jsonb_build_object('capCredits', v_cap::text, 'spentCredits', coalesce(v_spent, 0)::text,
							'requiredCredits', p_amount::text, 'month', v_month::text));
				END IF;
				v_counters := v_counters || (c->>'counter');
			END LOOP;
			v_res := ledger_reserve(p_user, p_task, p_list_max_cost, p_boost_ms, p_boost_fee, p_amount, p_tier,
				p_discount_bps);
			IF NOT (v_res->>'duplicate')::boolean AND array_length(v_counters, 1) IS NOT NULL THEN
				UPDATE credit_holds SET counters = v_counters, counted_month = v_month WHERE task_id = p_task;
			END IF;
			RETURN v_res;
		END $$;

		CREATE FUNCTION ledger_settle_counted(p_user text, p_task text, p_list_actual_cost bigint)
		RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE v_res jsonb;
		BEGIN
			v_res := ledger_settle(p_user, p_task, p_list_actual_cost);
			IF NOT (v_res->>'duplicate')::boolean THEN
				PERFORM ledger_uncount(p_task, (v_res->'hold'->>'amount')::bigint - (v_res->'hold'->>'charged')::bigint);
			END IF;
			RETURN v_res;
		END $$;

		CREATE FUNCTION ledger_release_counted(p_user text, p_task text) RETURNS jsonb LANGUAGE plpgsql AS $$
		DECLARE v_res jsonb;
		BEGIN
			v_res := ledger_release(p_user, p_task);
			IF NOT (v_res->>'duplicate')::boolean THEN
				PERFORM ledger_uncount(p_task, (v_res->'hold'->>'amount')::bigint);
			END IF;
			RETURN v_res;
		END $$;

		${APPLY_AFTER}
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		${APPLY_BEFORE}
		DROP FUNCTION IF EXISTS ledger_release_counted(text, text);
		DROP FUNCTION IF EXISTS ledger_settle_counted(text, text, bigint);
		DROP FUNCTION IF EXISTS ledger_reserve_capped(text, text, bigint, integer, bigint, bigint, text, integer, jsonb);
		DROP FUNCTION IF EXISTS ledger_uncount(text, bigint);
		ALTER TABLE credit_holds DROP COLUMN IF EXISTS counters, DROP COLUMN IF EXISTS counted_month;
		DROP TABLE IF EXISTS spend_counters;
	`);
}
