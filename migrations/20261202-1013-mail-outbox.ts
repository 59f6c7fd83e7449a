import type { MigrationParams } from "../src/db/migrate";

/** Account mail queued for SMTP (src/users/mailer.ts): survives a crash or an SMTP outage. */
export async function up({ sequelize }: MigrationParams) {
	await sequelize.query(`
		CREATE TABLE mail_outbox (
			id BIGSERIAL PRIMARY KEY,
			to_address TEXT NOT NULL CHECK (length(to_address) <= 320),
			mail JSONB NOT NULL,
			attempts INT NOT NULL DEFAULT 0,
			next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
			last_error TEXT,
			failed_at TIMESTAMPTZ,
			created_at TIMESTAMPTZ NOT NULL DEFAULT now()
		);
		CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE failed_at IS NULL;
	`);
}

export async function down({ sequelize }: MigrationParams) {
	await sequelize.query(`DROP TABLE IF EXISTS mail_outbox;`);
}
