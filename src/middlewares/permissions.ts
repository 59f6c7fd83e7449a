/**
 * Authorization keyed on action metadata (kantab style): an action declares
 *   `permissions: ["admin"]`           only these roles may call it (through the gateway or not);
 *   `auth: "required"`                  a signed-in user must be on ctx.meta.user;
 *   `scope: "projects:write"`           an API key must hold this scope (sessions hold every scope of their role);
 *   `scope: ["tasks:write", "ai:use"]`  an API key must hold each of these;
 *   `sessionOnly: true`                 a signed-in session is needed: an API key is refused (403 SESSION_REQUIRED).
 *   `orgKey: true`                      an organisation API key may call it; every other action refuses one
 *                                       (403 ORG_KEY_NOT_ALLOWED), so a new action is closed to them by default.
 * The check runs on the node that hosts the action, so a call that skipped the gateway is checked too.
 */
import { Errors, Middleware } from "moleculer";
import type { AuthUser } from "../auth/user";
import { hasScope, type Scope } from "../auth/scopes";

export const PermissionsMiddleware: Middleware = {
	name: "Permissions",
	localAction(nextHandler, action) {
		const next = nextHandler as (ctx: import("moleculer").Context) => Promise<unknown>;
		const schema = action as unknown as {
			permissions?: string[];
			auth?: "required" | "optional";
			scope?: Scope | readonly Scope[];
			sessionOnly?: boolean;
			orgKey?: boolean;
		};
		const permissions = schema.permissions;
		const scopes: readonly Scope[] = schema.scope === undefined ? [] : [schema.scope].flat();
		const sessionOnly = schema.sessionOnly === true;
		const orgKey = schema.orgKey === true;
		const needsUser = schema.auth === "required" || (permissions && permissions.length > 0);
		if (!needsUser && !scopes.length && !sessionOnly) return next;
		return function checkPermissions(ctx) {
			const user = (ctx.meta as { user?: AuthUser | null }).user;
			if (!user) {
				if (!needsUser) return next(ctx);
				return Promise.reject(new Errors.MoleculerClientError("Authentication required", 401, "UNAUTHORIZED"));
			}
			if (permissions && permissions.length && !permissions.includes(user.role))
				return Promise.reject(
					new Errors.MoleculerClientError("You are not allowed to do this", 403, "FORBIDDEN", {
						required: permissions
					})
				);
			if (sessionOnly && user.keyId)
				return Promise.reject(
					new Errors.MoleculerClientError(
						"This needs a signed-in session, not an API key",
						403,
						"SESSION_REQUIRED"
					)
				);
			if (user.orgId && !orgKey)
				return Promise.reject(
					new Errors.MoleculerClientError(
						"An organisation API key cannot do this; it acts only within its organisation",
						403,
						"ORG_KEY_NOT_ALLOWED"
					)
				);
			// Only API keys are narrowed: session tokens carry every scope of their role.
			const missing = user.keyId ? scopes.find(s => !hasScope(user, s)) : undefined;
			if (missing)
				return Promise.reject(
					new Errors.MoleculerClientError(`This needs the '${missing}' scope`, 403, "INSUFFICIENT_SCOPE")
				);
			return next(ctx);
		};
	}
};
