/** REST routes of the ai service (see docs/ai.md). Tasks are submitted through the tasks routes. */
import type { RouteSpec } from "../../../src/http/route-spec";
import { views } from "../../../src/ai/views";

const tag = "ai";

export function aiRoutes(): RouteSpec[] {
	return [
		{
			method: "GET",
			path: "/ai/models",
			action: "ai.models",
			response: views.models,
			auth: "optional",
			summary: "Model catalogue with prices (credits per 1M tokens); signed in: which models your tier may use",
			tag
		},
		{
			method: "GET",
			path: "/ai/deployments",
			action: "ai.deployments",
			response: views.deployments,
			auth: "required",
			permissions: ["admin", "operator"],
			summary: "This ai node's deployments: circuit state, cooldowns, in-flight attempts",
			tag
		}
	];
}
