/** The usage report's response schema (GET /billing/usage), with src/payments/usage.ts's types. */
import { BigIntString, Count, DateTime, Enum, List, Named, Nullable, Str, Type } from "../http/schema";
import { USAGE_GROUPS } from "./usage";

const sums = {
	tasks: Count("settled tasks and chats"),
	credits: BigIntString(),
	listCredits: BigIntString(),
	inputTokens: Nullable(BigIntString()),
	outputTokens: Nullable(BigIntString())
};

export const UsageReportView = Named("UsageReport", {
	payerId: Str(160, { description: "the user id, or org:<uuid> for an organisation" }),
	from: DateTime("inclusive"),
	to: DateTime("exclusive"),
	groupBy: Enum(USAGE_GROUPS),
	rows: List(
		Type.Object({
			key: Nullable(
				Str(400, {
					description: "the group (UTC day, model, project id, member id, key id); null when unknown"
				})
			),
			...sums
		}),
		100_000
	),
	total: Type.Object(sums)
});

/** The CSV body: a header line (the group's name, tasks, credits, listCredits, inputTokens, outputTokens), then one line per group. */
export const UsageCsvView = Type.String({ maxLength: 50_000_000, description: "RFC 4180 CSV" });
