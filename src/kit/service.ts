/**
 * The service kit: the few definitions every service shell shares, each explained here once.
 */
import type { Context } from "moleculer";
import type { AuthUser } from "../auth/user";
import { Unauthorized } from "../errors";

/**
 * Visibility of service-to-service actions (workers, operators, other services; never the gateway).
 * "public", not "protected": Moleculer registers protected actions for local callers only, so a node
 * of another service could not reach them in cluster mode. The gateway still cannot: moleculer-web
 * maps only the declared routes, and those name "published" actions.
 */
export const INTERNAL = "public" as const;

/**
 * What travels in `ctx.meta` of a request. The gateway sets the caller's fields; an action sets the
 * `$`-prefixed ones to shape the HTTP response.
 */
export interface RequestMeta {
	/** The authenticated caller (a small picked object, src/auth/user.ts); null or absent when anonymous. */
	user?: AuthUser | null;
	/** The client's address and user agent, as the gateway saw them. */
	ip?: string;
	userAgent?: string;
	/** The request's Accept header, for the few actions that answer in more than one media type. */
	accept?: string;
	/** The Idempotency-Key header of a route declared `idempotent`. */
	idempotencyKey?: string;
	/** Response status, headers, content type and Location header set by an action. */
	$statusCode?: number;
	$responseHeaders?: Record<string, string>;
	$responseType?: string;
	$location?: string;
}

/** The context of an action called with params `P` and the request meta. */
export type Ctx<P = Record<string, never>> = Context<P, RequestMeta>;

/**
 * The signed-in caller of a request, or a 401 `UNAUTHORIZED`. The one way an action reads its user:
 * roles, scopes and `sessionOnly` are already checked from the action's metadata by the permissions
 * middleware (src/middlewares/permissions.ts) before the handler runs.
 */
export function currentUser(ctx: Context<unknown, RequestMeta>): AuthUser {
	const user = ctx.meta.user;
	if (!user) throw Unauthorized();
	return user;
}
