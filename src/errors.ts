/**
 * The one error vocabulary of the domain: a `DomainError` carries a stable `code` (what clients
 * branch on), the HTTP `status` it stands for, a message and optional details. It does not depend on
 * Moleculer: domain code throws it, and one middleware (src/middlewares/domain-errors.ts) turns it
 * into a Moleculer error on the node that hosts the action, so it crosses the transporter with its
 * code and the gateway (src/http/errors.ts) answers with the contract's error shape.
 */

/** One problem with one request field, the shape of a 422's details. */
export interface FieldProblem {
	field: string;
	message: string;
	type?: string;
}

export class DomainError extends Error {
	constructor(
		readonly code: string,
		readonly status: number,
		message: string,
		readonly details?: unknown
	) {
		super(message);
		this.name = "DomainError";
	}
}

export const NotFound = (what = "Resource", details?: unknown) =>
	new DomainError("NOT_FOUND", 404, `${what} not found`, details);
export const Conflict = (message: string, code = "CONFLICT", details?: unknown) =>
	new DomainError(code, 409, message, details);
export const Unauthorized = (message = "Authentication required", code = "UNAUTHORIZED") =>
	new DomainError(code, 401, message);
export const Forbidden = (message = "You are not allowed to do this", code = "FORBIDDEN") =>
	new DomainError(code, 403, message);
export const BadRequest = (message: string, code = "BAD_REQUEST", details?: unknown) =>
	new DomainError(code, 400, message, details);
export const Unprocessable = (message: string, details: FieldProblem[], code = "VALIDATION_ERROR") =>
	new DomainError(code, 422, message, details);
/** 402: `INSUFFICIENT_CREDITS`, or a monthly spend cap's code (src/payments/spend-caps.ts). */
export const PaymentRequired = (message: string, details?: unknown, code = "INSUFFICIENT_CREDITS") =>
	new DomainError(code, 402, message, details);
export const TooManyRequests = (message: string, retryAfterS: number, code = "RATE_LIMITED") =>
	new DomainError(code, 429, message, { retryAfter: retryAfterS });
export const Unavailable = (message: string, code = "SERVICE_UNAVAILABLE") => new DomainError(code, 503, message);

/**
 * The 503s the platform answers on purpose while the service answering is healthy: a feature that is
 * not configured here, or a third party that is down (the service said so itself, at once). The
 * circuit breaker does not count them (moleculer.config.ts): opening a circuit on them would switch
 * the action off for every caller, including those whose request deserves a 4xx. A 503 with any other
 * code (SERVICE_UNAVAILABLE, a dependency the service cannot reach) says the service is unwell and counts.
 */
export const EXPECTED_UNAVAILABLE_CODES: ReadonlySet<string> = new Set([
	"STRIPE_NOT_CONFIGURED",
	"CHAIN_NOT_CONFIGURED",
	"STRIPE_UNAVAILABLE",
	"CHAIN_UNAVAILABLE"
]);
