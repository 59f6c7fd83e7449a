/**
 * The shape of one declared REST route. A leaf: the route registry (services/api/routes.ts), the
 * route modules and the OpenAPI generator all import it, and it imports none of them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Role } from "../auth/user";

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface RouteSpec {
	method: HttpMethod;
	/** Path under /api/v1, with `:param` segments. */
	path: string;
	/** The action called; its fastest-validator params become the OpenAPI schema. */
	action: string;
	/** "required": 401 without a valid token or key; "optional": user when present; "none": never read. */
	auth: "required" | "optional" | "none";
	/** Roles allowed (checked at the gateway for a fast 403; the action checks again). */
	permissions?: Role[];
	summary: string;
	tag: string;
	/** HTTP status on success (default 200). */
	status?: number;
	/** "raw": the body is passed as a Buffer (`ctx.params.rawBody`), e.g. for signed webhooks. */
	body?: "json" | "raw";
	/**
	 * false: the global per-user / per-IP limit does not apply (machine callers such as signed webhooks,
	 * which retry on 429 and whose senders share a few IPs); set a `rateLimit` of its own instead.
	 */
	globalRateLimit?: false;
	/** Extra, tighter rate limit for this route (on top of the global one). */
	rateLimit?: { points: number; durationS: number; by: "ip" | "user" };
	/** A larger JSON body limit than BODY_LIMIT for this route alone (e.g. "48mb" for file uploads). */
	bodyLimit?: string;
	/** Accepts an Idempotency-Key header (passed as ctx.meta.idempotencyKey). */
	idempotent?: boolean;
	/** A streaming response (SSE): the gateway calls this instead of answering with the action's JSON. */
	stream?: (
		this: unknown,
		req: IncomingMessage & { $ctx?: unknown },
		res: ServerResponse,
		params: Record<string, string>
	) => Promise<void>;
}
