/**
 * Billing notices (issue 19 part 5): a durable event other services use (the users service mails
 * them), published at most once per payer, kind and crossing: the `billing_notices` row
 * (`PRIMARY KEY (payer_id, kind, crossing)`) is written in the same transaction as the event's
 * outbox row, so a replay, a retry or a second node publishes nothing more.
 *
 * Kinds: `past_due` (stripe-billing.ts), `auto_topup_failed` (auto-topup.ts), `low_balance`
 * (low-balance.ts), `cap_reached` (cap-notices.ts: a hold refused by a monthly spend cap).
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import type { Publisher } from "./stake-indexer";

export const BILLING_LOW_BALANCE = "billing.low_balance";
export const BILLING_CAP_REACHED = "billing.cap_reached";

export type NoticeKind = "past_due" | "auto_topup_failed" | "low_balance" | "cap_reached";

/** Publishes `topic` with `details` unless this payer's `kind` notice of `crossing` went out already. */
export async function noticeOnce(
	sequelize: Sequelize,
	tx: Transaction,
	publish: Publisher,
	n: { payerId: string; kind: NoticeKind; crossing: string; topic: string; details: Record<string, unknown> }
): Promise<boolean> {
	const fresh = await sequelize.query(
		`INSERT INTO billing_notices (payer_id, kind, crossing, details) VALUES ($1, $2, $3, $4::jsonb)
		 ON CONFLICT DO NOTHING RETURNING payer_id`,
		{
			bind: [n.payerId, n.kind, n.crossing, JSON.stringify(n.details)],
			type: QueryTypes.SELECT,
			transaction: tx
		}
	);
	if (!fresh.length) return false;
	await publish(tx, n.topic, n.details);
	return true;
}
