/**
 * One error shape for every response:
 *   { "error": { "code": "VALIDATION_ERROR", "message": "...", "details": [...] }, "requestId": "..." }
 * This module maps whatever was thrown (Moleculer errors from any node, body-parser errors, our own
 * domain errors) to a status and that shape. Unknown errors become a generic 500 without internals.
 */
import { toMoleculerError } from "../middlewares/domain-errors";
import { isDependencyDown } from "../runtime/dependency-policy";

export interface ApiErrorBody {
	error: { code: string; message: string; details?: unknown; detailsTotal?: number };
	requestId: string;
}

export interface MappedError {
	status: number;
	body: Omit<ApiErrorBody, "requestId">;
	headers: Record<string, string>;
	/** true when the failure is ours, not the client's: log it with its stack. */
	internal: boolean;
}

interface ErrorLike {
	name?: string;
	message?: string;
	code?: unknown;
	status?: unknown;
	statusCode?: unknown;
	type?: unknown;
	data?: unknown;
	retryable?: boolean;
}

const UNAVAILABLE = new Set([
	"ServiceNotFoundError",
	"ServiceNotAvailableError",
	"ServiceUnavailableError",
	"RequestTimeoutError",
	"QueueIsFullError",
	"BrokerDisconnectedError",
	"RequestRejectedError",
	"RequestSkippedError",
	"MaxCallLevelError"
]);

const BODY_PARSER: Record<string, { status: number; code: string; message: string }> = {
	"entity.parse.failed": { status: 400, code: "MALFORMED_JSON", message: "The request body is not valid JSON" },
	"entity.too.large": { status: 413, code: "PAYLOAD_TOO_LARGE", message: "The request body is too large" },
	"entity.verify.failed": { status: 400, code: "BAD_REQUEST", message: "The request body could not be verified" },
	"request.aborted": { status: 400, code: "BAD_REQUEST", message: "The request was aborted" },
	"request.size.invalid": {
		status: 400,
		code: "BAD_REQUEST",
		message: "The request body size does not match Content-Length"
	},
	"encoding.unsupported": { status: 415, code: "UNSUPPORTED_MEDIA_TYPE", message: "Unsupported content encoding" },
	"encoding.invalid": {
		status: 400,
		code: "MALFORMED_BODY",
		message: "The request body could not be decoded with its Content-Encoding"
	},
	"charset.unsupported": { status: 415, code: "UNSUPPORTED_MEDIA_TYPE", message: "Unsupported charset; use UTF-8" },
	"stream.encoding.set": { status: 500, code: "INTERNAL_ERROR", message: "Internal error" }
};

/**
 * At most this many details in an error body; `detailsTotal` says how many there were. One wrong item
 * per array element of a 200 KB request would otherwise answer megabytes.
 */
export const MAX_ERROR_DETAILS = 20;
/** Messages longer than this are cut: a message must never carry the client's input back in bulk. */
const MAX_MESSAGE_CHARS = 500;

function capDetails(details: unknown): { details?: unknown; detailsTotal?: number } {
	if (!Array.isArray(details)) return details === undefined ? {} : { details };
	if (details.length <= MAX_ERROR_DETAILS) return { details };
	return { details: details.slice(0, MAX_ERROR_DETAILS), detailsTotal: details.length };
}

function capMessage(message: string): string {
	return message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
}

function validationDetails(data: unknown) {
	if (!Array.isArray(data)) return undefined;
	// Never echo `actual` back: it may be a password.
	return data.slice(0, MAX_ERROR_DETAILS).map((d: { field?: string; message?: string; type?: string }) => ({
		field: typeof d.field === "string" ? capMessage(d.field) : d.field,
		message: typeof d.message === "string" ? capMessage(d.message) : d.message,
		type: d.type
	}));
}

/**
 * What body-parser passes on, made mappable. A body whose Content-Encoding does not decode (gzip that
 * is not gzip) comes back as zlib's own error with a string `code` ("Z_DATA_ERROR") and no `type`, which
 * moleculer-web would turn into a 500; it is the client's malformed body.
 */
export function bodyParserError(err: unknown): unknown {
	const e = err as { type?: unknown; code?: unknown; status?: unknown; message?: string } | null;
	if (!e || typeof e !== "object") return err;
	if (typeof e.type === "string" && BODY_PARSER[e.type]) return err;
	const zlib = typeof e.code === "string" && /^(Z_|ERR_ZLIB|ERR__?BROTLI)/.test(e.code);
	if (zlib || (typeof e.status === "number" && e.status >= 400 && e.status < 500))
		return Object.assign(new Error(BODY_PARSER["encoding.invalid"].message), {
			type: "encoding.invalid",
			status: 400
		});
	return err;
}

