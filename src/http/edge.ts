/**
 * The headers every gateway response carries (the web's baseline for an API and its docs page), and
 * the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers) of the limits a request spent.
 */

/** Content-Security-Policy of the Swagger UI page and its assets: its own files only, never framed. */
export const DOCS_CSP =
	"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/** Everything else is JSON, SSE or metrics text: nothing to load, never framed. */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export function edgeHeaders(req: {
	path: string;
	/** The request carried an Authorization or X-API-Key header. */
	credentials: boolean;
	/** PUBLIC_URL is https: browsers are told to use nothing else (HSTS). */
	https: boolean;
}): Record<string, string> {
	const h: Record<string, string> = {
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy": "no-referrer",
		"X-Frame-Options": "DENY",
		"Content-Security-Policy": req.path === "/api/docs" || req.path.startsWith("/api/docs/") ? DOCS_CSP : API_CSP,
		"Cross-Origin-Resource-Policy": "same-site"
	};
	if (req.https) h["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains";
	// Tokens (RFC 6749 §5.1) and anything answered for a signed-in caller must not be stored by caches.
	if (req.credentials || req.path.startsWith("/api/v1/auth/")) h["Cache-Control"] = "no-store";
	return h;
}

export interface LimitState {
	/** The policy's name: "user", "ip" or the route's own ("route"). */
	name: string;
	quota: number;
	windowS: number;
	remaining: number;
	resetS: number;
}

/** `RateLimit-Policy` and `RateLimit` (structured-field lists, one item per policy that applied). */
export function rateLimitHeaders(states: LimitState[]): Record<string, string> {
	if (!states.length) return {};
	return {
		"RateLimit-Policy": states.map(s => `"${s.name}";q=${s.quota};w=${s.windowS}`).join(", "),
		RateLimit: states
			.map(s => `"${s.name}";r=${Math.max(0, s.remaining)};t=${Math.max(0, Math.ceil(s.resetS))}`)
			.join(", ")
	};
}
