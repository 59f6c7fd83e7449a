import type { MigrationParams } from "../src/db/migrate";

/**
 * Payments: a double-entry credit ledger (accounts, transactions, entries; append-only, every
 * transaction balanced), spendable credit lots with priority and expiry, task holds, the Stripe
 * inbox and business records, FORGE invoices and payments, and the staking index.
 */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE ledger_accounts (
			key TEXT PRIMARY KEY,
			user_id TEXT,
			kind TEXT NOT NULL CHECK (kind IN ('available', 'held', 'revenue', 'stripe', 'token_treasury', 'promo', 'expired')),
			allow_negative BOOLEAN NOT NULL,
			balance BIGINT NOT NULL DEFAULT 0,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			CONSTRAINT ledger_accounts_user_non_negative CHECK (allow_negative OR balance >= 0),
			CONSTRAINT ledger_accounts_user_accounts_strict CHECK ((user_id IS NULL) = allow_negative)
		);
		CREATE INDEX ledger_accounts_user ON ledger_accounts (user_id) WHERE user_id IS NOT NULL;
		-- System accounts keep no stored balance (it is the sum of their entries): a stored one would
		-- be a row every settlement of every user updates, serialising the whole platform on it.
		INSERT INTO ledger_accounts (key, user_id, kind, allow_negative) VALUES
			('sys:revenue', NULL, 'revenue', true), ('sys:stripe', NULL, 'stripe', true),
			('sys:token_treasury', NULL, 'token_treasury', true), ('sys:promo', NULL, 'promo', true),
			('sys:expired', NULL, 'expired', true);

		CREATE TABLE ledger_transactions (
			id BIGSERIAL PRIMARY KEY,
			kind TEXT NOT NULL,
			user_id TEXT,
			cause_type TEXT NOT NULL,
			cause_id TEXT NOT NULL,
			available_delta BIGINT NOT NULL DEFAULT 0,
			held_delta BIGINT NOT NULL DEFAULT 0,
			tier TEXT,
			discount_bps INTEGER,
			list_amount BIGINT,
			operator TEXT,
			description TEXT NOT NULL DEFAULT '',
			metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
			created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
			CONSTRAINT ledger_transactions_once UNIQUE (kind, cause_type, cause_id)
		);
		CREATE INDEX ledger_transactions_user ON ledger_transactions (user_id, id DESC);

		CREATE TABLE credit_lots (
			id BIGSERIAL PRIMARY KEY,
			user_id TEXT NOT NULL,
			source TEXT NOT NULL CHECK (source IN ('promo', 'paid', 'crypto')),
			priority SMALLINT NOT NULL,
			original BIGINT NOT NULL CHECK (original > 0),
			remaining BIGINT NOT NULL,
			expires_at TIMESTAMPTZ,
			transaction_id BIGINT NOT NULL REFERENCES ledger_transactions (id),
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			CONSTRAINT credit_lots_remaining CHECK (remaining >= 0 AND remaining <= original)
		);
		CREATE INDEX credit_lots_spendable ON credit_lots (user_id, priority, expires_at, id) WHERE remaining > 0;

		CREATE TABLE ledger_entries (
			id BIGSERIAL PRIMARY KEY,
			transaction_id BIGINT NOT NULL REFERENCES ledger_transactions (id),
			account_key TEXT NOT NULL REFERENCES ledger_accounts (key),
			lot_id BIGINT REFERENCES credit_lots (id),
			amount BIGINT NOT NULL CHECK (amount <> 0)
		);
		CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
		CREATE INDEX ledger_entries_account ON ledger_entries (account_key, id);

		-- Append-only: history is corrected by new, compensating transactions, never edited.
		CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			RAISE EXCEPTION 'the ledger is append-only (% on %)', TG_OP, TG_TABLE_NAME;
		END $$;
		CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
			FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
		CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
			FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

		-- Double entry: checked at commit, so a transaction's entries may be inserted one by one.
		CREATE FUNCTION ledger_transaction_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE total NUMERIC;
		BEGIN
			SELECT COALESCE(SUM(amount), 0) INTO total FROM ledger_entries WHERE transaction_id = NEW.transaction_id;
			IF total <> 0 THEN
				RAISE EXCEPTION 'ledger transaction % does not balance (sum %)', NEW.transaction_id, total;
			END IF;
			RETURN NULL;
		END $$;
		CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_balanced();

		CREATE TABLE credit_holds (
			task_id TEXT PRIMARY KEY,
			user_id TEXT NOT NULL,
			state TEXT NOT NULL CHECK (state IN ('held', 'settled', 'released')),
			list_max_cost BIGINT NOT NULL CHECK (list_max_cost >= 0),
			boost_ms INTEGER NOT NULL DEFAULT 0,
			boost_fee BIGINT NOT NULL DEFAULT 0 CHECK (boost_fee >= 0),
			amount BIGINT NOT NULL CHECK (amount >= 0),
			tier TEXT NOT NULL,
			discount_bps INTEGER NOT NULL,
			allocations JSONB NOT NULL,
			list_actual_cost BIGINT,
			charged BIGINT CHECK (charged IS NULL OR (charged >= 0 AND charged <= amount)),
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			finished_at TIMESTAMPTZ
		);
		CREATE INDEX credit_holds_user ON credit_holds (user_id, created_at DESC);

		CREATE TABLE stripe_checkouts (
			id UUID PRIMARY KEY,
			user_id TEXT NOT NULL,
			client_key TEXT,
			kind TEXT NOT NULL CHECK (kind IN ('pack', 'plan')),
			item_id TEXT NOT NULL,
			credits BIGINT NOT NULL CHECK (credits >= 0),
			plan_tier TEXT,
			amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
			currency TEXT NOT NULL,
			session_id TEXT UNIQUE,
			session_url TEXT,
			payment_intent_id TEXT UNIQUE,
			subscription_id TEXT,
			status TEXT NOT NULL CHECK (status IN ('creating', 'open', 'processing', 'paid', 'failed', 'expired')),
			credit_transaction_id BIGINT,
			refunded_cents BIGINT NOT NULL DEFAULT 0,
			clawed_back BIGINT NOT NULL DEFAULT 0,
			clawback_shortfall BIGINT NOT NULL DEFAULT 0,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			CONSTRAINT stripe_checkouts_client_key UNIQUE (user_id, client_key)
		);

		CREATE TABLE stripe_events (
			id TEXT PRIMARY KEY,
			type TEXT NOT NULL,
			stripe_created TIMESTAMPTZ NOT NULL,
			payload JSONB NOT NULL,
			source TEXT NOT NULL,
			received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			processed_at TIMESTAMPTZ,
			outcome TEXT,
			attempts INTEGER NOT NULL DEFAULT 0,
			next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			last_error TEXT
		);
		CREATE INDEX stripe_events_pending ON stripe_events (next_attempt_at, stripe_created) WHERE processed_at IS NULL;

		CREATE TABLE stripe_subscriptions (
			id TEXT PRIMARY KEY,
			user_id TEXT NOT NULL,
			plan_tier TEXT NOT NULL,
			status TEXT NOT NULL,
			last_event_created TIMESTAMPTZ NOT NULL,
			last_event_id TEXT NOT NULL,
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX stripe_subscriptions_user ON stripe_subscriptions (user_id);

		CREATE TABLE stripe_disputes (
			id TEXT PRIMARY KEY,
			checkout_id UUID NOT NULL REFERENCES stripe_checkouts (id),
			status TEXT NOT NULL,
			clawed_back BIGINT NOT NULL DEFAULT 0,
			restored BOOLEAN NOT NULL DEFAULT false,
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);

		CREATE TABLE user_plans (
			user_id TEXT PRIMARY KEY,
			plan_tier TEXT NOT NULL,
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);

		CREATE TABLE crypto_invoices (
			id TEXT PRIMARY KEY CHECK (id ~ '^0x[0-9a-f]{64}$'),
			user_id TEXT NOT NULL,
			client_key TEXT,
			chain_id INTEGER NOT NULL,
			token TEXT NOT NULL,
			router TEXT NOT NULL,
			treasury TEXT NOT NULL,
			amount_wei NUMERIC(78, 0) NOT NULL CHECK (amount_wei > 0),
			credits BIGINT NOT NULL CHECK (credits > 0),
			expires_at TIMESTAMPTZ NOT NULL,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			CONSTRAINT crypto_invoices_client_key UNIQUE (user_id, client_key)
		);
		CREATE INDEX crypto_invoices_user ON crypto_invoices (user_id, created_at DESC);

		CREATE TABLE crypto_payments (
			id UUID PRIMARY KEY,
			user_id TEXT NOT NULL,
			chain_id INTEGER NOT NULL,
			tx_hash TEXT NOT NULL CHECK (tx_hash ~ '^0x[0-9a-f]{64}$'),
			log_index INTEGER NOT NULL,
			invoice_id TEXT NOT NULL REFERENCES crypto_invoices (id),
			payer TEXT NOT NULL,
			amount_wei NUMERIC(78, 0) NOT NULL,
			credits BIGINT NOT NULL,
			block_number BIGINT NOT NULL,
			block_hash TEXT NOT NULL,
			block_time TIMESTAMPTZ NOT NULL,
			status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'credited', 'rejected', 'reversed')),
			reason TEXT,
			credit_transaction_id BIGINT,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		-- A log can back one live payment, and an invoice be paid once, however many claims race.
		CREATE UNIQUE INDEX crypto_payments_log_once ON crypto_payments (chain_id, tx_hash, log_index)
			WHERE status IN ('pending', 'confirmed', 'credited');
		CREATE UNIQUE INDEX crypto_payments_invoice_once ON crypto_payments (invoice_id)
			WHERE status IN ('pending', 'confirmed', 'credited');
		CREATE INDEX crypto_payments_watch ON crypto_payments (chain_id, block_number) WHERE status IN ('pending', 'confirmed', 'credited');
		CREATE INDEX crypto_payments_user ON crypto_payments (user_id, created_at DESC);

		CREATE TABLE chain_cursors (
			name TEXT NOT NULL,
			chain_id INTEGER NOT NULL,
			block_number BIGINT NOT NULL,
			block_hash TEXT,
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (name, chain_id)
		);

		CREATE TABLE stake_events (
			chain_id INTEGER NOT NULL,
			tx_hash TEXT NOT NULL,
			log_index INTEGER NOT NULL,
			block_number BIGINT NOT NULL,
			block_hash TEXT NOT NULL,
			block_time TIMESTAMPTZ NOT NULL,
			address TEXT NOT NULL,
			kind TEXT NOT NULL CHECK (kind IN ('staked', 'unstake_requested', 'withdrawn')),
			amount_wei NUMERIC(78, 0) NOT NULL,
			total_wei NUMERIC(78, 0),
			available_at TIMESTAMPTZ,
			PRIMARY KEY (chain_id, tx_hash, log_index)
		);
		CREATE INDEX stake_events_address ON stake_events (chain_id, address, block_number, log_index);
		CREATE INDEX stake_events_block ON stake_events (chain_id, block_number);

		CREATE TABLE stake_wallets (
			chain_id INTEGER NOT NULL,
			address TEXT NOT NULL,
			user_id TEXT,
			positions JSONB NOT NULL DEFAULT '[]'::jsonb,
			active_wei NUMERIC(78, 0) NOT NULL DEFAULT 0,
			unbonding_wei NUMERIC(78, 0) NOT NULL DEFAULT 0,
			unbonding_available_at TIMESTAMPTZ,
			owner_checked_at TIMESTAMPTZ,
			updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (chain_id, address)
		);
		CREATE INDEX stake_wallets_user ON stake_wallets (user_id);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`
		DROP TABLE IF EXISTS stake_wallets, stake_events, chain_cursors, crypto_payments, crypto_invoices, user_plans,
			stripe_disputes, stripe_subscriptions, stripe_events, stripe_checkouts, credit_holds, ledger_entries, credit_lots,
			ledger_transactions, ledger_accounts;
		DROP FUNCTION IF EXISTS ledger_append_only();
		DROP FUNCTION IF EXISTS ledger_transaction_balanced();
	`);
}
