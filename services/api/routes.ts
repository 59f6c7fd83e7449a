/**
 * The REST contract's routes, declared explicitly (nothing is auto-exposed). Each domain adds its
 * routes in its own module under services/api/routes/ and lists it in ROUTE_MODULES below. The
 * gateway builds its aliases, its auth checks and the OpenAPI document from these declarations.
 */
import type { RouteSpec } from "../../src/http/route-spec";
import { paymentsRoutes } from "./routes/payments";
import { projectRoutes } from "./routes/projects";
import { aiRoutes } from "./routes/ai";
import { tasksRoutes } from "./routes/tasks";
import { usersRoutes } from "./routes/users";
import { orgsRoutes } from "./routes/orgs";
import { billingUsageRoutes } from "./routes/billing-usage";
import { billingTopUpRoutes } from "./routes/billing-topup";

// Domain route modules register here (users, projects, payments, tasks, ai).
export const ROUTE_MODULES: Array<() => RouteSpec[]> = [
	projectRoutes,
	usersRoutes,
	paymentsRoutes,
	aiRoutes,
	tasksRoutes,
	orgsRoutes,
	billingUsageRoutes,
	billingTopUpRoutes
];

export function allRoutes(): RouteSpec[] {
	return ROUTE_MODULES.flatMap(m => m());
}
