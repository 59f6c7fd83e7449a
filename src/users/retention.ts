/**
 * Retention of the users service's bookkeeping (docs/retention.md): session families that expired or
 * were revoked (their refresh tokens go with them, ON DELETE CASCADE), refresh tokens that expired
 * inside a family still alive, e-mail / password-reset / MFA tokens once expired or used, and mail the
 * mailer gave up on (delivered mail is deleted when it is sent). The audit log is never pruned.
 */
import { deleteRule, type PruneRule, type RetentionConfig } from "../db/retention";

export function usersPruneRules(days: RetentionConfig["days"]): PruneRule[] {
	return [
		deleteRule({
			table: "user_sessions",
			retentionDays: days.sessions,
			key: "id",
			where: "(expires_at < $1 OR revoked_at < $1)"
		}),
		deleteRule({
			table: "refresh_tokens",
			retentionDays: days.sessions,
			key: "token_hash",
			where: "expires_at < $1"
		}),
		deleteRule({
			table: "user_tokens",
			retentionDays: days.userTokens,
			key: "token_hash",
			where: "(expires_at < $1 OR used_at < $1)"
		}),
		deleteRule({
			table: "mail_outbox",
			retentionDays: days.mailOutbox,
			key: "id",
			where: "failed_at < $1"
		})
	];
}
