/** REST routes of auto top-up and low-balance notices (services/payments/topup.mixin.ts; docs/payments.md). */
import type { RouteSpec } from "../../../src/http/route-spec";
import { AutoTopUpView, BillingAlertsView } from "../../../src/payments/topup-views";
import { ORG, ORG_QUERY } from "./payments";

const tag = "billing";

export function billingTopUpRoutes(): RouteSpec[] {
	return [
		{
			method: "GET",
			path: "/billing/auto-topup",
			action: "payments.autoTopUp",
			response: AutoTopUpView,
			errors: { ...ORG },
			auth: "required",
			tag,
			summary: "The payer's auto top-up: threshold, pack, whether it is on and why it was turned off"
		},
		{
			method: "PUT",
			path: "/billing/auto-topup",
			action: "payments.setAutoTopUp",
			query: ORG_QUERY,
			response: AutoTopUpView,
			errors: { ...ORG, 503: ["STRIPE_NOT_CONFIGURED"] },
			auth: "required",
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary:
				"Set auto top-up: under thresholdCredits after a settlement, the saved card buys packId (at most once per window)"
		},
		{
			method: "DELETE",
			path: "/billing/auto-topup",
			action: "payments.deleteAutoTopUp",
			query: ORG_QUERY,
			response: AutoTopUpView,
			errors: { ...ORG },
			auth: "required",
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary: "Remove the payer's auto top-up"
		},
		{
			method: "GET",
			path: "/billing/alerts",
			action: "payments.alerts",
			response: BillingAlertsView,
			errors: { ...ORG },
			auth: "required",
			tag,
			summary: "The payer's low-balance notice threshold (its own or the default)"
		},
		{
			method: "PUT",
			path: "/billing/alerts",
			action: "payments.setAlerts",
			query: ORG_QUERY,
			response: BillingAlertsView,
			errors: { ...ORG },
			auth: "required",
			rateLimit: { points: 20, durationS: 60, by: "user" },
			tag,
			summary: "Set the low-balance threshold: one notice (e-mail, billing.low_balance) per crossing under it"
		}
	];
}
