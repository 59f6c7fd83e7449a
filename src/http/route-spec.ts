/**
 * The shape of one declared REST route. A leaf: the route registry (services/api/routes.ts), the
 * route modules and the OpenAPI generator all import it, and it imports none of them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TSchema } from "@sinclair/typebox";
import type { Role } from "../auth/user";

/** Statuses a route may declare error codes for (the gateway adds its own to each). */
export type ErrorStatus = 400 | 401 | 402 | 403 | 404 | 409 | 413 | 415 | 422 | 429 | 503;

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
	/**
	 * The success body's schema (TypeBox, src/http/schema.ts). The same value types the action's answer
	 * (`Static<typeof X>`), is published in the OpenAPI document and is checked against every response
	 * the integration tests see. For a stream route: the schema of the task it streams (see `events`).
	 */
	response: TSchema;
	/**
	 * Error codes this route answers with beyond the gateway's own (VALIDATION_ERROR, RATE_LIMITED,
	 * UNAUTHORIZED, ...), per status. A status listed here is published with its codes enumerated.
	 */
	errors?: Partial<Record<ErrorStatus, string[]>>;
	/** A stream route's SSE event types and the schema of each one's `data`. */
	events?: Record<string, TSchema>;
	/** HTTP status on success (default 200). */
	status?: number;
	/** Other success statuses the route answers with the same body (e.g. 202 while pending). */
	alsoStatus?: number[];
	/** The success body's media type when it is not JSON (e.g. a file's bytes; "*" + "/*" for the file's own type). */
	contentType?: string;
	/** Other media types the same success answers in (chosen by the request's Accept header), with their schemas. */
	alsoContent?: Record<string, TSchema>;
	/**
	 * Action params a route other than GET takes in the query string (e.g. `?orgId=` on the billing
	 * routes), published as query parameters rather than body fields. The gateway merges the query and
	 * the body into the params either way.
	 */
	query?: readonly string[];
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
	/**
	 * A streaming response (SSE) the route answers with when the request's Accept header asks for
	 * `text/event-stream`: the gateway calls this (after authentication and the rate limits) instead of
	 * the action; any other Accept gets the action's JSON. Its events are `events`.
	 */
	acceptStream?: (this: unknown, req: IncomingMessage & { $ctx?: unknown }, res: ServerResponse) => Promise<void>;
	/** A streaming response (SSE): the gateway calls this instead of answering with the action's JSON. */
	stream?: (
		this: unknown,
		req: IncomingMessage & { $ctx?: unknown },
		res: ServerResponse,
		params: Record<string, string>
	) => Promise<void>;
}
