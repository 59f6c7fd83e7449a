/** REST routes of the payments service (billing, card and FORGE payments, staking). */
import type { RouteSpec } from "../../../src/http/route-spec";

const tag = "billing";

export function paymentsRoutes(): RouteSpec[] {
	return [
		{
			method: "GET",
			path: "/billing/balance",
			action: "payments.balance",
			auth: "required",
			tag,
			summary: "Credits available and held, tier and fee discount"
		},
		{
			method: "GET",
			path: "/billing/ledger",
			action: "payments.ledger",
			auth: "required",
			tag,
			summary: "The caller's ledger entries, newest first (cursor pagination)"
		},
		{
			method: "GET",
			path: "/billing/prices",
			action: "payments.prices",
			auth: "none",
			tag,
			summary: "Credit packs, plans, model prices, boost price and the tier table"
		},
		{
			method: "POST",
			path: "/billing/checkout",
			action: "payments.checkout",
			auth: "required",
			status: 201,
			idempotent: true,
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary: "Stripe Checkout session for a credit pack or a plan; returns the URL to send the user to"
		},
		{
			method: "GET",
			path: "/billing/checkout/:id",
			action: "payments.checkoutStatus",
			auth: "required",
			tag,
			summary: "A checkout's state (checks with Stripe while unsettled: use it from the success page)"
		},
		{
			method: "POST",
			path: "/billing/stripe/webhook",
			action: "payments.stripeWebhook",
			auth: "none",
			body: "raw",
			// Stripe retries on 429 and sends from a few shared IPs: its own, wider limit instead of the anonymous one.
			globalRateLimit: false,
			rateLimit: { points: 3000, durationS: 60, by: "ip" },
			tag,
			summary: "Stripe events (raw body, Stripe-Signature checked; no auth header)"
		},
		{
			method: "POST",
			path: "/billing/crypto/invoices",
			action: "payments.createInvoice",
			auth: "required",
			status: 201,
			idempotent: true,
			rateLimit: { points: 30, durationS: 60, by: "user" },
			tag,
			summary: "An invoice to pay in FORGE through PaymentRouter.pay(invoiceId, amountWei)"
		},
		{
			method: "GET",
			path: "/billing/crypto/invoices/:id",
			action: "payments.invoice",
			auth: "required",
			tag,
			summary: "An invoice and the state of its payment, if any"
		},
		{
			method: "POST",
			path: "/billing/crypto/payments",
			action: "payments.claimCryptoPayment",
			auth: "required",
			rateLimit: { points: 30, durationS: 60, by: "user" },
			tag,
			summary: "Claim an on-chain FORGE payment by chain id and transaction hash"
		},
		{
			method: "GET",
			path: "/billing/crypto/payments/:id",
			action: "payments.cryptoPayment",
			auth: "required",
			tag,
			summary: "A FORGE payment's state: pending, confirmed, credited, rejected or reversed"
		},
		{
			method: "GET",
			path: "/staking",
			action: "payments.staking",
			auth: "required",
			tag: "staking",
			summary: "The caller's stake positions and what they unlock"
		}
	];
}
