/**
 * The gateway's routes outside /api/v1: health, metrics (embedded mode only), the OpenAPI document
 * and Swagger UI. No authentication, no body parsing, the same error shape as the API.
 */
import fs from "node:fs";
import path from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Service } from "moleculer";
import type { Config } from "../../src/config";
import { buildOpenApi } from "../../src/http/openapi";
import type { RouteSpec } from "../../src/http/route-spec";
import { compatOpenApi } from "../../src/compat/openapi";
import { API_BASE } from "./body";

type Req = IncomingMessage;
type Res = ServerResponse;

/** What these routes need of the gateway service (declared here: importing api.service would be a cycle). */
export interface OpsParts extends Service {
	config: Config;
	openapiCache: { at: number; doc: unknown } | null;
	promText: () => string;
	sendJson(res: Res, status: number, body: unknown): void;
	sendContractError(req: Req, res: Res, err: unknown): void;
}

const SWAGGER_DIR = path.dirname(require.resolve("swagger-ui-dist/package.json"));
const SWAGGER_FILES: Record<string, string> = {
	"swagger-ui.css": "text/css; charset=utf-8",
	"swagger-ui-bundle.js": "application/javascript; charset=utf-8",
	"swagger-ui-standalone-preset.js": "application/javascript; charset=utf-8",
	"favicon-32x32.png": "image/png"
};

/** moleculer-web route declarations of the ops endpoints; `routes` are the API's, for the OpenAPI document. */
export function opsRoutes(svc: OpsParts, routes: RouteSpec[]): unknown[] {
	// moleculer-web calls alias functions with a `this` of its own: they close over `svc` instead.
	const handler = (fn: (req: Req, res: Res) => Promise<void> | void) => (req: Req, res: Res) =>
		Promise.resolve(fn(req, res)).catch(err => svc.sendContractError(req, res, err));
	// Outside /api/v1: no authentication, no body parsing, the same error shape.
	const opsRoute = (path: string, aliases: Record<string, unknown>) => ({
		path,
		authentication: false,
		authorization: false,
		mappingPolicy: "restrict",
		logging: false,
		bodyParsers: false,
		aliases,
		onError(req: Req, res: Res, err: unknown) {
			svc.sendContractError(req, res, err);
		}
	});
	return [
		opsRoute("/health", {
			"GET /live": handler((_req, res) => svc.sendJson(res, 200, { status: "ok", nodeID: svc.broker.nodeID })),
			"GET /ready": handler(async (_req, res) => {
				const report = (await svc.broker.call("ops.health", {}, { nodeID: svc.broker.nodeID })) as {
					ready: boolean;
				};
				svc.sendJson(res, report.ready ? 200 : 503, report);
			})
		}),
		// On the API port in embedded mode only; a cluster's nodes serve it on METRICS_PORT.
		...(svc.config.transporter
			? []
			: [
					opsRoute("/metrics", {
						"GET /": handler((_req, res) => {
							const body = svc.promText();
							res.writeHead(200, {
								"Content-Type": "text/plain; version=0.0.4; charset=utf-8"
							});
							res.end(body);
						})
					})
				]),
		opsRoute("/api", {
			"GET /openapi.json": handler(async (_req, res) => {
				const now = Date.now();
				if (!svc.openapiCache || now - svc.openapiCache.at > 5000) {
					const list = svc.broker.registry.getActionList({
						onlyAvailable: false,
						withEndpoints: false
					}) as Array<{
						name: string;
						action?: { params?: Record<string, unknown> };
					}>;
					const params = new Map(list.map(a => [a.name, a.action?.params]));
					svc.openapiCache = {
						at: now,
						doc: buildOpenApi({
							routes,
							actionParams: a => params.get(a),
							basePath: API_BASE,
							version: "1.0.0",
							// Relative: the document is right for whichever host or proxy served it.
							serverUrl: "/",
							extra: compatOpenApi()
						})
					};
				}
				svc.sendJson(res, 200, svc.openapiCache.doc);
			}),
			"GET /docs": handler((_req, res) => {
				res.writeHead(200, {
					"Content-Type": "text/html; charset=utf-8",
					"Cache-Control": "no-cache"
				});
				res.end(SWAGGER_HTML);
			}),
			"GET /docs/:file": handler((req, res) => {
				const file = (req as unknown as { $params: { file: string } }).$params.file;
				if (file === "init.js") {
					res.writeHead(200, { "Content-Type": "application/javascript; charset=utf-8" });
					res.end(SWAGGER_INIT);
					return;
				}
				const type = SWAGGER_FILES[file];
				if (!type) throw Object.assign(new Error("Not found"), { name: "NotFoundError", code: 404 });
				res.writeHead(200, { "Content-Type": type, "Cache-Control": "public, max-age=3600" });
				fs.createReadStream(path.join(SWAGGER_DIR, file)).pipe(res);
			})
		})
	];
}

const SWAGGER_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ForgeFluid API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css"><link rel="icon" type="image/png" href="/api/docs/favicon-32x32.png">
</head><body><div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script><script src="/api/docs/swagger-ui-standalone-preset.js"></script>
<script src="/api/docs/init.js"></script></body></html>`;

const SWAGGER_INIT = `window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout", validatorUrl: null });`;
