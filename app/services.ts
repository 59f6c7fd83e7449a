/** Which schema each SERVICES name loads. Loaded lazily so a node only imports what it hosts. */
import type { ServiceSchema } from "moleculer";
import type { ServiceName } from "../src/config";

/* eslint-disable @typescript-eslint/no-require-imports */
export const SERVICE_MODULES: Record<ServiceName, () => ServiceSchema> = {
	ai: () => require("../services/ai.service").default,
	"context-bridge": () => require("../services/context-bridge.service").default,
	api: () => require("../services/api.service").default,
	payments: () => require("../services/payments.service").default,
	projects: () => require("../services/projects.service").default,
	tasks: () => require("../services/tasks.service").default,
	users: () => require("../services/users.service").default,
	orgs: () => require("../services/orgs.service").default
};

/** Services that keep data in PostgreSQL (their node runs migrations and needs DATABASE_URL). */
export const DB_SERVICES: ServiceName[] = ["projects", "users", "payments", "tasks", "context-bridge", "orgs"];
