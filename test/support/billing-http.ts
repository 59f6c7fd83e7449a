/**
 * The gateway as the billing suites call it: routes under /api/v1 with an optional bearer token, and
 * Stripe's webhook deliveries signed by the fake (each must be accepted with 200).
 */
import type { FakeEvent, StripeFake } from "./stripe-fake";

type Json = Record<string, any>; // response bodies are checked field by field

/** `baseUrl` is read at each call: the node starts after the client is made. */
export function apiCaller(baseUrl: () => string) {
	return async function call(method: string, path: string, opts: { token?: string; body?: unknown } = {}) {
		const headers: Record<string, string> = {};
		if (opts.token) headers.authorization = `Bearer ${opts.token}`;
		if (opts.body !== undefined) headers["content-type"] = "application/json";
		const res = await fetch(`${baseUrl()}/api/v1${path}`, {
			method,
			headers,
			body: opts.body === undefined ? undefined : JSON.stringify(opts.body)
		});
		const text = await res.text();
		return { status: res.status, json: (text ? JSON.parse(text) : null) as Json };
	};
}

/** Delivers a fake Stripe event to the gateway's webhook, signed as Stripe signs it. */
export function webhookSender(fake: () => StripeFake, baseUrl: () => string) {
	return async function send(event: FakeEvent): Promise<void> {
		const { body, signature } = fake().signed(event);
		const r = await fetch(`${baseUrl()}/api/v1/billing/stripe/webhook`, {
			method: "POST",
			headers: { "content-type": "application/json", "stripe-signature": signature },
			body
		});
		expect(r.status).toBe(200);
	};
}
