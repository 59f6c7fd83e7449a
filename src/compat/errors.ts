/**
 * Errors of the compatible endpoints, in each protocol's own shape and status, so each SDK raises
 * its own exception class (openai: BadRequestError, AuthenticationError, PermissionDeniedError,
 * NotFoundError, RateLimitError…; @anthropic-ai/sdk the same names plus OverloadedError on 529).
 *
 * One neutral kind per failure; the two tables below say what each protocol calls it.
 * - Not enough credits: OpenAI answers 429 `insufficient_quota` (what api.openai.com does, so
 *   clients that special-case it keep working) and Anthropic 402 `billing_error`; both with
 *   `x-should-retry: false`, which both SDKs obey, so a client does not retry what cannot succeed.
 * - Rate limits and admission refusals: 429 with `retry-after`, which both SDKs wait for.
 * - No capacity upstream: Anthropic's 529 `overloaded_error`; OpenAI has no such status and uses 503.
 */
import { DomainError } from "../errors";
import type { Protocol } from "./types";

export type ErrorKind =
	| "invalid_request"
	| "authentication"
	| "permission"
	| "not_found"
	| "insufficient_credits"
	| "too_large"
	| "rate_limited"
	| "overloaded"
	| "unavailable"
	| "timeout"
	| "api_error";

export class CompatError extends Error {
	constructor(
		readonly kind: ErrorKind,
		message: string,
		/** The offending request field (OpenAI's `param`), dotted. */
		readonly param: string | null = null,
		/** A stable code (OpenAI's `code`), e.g. `model_not_found`. */
		readonly code: string | null = null,
		readonly retryAfterS: number | null = null
	) {
		super(message);
		this.name = "CompatError";
	}
}

export const invalid = (message: string, param: string | null = null, code: string | null = null) =>
	new CompatError("invalid_request", message, param, code);

interface Mapping {
	status: number;
	type: string;
}

export const OPENAI_ERRORS: Record<ErrorKind, Mapping> = {
	invalid_request: { status: 400, type: "invalid_request_error" },
	authentication: { status: 401, type: "authentication_error" },
	permission: { status: 403, type: "permission_error" },
	not_found: { status: 404, type: "invalid_request_error" },
	insufficient_credits: { status: 429, type: "insufficient_quota" },
	too_large: { status: 413, type: "invalid_request_error" },
	rate_limited: { status: 429, type: "rate_limit_error" },
	overloaded: { status: 503, type: "server_error" },
	unavailable: { status: 503, type: "server_error" },
	timeout: { status: 504, type: "timeout_error" },
	api_error: { status: 500, type: "server_error" }
};

export const ANTHROPIC_ERRORS: Record<ErrorKind, Mapping> = {
	invalid_request: { status: 400, type: "invalid_request_error" },
	authentication: { status: 401, type: "authentication_error" },
	permission: { status: 403, type: "permission_error" },
	not_found: { status: 404, type: "not_found_error" },
	insufficient_credits: { status: 402, type: "billing_error" },
	too_large: { status: 413, type: "request_too_large" },
	rate_limited: { status: 429, type: "rate_limit_error" },
	overloaded: { status: 529, type: "overloaded_error" },
	unavailable: { status: 529, type: "overloaded_error" },
	timeout: { status: 504, type: "timeout_error" },
	api_error: { status: 500, type: "api_error" }
};

export interface ErrorResponse {
	status: number;
	headers: Record<string, string>;
	body: unknown;
}

export function errorResponse(protocol: Protocol, e: CompatError, requestId: string): ErrorResponse {
	const m = (protocol === "openai" ? OPENAI_ERRORS : ANTHROPIC_ERRORS)[e.kind];
	const headers: Record<string, string> = {};
	if (e.retryAfterS !== null) {
		headers["retry-after"] = String(Math.max(1, Math.ceil(e.retryAfterS)));
		// Both SDKs prefer the millisecond form when present.
		headers["retry-after-ms"] = String(Math.max(1, Math.round(e.retryAfterS * 1000)));
	}
	if (e.kind === "insufficient_credits") headers["x-should-retry"] = "false";
	const body =
		protocol === "openai"
			? {
					error: {
						message: e.message,
						type: m.type,
						param: e.param,
						code: e.code ?? (e.kind === "insufficient_credits" ? "insufficient_quota" : null)
					}
				}
			: { type: "error", error: { type: m.type, message: e.message }, request_id: requestId };
	return { status: m.status, headers, body };
}