export function mapError(err: unknown): MappedError {
	// Thrown in the gateway itself (authentication, routing), not through an action.
	const e = (toMoleculerError(err) ?? {}) as ErrorLike;
	const headers: Record<string, string> = {};

	// body-parser errors carry a `type` like "entity.parse.failed" and a numeric status.
	if (typeof e.type === "string" && BODY_PARSER[e.type]) {
		const m = BODY_PARSER[e.type];
		return {
			status: m.status,
			body: { error: { code: m.code, message: m.message } },
			headers,
			internal: m.status >= 500
		};
	}

	const name = e.name ?? "Error";
	const code = typeof e.code === "number" ? e.code : typeof e.status === "number" ? e.status : undefined;

	if (name === "ValidationError" && code === 422) {
		return {
			status: 422,
			body: {
				error: {
					code: "VALIDATION_ERROR",
					message: "Some fields are invalid",
					details: validationDetails(e.data),
					...(Array.isArray(e.data) && e.data.length > MAX_ERROR_DETAILS
						? { detailsTotal: e.data.length }
						: {})
				}
			},
			headers,
			internal: false
		};
	}

	// A driver's connection error that reached the gateway as it was (its own Redis, a node without the middleware).
	if (code !== 503 && !(code != null && code >= 400 && code < 500) && isDependencyDown(err)) {
		headers["Retry-After"] = "2";
		return {
			status: 503,
			body: {
				error: {
					code: "DEPENDENCY_UNAVAILABLE",
					message: "A dependency of this service is unavailable; try again shortly"
				}
			},
			headers,
			internal: false
		};
	}

	if (UNAVAILABLE.has(name) || code === 503) {
		headers["Retry-After"] = "5";
		let body: { code: string; message: string };
		if (!UNAVAILABLE.has(name) && typeof e.type === "string" && /^[A-Z][A-Z0-9_]*$/.test(e.type))
			body = { code: e.type, message: e.message ?? "Unavailable" }; // our own, e.g. STRIPE_NOT_CONFIGURED
		else if (name === "RequestTimeoutError")
			body = { code: "UPSTREAM_TIMEOUT", message: "A service did not answer in time; try again" };
		else if (name === "QueueIsFullError")
			body = { code: "OVERLOADED", message: "The service is overloaded; try again shortly" };
		else
			body = {
				code: "SERVICE_UNAVAILABLE",
				message: "A service this request needs is unavailable; try again shortly"
			};
		return { status: 503, body: { error: body }, headers, internal: false };
	}

	if (name === "RateLimitExceeded" || code === 429) {
		const retryAfter = (e.data as { retryAfter?: number } | undefined)?.retryAfter;
		headers["Retry-After"] = String(Math.max(1, Math.ceil(retryAfter ?? 60)));
		return {
			status: 429,
			body: {
				error: {
					code: typeof e.type === "string" && e.type !== "RATE_LIMIT" ? e.type : "RATE_LIMITED",
					message: e.message || "Too many requests"
				}
			},
			headers,
			internal: false
		};
	}

	if (name === "NotFoundError" && (e.type === "NOT_FOUND" || !e.type)) {
		return { status: 404, body: { error: { code: "NOT_FOUND", message: "Not found" } }, headers, internal: false };
	}

	if (code != null && code >= 400 && code < 500) {
		const typeCode = typeof e.type === "string" && /^[A-Z][A-Z0-9_]*$/.test(e.type) ? e.type : httpCodeName(code);
		const details = e.data === undefined || e.data === null ? undefined : e.data;
		return {
			status: code,
			body: {
				error: {
					code: typeCode,
					message: capMessage(e.message || httpCodeName(code)),
					...capDetails(details)
				}
			},
			headers,
			internal: false
		};
	}

	return {
		status: 500,
		body: { error: { code: "INTERNAL_ERROR", message: "Internal server error" } },
		headers,
		internal: true
	};
}

function httpCodeName(code: number): string {
	switch (code) {
		case 400:
			return "BAD_REQUEST";
		case 401:
			return "UNAUTHORIZED";
		case 402:
			return "PAYMENT_REQUIRED";
		case 403:
			return "FORBIDDEN";
		case 404:
			return "NOT_FOUND";
		case 405:
			return "METHOD_NOT_ALLOWED";
		case 409:
			return "CONFLICT";
		case 410:
			return "GONE";
		case 413:
			return "PAYLOAD_TOO_LARGE";
		case 415:
			return "UNSUPPORTED_MEDIA_TYPE";
		case 422:
			return "VALIDATION_ERROR";
		case 429:
			return "RATE_LIMITED";
		default:
			return "CLIENT_ERROR";
	}
}
