/**
 * Requests Node's HTTP parser refuses before any handler sees them (a header block over the limit, an
 * unknown method, broken chunked framing, Content-Length with Transfer-Encoding, a Content-Length that
 * is not a number, a NUL in a header, headers or a body that arrive too slowly). Node's own answer is
 * a bare status line; the contract wants its error shape and a request id on every response, so the
 * gateway's `clientError` handler writes this instead, then closes the connection (after a framing
 * error the rest of the stream cannot be trusted).
 */
import { STATUS_CODES } from "node:http";

export interface ClientErrorAnswer {
	status: number;
	code: string;
	message: string;
}

const BY_PARSER_CODE: Record<string, ClientErrorAnswer> = {
	HPE_HEADER_OVERFLOW: {
		status: 431,
		code: "HEADERS_TOO_LARGE",
		message: "The request line and headers are larger than the server accepts"
	},
	ERR_HTTP_REQUEST_TIMEOUT: {
		status: 408,
		code: "REQUEST_TIMEOUT",
		message: "The request did not arrive in time"
	},
	HPE_INVALID_METHOD: { status: 400, code: "MALFORMED_REQUEST", message: "Unknown HTTP method" },
	HPE_INVALID_CHUNK_SIZE: { status: 400, code: "MALFORMED_REQUEST", message: "Malformed chunked body" },
	HPE_CHUNK_EXTENSIONS_OVERFLOW: { status: 400, code: "MALFORMED_REQUEST", message: "Malformed chunked body" },
	HPE_INVALID_TRANSFER_ENCODING: {
		status: 400,
		code: "MALFORMED_REQUEST",
		message: "Unsupported or malformed Transfer-Encoding"
	},
	HPE_UNEXPECTED_CONTENT_LENGTH: {
		status: 400,
		code: "MALFORMED_REQUEST",
		message: "Content-Length and Transfer-Encoding must not both be sent"
	},
	HPE_INVALID_CONTENT_LENGTH: { status: 400, code: "MALFORMED_REQUEST", message: "Invalid Content-Length" }
};

const MALFORMED: ClientErrorAnswer = { status: 400, code: "MALFORMED_REQUEST", message: "Malformed HTTP request" };

/** The answer to a parser error, or null when there is no one to answer (the peer went away). */
export function clientErrorAnswer(err: { code?: unknown }): ClientErrorAnswer | null {
	const code = typeof err?.code === "string" ? err.code : "";
	if (code === "ECONNRESET" || code === "EPIPE" || code === "ERR_STREAM_DESTROYED") return null;
	return BY_PARSER_CODE[code] ?? MALFORMED;
}

/** A complete HTTP/1.1 response in the contract's error shape, closing the connection. */
export function rawErrorResponse(answer: ClientErrorAnswer, requestId: string): string {
	const body = JSON.stringify({ error: { code: answer.code, message: answer.message }, requestId });
	return [
		`HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? "Error"}`,
		"Content-Type: application/json; charset=utf-8",
		`Content-Length: ${Buffer.byteLength(body)}`,
		`X-Request-Id: ${requestId}`,
		"Connection: close",
		"",
		body
	].join("\r\n");
}
