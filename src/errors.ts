/** Typed client errors with stable codes; the gateway turns them into the contract's error shape. */
import { Errors } from "moleculer";

const E = Errors.MoleculerClientError;

export const NotFound = (what = "Resource", details?: unknown) => new E(`${what} not found`, 404, "NOT_FOUND", details);
export const Conflict = (message: string, code = "CONFLICT", details?: unknown) => new E(message, 409, code, details);
export const Unauthorized = (message = "Authentication required", code = "UNAUTHORIZED") => new E(message, 401, code);
export const Forbidden = (message = "You are not allowed to do this", code = "FORBIDDEN") => new E(message, 403, code);
export const BadRequest = (message: string, code = "BAD_REQUEST", details?: unknown) =>
	new E(message, 400, code, details);
export const Unprocessable = (
	message: string,
	details: Array<{ field: string; message: string; type?: string }>,
	code = "VALIDATION_ERROR"
) => new E(message, 422, code, details);
export const PaymentRequired = (message: string, details?: unknown) =>
	new E(message, 402, "INSUFFICIENT_CREDITS", details);
export const TooManyRequests = (message: string, retryAfterS: number, code = "RATE_LIMITED") =>
	new E(message, 429, code, { retryAfter: retryAfterS });
export const Unavailable = (message: string, code = "SERVICE_UNAVAILABLE") =>
	new Errors.MoleculerServerError(message, 503, code);
