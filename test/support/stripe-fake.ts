/**
 * A local stand-in for the part of Stripe's REST API the payments service uses, so tests drive the
 * real `stripe` SDK end to end (form-encoded requests, idempotency keys, retries, pagination):
 *   POST /v1/checkout/sessions        (records the Idempotency-Key; a repeated key replays the first answer)
 *   GET  /v1/checkout/sessions/:id
 *   GET  /v1/events                   (newest first, `limit`, `starting_after`, `created[gte]`)
 *   GET  /v1/events/:id
 * `failNext(n)` makes the next n POSTs answer 500 with `Stripe-Should-Retry: true`, which the SDK
 * retries with the same key. `signed(event)` gives a webhook body and a valid Stripe-Signature.
 */
import http from "node:http";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";

export const FAKE_SECRET_KEY = "sk_test_forgefluid_fake_0123456789";
export const FAKE_WEBHOOK_SECRET = "whsec_forgefluid_fake_0123456789abcdef";

type Json = Record<string, unknown>;

export interface RecordedRequest {
	method: string;
	path: string;
	idempotencyKey: string | null;
	status: number;
	body: Json;
}

export interface FakeEvent {
	id: string;
	object: "event";
	type: string;
	created: number;
	livemode: false;
	api_version: string;
	data: { object: Json };
}

const rid = (prefix: string) => `${prefix}_${randomBytes(12).toString("hex")}`;

/** Decodes Stripe's form encoding (`a[b][0][c]=v`) into nested objects and arrays. */
export function decodeForm(body: string): Json {
	const root: Json = {};
	for (const [rawKey, value] of new URLSearchParams(body)) {
		const parts = rawKey.replace(/\]/g, "").split("[");
		let node: Record<string, unknown> | unknown[] = root;
		parts.forEach((part, i) => {
			const last = i === parts.length - 1;
			const key: string | number = Array.isArray(node) ? Number(part) : part;
			const container = node as Record<string | number, unknown>;
			if (last) container[key] = value;
			else {
				if (container[key] == null) container[key] = /^\d+$/.test(parts[i + 1]) ? [] : {};
				node = container[key] as Record<string, unknown> | unknown[];
			}
		});
	}
	return root;
}

export class StripeFake {
	readonly requests: RecordedRequest[] = [];
	readonly sessions = new Map<string, Json>();
	readonly events: FakeEvent[] = [];
	private readonly replies = new Map<string, { status: number; body: Json }>();
	private failures = 0;
	private server: http.Server | null = null;
	private readonly webhooks = new Stripe(FAKE_SECRET_KEY).webhooks;
	port = 0;

	get url() {
		return `http://127.0.0.1:${this.port}`;
	}

	/** The payments service's environment for this fake. */
	env(): Record<string, string> {
		return {
			STRIPE_SECRET_KEY: FAKE_SECRET_KEY,
			STRIPE_WEBHOOK_SECRET: FAKE_WEBHOOK_SECRET,
			STRIPE_API_BASE: this.url,
			STRIPE_RECONCILE_INTERVAL_MS: "0"
		};
	}

	async start(): Promise<this> {
		this.server = http.createServer((req, res) => {
			let raw = "";
			req.setEncoding("utf8");
			req.on("data", c => (raw += c));
			req.on("end", () => {
				try {
					this.handle(req, raw, res);
				} catch (err) {
					this.send(res, 500, { error: { type: "api_error", message: (err as Error).message } });
				}
			});
		});
		await new Promise<void>(resolve => this.server!.listen(0, "127.0.0.1", () => resolve()));
		this.port = (this.server.address() as AddressInfo).port;
		return this;
	}

	async stop() {
		await new Promise<void>(resolve => (this.server ? this.server.close(() => resolve()) : resolve()));
	}

	/** The next `n` POSTs fail with a retryable 500. */
	failNext(n = 1) {
		this.failures = n;
	}

	private send(res: http.ServerResponse, status: number, body: Json, headers: Record<string, string> = {}) {
		const payload = JSON.stringify(body);
		res.writeHead(status, { "Content-Type": "application/json", "Request-Id": rid("req"), ...headers });
		res.end(payload);
	}

	private handle(req: http.IncomingMessage, raw: string, res: http.ServerResponse) {
		const url = new URL(req.url ?? "/", this.url);
		const method = req.method ?? "GET";
		const key = typeof req.headers["idempotency-key"] === "string" ? req.headers["idempotency-key"] : null;
		const body = method === "POST" ? decodeForm(raw) : Object.fromEntries(url.searchParams);
		const record = (status: number) =>
			this.requests.push({ method, path: url.pathname, idempotencyKey: key, status, body });
		if (req.headers.authorization !== `Bearer ${FAKE_SECRET_KEY}`) {
			record(401);
			return this.send(res, 401, {
				error: { type: "invalid_request_error", message: "Invalid API Key provided" }
			});
		}
		if (method === "POST" && this.failures > 0) {
			this.failures--;
			record(500);
			return this.send(
				res,
				500,
				{ error: { type: "api_error", message: "Injected failure" } },
				{ "Stripe-Should-Retry": "true" }
			);
		}
		if (method === "POST" && key && this.replies.has(`${url.pathname}:${key}`)) {
			const r = this.replies.get(`${url.pathname}:${key}`)!;
			record(r.status);
			return this.send(res, r.status, r.body, { "Idempotent-Replayed": "true" });
		}
		let status = 200;
		let out: Json;
		const sessionMatch = /^\/v1\/checkout\/sessions\/([^/]+)$/.exec(url.pathname);
		const eventMatch = /^\/v1\/events\/([^/]+)$/.exec(url.pathname);
		if (method === "POST" && url.pathname === "/v1/checkout/sessions") out = this.createSession(body);
		else if (method === "GET" && sessionMatch) {
			const s = this.sessions.get(sessionMatch[1]);
			[status, out] = s
				? [200, s]
				: [404, { error: { type: "invalid_request_error", message: "No such checkout.session" } }];
		} else if (method === "GET" && url.pathname === "/v1/events") out = this.listEvents(url.searchParams);
		else if (method === "GET" && eventMatch) {
			const e = this.events.find(x => x.id === eventMatch[1]);
			[status, out] = e
				? [200, e as unknown as Json]
				: [404, { error: { type: "invalid_request_error", message: "No such event" } }];
		} else
			[status, out] = [
				404,
				{
					error: {
						type: "invalid_request_error",
						message: `Unrecognized request URL (${method}: ${url.pathname})`
					}
				}
			];
		if (method === "POST" && key) this.replies.set(`${url.pathname}:${key}`, { status, body: out });
		record(status);
		this.send(res, status, out);
	}

