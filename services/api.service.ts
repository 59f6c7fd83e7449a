/**
 * The gateway (moleculer-web): REST under /api/v1 mapped explicitly from the route declarations,
 * authentication (JWT bearer or API key), rate limits that hold across replicas (Redis in cluster
 * mode), one error shape, X-Request-Id on every response, health, metrics, OpenAPI and Swagger UI.
 */
import { LoadBoard, type NodeLoad } from "../src/compat/balance";
import { ApiKeyCache, resolveRemembered } from "../src/auth/api-key-cache";
import { randomUUID } from "node:crypto";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Context, ServiceSchema, Service, ServiceSettingSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import bodyParser from "body-parser";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterAbstract, RateLimiterRes } from "rate-limiter-flexible";
import { renderPrometheus } from "../src/runtime/prometheus";
import { Config } from "../src/config";
import { runtimeOf } from "../src/runtime/runtime";
import { mapError } from "../src/http/errors";
import { clientErrorAnswer, rawErrorResponse } from "../src/http/client-errors";
import { applyEdgeHeaders, rateLimitHeaders, type LimitState } from "../src/http/edge";
import { verifyAccessToken } from "../src/auth/jwt";
import type { AuthUser } from "../src/auth/user";
import { Forbidden, TooManyRequests, Unauthorized } from "../src/errors";
import { allRoutes } from "./api/routes";
import type { RouteSpec } from "../src/http/route-spec";
import { CACHED_ACTIONS, cacheKeyOf } from "../src/users/cache";
import { taskStreamHubOf, type TaskStateEvent, type TaskStreamEvent } from "../src/tasks/stream-hub";
import type { RequestMeta } from "../src/kit/service";
import { elapsedMs } from "../src/kit/timing";
import { compatRoute } from "./api/compat";
import { API_BASE, jsonBodyParser, mappedBodyErrors, requireJsonBody } from "./api/body";
import { opsRoutes } from "./api/ops";
import { clientIp } from "../src/http/client-ip";
import { wantsEventStream } from "../src/http/accept";

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{8,128}$/;
const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{8,128}$/;

type Req = IncomingMessage & {
	$ctx: Context<unknown, RequestMeta>;
	$route?: unknown;
	$alias?: { method: string; path: string };
	body?: unknown;
	/** The response, for headers set before the action runs (rate limits). */
	$edgeRes?: ServerResponse;
	/** The rate-limit policies this request spent, for its RateLimit headers. */
	$limits?: LimitState[];
};
type Res = ServerResponse & { $ctx?: Context };

// moleculer-web's settings are untyped JavaScript; the gateway reads and writes them freely.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ApiSettings = ServiceSettingSchema & Record<string, any>;

export interface ApiThis extends Service<ApiSettings> {
	accessLog: boolean;
	server?: import("node:http").Server;
	addRoute(route: unknown, toBottom: boolean): unknown;
	config: Config;
	specs: Map<string, RouteSpec>;
	limiter: RateLimiterAbstract;
	anonLimiter: RateLimiterAbstract;
	routeLimiters: Map<string, RateLimiterAbstract>;
	openapiCache: { at: number; doc: unknown } | null;
	promText: () => string;
	specOf(req: Req): RouteSpec | undefined;
	sendContractError(req: Req, res: Res, err: unknown): void;
	consumeLimit(limiter: RateLimiterAbstract, key: string, req?: Req, name?: string): Promise<void>;
	resolveBearer(ctx: Context<unknown, RequestMeta>, token: string): Promise<AuthUser | null>;
	resolveApiKey(
		ctx: Context<unknown, RequestMeta>,
		key: string,
		alongside?: (user: AuthUser) => Promise<unknown>
	): Promise<AuthUser | null>;
	apiKeys: ApiKeyCache;
	/** ai nodes' announced loads: where a compatible request goes (src/compat/balance.ts). */
	aiLoads: LoadBoard;
	sendJson(res: Res, status: number, body: unknown): void;
	onClientError(err: Error & { code?: string }, socket: Duplex): void;
}

