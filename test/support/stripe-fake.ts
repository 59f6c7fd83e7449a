/**
 * A local stand-in for the part of Stripe's REST API the payments service uses, so tests drive the
 * real `stripe` SDK end to end (form-encoded requests, idempotency keys, retries, pagination):
 *   POST /v1/checkout/sessions        (records the Idempotency-Key; a repeated key replays the first answer)
 *   GET  /v1/checkout/sessions/:id
 *   GET  /v1/events                   (newest first, `limit`, `starting_after`, `created[gte]`)
 *   GET  /v1/events/:id
 *   POST /v1/customers, GET /v1/customers/:id
 *   POST /v1/products (with an `id` of the caller's; a taken id is 400 resource_already_exists), GET /v1/products/:id
 *   POST /v1/billing_portal/sessions  (the customer must exist)
 *   GET  /v1/subscriptions/:id, POST /v1/subscriptions/:id (price_data and quantity items, proration_behavior,
 *        cancel_at_period_end, metadata merged as Stripe does); an update records its proration and
 *        emits `customer.subscription.updated` with `previous_attributes`, like Stripe
 *   GET  /v1/customers/:id/payment_methods (the cards attached by `attachCard` or a completed pack Checkout)
 *   POST /v1/payment_intents, GET /v1/payment_intents/:id: off-session, confirmed at once; the outcome
 *        follows the payment method's id as Stripe's test cards do (`TEST_CARDS`): `pm_card_visa` (and any
 *        other id) succeeds and emits `payment_intent.succeeded`; `pm_card_authenticationRequired` answers
 *        402 `card_error` `authentication_required`, `pm_card_chargeDeclined` 402 `card_declined`
 *        (`pm_card_chargeDeclinedInsufficientFunds`: decline code `insufficient_funds`), each with the
 *        failed PaymentIntent in the error and a `payment_intent.payment_failed` event
 * A subscription Checkout, once completed, has a subscription object with one item and the session's
 * customer; a payment Checkout with `invoice_creation.enabled` gets an invoice (a receipt).
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
	data: { object: Json; previous_attributes?: Json };
}

/** Stripe's test payment methods for off-session payments. */
export const TEST_CARDS = {
	success: "pm_card_visa",
	authenticationRequired: "pm_card_authenticationRequired",
	declined: "pm_card_chargeDeclined",
	insufficientFunds: "pm_card_chargeDeclinedInsufficientFunds"
} as const;

