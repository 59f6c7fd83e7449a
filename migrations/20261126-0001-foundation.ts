import type { MigrationParams } from "../src/db/migrate";

/** Foundation tables: the transactional outbox, the consumer inbox (dedupe) and dead letters. */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE outbox_events (
			id BIGSERIAL PRIMARY KEY,
			event_id UUID NOT NULL UNIQUE,
			topic TEXT NOT NULL,
			payload JSONB NOT NULL,
			headers JSONB NOT NULL DEFAULT '{}'::jsonb,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			published_at TIMESTAMPTZ,
			attempts INTEGER NOT NULL DEFAULT 0,
			next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			last_error TEXT
		);
		CREATE INDEX outbox_events_pending ON outbox_events (next_attempt_at, id) WHERE published_at IS NULL;

		CREATE TABLE inbox_events (
			consumer TEXT NOT NULL,
			event_id UUID NOT NULL,
			processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			PRIMARY KEY (consumer, event_id)
		);

		CREATE TABLE event_dead_letters (
			id BIGSERIAL PRIMARY KEY,
			consumer TEXT NOT NULL,
			event_id UUID NOT NULL,
			topic TEXT NOT NULL,
			payload JSONB NOT NULL,
			attempts INTEGER NOT NULL,
			last_error TEXT,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			UNIQUE (consumer, event_id)
		);
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS event_dead_letters, inbox_events, outbox_events;`);
}
