/**
 * The gateway's body handling: 415 for a body that is not JSON, the JSON parser with per-route limits,
 * and body-parser failures mapped to the client's error (src/http/errors.ts bodyParserError).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import bodyParser from "body-parser";
import { bodyParserError } from "../../src/http/errors";
import type { RouteSpec } from "../../src/http/route-spec";

export const API_BASE = "/api/v1";

/** 415 before parsing: a body must be JSON (UTF-8). Runs before the JSON parser. */
export function requireJsonBody(req: IncomingMessage, _res: ServerResponse, next: (err?: unknown) => void) {
	const hasBody = req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
	if (hasBody && ["POST", "PUT", "PATCH", "DELETE"].includes(req.method ?? "")) {
		const ct = String(req.headers["content-type"] ?? "").toLowerCase();
		const [type, ...paramsRaw] = ct.split(";").map(s => s.trim());
		const charset = paramsRaw
			.find(p => p.startsWith("charset="))
			?.slice(8)
			.replace(/"/g, "");
		if (
			(type !== "application/json" && !type.endsWith("+json")) ||
			(charset && charset !== "utf-8" && charset !== "utf8")
		)
			return next(
				Object.assign(new Error("unsupported media type"), { type: "media.type.unsupported", status: 415 })
			);
	}
	next();
}

/** `/a/:id/*rest` → a RegExp over the full request path (no query), as moleculer-web matches it. */
function routeRegExp(routePath: string): RegExp {
	const body = routePath
		.split("/")
		.map(seg =>
			seg.startsWith(":") ? "[^/]+" : seg.startsWith("*") ? ".+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
		)
		.join("/");
	return new RegExp(`^${body}/?$`, "i");
}

/**
 * The JSON body parser: BODY_LIMIT for every route, except routes that declare their own
 * `bodyLimit` (file uploads), which get theirs. The route is known only by method and path here:
 * body parsing runs before moleculer-web hands the request to the alias.
 */
export function jsonBodyParser(defaultLimit: string, specs: RouteSpec[]) {
	const type = ["application/json", "application/*+json"];
	const fallback = bodyParser.json({ limit: defaultLimit, strict: true, type });
	const own = specs
		.filter(r => r.bodyLimit)
		.map(r => ({
			method: r.method,
			re: routeRegExp(`${API_BASE}${r.path}`),
			parse: bodyParser.json({ limit: r.bodyLimit, strict: true, type })
		}));
	return (req: IncomingMessage & { parsedUrl?: string }, res: ServerResponse, next: (err?: unknown) => void) => {
		const url = req.parsedUrl ?? "";
		const match = own.find(o => o.method === req.method && o.re.test(url));
		(match?.parse ?? fallback)(req, res, err => next(err ? bodyParserError(err) : undefined));
	};
}

/** A body parser whose failures reach the error mapper as the client's (src/http/errors.ts bodyParserError). */
export function mappedBodyErrors(parse: ReturnType<typeof bodyParser.raw>) {
	return (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) =>
		parse(req, res, err => next(err ? bodyParserError(err) : undefined));
}
