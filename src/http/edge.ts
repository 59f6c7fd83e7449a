/**
 * The headers every gateway response carries (the web's baseline for an API and its docs page), and
 * the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers) of the limits a request spent.
 *
 * The security headers come from helmet, configured for an API: a CSP that loads nothing (the docs
 * page its own files only), never framed (`frame-ancestors 'none'` and X-Frame-Options for old
 * browsers), `Referrer-Policy: no-referrer`, `nosniff`, HSTS only when PUBLIC_URL is https.
 * Cache-Control is ours: helmet does not know which answers carry tokens.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import helmet, { type HelmetOptions } from "helmet";

type Directives = Record<string, string[]>;
const DOCS_DIRECTIVES: Directives = {
	"default-src": ["'self'"],
	"img-src": ["'self'", "data:"],
	"style-src": ["'self'", "'unsafe-inline'"],
	"script-src": ["'self'"],
	"connect-src": ["'self'"],
	"frame-ancestors": ["'none'"],
	"base-uri": ["'none'"],
	"form-action": ["'none'"]
};
/** Everything but the docs page is JSON, SSE or metrics text: nothing to load, never framed. */
const API_DIRECTIVES: Directives = {
	"default-src": ["'none'"],
	"frame-ancestors": ["'none'"],
	"base-uri": ["'none'"],
	"form-action": ["'none'"]
};
const HSTS = { maxAge: 31_536_000, includeSubDomains: true, preload: false };

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

function helmetFor(docs: boolean, https: boolean): Middleware {
	const options: HelmetOptions = {
		contentSecurityPolicy: { useDefaults: false, directives: docs ? DOCS_DIRECTIVES : API_DIRECTIVES },
		strictTransportSecurity: https ? HSTS : false,
		referrerPolicy: { policy: "no-referrer" },
		xFrameOptions: { action: "deny" },
		crossOriginResourcePolicy: { policy: "same-site" },
		// An API answer is never a page that opens windows or embeds others' resources.
		crossOriginOpenerPolicy: { policy: "same-origin" },
		crossOriginEmbedderPolicy: false
	};
	return helmet(options) as Middleware;
}
const HELMETS = new Map<string, Middleware>();
const helmetOf = (docs: boolean, https: boolean): Middleware => {
	const key = `${docs}:${https}`;
	let mw = HELMETS.get(key);
	if (!mw) HELMETS.set(key, (mw = helmetFor(docs, https)));
	return mw;
};

export interface EdgeRequest {
	path: string;
	/** The request carried an Authorization or X-API-Key header. */
	credentials: boolean;
	/** PUBLIC_URL is https: browsers are told to use nothing else (HSTS). */
	https: boolean;
}

const isDocs = (path: string) => path === "/api/docs" || path.startsWith("/api/docs/");

/** Sets the edge headers on a response before anything else writes to it. */
export function applyEdgeHeaders(req: IncomingMessage, res: ServerResponse, edge: EdgeRequest): void {
	// helmet's middlewares are synchronous and only set or remove headers; `next` is never given an error.
	helmetOf(isDocs(edge.path), edge.https)(req, res, () => undefined);
	// Tokens (RFC 6749 §5.1) and anything answered for a signed-in caller must not be stored by caches.
	if (edge.credentials || edge.path.startsWith("/api/v1/auth/")) res.setHeader("Cache-Control", "no-store");
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
