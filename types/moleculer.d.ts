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
		/**
		 * Open to organisation API keys (refused otherwise: 403 ORG_KEY_NOT_ALLOWED). The action keeps
		 * such a key within its organisation itself (src/auth/org-key.ts).
		 */
		orgKey?: boolean;
	}
}
