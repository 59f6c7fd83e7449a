// Custom action properties, declared once (read by src/middlewares/permissions.ts and the gateway).
import "moleculer";

declare module "moleculer" {
	interface ActionSchema {
		/** Roles allowed to call this action. */
		permissions?: string[];
		/** "required": a signed-in user must be present in ctx.meta.user. */
		auth?: "required" | "optional";
		/** Short description for the OpenAPI document. */
		summary?: string;
	}
}
