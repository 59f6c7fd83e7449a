/**
 * A deleted account (the durable `users.deleted` event): payments keeps every ledger transaction and
 * entry as it is (amounts, ids, balances; the ledger is append-only), under the user id that is now a
 * tombstone, and blanks what else of its rows points at the person:
 * - the wallet a FORGE payment came from (`crypto_payments.payer`, replaced by the zero address);
 * - the client's idempotency keys (`client_key` of checkouts and invoices, free text a client chose);
 * - Stripe's hosted checkout URL, and in the stored Stripe events of the user's checkouts and
 *   subscriptions the customer's details (name, e-mail, address, phone, card details, customer id);
 * - the link of staked wallets to the user (`stake_wallets.user_id`).
 * Idempotent: a redelivered event finds nothing left to blank.
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";

export const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";

/** Keys of a Stripe object that describe the customer; removed wherever they appear in an event. */
const STRIPE_PERSONAL_KEYS = new Set([
	"customer",
	"customer_details",
	"customer_email",
	"customer_name",
	"customer_phone",
	"customer_address",
	"customer_shipping",
	"customer_tax_ids",
	"billing_details",
	"billing_address",
	"receipt_email",
	"receipt_url",
	"shipping",
	"shipping_details",
	"shipping_address",
	"payment_method_details",
	"email",
	"phone",
	"address"
]);

/** A copy of `v` without the customer's details, at any depth. */
export function withoutPersonalStripeFields(v: unknown): unknown {
	if (Array.isArray(v)) return v.map(withoutPersonalStripeFields);
	if (v && typeof v === "object") {
		const out: Record<string, unknown> = {};
		for (const [k, x] of Object.entries(v))
			if (!STRIPE_PERSONAL_KEYS.has(k)) out[k] = withoutPersonalStripeFields(x);
		return out;
	}
	return v;
}

export interface Forgotten {
	cryptoPayments: number;
	stripeEvents: number;
}

export async function forgetPerson(sequelize: Sequelize, tx: Transaction, userId: string): Promise<Forgotten> {
	const q = <T extends object>(sql: string, bind: unknown[]) =>
		sequelize.query<T>(sql, { bind, transaction: tx, type: QueryTypes.SELECT });
	const payments = await q<{ id: string }>(
		`UPDATE crypto_payments SET payer = $2, updated_at = now() WHERE user_id = $1 AND payer <> $2 RETURNING id`,
		[userId, ZERO_ADDRESS]
	);
	await q(`UPDATE crypto_invoices SET client_key = NULL WHERE user_id = $1 AND client_key IS NOT NULL RETURNING id`, [
		userId
	]);
	await q(
		`UPDATE stripe_checkouts SET client_key = NULL, session_url = NULL, updated_at = now()
		 WHERE user_id = $1 AND (client_key IS NOT NULL OR session_url IS NOT NULL) RETURNING id`,
		[userId]
	);
	await q(`UPDATE stake_wallets SET user_id = NULL, updated_at = now() WHERE user_id = $1 RETURNING address`, [
		userId
	]);
	// The user's Stripe objects: checkout sessions, payment intents, subscriptions; events name them.
	const events = await q<{ id: string; payload: unknown }>(
		`WITH ids AS (
			SELECT unnest(ARRAY[session_id, payment_intent_id, subscription_id]) AS id FROM stripe_checkouts WHERE user_id = $1
			UNION SELECT id FROM stripe_subscriptions WHERE user_id = $1
		 )
		 SELECT e.id, e.payload FROM stripe_events e
		 WHERE e.payload->'data'->'object'->>'id' IN (SELECT id FROM ids WHERE id IS NOT NULL)
		    OR e.payload->'data'->'object'->>'payment_intent' IN (SELECT id FROM ids WHERE id IS NOT NULL)
		    OR e.payload->'data'->'object'->>'subscription' IN (SELECT id FROM ids WHERE id IS NOT NULL)
		    OR e.payload->'data'->'object'->>'client_reference_id' = $1
		    OR e.payload->'data'->'object'->'metadata'->>'userId' = $1
		 FOR UPDATE OF e`,
		[userId]
	);
	let stripeEvents = 0;
	for (const e of events) {
		const cleaned = withoutPersonalStripeFields(e.payload);
		if (JSON.stringify(cleaned) === JSON.stringify(e.payload)) continue;
		await q(`UPDATE stripe_events SET payload = $2::jsonb WHERE id = $1 RETURNING id`, [
			e.id,
			JSON.stringify(cleaned)
		]);
		stripeEvents++;
	}
	return { cryptoPayments: payments.length, stripeEvents };
}