export function createApiService(opts: { routes?: RouteSpec[] } = {}): ServiceSchema<ApiSettings> {
	const routes = opts.routes ?? allRoutes();
	const json = routes.filter(r => r.body !== "raw" && !r.stream);
	const raw = routes.filter(r => r.body === "raw");
	const streams = routes.filter(r => r.stream);
	const aliasesOf = (specs: RouteSpec[], base = "") =>
		Object.fromEntries(specs.map(r => [`${r.method} ${base}${r.path}`, r.action]));

	const common = {
		authentication: true,
		authorization: true,
		mappingPolicy: "restrict" as const,
		mergeParams: true,
		logging: false,
		autoAliases: false,
		callOptions: {},
		onAfterCall(
			this: ApiThis,
			ctx: Context<unknown, RequestMeta>,
			_route: unknown,
			req: Req,
			_res: Res,
			data: unknown
		) {
			const spec = this.specOf(req);
			if (spec?.status && ctx.meta.$statusCode == null) ctx.meta.$statusCode = spec.status;
			return data;
		},
		onError(this: ApiThis, req: Req, res: Res, err: unknown) {
			this.sendContractError(req, res, err);
		}
	};

	const schema: ServiceSchema<ApiSettings, Record<string, never>, Record<string, never>, ApiThis> = {
		name: "api",
		mixins: [ApiGateway as unknown as ServiceSchema],
		settings: {
			port: 3000,
			ip: "0.0.0.0",
			// Express-style use: `rootCallOptions` assigns the request id before anything can fail.
			rootCallOptions(this: ApiThis, options: { requestID?: string }, req: IncomingMessage, res: ServerResponse) {
				// The web's baseline headers on every response, errors and the docs page included (src/http/edge.ts).
				applyEdgeHeaders(req, res, {
					path: (req.url ?? "").split("?")[0],
					credentials: req.headers.authorization !== undefined || req.headers["x-api-key"] !== undefined,
					https: this.config.http.publicUrl.startsWith("https:")
				});
				(req as Req).$edgeRes = res;
				const incoming = req.headers["x-request-id"];
				const requestId =
					typeof incoming === "string" && REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
				options.requestID = requestId;
				if (this.accessLog) {
					// One structured access-log line per request (JSON in cluster mode), tagged with its request id.
					const started = performance.now();
					const path = (req.url ?? "").split("?")[0]; // before the router rewrites req.url
					res.once("finish", () => {
						const user = (req as Req).$ctx?.meta?.user;
						this.logger.info(
							{
								requestId,
								method: req.method,
								path,
								status: res.statusCode,
								ms: elapsedMs(started),
								userId: user?.id
							},
							"http"
						);
					});
				}
			},
			log4XXResponses: false,
			logRequest: null,
			logResponse: null,
			httpServerTimeout: 120_000,
			// null, not []: moleculer-web would add a catch-all "/" route for an empty list. Routes are added in created().
			routes: null,
			onError(this: ApiThis, req: Req, res: Res, err: unknown) {
				this.sendContractError(req, res, err);
			}
		},

		created(this: ApiThis) {
			this.config = runtimeOf(this.broker).config;
			this.accessLog = ["info", "debug", "trace"].includes(this.config.logLevel);
			this.settings.port = this.config.http.port;
			this.settings.ip = this.config.http.host;
			this.specs = new Map(routes.map(r => [`${r.method} ${API_BASE}${r.path}`, r]));
			const cors = {
				origin: this.config.http.corsOrigins.includes("*") ? "*" : this.config.http.corsOrigins,
				methods: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
				allowedHeaders: [
					"Authorization",
					"Content-Type",
					"X-API-Key",
					"Idempotency-Key",
					"X-Request-Id",
					"Last-Event-ID"
				],
				exposedHeaders: ["X-Request-Id", "Retry-After", "Location", "RateLimit", "RateLimit-Policy"],
				credentials: false,
				maxAge: 600
			};
			const limit = this.config.http.bodyLimit;
			const ops = opsRoutes(this, routes);
			this.settings.cors = cors;
			const gatewayRoutes = [
				...ops,
				// The OpenAI/Anthropic-compatible /v1 (its own auth, body parsing and error shapes).
				compatRoute(this, cors),
				...raw.map(r => ({
					...common,
					path: `${API_BASE}${r.path.replace(/\/:.*$/, "")}`,
					cors,
					bodyParsers: false,
					use: [mappedBodyErrors(bodyParser.raw({ type: () => true, limit }))],
					aliases: { [`${r.method} ${r.path.slice(r.path.replace(/\/:.*$/, "").length) || "/"}`]: r.action },
					onBeforeCall(
						this: ApiThis,
						ctx: Context<Record<string, unknown>, RequestMeta>,
						_route: unknown,
						req: Req
					) {
						const body = req.body;
						(req as unknown as { $params: Record<string, unknown> }).$params = {
							rawBody: Buffer.isBuffer(body) ? body.toString("utf8") : "",
							signature: String(req.headers["stripe-signature"] ?? "")
						};
					}
				})),
				{
					...common,
					path: API_BASE,
					cors,
					bodyParsers: false,
					use: [requireJsonBody, jsonBodyParser(limit, json)],
					aliases: {
						...aliasesOf(json),
						// A route that streams on `Accept: text/event-stream` (after authentication and the
						// limits) and otherwise calls its action as any other.
						...Object.fromEntries(
							json
								.filter(r => r.acceptStream)
								.map(r => [
									`${r.method} ${r.path}`,
									[
										function acceptStream(
											this: ApiThis,
											req: Req,
											res: Res,
											next: (err?: unknown) => void
										) {
											if (!wantsEventStream(req.headers.accept)) return next();
											r.acceptStream!.call(this, req, res).catch(err =>
												this.sendContractError(req, res, err)
											);
										},
										r.action
									]
								])
						),
						...Object.fromEntries(
							streams.map(r => [
								`${r.method} ${r.path}`,
								function streamAlias(this: ApiThis, req: Req, res: Res) {
									const params =
										(req as unknown as { $params: Record<string, string> }).$params ?? {};
									r.stream!.call(this, req, res, params).catch(err =>
										this.sendContractError(req, res, err)
									);
								}
							])
						)
					}
				}
			];
			for (const route of gatewayRoutes) this.addRoute(route, true);

			const rt = runtimeOf(this.broker);
			const mkLimiter = (points: number, durationS: number, keyPrefix: string): RateLimiterAbstract =>
				rt.redis
					? new RateLimiterRedis({
							storeClient: rt.redis,
							keyPrefix: `${this.config.redisPrefix}rl:${keyPrefix}`,
							points,
							duration: durationS,
							// If Redis is unreachable, keep limiting per replica rather than failing open or closed.
							insuranceLimiter: new RateLimiterMemory({ points, duration: durationS })
						})
					: new RateLimiterMemory({ points, duration: durationS, keyPrefix });
			this.limiter = mkLimiter(this.config.rateLimit.perMinute, 60, "user");
			this.anonLimiter = mkLimiter(this.config.rateLimit.anonymousPerMinute, 60, "ip");
			this.routeLimiters = new Map(
				routes
					.filter(r => r.rateLimit)
					.map(r => [
						`${r.method} ${API_BASE}${r.path}`,
						mkLimiter(r.rateLimit!.points, r.rateLimit!.durationS, `route:${r.method}:${r.path}`)
					])
			);
			// Embedded mode only: a cluster serves metrics on METRICS_PORT, never on the API port.
			this.promText = () => renderPrometheus(this.broker.metrics, { namespace: this.broker.namespace });
			this.openapiCache = null;
			this.apiKeys = new ApiKeyCache();
			this.aiLoads = new LoadBoard({ staleMs: 5_000 });
		},

		// Every gateway node relays task broadcasts to the SSE streams it serves (services/api/routes/tasks.ts).
		events: {
			"tasks.state"(this: ApiThis, ctx: Context<TaskStateEvent>) {
				taskStreamHubOf(this.broker).onState(ctx.params);
			},
			"tasks.stream"(this: ApiThis, ctx: Context<TaskStreamEvent>) {
				taskStreamHubOf(this.broker).onStream(ctx.params);
			},
			// Verified API keys this gateway remembers (src/auth/api-key-cache.ts) go when their key or user changes.
			"users.apiKey.revoked"(this: ApiThis, ctx: Context<{ keyId: string }>) {
				this.apiKeys.forgetKey(String(ctx.params.keyId));
			},
			"users.forgotten"(this: ApiThis, ctx: Context<{ userId: string }>) {
				this.apiKeys.forgetUser(String(ctx.params.userId));
			},
			"ai.load"(this: ApiThis, ctx: Context<NodeLoad>) {
				this.aiLoads.update(ctx.params);
			},
			"$node.disconnected"(this: ApiThis, ctx: Context<{ node: { id: string } }>) {
				this.aiLoads.forget(String(ctx.params?.node?.id));
			}
		},

		methods: {
			/**
			 * moleculer-web's server, with the limits stated in config (README: HTTP_MAX_HEADER_BYTES,
			 * HTTP_HEADERS_TIMEOUT_MS, HTTP_REQUEST_TIMEOUT_MS, BODY_LIMIT) and the contract's answer to
			 * requests the HTTP parser refuses. Runs in moleculer-web's created(), before ours.
			 */
			createServer(this: ApiThis) {
				if (this.server) return;
				const limits = runtimeOf(this.broker).config.http;
				const server = http.createServer(
					{
						maxHeaderSize: limits.maxHeaderBytes,
						headersTimeout: limits.headersTimeoutMs,
						requestTimeout: limits.requestTimeoutMs,
						// How often Node looks for requests past those timeouts (its default is 30 s).
						connectionsCheckingInterval: Math.max(
							50,
							Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))
						)
					},
					(this as unknown as { httpHandler: http.RequestListener }).httpHandler
				);
				server.setTimeout(this.settings.httpServerTimeout);
				server.on("clientError", (err: Error & { code?: string }, socket: Duplex) =>
					this.onClientError(err, socket)
				);
				this.server = server;
			},

			onClientError(this: ApiThis, err: Error & { code?: string }, socket: Duplex) {
				const answer = clientErrorAnswer(err);
				// A response already under way on this connection (a slow body timed out mid-answer) cannot take another.
				const pending = (socket as unknown as { _httpMessage?: ServerResponse })._httpMessage;
				if (!answer || !socket.writable || pending?.headersSent) {
					socket.destroy();
					return;
				}
				const requestId = randomUUID();
				if (this.accessLog)
					this.logger.info({ requestId, status: answer.status, parserError: err.code }, "http");
				socket.end(rawErrorResponse(answer, requestId));
			},

			/** HEAD is GET without the body (Node drops the body of an answer to HEAD itself). */
			httpHandler(this: ApiThis, req: Req, res: Res, next?: unknown) {
				if (req.method === "HEAD") req.method = "GET";
				return (
					ApiGateway as unknown as { methods: { httpHandler: (...args: unknown[]) => unknown } }
				).methods.httpHandler.call(this, req, res, next);
			},

			specOf(this: ApiThis, req: Req) {
				const alias = req.$alias;
				if (!alias) return undefined;
				const full = (alias as unknown as { fullPath?: string }).fullPath ?? alias.path;
				return this.specs.get(`${alias.method} ${full}`);
			},

			/** Replaces moleculer-web's handler, which logs every 5xx with its stack; ours logs only our own failures. */
			errorHandler(this: ApiThis, req: Req, res: Res, err: unknown) {
				this.sendContractError(req, res, err);
			},

			sendJson(res: Res, status: number, body: unknown) {
				if (res.headersSent) return;
				const payload = JSON.stringify(body);
				res.writeHead(status, {
					"Content-Type": "application/json; charset=utf-8",
					"Content-Length": Buffer.byteLength(payload)
				});
				res.end(payload);
			},

			sendContractError(this: ApiThis, req: Req, res: Res, err: unknown) {
				const requestId = req.$ctx?.requestID ?? randomUUID();
				let e = err as { type?: string; status?: number };
				if (e?.type === "media.type.unsupported")
					e = Object.assign(new Error("Content-Type must be application/json (UTF-8)"), {
						code: 415,
						type: "UNSUPPORTED_MEDIA_TYPE"
					});
				const mapped = mapError(e);
				if (mapped.internal)
					this.logger.error(
						{ requestId, method: req.method, url: req.url, err: (err as Error)?.stack ?? String(err) },
						"request failed"
					);
				if (res.headersSent) {
					res.end();
					return;
				}
				res.setHeader("X-Request-Id", requestId);
				for (const [k, v] of Object.entries(mapped.headers)) res.setHeader(k, v);
				for (const [k, v] of Object.entries(req.$ctx?.meta?.$responseHeaders ?? {}))
					if (k === "Retry-After") res.setHeader(k, v);
				this.sendJson(res, mapped.status, { ...mapped.body, requestId });
			},

			async consumeLimit(this: ApiThis, limiter: RateLimiterAbstract, key: string, req?: Req, name?: string) {
				const record = (r: RateLimiterRes) => {
					if (!req || !name) return;
					(req.$limits ??= []).push({
						name,
						quota: limiter.points,
						windowS: limiter.duration,
						remaining: r.remainingPoints,
						resetS: r.msBeforeNext / 1000
					});
					const res = req.$edgeRes;
					if (res && !res.headersSent)
						for (const [k, v] of Object.entries(rateLimitHeaders(req.$limits))) res.setHeader(k, v);
				};
				try {
					record(await limiter.consume(key));
				} catch (rej) {
					if (rej instanceof RateLimiterRes) {
						record(rej);
						throw TooManyRequests("Too many requests; slow down", Math.ceil(rej.msBeforeNext / 1000));
					}
					throw rej;
				}
			},

			/**
			 * Bearer token → user. The signature and claims are checked here; then the users service's
			 * cached `authState` says whether the session is still live and the user still enabled, and
			 * gives the current role, so revocation, disabling and role changes act on the next request.
			 */
			async resolveBearer(this: ApiThis, ctx: Context<unknown, RequestMeta>, token: string) {
				const user = verifyAccessToken(this.config.jwt, token);
				if (!user || !this.config.users.sessions.gatewayCheck) return user;
				if (!user.sid) return null;
				const params = { userId: user.id, sid: user.sid };
				// The users service's cached answer is read from the shared cacher directly (no transporter
				// hop); on a miss the service is asked, and fills the cache.
				const key = cacheKeyOf(this.broker, CACHED_ACTIONS.authState, params);
				let state = key
					? ((await this.broker.cacher!.get(key).catch(() => undefined)) as
							{ role: AuthUser["role"] } | null | undefined)
					: undefined;
				if (state === undefined)
					state = (await ctx.call("users.authState", params)) as { role: AuthUser["role"] } | null;
				return state ? { ...user, role: state.role } : null;
			},

			/**
			 * X-API-Key → user, by the users service (keys are stored hashed there), remembered for up to
			 * 10 s while the key's and its user's stamps in the key-value store are unchanged
			 * (src/auth/api-key-cache.ts: a revocation, limit change or disabling acts on the next request).
			 */
			async resolveApiKey(
				this: ApiThis,
				ctx: Context<unknown, RequestMeta>,
				key: string,
				alongside?: (user: AuthUser) => Promise<unknown>
			) {
				if (!/^ff_[A-Za-z0-9]{1,64}_[A-Za-z0-9_-]{16,128}$/.test(key)) return null;
				return resolveRemembered(
					{
						cache: this.apiKeys,
						kv: runtimeOf(this.broker).kv,
						verify: k => ctx.call("users.verifyApiKey", { key: k }) as Promise<AuthUser | null>
					},
					key,
					alongside
				);
			},

			async authenticate(this: ApiThis, ctx: Context<unknown, RequestMeta>, _route: unknown, req: Req) {
				ctx.meta.ip = clientIp(req, this.config.http.trustProxyHops);
				ctx.meta.userAgent = String(req.headers["user-agent"] ?? "").slice(0, 256);
				if (typeof req.headers.accept === "string") ctx.meta.accept = req.headers.accept.slice(0, 512);
				const spec = this.specOf(req);
				if (spec?.idempotent) {
					const key = req.headers["idempotency-key"];
					if (key !== undefined) {
						if (typeof key !== "string" || !IDEMPOTENCY_KEY_RE.test(key))
							throw Object.assign(
								new Error("Idempotency-Key must be 8 to 128 printable ASCII characters"),
								{
									code: 422,
									name: "ValidationError",
									data: [
										{
											field: "Idempotency-Key",
											message: "must be 8 to 128 printable ASCII characters",
											type: "header"
										}
									]
								}
							);
						ctx.meta.idempotencyKey = key;
					}
				}
				if (spec?.auth === "none") return null;
				const authz = req.headers.authorization;
				const apiKey = req.headers["x-api-key"];
				let user: AuthUser | null = null;
				const ip = ctx.meta.ip ?? "unknown";
				// Failed credentials spend the caller's anonymous (per-IP) budget, so guessing tokens or keys
				// is rate limited; an IP that has spent it gets 429 before any API-key lookup.
				if (authz !== undefined) {
					const m = /^Bearer ([A-Za-z0-9_\-.=]{10,4096})$/.exec(String(authz));
					user = m ? await this.resolveBearer(ctx, m[1]) : null;
					if (!user) {
						await this.consumeLimit(this.anonLimiter, ip);
						throw Unauthorized("Invalid or expired access token", "INVALID_TOKEN");
					}
				} else if (apiKey !== undefined) {
					const spent = await this.anonLimiter.get(ip);
					if (spent && spent.remainingPoints <= 0)
						throw TooManyRequests("Too many requests; slow down", Math.ceil(spent.msBeforeNext / 1000));
					user = await this.resolveApiKey(ctx, String(apiKey));
					if (!user) {
						await this.consumeLimit(this.anonLimiter, ip);
						throw Unauthorized("Invalid, expired or revoked API key", "INVALID_API_KEY");
					}
				}
				if (!user && spec?.auth === "required") throw Unauthorized();
				return user;
			},

			async authorize(this: ApiThis, ctx: Context<unknown, RequestMeta>, _route: unknown, req: Req) {
				const spec = this.specOf(req);
				const user = ctx.meta.user;
				if (spec?.globalRateLimit !== false) {
					if (user) await this.consumeLimit(this.limiter, user.id, req, "user");
					else await this.consumeLimit(this.anonLimiter, ctx.meta.ip ?? "unknown", req, "ip");
				}
				if (spec?.rateLimit) {
					const limiter = this.routeLimiters.get(`${spec.method} ${API_BASE}${spec.path}`)!;
					await this.consumeLimit(
						limiter,
						spec.rateLimit.by === "user" && user ? user.id : (ctx.meta.ip ?? "unknown"),
						req,
						"route"
					);
				}
				if (spec?.permissions?.length && (!user || !spec.permissions.includes(user.role))) throw Forbidden();
			}
		},

		started(this: ApiThis) {
			const addr = this.server?.address?.();
			if (addr && typeof addr === "object")
				this.logger.info(`Gateway listening on ${this.config.http.host}:${addr.port}`);
		}
	};
	return schema as unknown as ServiceSchema<ApiSettings>;
}

export default createApiService();
