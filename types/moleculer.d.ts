// Custom action properties, declared once (read by src/middlewares/permissions.ts and the gateway).
import "moleculer";

declare module "moleculer" {
	interface ActionSchema {
		/** Roles allowed to call this action. */
		permissions?: string[];
		/** "required": a signed-in user must be present in ctx.meta.user. */
		auth?: "required" | "optional";
		/** Scope an API key needs for this action (sessions hold every scope of their role); see src/auth/scopes.ts. */
		scope?: import("../src/auth/scopes").Scope;
		/** Refused to API keys: credentials management needs a signed-in session. */
		sessionOnly?: boolean;
	}
}
