/** REST routes of the payments service (billing, card and FORGE payments, staking). */
import type { RouteSpec } from "../../../src/http/route-spec";
import { views } from "../../../src/payments/views";

const tag = "billing";
/** `?orgId=`: 403 for a member without a billing role, 404 for a non-member. */
export const ORG = { 403: ["INSUFFICIENT_ROLE"], 404: ["NOT_FOUND"] };
/** The routes other than GET that act for an organisation take `?orgId=` in the query string too. */
export const ORG_QUERY = ["orgId"] as const;
const STRIPE = ["STRIPE_UNAVAILABLE", "STRIPE_NOT_CONFIGURED"];
const SUB = ["NO_SUBSCRIPTION", "SUBSCRIPTION_NOT_CHANGEABLE"];

export function paymentsRoutes(): RouteSpec[] {
	return [
		{
			method: "GET",
			path: "/billing/balance",
			action: "payments.balance",
			response: views.balance,
			errors: ORG,
			auth: "required",
			tag,
			summary: "Credits available and held, tier and fee discount (yours, or with ?orgId= an organisation's)"
		},
		{
			method: "GET",
			path: "/billing/ledger",
			action: "payments.ledger",
			response: views.ledger,
			errors: ORG,
			auth: "required",
			tag,
			summary: "Ledger entries of the caller (or with ?orgId= an organisation), newest first (cursor pagination)"
		},
		{
			method: "GET",
			path: "/billing/cap",
			action: "payments.payerCap",
			response: views.payerCap,
			auth: "required",
			tag,
			summary: "Your own monthly spend cap and this month's spend (an organisation's cap: PATCH /orgs/{id})"
		},
		{
			method: "PUT",
			path: "/billing/cap",
			action: "payments.setPayerCap",
			response: views.setPayerCap,
			auth: "required",
			tag,
			summary: "Set or remove (null) your own monthly spend cap; holds past it are refused 402 PAYER_CAP_REACHED"
		},
		{
			method: "GET",
			path: "/billing/prices",
			action: "payments.prices",
			response: views.prices,
			auth: "none",
			tag,
			summary: "Credit packs, plans, model prices, boost price and the tier table"
		},
		{
			method: "POST",
			path: "/billing/checkout",
			action: "payments.checkout",
			query: ORG_QUERY,
			response: views.checkout,
			errors: {
				...ORG,
				409: ["IDEMPOTENCY_KEY_REUSED", "ALREADY_SUBSCRIBED"],
				503: STRIPE
			},
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
			response: views.checkoutStatus,
			errors: { ...ORG },
			auth: "required",
			tag,
			summary: "A checkout's state (checks with Stripe while unsettled: use it from the success page)"
		},
		{
			method: "POST",
			path: "/billing/portal",
			action: "payments.portal",
			query: ORG_QUERY,
			response: views.portal,
			errors: { ...ORG, 503: STRIPE },
			auth: "required",
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary: "A Stripe Customer Portal session (payment methods, invoices, cancellation); returns its URL"
		},
		{
			method: "GET",
			path: "/billing/subscription",
			action: "payments.subscription",
			response: views.subscription,
			errors: { ...ORG },
			auth: "required",
			tag,
			summary: "The payer's plan tier and subscription as the last Stripe event reported it"
		},
		{
			method: "POST",
			path: "/billing/subscription",
			action: "payments.changeSubscription",
			query: ORG_QUERY,
			response: views.changeSubscription,
			errors: { ...ORG, 409: SUB, 503: STRIPE },
			auth: "required",
			idempotent: true,
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary:
				"Change the plan of the existing subscription (prorated); the tier follows Stripe's subscription event"
		},
		{
			method: "DELETE",
			path: "/billing/subscription",
			action: "payments.cancelSubscription",
			query: ORG_QUERY,
			response: views.cancelSubscription,
			errors: { ...ORG, 409: SUB, 503: STRIPE },
			auth: "required",
			idempotent: true,
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary: "Cancel the subscription at the end of the paid period (the tier stays until then)"
		},
		{
			method: "POST",
			path: "/billing/subscription/resume",
			action: "payments.resumeSubscription",
			query: ORG_QUERY,
			response: views.resumeSubscription,
			errors: { ...ORG, 409: SUB, 503: STRIPE },
			auth: "required",
			idempotent: true,
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary: "Take back a cancellation at period end"
		},
		{
			method: "POST",
			path: "/billing/stripe/webhook",
			action: "payments.stripeWebhook",
			response: views.stripeWebhook,
			errors: { 400: ["INVALID_SIGNATURE"], 503: ["STRIPE_NOT_CONFIGURED"] },
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
			response: views.createInvoice,
			errors: { 409: ["IDEMPOTENCY_KEY_REUSED"], 503: ["CHAIN_NOT_CONFIGURED"] },
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
			response: views.invoice,
			errors: { 503: ["CHAIN_NOT_CONFIGURED"] },
			auth: "required",
			tag,
			summary: "An invoice and the state of its payment, if any"
		},
		{
			method: "POST",
			path: "/billing/crypto/payments",
			action: "payments.claimCryptoPayment",
			response: views.claimCryptoPayment,
			errors: {
				404: ["NOT_FOUND"],
				409: ["INVOICE_ALREADY_PAID", "CHAIN_REORG", "CONFLICT"],
				503: ["CHAIN_NOT_CONFIGURED"]
			},
			// 202 while it waits for confirmations, 201 once credited, 200 when claimed before.
			status: 201,
			alsoStatus: [200, 202],
			auth: "required",
			rateLimit: { points: 30, durationS: 60, by: "user" },
			tag,
			summary: "Claim an on-chain FORGE payment by chain id and transaction hash"
		},
		{
			method: "GET",
			path: "/billing/crypto/payments/:id",
			action: "payments.cryptoPayment",
			response: views.cryptoPayment,
			errors: { 503: ["CHAIN_NOT_CONFIGURED"] },
			auth: "required",
			tag,
			summary: "A FORGE payment's state: pending, confirmed, credited, rejected or reversed"
		},
		{
			method: "GET",
			path: "/staking",
			action: "payments.staking",
			response: views.staking,
			auth: "required",
			tag: "staking",
			summary: "The caller's stake positions and what they unlock"
		}
	];
}
