/**
 * Account deletion and payments: the ledger stays (every transaction and entry, their ids and amounts,
 * every balance invariant) under the tombstone id, and what else of payments' rows points at the
 * person is blanked on the durable `users.deleted` event (src/payments/forget.ts).
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../../src/runtime/runtime";
import { ZERO_ADDRESS } from "../../../src/payments/forget";
import { createTestDatabase, eventually, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { httpClient } from "./http";
import { signUp } from "../../support/sign-up";

jest.setTimeout(60_000);

const PASSWORD = "correct horse battery staple";
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const sql = <T extends object>(query: string, bind: unknown[] = []) =>
	runtimeOf(node.broker).sequelize.query<T>(query, { bind, type: QueryTypes.SELECT });

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({ db, services: ["api", "users", "payments"], env: { AUTH_SESSION_CHECK: "true" } });
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

/** Every ledger transaction sums to zero, and so does the whole ledger. */
async function ledgerBalances() {
	const unbalanced = await sql(
		`SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING SUM(amount) <> 0`
	);
	const [total] = await sql<{ sum: string }>(`SELECT COALESCE(SUM(amount), 0)::text AS sum FROM ledger_entries`);
	return { unbalanced, total: total.sum };
}

const entriesOf = (userId: string) =>
	sql<{ id: string; transaction_id: string; account_key: string; amount: string }>(
		`SELECT e.id, e.transaction_id, e.account_key, e.amount::text AS amount
		 FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
		 WHERE t.user_id = $1 ORDER BY e.id`,
		[userId]
	);

test("deleting an account keeps its ledger entries and balances; payments keeps nothing that points at the person", async () => {
	const email = `${uniqueId("del")}@example.com`;
	const u = await signUp(call, email, PASSWORD);
	const payer = "0x" + "ab".repeat(20);
	const clientKey = `checkout-for-${email}`;

	// Some of everything payments holds about a person: credits on the ledger, a FORGE payment from
	// their wallet, a Stripe checkout with its event (the customer's details), a staked wallet.
	await node.broker.call("payments.grant", {
		userId: u.userId,
		credits: 1000,
		operator: "test",
		reason: "test credits",
		source: "paid",
		key: `del-${u.userId}`
	});
	const invoice = "0x" + randomUUID().replace(/-/g, "").repeat(2);
	await sql(
		`INSERT INTO crypto_invoices (id, user_id, client_key, chain_id, token, router, treasury, amount_wei, credits, expires_at)
		 VALUES ($1, $2, $3, 31337, $4, $4, $4, 1000, 10, now() + interval '1 hour') RETURNING id`,
		[invoice, u.userId, clientKey, "0x" + "11".repeat(20)]
	);
	await sql(
		`INSERT INTO crypto_payments (id, user_id, chain_id, tx_hash, log_index, invoice_id, payer, amount_wei, credits,
		                              block_number, block_hash, block_time, status)
		 VALUES ($1, $2, 31337, $3, 0, $4, $5, 1000, 10, 1, $3, now(), 'credited') RETURNING id`,
		[randomUUID(), u.userId, "0x" + "cd".repeat(32), invoice, payer]
	);
	const session = `cs_test_${randomUUID()}`;
	await sql(
		`INSERT INTO stripe_checkouts (id, user_id, client_key, kind, item_id, credits, amount_cents, currency, session_id,
		                               session_url, payment_intent_id, status)
		 VALUES ($1, $2, $3, 'pack', 'small', 100, 500, 'usd', $4, $5, $6, 'paid') RETURNING id`,
		[randomUUID(), u.userId, clientKey, session, `https://checkout.stripe.test/${session}`, `pi_${session}`]
	);
	const customer = { email, name: "Ada Lovelace", address: { line1: "12 Some Street", city: "London" } };
	await sql(
		`INSERT INTO stripe_events (id, type, stripe_created, payload, source, processed_at, outcome)
		 VALUES ($1, 'checkout.session.completed', now(), $2::jsonb, 'webhook', now(), 'processed'),
		        ($3, 'charge.succeeded', now(), $4::jsonb, 'webhook', now(), 'processed') RETURNING id`,
		[
			`evt_${randomUUID()}`,
			JSON.stringify({
				type: "checkout.session.completed",
				data: {
					object: {
						id: session,
						amount_total: 500,
						client_reference_id: u.userId,
						customer: "cus_123",
						customer_email: email,
						customer_details: customer,
						metadata: { userId: u.userId }
					}
				}
			}),
			`evt_${randomUUID()}`,
			JSON.stringify({
				type: "charge.succeeded",
				data: {
					object: {
						id: `ch_${session}`,
						amount: 500,
						payment_intent: `pi_${session}`,
						billing_details: customer,
						receipt_email: email,
						payment_method_details: { card: { last4: "4242", fingerprint: "fp_1" } }
					}
				}
			})
		]
	);
	await sql(
		`INSERT INTO stake_wallets (chain_id, address, user_id, active_wei) VALUES (31337, $1, $2, 5) RETURNING address`,
		[payer, u.userId]
	);

	const entriesBefore = await entriesOf(u.userId);
	expect(entriesBefore.length).toBeGreaterThan(0);
	expect(await ledgerBalances()).toEqual({ unbalanced: [], total: "0" });
	const balanceBefore = (await call("GET", "/api/v1/billing/balance", { token: u.accessToken })).json;

	const del = await call("DELETE", "/api/v1/users/me", { token: u.accessToken, body: { password: PASSWORD } });
	expect(del.status).toBe(200);

	await eventually(
		async () =>
			(await sql<{ payer: string }>(`SELECT payer FROM crypto_payments WHERE user_id = $1`, [u.userId]))[0]
				.payer === ZERO_ADDRESS
	);
	// The ledger is as it was: same entries (ids, accounts, amounts), balanced, the same balance.
	expect(await entriesOf(u.userId)).toEqual(entriesBefore);
	expect(await ledgerBalances()).toEqual({ unbalanced: [], total: "0" });
	expect(await node.broker.call("payments.userLedger", { userId: u.userId, limit: 500 })).toMatchObject({
		available: balanceBefore.available
	});

	// Nothing personal left in payments' tables: no e-mail, name, street, wallet, client key, URL.
	const tables = ["crypto_payments", "crypto_invoices", "stripe_checkouts", "stripe_events"];
	for (const table of tables) {
		const hits = await sql(`SELECT 1 FROM ${table} t WHERE to_jsonb(t)::text ILIKE ANY($1::text[]) LIMIT 1`, [
			[`%${email}%`, "%Lovelace%", "%Some Street%", `%${payer}%`, "%cus_123%", "%4242%", "%checkout.stripe.test%"]
		]);
		expect({ table, hits }).toEqual({ table, hits: [] });
	}
	// The indexer keeps the wallet's on-chain stake (public chain data), no longer linked to anyone.
	expect(await sql(`SELECT user_id FROM stake_wallets WHERE address = $1`, [payer])).toEqual([{ user_id: null }]);
	const [checkout] = await sql<{ client_key: string | null; session_url: string | null; credits: string }>(
		`SELECT client_key, session_url, credits::text FROM stripe_checkouts WHERE user_id = $1`,
		[u.userId]
	);
	expect(checkout).toEqual({ client_key: null, session_url: null, credits: "100" });
	// Amounts stay where they are.
	expect(
		await sql(
			`SELECT amount_total FROM (SELECT (payload->'data'->'object'->>'amount_total')::int AS amount_total
		           FROM stripe_events WHERE payload->'data'->'object'->>'id' = $1) x`,
			[session]
		)
	).toEqual([{ amount_total: 500 }]);
});
