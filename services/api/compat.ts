/**
 * The OpenAI- and Anthropic-compatible endpoints at the gateway root, so an SDK's base URL is
 * `http(s)://host/v1` (docs/compat.md):
 *   POST /v1/chat/completions   (OpenAI, streaming and not)
 *   POST /v1/messages           (Anthropic, streaming and not)
 *   POST /v1/messages/count_tokens
 *   GET  /v1/models, /v1/models/:id   (OpenAI's list shape, Anthropic's with an anthropic-version header)
 *
 * This route does its own authentication, body parsing and errors, so every failure (malformed
 * JSON, a body over BODY_LIMIT, a bad key, a missing `ai:use` scope) comes back in the protocol's
 * own shape. Keys: `Authorization: Bearer <key>` (OpenAI SDKs; a session JWT works too) or
 * `x-api-key` (Anthropic SDKs). The request runs on an ai worker (`ai.chat`); this node, which
 * holds the client's connection, turns the worker's event stream into the protocol's frames.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import bodyParser from "body-parser";
import type { Context } from "moleculer";
import { hasScope } from "../../src/auth/scopes";
import type { AuthUser } from "../../src/auth/user";
import { readAnthropicRequest } from "../../src/compat/anthropic-in";
import { CompatError, errorResponse, fromPlatformError } from "../../src/compat/errors";
import { readOpenAIRequest } from "../../src/compat/openai-in";
import { estimateChatTokens, resolveModel } from "../../src/compat/prepare";
import { newChatId } from "../../src/compat/run";
import type { ChatEvent, ChatRequest, Protocol } from "../../src/compat/types";
import { anthropicResponse, collect, openAIResponse, streamWriter } from "../../src/compat/writers";
import { runtimeOf } from "../../src/runtime/runtime";
import { clientIp } from "../../src/http/client-ip";
import type { RequestMeta } from "../../src/kit/service";
import type { Service } from "moleculer";
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import { sentNowhere } from "../../src/runtime/call-errors";
import type { LoadBoard } from "../../src/compat/balance";
import { TIER_ORDER, type TierName } from "../../src/domain/tiers";
import { CACHED_ACTIONS, cacheKeyOf } from "../../src/users/cache";

/** What this route needs of the gateway service (declared here: importing api.service would be a cycle). */
export interface GatewayParts extends Service {
	limiter: RateLimiterAbstract;
	anonLimiter: RateLimiterAbstract;
	/** With `req` and `name`: the RateLimit headers go on `req.$edgeRes`. */
	consumeLimit(limiter: RateLimiterAbstract, key: string, req?: Req, name?: string): Promise<void>;
	resolveBearer(ctx: Context<unknown, RequestMeta>, token: string): Promise<AuthUser | null>;
	/** `alongside` runs for the user answered (on a remembered key, beside the key's stamp check). */
	resolveApiKey(
		ctx: Context<unknown, RequestMeta>,
		key: string,
		alongside?: (user: AuthUser) => Promise<unknown>
	): Promise<AuthUser | null>;
	aiLoads: LoadBoard;
}
type ApiThis = GatewayParts;

type Req = IncomingMessage & {
	$ctx: Context<unknown, RequestMeta>;
	$params?: Record<string, string>;
	body?: unknown;
	/** Where the gateway's limiter writes the RateLimit headers. */
	$edgeRes?: ServerResponse;
};

const API_KEY_RE = /^ff_[A-Za-z0-9]{1,64}_[A-Za-z0-9_-]{16,128}$/;

/** Anthropic's SDKs always send anthropic-version; OpenAI's never do. */
const protocolOf = (req: IncomingMessage): Protocol =>
	req.headers["anthropic-version"] !== undefined ? "anthropic" : "openai";

function requestIdOf(req: Req): string {
	return req.$ctx?.requestID ?? randomUUID();
}

function sendError(req: Req, res: ServerResponse, protocol: Protocol, err: unknown, log?: (e: unknown) => void) {
	const e = fromPlatformError(err);
	if (e.kind === "api_error" && log) log(err);
	if (res.headersSent) return void res.end();
	const requestId = requestIdOf(req);
	const r = errorResponse(protocol, e, requestId);
	const payload = JSON.stringify(r.body);
	res.writeHead(r.status, {
		"Content-Type": "application/json; charset=utf-8",
		"Content-Length": Buffer.byteLength(payload),
		"X-Request-Id": requestId,
		...r.headers
	});
	res.end(payload);
}

