// Custom action properties, declared once (read by src/middlewares/permissions.ts and the gateway).
import "moleculer";

declare module "moleculer" {
	interface ActionSchema {
		/** Roles allowed to call this action. */
		permissions?: string[];
		/** "required": a signed-in user must be present in ctx.meta.user. */
		auth?: "required" | "optional";
		/** Scope(s) an API key needs for this action, each of them (sessions hold every scope of their role); see src/auth/scopes.ts. */
		scope?: import("../src/auth/scopes").Scope | readonly import("../src/auth/scopes").Scope[];
		/** Refused to API keys: credentials management needs a signed-in session. */
		sessionOnly?: boolean;
	}
}
