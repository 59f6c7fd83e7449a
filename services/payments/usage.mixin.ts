/**
 * The usage report of the payments service, mixed into services/payments.service.ts:
 * GET /billing/usage (JSON, or CSV with `Accept: text/csv`) for the caller or, with `?orgId=`, for an
 * organisation they hold a billing role in, and the operator's `usageOf` behind the REPL. The rules
 * and the SQL are src/payments/usage.ts; the payer rule src/payments/payer.ts.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { INTERNAL, currentUser, type Ctx } from "../../src/kit/service";
import { runtimeOf } from "../../src/runtime/runtime";
import { payerOfRequest } from "../../src/payments/payer";
import { orgOfRequest } from "../../src/auth/org-key";
import { USAGE_GROUPS, UsageStore, usageCsv, usageRange, wantsCsv, type UsageGroup } from "../../src/payments/usage";

export interface UsageThis extends Service {
	usageStore: UsageStore;
	usageMaxSpanDays: number;
}

const RANGE_PARAMS = {
	from: {
		type: "string",
		max: 40,
		optional: true,
		description: "ISO-8601 date or date-time, inclusive (default: 30 days before `to`)"
	},
	to: {
		type: "string",
		max: 40,
		optional: true,
		description: "ISO-8601 date or date-time, exclusive (default: now)"
	},
	groupBy: { type: "enum", values: [...USAGE_GROUPS], default: "day" }
} as const;

const OPT_ID = { type: "string", min: 1, max: 200, optional: true, nullable: true } as const;
/** payments.reserve's `attribution`: who holds the task and with what (src/payments/usage.ts). */
export const ATTRIBUTION = {
	type: "object",
	optional: true,
	strict: "remove",
	props: {
		memberId: OPT_ID,
		keyId: OPT_ID,
		projectId: OPT_ID,
		model: OPT_ID,
		source: { type: "enum", values: ["task", "chat"], optional: true }
	}
} as const;
const TOKENS = { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER, optional: true } as const;
/** payments.settle's `usage`: what the settled task used. */
export const SETTLED_USAGE = {
	type: "object",
	optional: true,
	strict: "remove",
	props: {
		inputTokens: TOKENS,
		outputTokens: TOKENS,
		models: { type: "array", items: { type: "string", min: 1, max: 200 }, max: 8, optional: true }
	}
} as const;
type UsageParams = { from?: string; to?: string; groupBy: UsageGroup; orgId?: string };

export const usageMixin: ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	UsageThis
> = {
	name: "payments",
	actions: {
		usage: {
			auth: "required",
			// An organisation API key reports for its organisation (src/auth/org-key.ts).
			orgKey: true,
			scope: "billing:read",
			params: {
				$$strict: "remove",
				...RANGE_PARAMS,
				orgId: {
					type: "uuid",
					optional: true,
					description: "report for this organisation's payer (owner, admin, billing)"
				}
			},
			async handler(this: UsageThis, ctx: Ctx<UsageParams>) {
				const user = currentUser(ctx);
				const range = usageRange(ctx.params, new Date(), this.usageMaxSpanDays);
				const payerId = await payerOfRequest(
					(orgId, userId) => ctx.call("orgs.roleOf", { orgId, userId }),
					user.id,
					orgOfRequest(user, ctx.params.orgId)
				);
				const report = await this.usageStore.report(payerId, range, ctx.params.groupBy);
				if (!wantsCsv(ctx.meta.accept)) return report;
				ctx.meta.$responseType = "text/csv; charset=utf-8";
				ctx.meta.$responseHeaders = {
					"Content-Disposition": `attachment; filename="usage-${ctx.params.groupBy}-${report.from.slice(0, 10)}-${report.to.slice(0, 10)}.csv"`
				};
				return usageCsv(report);
			}
		},

		/** An operator's view of any payer's usage (REPL billing-usage). */
		usageOf: {
			visibility: INTERNAL,
			params: { payerId: { type: "string", min: 1, max: 128 }, ...RANGE_PARAMS },
			async handler(this: UsageThis, ctx: Ctx<UsageParams & { payerId: string }>) {
				const range = usageRange(ctx.params, new Date(), this.usageMaxSpanDays);
				return this.usageStore.report(ctx.params.payerId, range, ctx.params.groupBy);
			}
		}
	},

	created(this: UsageThis) {
		const rt = runtimeOf(this.broker);
		this.usageStore = new UsageStore(rt.sequelize, rt.config.dbNamedStatements);
		this.usageMaxSpanDays = rt.config.payments.usageMaxSpanDays;
	}
};