function parseBody(req: Req, res: ServerResponse, limit: string): Promise<unknown> {
	// body-parser does the limit and the streaming; any content type is read as JSON (some clients send none).
	const parse = bodyParser.json({ limit, strict: false, type: () => true });
	return new Promise((resolve, reject) =>
		parse(req, res, (err?: unknown) => {
			if (!err) return resolve(req.body);
			const e = err as { type?: string; message?: string };
			if (e.type === "entity.too.large")
				return reject(new CompatError("too_large", `The request body is larger than ${limit}`));
			if (e.type === "entity.parse.failed")
				return reject(
					new CompatError(
						"invalid_request",
						`The request body is not valid JSON: ${String(e.message).slice(0, 200)}`,
						null,
						"invalid_json"
					)
				);
			reject(new CompatError("invalid_request", "The request body could not be read", null, "invalid_body"));
		})
	);
}

/**
 * The caller's tier from the users service's cached answer (the shared cacher, as ai.chat would read
 * it), or undefined on a miss or for an organisation key (ai.chat then resolves it).
 */
async function cachedTier(svc: ApiThis, user: AuthUser): Promise<TierName | undefined> {
	if (user.orgId) return undefined;
	const key = cacheKeyOf(svc.broker, CACHED_ACTIONS.getTier, { userId: user.id });
	if (!key) return undefined;
	const hit = (await svc.broker.cacher!.get(key).catch(() => undefined)) as { tier?: unknown } | null | undefined;
	return typeof hit?.tier === "string" && (TIER_ORDER as readonly string[]).includes(hit.tier)
		? (hit.tier as TierName)
		: undefined;
}

/** `also`: more to do for the user answered, in the same wait as its per-user limit. */
async function authenticate(
	svc: ApiThis,
	req: Req,
	res: ServerResponse,
	also?: (user: AuthUser) => Promise<unknown>
): Promise<AuthUser> {
	const ctx = req.$ctx;
	req.$edgeRes = res;
	const ip = (ctx.meta.ip = clientIp(req, runtimeOf(svc.broker).config.http.trustProxyHops));
	ctx.meta.userAgent = String(req.headers["user-agent"] ?? "").slice(0, 256);
	const authz = req.headers.authorization;
	const apiKey = req.headers["x-api-key"];
	let user: AuthUser | null = null;
	let presented = false;
	// The per-user limit: with a remembered key it is counted while the key's stamps are read.
	let limited = false;
	const limit = (u: AuthUser) =>
		Promise.all([svc.consumeLimit(svc.limiter, u.id, req, "user"), also?.(u)]).then(() => (limited = true));
	if (typeof authz === "string" && authz) {
		presented = true;
		const m = /^Bearer\s+(\S{10,4096})$/i.exec(authz);
		if (m)
			user = API_KEY_RE.test(m[1])
				? await svc.resolveApiKey(ctx, m[1], limit)
				: await svc.resolveBearer(ctx, m[1]);
	} else if (typeof apiKey === "string" && apiKey) {
		presented = true;
		const spent = await svc.anonLimiter.get(ip);
		if (spent && spent.remainingPoints <= 0)
			throw new CompatError(
				"rate_limited",
				"Too many failed authentications; slow down",
				null,
				null,
				Math.ceil(spent.msBeforeNext / 1000)
			);
		user = await svc.resolveApiKey(ctx, apiKey, limit);
	}
	if (!user) {
		// Failed credentials spend the caller's per-IP budget, as on /api/v1.
		await svc.consumeLimit(svc.anonLimiter, ip, req, "ip");
		throw new CompatError(
			"authentication",
			presented
				? "Invalid, expired or revoked API key"
				: "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
			null,
			"invalid_api_key"
		);
	}
	ctx.meta.user = user;
	if (!limited) await limit(user);
	if (!hasScope(user, "ai:use"))
		throw new CompatError("permission", "This API key lacks the 'ai:use' scope", null, "missing_scope");
	return user;
}

/** Waits for the next event, or fails after `idleMs` without one (a worker that died mid-answer). */
async function* withIdleTimeout(stream: Readable, idleMs: number): AsyncGenerator<ChatEvent> {
	const it = stream[Symbol.asyncIterator]();
	while (true) {
		let timer: NodeJS.Timeout | undefined;
		const idle = new Promise<never>((_, reject) => {
			timer = setTimeout(
				() => reject(new CompatError("timeout", `No answer from the ai worker for ${idleMs} ms`)),
				idleMs
			);
		});
		try {
			const next = await Promise.race([it.next(), idle]);
			if (next.done) return;
			yield next.value as ChatEvent;
		} finally {
			clearTimeout(timer);
		}
	}
}

const eventError = (ev: Extract<ChatEvent, { t: "error" }>) =>
	new CompatError(
		ev.code as CompatError["kind"],
		ev.message,
		ev.param ?? null,
		ev.errorCode ?? null,
		ev.retryAfterS ?? null
	);