const CARD_FAILURES: Record<string, { code: string; decline_code: string; message: string }> = {
	[TEST_CARDS.authenticationRequired]: {
		code: "authentication_required",
		decline_code: "authentication_required",
		message: "Your card was declined. This transaction requires authentication."
	},
	[TEST_CARDS.declined]: {
		code: "card_declined",
		decline_code: "generic_decline",
		message: "Your card was declined."
	},
	[TEST_CARDS.insufficientFunds]: {
		code: "card_declined",
		decline_code: "insufficient_funds",
		message: "Your card has insufficient funds."
	}
};

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
	readonly customers = new Map<string, Json>();
	readonly products = new Map<string, Json>();
	readonly portalSessions: Json[] = [];
	readonly subscriptions = new Map<string, Json>();
	readonly invoices = new Map<string, Json>();
	readonly paymentIntents = new Map<string, Json>();
	/** Payment methods attached to each customer, newest first. */
	readonly cards = new Map<string, string[]>();
	/** Each subscription update that changed the price with `proration_behavior: create_prorations`. */
	readonly prorations: Array<{ subscription: string; fromCents: number; toCents: number }> = [];
	/** Each subscription update that changed an item's quantity (seats), and whether it was prorated. */
	readonly quantityChanges: Array<{ subscription: string; from: number; to: number; prorated: boolean }> = [];
	/** Latest `created` of an event the fake emitted per object, so its own events of one object are ordered. */
	private readonly lastCreated = new Map<string, number>();
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
		const customerMatch = /^\/v1\/customers\/([^/]+)$/.exec(url.pathname);
		const productMatch = /^\/v1\/products\/([^/]+)$/.exec(url.pathname);
		const subMatch = /^\/v1\/subscriptions\/([^/]+)$/.exec(url.pathname);
		const cardsMatch = /^\/v1\/customers\/([^/]+)\/payment_methods$/.exec(url.pathname);
		const piMatch = /^\/v1\/payment_intents\/([^/]+)$/.exec(url.pathname);
		const missing = (what: string): [number, Json] => [
			404,
			{ error: { type: "invalid_request_error", code: "resource_missing", message: `No such ${what}` } }
		];
		const found = (map: Map<string, Json>, id: string, what: string): [number, Json] =>
			map.has(id) ? [200, map.get(id)!] : missing(what);
		if (method === "POST" && url.pathname === "/v1/checkout/sessions") out = this.createSession(body);
		else if (method === "POST" && url.pathname === "/v1/customers") out = this.createCustomer(body);
		else if (method === "GET" && cardsMatch) [status, out] = this.listCards(cardsMatch[1], url.searchParams);
		else if (method === "POST" && url.pathname === "/v1/payment_intents")
			[status, out] = this.createPaymentIntent(body);
		else if (method === "GET" && piMatch) [status, out] = found(this.paymentIntents, piMatch[1], "payment_intent");
		else if (method === "GET" && customerMatch) [status, out] = found(this.customers, customerMatch[1], "customer");
		else if (method === "POST" && url.pathname === "/v1/products") [status, out] = this.createProduct(body);
		else if (method === "GET" && productMatch) [status, out] = found(this.products, productMatch[1], "product");
		else if (method === "POST" && url.pathname === "/v1/billing_portal/sessions")
			[status, out] = this.createPortalSession(body);
		else if (method === "GET" && subMatch) [status, out] = found(this.subscriptions, subMatch[1], "subscription");
		else if (method === "POST" && subMatch) [status, out] = this.updateSubscription(subMatch[1], body);
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

	private createCustomer(p: Json): Json {
		const c: Json = {
			id: rid("cus"),
			object: "customer",
			email: p.email ?? null,
			name: p.name ?? null,
			metadata: p.metadata ?? {},
			invoice_settings: { default_payment_method: null },
			created: Math.floor(Date.now() / 1000)
		};
		this.customers.set(c.id as string, c);
		return c;
	}

	private listCards(customer: string, q: URLSearchParams): [number, Json] {
		if (!this.customers.has(customer))
			return [
				404,
				{ error: { type: "invalid_request_error", code: "resource_missing", message: "No such customer" } }
			];
		const limit = Math.min(100, Number(q.get("limit") ?? 10));
		const all = (this.cards.get(customer) ?? []).map(id => ({
			id,
			object: "payment_method",
			type: "card",
			customer,
			card: { brand: "visa", last4: "4242" }
		}));
		const data = all.slice(0, limit);
		return [
			200,
			{ object: "list", url: `/v1/customers/${customer}/payment_methods`, has_more: all.length > limit, data }
		];
	}

	/** An off-session PaymentIntent confirmed at once: its outcome is the test card's. */
	private createPaymentIntent(p: Json): [number, Json] {
		const customer = p.customer as string | undefined;
		const pm = p.payment_method as string | undefined;
		if (!customer || !this.customers.has(customer))
			return [400, { error: { type: "invalid_request_error", param: "customer", message: "No such customer" } }];
		if (!pm || !(this.cards.get(customer) ?? []).includes(pm))
			return [
				400,
				{
					error: {
						type: "invalid_request_error",
						param: "payment_method",
						message: `The payment method ${pm} is not attached to customer ${customer}.`
					}
				}
			];
		const amount = Number(p.amount);
		const failure = CARD_FAILURES[pm];
		const pi: Json = {
			id: rid("pi"),
			object: "payment_intent",
			amount,
			amount_received: failure ? 0 : amount,
			currency: p.currency,
			customer,
			payment_method: failure ? null : pm,
			description: p.description ?? null,
			metadata: p.metadata ?? {},
			off_session: p.off_session === "true",
			confirmation_method: "automatic",
			status: failure ? "requires_payment_method" : "succeeded",
			last_payment_error: failure ? { type: "card_error", ...failure, payment_method: { id: pm } } : null,
			created: Math.floor(Date.now() / 1000)
		};
		this.paymentIntents.set(pi.id as string, pi);
		if (failure) {
			this.emit("payment_intent.payment_failed", pi);
			return [
				402,
				{ error: { type: "card_error", ...failure, payment_intent: JSON.parse(JSON.stringify(pi)) as Json } }
			];
		}
		this.emit("payment_intent.succeeded", pi);
		return [200, pi];
	}

	/** The customer saves a card (as a pack Checkout with `setup_future_usage` does); newest is listed first. */
	attachCard(customer: string, paymentMethod: string = TEST_CARDS.success) {
		const list = this.cards.get(customer) ?? [];
		this.cards.set(customer, [paymentMethod, ...list.filter(x => x !== paymentMethod)]);
	}

	private createProduct(p: Json): [number, Json] {
		const id = (p.id as string | undefined) ?? rid("prod");
		if (this.products.has(id))
			return [
				400,
				{
					error: {
						type: "invalid_request_error",
						code: "resource_already_exists",
						message: "Product already exists."
					}
				}
			];
		const product: Json = { id, object: "product", name: p.name, metadata: p.metadata ?? {}, active: true };
		this.products.set(id, product);
		return [200, product];
	}

	private createPortalSession(p: Json): [number, Json] {
		if (!this.customers.has(p.customer as string))
			return [
				400,
				{
					error: {
						type: "invalid_request_error",
						param: "customer",
						message: `No such customer: '${p.customer}'`
					}
				}
			];
		const id = rid("bps");
		const session: Json = {
			id,
			object: "billing_portal.session",
			customer: p.customer,
			return_url: p.return_url ?? null,
			url: `https://billing.stripe.test/p/session/${id}`
		};
		this.portalSessions.push(session);
		return [200, session];
	}

	private updateSubscription(id: string, p: Json): [number, Json] {
		const sub = this.subscriptions.get(id);
		if (!sub)
			return [
				404,
				{ error: { type: "invalid_request_error", code: "resource_missing", message: "No such subscription" } }
			];
		if (sub.status === "canceled")
			return [
				400,
				{
					error: {
						type: "invalid_request_error",
						message: "A canceled subscription can only update its cancellation_details and metadata."
					}
				}
			];
		const previous: Json = {};
		const items = sub.items as { data: Json[] };
		for (const change of (p.items as Json[] | undefined) ?? []) {
			const item = items.data.find(i => i.id === change.id);
			if (!item)
				return [
					400,
					{ error: { type: "invalid_request_error", param: "items", message: "No such subscription item" } }
				];
			if (change.quantity !== undefined) {
				const to = Number(change.quantity);
				const from = Number(item.quantity ?? 1);
				if (!Number.isInteger(to) || to < 0)
					return [
						400,
						{
							error: {
								type: "invalid_request_error",
								param: "items[0][quantity]",
								message: "Invalid integer"
							}
						}
					];
				if (to !== from) {
					previous.items ??= { object: "list", data: [JSON.parse(JSON.stringify(item))] };
					item.quantity = to;
					this.quantityChanges.push({
						subscription: id,
						from,
						to,
						prorated: p.proration_behavior === "create_prorations"
					});
				}
			}
			const pd = change.price_data as Json | undefined;
			if (pd) {
				if (!this.products.has(pd.product as string))
					return [
						400,
						{ error: { type: "invalid_request_error", message: `No such product: '${pd.product}'` } }
					];
				const before = item.price as Json;
				const toCents = Number(pd.unit_amount);
				previous.items = { object: "list", data: [JSON.parse(JSON.stringify(item))] };
				item.price = {
					id: rid("price"),
					object: "price",
					product: pd.product,
					unit_amount: toCents,
					currency: pd.currency,
					recurring: pd.recurring ?? before.recurring
				};
				if (p.proration_behavior === "create_prorations" && toCents !== Number(before.unit_amount))
					this.prorations.push({ subscription: id, fromCents: Number(before.unit_amount), toCents });
			}
		}
		if (p.cancel_at_period_end !== undefined) {
			const v = p.cancel_at_period_end === "true";
			if (v !== sub.cancel_at_period_end) previous.cancel_at_period_end = sub.cancel_at_period_end;
			sub.cancel_at_period_end = v;
		}
		if (p.metadata) {
			previous.metadata = { ...(sub.metadata as Json) };
			const meta = { ...(sub.metadata as Json) };
			for (const [k, v] of Object.entries(p.metadata as Json))
				if (v === "") delete meta[k];
				else meta[k] = v;
			sub.metadata = meta;
		}
		this.emit("customer.subscription.updated", sub, previous);
		return [200, sub];
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
			customer: p.customer ?? null,
			allow_promotion_codes: p.allow_promotion_codes === "true",
			invoice_creation: p.invoice_creation ?? null,
			invoice: null,
			setup_future_usage: (p.payment_intent_data as Json | undefined)?.setup_future_usage ?? null,
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
	completeSession(id: string, paid = true, opts: { discountCents?: number; paymentMethod?: string } = {}): Json {
		const s = this.sessions.get(id);
		if (!s) throw new Error(`no session ${id}`);
		if (paid && s.setup_future_usage === "off_session" && s.customer)
			this.attachCard(s.customer as string, opts.paymentMethod ?? TEST_CARDS.success);
		const subtotal = Number(s.amount_subtotal ?? s.amount_total);
		const discount = opts.discountCents ?? Number((s.total_details as Json | undefined)?.amount_discount ?? 0);
		Object.assign(s, {
			status: "complete",
			payment_status: paid ? "paid" : "unpaid",
			amount_subtotal: subtotal,
			amount_total: subtotal - discount,
			total_details: { amount_discount: discount, amount_shipping: 0, amount_tax: 0 }
		});
		if (paid && s.mode === "payment" && (s.invoice_creation as Json | null)?.enabled === "true" && !s.invoice) {
			const invoice = {
				id: rid("in"),
				object: "invoice",
				customer: s.customer,
				amount_paid: s.amount_total,
				status: "paid"
			};
			this.invoices.set(invoice.id, invoice);
			s.invoice = invoice.id;
		}
		if (s.mode === "subscription" && !this.subscriptions.has(s.subscription as string))
			this.subscriptionOf(id, "active");
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

	/**
	 * The subscription of a subscription Checkout as an event's object, with `status`. The stored
	 * subscription (what GET and updates see) takes the status too unless `snapshot` is set, so a test
	 * can make old events of it.
	 */
	subscriptionOf(sessionId: string, status: string, opts: { snapshot?: boolean } = {}): Json {
		const s = this.sessions.get(sessionId)!;
		const id = s.subscription as string;
		let sub = this.subscriptions.get(id);
		if (!sub) {
			sub = {
				id,
				object: "subscription",
				status,
				customer: s.customer,
				cancel_at_period_end: false,
				metadata: s.subscription_data_metadata ?? {},
				items: {
					object: "list",
					data: [
						{
							id: rid("si"),
							object: "subscription_item",
							quantity: 1,
							current_period_end: Math.floor(Date.now() / 1000) + 30 * 86_400,
							price: {
								id: rid("price"),
								object: "price",
								product: rid("prod"),
								unit_amount: s.amount_total,
								currency: s.currency,
								recurring: { interval: "month" }
							}
						}
					]
				}
			};
			this.subscriptions.set(id, sub);
		}
		const copy = JSON.parse(JSON.stringify({ ...sub, status })) as Json;
		if (!opts.snapshot) sub.status = status;
		return copy;
	}

	/** An event Stripe emits about one of its own objects: later than the fake's last event of that object. */
	private emit(type: string, object: Json, previous?: Json): FakeEvent {
		const id = object.id as string;
		const created = Math.max(Math.floor(Date.now() / 1000), (this.lastCreated.get(id) ?? 0) + 1);
		this.lastCreated.set(id, created);
		const e = this.event(type, JSON.parse(JSON.stringify(object)) as Json, created);
		if (previous && Object.keys(previous).length) e.data.previous_attributes = previous;
		return e;
	}

	/** Stripe's subscription lifecycle events of a stored subscription (renewal failed, recovered, period ended). */
	subscriptionEvent(subscriptionId: string, change: { status?: string; type?: string }): FakeEvent {
		const sub = this.subscriptions.get(subscriptionId);
		if (!sub) throw new Error(`no subscription ${subscriptionId}`);
		const previous: Json = {};
		if (change.status && change.status !== sub.status) {
			previous.status = sub.status;
			sub.status = change.status;
		}
		return this.emit(change.type ?? "customer.subscription.updated", sub, previous);
	}

	/** The newest event of a type the fake emitted or stored. */
	lastEvent(type: string): FakeEvent | undefined {
		for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i].type === type) return this.events[i];
		return undefined;
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
