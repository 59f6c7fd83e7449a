/**
 * Authorization keyed on action metadata (kantab style): an action declares
 *   `permissions: ["admin"]`           only these roles may call it (through the gateway or not);
 *   `auth: "required"`                  a signed-in user must be on ctx.meta.user.
 * The check runs on the node that hosts the action, so a call that skipped the gateway is checked too.
 */
import { Errors, Middleware } from "moleculer";
import type { AuthUser } from "../auth/user";

export const PermissionsMiddleware: Middleware = {
	name: "Permissions",
	localAction(nextHandler, action) {
		const next = nextHandler as (ctx: import("moleculer").Context) => Promise<unknown>;
		const schema = action as unknown as { permissions?: string[]; auth?: "required" | "optional" };
		const permissions = schema.permissions;
		const needsUser = schema.auth === "required" || (permissions && permissions.length > 0);
		if (!needsUser) return next;
		return function checkPermissions(ctx) {
			const user = (ctx.meta as { user?: AuthUser | null }).user;
			if (!user) return Promise.reject(new Errors.MoleculerClientError("Authentication required", 401, "UNAUTHORIZED"));
			if (permissions && permissions.length && !permissions.includes(user.role))
				return Promise.reject(
					new Errors.MoleculerClientError("You are not allowed to do this", 403, "FORBIDDEN", { required: permissions })
				);
			return next(ctx);
		};
	}
};