/** The nodes whose ai.chat is available now. */
function aiChatNodes(svc: ApiThis): string[] {
	const list = svc.broker.registry.getActionEndpoints("ai.chat") as unknown as
		{ endpoints?: Array<{ node: { id: string }; isAvailable: boolean }> } | undefined;
	return (list?.endpoints ?? []).filter(e => e.isAvailable).map(e => e.node.id);
}

async function chat(svc: ApiThis, protocol: Protocol, req: Req, res: ServerResponse) {
	const cfg = runtimeOf(svc.broker).config;
	// The tier is read while the key's stamps are checked and the per-user limit counted (one wait).
	let tier: TierName | undefined;
	const user = await authenticate(svc, req, res, u => cachedTier(svc, u).then(t => void (tier = t)));
	const body = await parseBody(req, res, cfg.http.bodyLimit);
	const request: ChatRequest = protocol === "openai" ? readOpenAIRequest(body) : readAnthropicRequest(body);
	const id = newChatId();
	const ctx = req.$ctx;
	const params = {
		id,
		userId: user.id,
		orgId: user.orgId ?? null,
		keyId: user.keyId ?? null,
		key: user.keyLimits ?? null,
		...(tier ? { tier } : {}),
		request
	};
	// Admission may wait up to AI_COMPAT_MAX_WAIT_MS for a worker slot before the stream starts.
	const timeout = cfg.requestTimeoutMs + cfg.ai.compatMaxWaitMs;
	// The ai node with the most free slots (src/compat/balance.ts); Moleculer's balancing without one.
	const nodeID = svc.aiLoads.pick(aiChatNodes(svc));
	const stream = await ctx
		.call<Readable, unknown>("ai.chat", params, nodeID ? { timeout, nodeID } : { timeout })
		.catch(err => {
			// The chosen node went away before the call left: once more, balanced by Moleculer.
			if (!nodeID || !sentNowhere(err)) throw err;
			svc.aiLoads.forget(nodeID);
			return ctx.call<Readable, unknown>("ai.chat", params, { timeout });
		});
	const idleMs = cfg.ai.stallTimeoutMs + cfg.ai.firstTokenTimeoutMs;
	let finished = false;
	res.on("close", () => {
		if (finished) return;
		// The client went away: the worker stops the upstream call (and settles what was used).
		void svc.broker.broadcast("ai.chat.cancel", { id }, { groups: ["ai"] }).catch(() => undefined);
		stream.destroy();
	});
	if (!request.stream) {
		const events: ChatEvent[] = [];
		for await (const ev of withIdleTimeout(stream, idleMs)) events.push(ev);
		finished = true;
		const c = collect(events, eventError);
		const payload = JSON.stringify(protocol === "openai" ? openAIResponse(c) : anthropicResponse(c));
		res.writeHead(200, {
			"Content-Type": "application/json; charset=utf-8",
			"Content-Length": Buffer.byteLength(payload),
			"X-Request-Id": requestIdOf(req)
		});
		return void res.end(payload);
	}
	const writer = streamWriter(protocol, request.includeUsage);
	let pendingStart: ChatEvent | null = null;
	// The frames of one burst of events (everything until the current ticks and microtasks are done)
	// leave in one socket write instead of one each; no timer, so the first token is not held back.
	let frames = "";
	let scheduled = false;
	const flush = () => {
		scheduled = false;
		if (!frames || res.writableEnded || res.destroyed) return;
		const f = frames;
		frames = "";
		res.write(f);
	};
	const send = (frame: string) => {
		frames += frame;
		if (!scheduled) {
			scheduled = true;
			process.nextTick(flush);
		}
	};
	const end = (frame = "") => {
		frames += frame;
		const f = frames;
		frames = "";
		res.end(f);
	};
	try {
		for await (const ev of withIdleTimeout(stream, idleMs)) {
			if (ev.t === "start") {
				pendingStart = ev;
				continue;
			}
			if (ev.t === "error") {
				// Before the first byte the failure gets its own status; after it, the protocol's error event.
				if (!res.headersSent) throw eventError(ev);
				end(writer.fail(eventError(ev)));
				finished = true;
				return;
			}
			if (!res.headersSent) {
				res.writeHead(200, {
					"Content-Type": "text/event-stream; charset=utf-8",
					"Cache-Control": "no-cache",
					Connection: "keep-alive",
					"X-Accel-Buffering": "no",
					"X-Request-Id": requestIdOf(req)
				});
				if (pendingStart) send(writer.write(pendingStart));
			}
			send(writer.write(ev));
			if (ev.t === "done") {
				finished = true;
				return void end();
			}
		}
		throw new CompatError("api_error", "The answer ended without its final event");
	} catch (err) {
		finished = true;
		if (!res.headersSent) throw err;
		end(writer.fail(fromPlatformError(err)));
	}
}

