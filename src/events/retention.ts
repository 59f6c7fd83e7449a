/**
 * Retention of the event bookkeeping every service of the database shares (docs/retention.md): outbox
 * rows once published (an unpublished row is never pruned: the relay still owes it), inbox rows (the
 * consumers' dedupe memory: a redelivery older than the inbox's retention would run again, so it is
 * kept at least as long as the outbox's) and dead letters once an operator had time to look.
 */
import { deleteRule, type PruneRule, type RetentionConfig } from "../db/retention";

export function eventPruneRules(days: RetentionConfig["days"]): PruneRule[] {
	return [
		deleteRule({
			table: "outbox_events",
			retentionDays: days.outbox,
			key: "id",
			where: "published_at IS NOT NULL AND published_at < $1"
		}),
		deleteRule({
			table: "inbox_events",
			retentionDays: days.inbox,
			key: "consumer, event_id",
			where: "processed_at < $1"
		}),
		deleteRule({
			table: "event_dead_letters",
			retentionDays: days.deadLetters,
			key: "id",
			where: "created_at < $1"
		})
	];
}