/** The error event that ends a stream that already started (its status was sent long ago). */
export function streamErrorPayload(protocol: Protocol, e: CompatError): unknown {
	const m = (protocol === "openai" ? OPENAI_ERRORS : ANTHROPIC_ERRORS)[e.kind];
	return protocol === "openai"
		? { error: { message: e.message, type: m.type, param: e.param, code: e.code } }
		: { type: "error", error: { type: m.type, message: e.message } };
}

/**
 * The platform's errors (Moleculer errors with the contract's codes, from ai / payments / users)
 * in neutral kinds. Anything unknown is an `api_error` (a 5xx is ours, never the client's fault).
 */
export function fromPlatformError(err: unknown): CompatError {
	if (err instanceof CompatError) return err;
	const wired = fromWire(err);
	if (wired) return wired;
	// A Moleculer error (after a broker hop: numeric code, string type, data) or a DomainError thrown
	// in this process (string code, numeric status, details).
	const e = err as {
		code?: number | string;
		status?: number;
		type?: string;
		message?: string;
		data?: unknown;
		details?: unknown;
	};
	const status = typeof e?.code === "number" ? e.code : e?.status;
	const msg = e?.message ?? "internal error";
	const type = (typeof e?.code === "string" ? e.code : e?.type) ?? "";
	const data = (e?.data ?? e?.details) as { retryAfter?: number } | undefined;
	const retryAfter = Number(data?.retryAfter ?? NaN);
	const ra = Number.isFinite(retryAfter) ? retryAfter : null;
	switch (status) {
		case 400:
		case 422:
			if (type === "UNKNOWN_MODEL" || type === "MODEL_UNAVAILABLE")
				return new CompatError("not_found", msg, "model", "model_not_found");
			return new CompatError("invalid_request", msg, null, type ? type.toLowerCase() : null);
		case 401:
			return new CompatError("authentication", msg, null, "invalid_api_key");
		case 402:
			// A monthly spend cap keeps its own code (key_cap_reached, …); no credits is insufficient_quota.
			return new CompatError(
				"insufficient_credits",
				msg,
				null,
				type && type !== "INSUFFICIENT_CREDITS" && type !== "PAYMENT_REQUIRED"
					? type.toLowerCase()
					: "insufficient_quota"
			);
		case 403:
			return new CompatError("permission", msg, null, type ? type.toLowerCase() : null);
		case 404:
			return new CompatError("not_found", msg, null, type ? type.toLowerCase() : null);
		case 413:
			return new CompatError("too_large", msg);
		case 429:
			return new CompatError(
				"rate_limited",
				msg,
				null,
				type ? type.toLowerCase() : "rate_limit_exceeded",
				ra ?? 1
			);
		case 503:
			return new CompatError("unavailable", msg, null, null, ra);
		case 504:
			return new CompatError("timeout", msg);
		default:
			if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE")
				return new CompatError("unavailable", "No ai worker is available; retry shortly", null, null, 1);
			if (type === "REQUEST_TIMEOUT") return new CompatError("timeout", "The request timed out");
			return new CompatError("api_error", "Internal error");
	}
}

const WIRE_PREFIX = "COMPAT_";

/**
 * A CompatError as a DomainError (code `COMPAT_<kind>`), so it crosses the transporter with its kind,
 * param, code and retry-after (the domain-error middleware turns it into a Moleculer error on the
 * hosting node); `fromPlatformError` restores it on the gateway. Other errors pass unchanged.
 */
export function toWire(err: unknown): unknown {
	if (!(err instanceof CompatError)) return err;
	const status = OPENAI_ERRORS[err.kind].status;
	// A client refusal stays a 4xx on the wire (a 5xx would count against Moleculer's breaker).
	return new DomainError(`${WIRE_PREFIX}${err.kind}`, status >= 500 ? 400 : status, err.message, {
		param: err.param,
		code: err.code,
		retryAfterS: err.retryAfterS
	});
}

export function fromWire(err: unknown): CompatError | null {
	const e = err as { code?: unknown; type?: string; message?: string; data?: unknown; details?: unknown };
	const type = typeof e?.code === "string" ? e.code : e?.type;
	if (typeof type !== "string" || !type.startsWith(WIRE_PREFIX)) return null;
	const kind = type.slice(WIRE_PREFIX.length) as ErrorKind;
	if (!(kind in OPENAI_ERRORS)) return null;
	const d = (e.data ?? e.details ?? {}) as {
		param?: string | null;
		code?: string | null;
		retryAfterS?: number | null;
	};
	return new CompatError(kind, e.message ?? "", d.param ?? null, d.code ?? null, d.retryAfterS ?? null);
}