async function models(svc: ApiThis, req: Req, res: ServerResponse, one: string | null) {
	const protocol = protocolOf(req);
	const user = await authenticate(svc, req, res);
	const list = await req.$ctx.call<
		{ models: Array<{ id: string; provider: string; description: string; allowed?: boolean }> },
		Record<string, never>
	>("ai.models", {}, { meta: { user } });
	const allowList = user.keyLimits?.models ?? null;
	const usable = list.models.filter(m => m.allowed && (!allowList || allowList.includes(m.id)));
	const created = 1_735_689_600; // the catalogue has no dates; a fixed one keeps answers stable
	const view = (m: (typeof usable)[number]) =>
		protocol === "openai"
			? { id: m.id, object: "model", created, owned_by: m.provider }
			: {
					type: "model",
					id: m.id,
					display_name: m.description,
					created_at: new Date(created * 1000).toISOString()
				};
	let body: unknown;
	if (one !== null) {
		const m = usable.find(x => x.id === one);
		if (!m)
			throw new CompatError(
				"not_found",
				`The model '${one}' does not exist or you do not have access to it`,
				"model",
				"model_not_found"
			);
		body = view(m);
	} else
		body =
			protocol === "openai"
				? { object: "list", data: usable.map(view) }
				: {
						data: usable.map(view),
						has_more: false,
						first_id: usable[0]?.id ?? null,
						last_id: usable[usable.length - 1]?.id ?? null
					};
	const payload = JSON.stringify(body);
	res.writeHead(200, {
		"Content-Type": "application/json; charset=utf-8",
		"Content-Length": Buffer.byteLength(payload),
		"X-Request-Id": requestIdOf(req)
	});
	res.end(payload);
}

async function countTokens(svc: ApiThis, req: Req, res: ServerResponse) {
	const cfg = runtimeOf(svc.broker).config;
	await authenticate(svc, req, res);
	const body = await parseBody(req, res, cfg.http.bodyLimit);
	const request = readAnthropicRequest(body, true);
	if (!resolveModel(request.model, cfg.ai.devProvider))
		throw new CompatError("not_found", `The model '${request.model}' does not exist`, "model", "model_not_found");
	const payload = JSON.stringify({ input_tokens: estimateChatTokens(request) });
	res.writeHead(200, {
		"Content-Type": "application/json; charset=utf-8",
		"Content-Length": Buffer.byteLength(payload),
		"X-Request-Id": requestIdOf(req)
	});
	res.end(payload);
}

/** The moleculer-web route for /v1 (added by the gateway next to /api/v1). */
export function compatRoute(svc: ApiThis, cors: Record<string, unknown>) {
	const log = (err: unknown) => svc.logger.error("compat request failed", (err as Error)?.stack ?? String(err));
	const handle =
		(protocol: Protocol | null, fn: (req: Req, res: ServerResponse) => Promise<void>) =>
		(req: Req, res: ServerResponse) =>
			fn(req, res).catch(err => sendError(req, res, protocol ?? protocolOf(req), err, log));
	return {
		path: "/v1",
		authentication: false,
		authorization: false,
		mappingPolicy: "restrict",
		logging: false,
		autoAliases: false,
		bodyParsers: false,
		cors: {
			...cors,
			allowedHeaders: [
				...((cors.allowedHeaders as string[]) ?? []),
				"anthropic-version",
				"anthropic-beta",
				"anthropic-dangerous-direct-browser-access",
				"OpenAI-Organization",
				"OpenAI-Project"
			],
			exposedHeaders: [...((cors.exposedHeaders as string[]) ?? []), "retry-after", "x-should-retry"]
		},
		aliases: {
			"POST /chat/completions": handle("openai", (req, res) => chat(svc, "openai", req, res)),
			"POST /messages": handle("anthropic", (req, res) => chat(svc, "anthropic", req, res)),
			"POST /messages/count_tokens": handle("anthropic", (req, res) => countTokens(svc, req, res)),
			"GET /models": handle(null, (req, res) => models(svc, req, res, null)),
			"GET /models/:id": handle(null, (req, res) => models(svc, req, res, req.$params?.id ?? ""))
		},
		onError(this: ApiThis, req: Req, res: ServerResponse, err: unknown) {
			const e = err as { code?: number; type?: string };
			sendError(
				req,
				res,
				protocolOf(req),
				e?.code === 404 ? new CompatError("not_found", "Unknown endpoint", null, "unknown_url") : err,
				log
			);
		}
	};
}