	private createSession(p: Json): Json {
		const items =
			(p.line_items as Array<{ quantity?: string; price_data?: { unit_amount?: string; currency?: string } }>) ??
			[];
		const amount = items.reduce((s, i) => s + Number(i.price_data?.unit_amount ?? 0) * Number(i.quantity ?? 1), 0);
		const id = rid("cs_test");
		const session: Json = {
			id,
			object: "checkout.session",
			mode: p.mode,
			status: "open",
			payment_status: "unpaid",
			amount_total: amount,
			currency: items[0]?.price_data?.currency ?? "usd",
			client_reference_id: p.client_reference_id ?? null,
			metadata: p.metadata ?? {},
			payment_intent: p.mode === "payment" ? rid("pi") : null,
			subscription: p.mode === "subscription" ? rid("sub") : null,
			success_url: p.success_url,
			cancel_url: p.cancel_url,
			url: `https://checkout.stripe.test/c/pay/${id}`,
			payment_intent_data_metadata: (p.payment_intent_data as Json | undefined)?.metadata ?? null,
			subscription_data_metadata: (p.subscription_data as Json | undefined)?.metadata ?? null
		};
		this.sessions.set(id, session);
		return session;
	}

	private listEvents(q: URLSearchParams): Json {
		const limit = Math.min(100, Number(q.get("limit") ?? 10));
		const gte = q.get("created[gte]");
		let list = [...this.events].sort(
			(a, b) => b.created - a.created || this.events.indexOf(b) - this.events.indexOf(a)
		);
		if (gte) list = list.filter(e => e.created >= Number(gte));
		const after = q.get("starting_after");
		if (after) list = list.slice(list.findIndex(e => e.id === after) + 1);
		const data = list.slice(0, limit);
		return { object: "list", url: "/v1/events", has_more: list.length > limit, data };
	}

	// ---- What Stripe does on its side, for tests to trigger ------------------------------------

	/** Stores an event (visible to GET /v1/events) and returns it. */
	event(type: string, object: Json, created = Math.floor(Date.now() / 1000)): FakeEvent {
		const e: FakeEvent = {
			id: rid("evt"),
			object: "event",
			type,
			created,
			livemode: false,
			api_version: "2026-10-28.endive",
			data: { object }
		};
		this.events.push(e);
		return e;
	}

	/** The customer finished Checkout: `paid` false models an async method (bank debit) still pending. */
	completeSession(id: string, paid = true): Json {
		const s = this.sessions.get(id);
		if (!s) throw new Error(`no session ${id}`);
		Object.assign(s, { status: "complete", payment_status: paid ? "paid" : "unpaid" });
		return { ...s };
	}

	paymentIntentOf(sessionId: string): Json {
		const s = this.sessions.get(sessionId)!;
		return {
			id: s.payment_intent,
			object: "payment_intent",
			status: "succeeded",
			amount: s.amount_total,
			amount_received: s.amount_total,
			currency: s.currency,
			metadata: s.payment_intent_data_metadata ?? {}
		};
	}

	chargeOf(sessionId: string, amountRefunded: number): Json {
		const s = this.sessions.get(sessionId)!;
		return {
			id: `ch_${String(s.payment_intent).slice(3)}`,
			object: "charge",
			payment_intent: s.payment_intent,
			amount: s.amount_total,
			amount_refunded: amountRefunded,
			refunded: amountRefunded >= Number(s.amount_total),
			currency: s.currency,
			metadata: {}
		};
	}

	subscriptionOf(sessionId: string, status: string): Json {
		const s = this.sessions.get(sessionId)!;
		return { id: s.subscription, object: "subscription", status, metadata: s.subscription_data_metadata ?? {} };
	}

	/** A webhook delivery as Stripe sends it: the JSON body and its Stripe-Signature header. */
	signed(
		event: FakeEvent | string,
		opts: { timestamp?: number; secret?: string } = {}
	): { body: string; signature: string } {
		const body = typeof event === "string" ? event : JSON.stringify(event, null, 2);
		const signature = this.webhooks.generateTestHeaderString({
			payload: body,
			secret: opts.secret ?? FAKE_WEBHOOK_SECRET,
			timestamp: opts.timestamp ?? Math.floor(Date.now() / 1000)
		});
		return { body, signature };
	}
}

export async function startStripeFake(): Promise<StripeFake> {
	return new StripeFake().start();
}
