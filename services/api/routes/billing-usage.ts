/** REST route of the usage report (services/payments/usage.mixin.ts; docs/payments.md "Usage"). */
import type { RouteSpec } from "../../../src/http/route-spec";
import { UsageCsvView, UsageReportView } from "../../../src/payments/usage-views";

export function billingUsageRoutes(): RouteSpec[] {
	return [
		{
			method: "GET",
			path: "/billing/usage",
			action: "payments.usage",
			response: UsageReportView,
			alsoContent: { "text/csv": UsageCsvView },
			errors: { 400: ["INVALID_RANGE"], 403: ["INSUFFICIENT_ROLE"], 404: ["NOT_FOUND"] },
			auth: "required",
			rateLimit: { points: 60, durationS: 60, by: "user" },
			tag: "billing",
			summary:
				"Settled usage over a range grouped by day, model, project, member or key (CSV with Accept: text/csv); equals the ledger"
		}
	];
}
