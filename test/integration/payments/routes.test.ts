/**
 * The payments routes through the gateway with nothing external configured (no Stripe keys, no
 * RPC URL): bad inputs in the contract's error shape, 503s that say what is missing, ownership.
 */
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "payments"],
		env: { RATE_LIMIT_PER_MINUTE: "100000", RATE_LIMIT_ANON_PER_MINUTE: "100000" }
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

type Json = Record<string, any>; // response bodies are checked field by field
async function call(
	method: string,
	path: string,
	opts: { user?: string; body?: string | object; headers?: Record<string, string> } = {}
) {
	const headers: Record<string, string> = { ...opts.headers };
	if (opts.user) headers.authorization = `Bearer ${bearerFor(node.config, opts.user)}`;
	if (opts.body !== undefined && !headers["content-type"]) headers["content-type"] = "application/json";
	const body =
		opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
	const res = await fetch(node.baseUrl + "/api/v1" + path, { method, headers, body });
	const text = await res.text();
	return { status: res.status, json: (text ? JSON.parse(text) : null) as Json, headers: res.headers, text };
}

function expectError(r: { status: number; json: Json; headers: Headers; text: string }, status: number, code: string) {
	expect(r.status).toBe(status);
	expect(r.json).toEqual({
		error: expect.objectContaining({ code, message: expect.any(String) }),
		requestId: expect.any(String)
	});
	expect(r.headers.get("x-request-id")).toBe(r.json.requestId);
	expect(r.text).not.toMatch(/at .*\.(ts|js):\d+/);
}

const UUID = "00000000-0000-4000-8000-000000000000";
const TX = `0x${"cd".repeat(32)}`;

test("every signed-in route answers 401 without a token", async () => {
	const routes: Array<[string, string, object?]> = [
		["GET", "/billing/balance"],
		["GET", "/billing/ledger"],
		["POST", "/billing/checkout", { kind: "pack", itemId: "starter" }],
		["GET", `/billing/checkout/${UUID}`],
		["POST", "/billing/crypto/invoices", { credits: 10 }],
		["GET", `/billing/crypto/invoices/0x${"00".repeat(32)}`],
		["POST", "/billing/crypto/payments", { chainId: 1, txHash: TX }],
		["GET", `/billing/crypto/payments/${UUID}`],
		["GET", "/staking"]
	];
	for (const [method, path, body] of routes) expectError(await call(method, path, { body }), 401, "UNAUTHORIZED");
});

test("prices are public: packs, plans, models, boost, FORGE rate and the tier table", async () => {
	const r = await call("GET", "/billing/prices");
	expect(r.status).toBe(200);
	expect(r.json.creditPacks[0]).toEqual({
		id: "starter",
		name: expect.any(String),
		credits: "10000",
		priceCents: 1000
	});
	expect(r.json.plans.map((p: Json) => p.id)).toEqual(["pro", "team"]);
	expect(r.json.tiers.map((t: Json) => [t.name, t.feeDiscountBps])).toEqual([
		["free", 0],
		["pro", 250],
		["team", 500],
		["enterprise", 1000]
	]);
	expect(r.json.models.find((m: Json) => m.id === "gpt-4o-mini")).toEqual({
		id: "gpt-4o-mini",
		provider: "openai",
		group: "small",
		inputPricePer1M: 150,
		outputPricePer1M: 600,
		tiers: ["free", "pro", "team", "enterprise"]
	});
	expect(r.json.forge).toEqual({ creditsPerForge: 1000 });
	expect(r.json.stakeDiscounts[0]).toEqual({ minStakeWei: "1000000000000000000000", bps: 500 });
});

test("a new user has an empty balance, the free tier and no stake", async () => {
	expect((await call("GET", "/billing/balance", { user: "newbie" })).json).toEqual({
		available: 0,
		held: 0,
		tier: "free",
		planTier: "free",
		feeDiscountBps: 0,
		boostMs: 0,
		effectiveStakeWei: "0"
	});
	const s = await call("GET", "/staking", { user: "newbie" });
	expect(s.status).toBe(200);
	expect(s.json).toMatchObject({ chainConfigured: false, wallets: [], totalStakeWei: "0", tier: "free" });
	expect(s.json.unlocks.map((u: Json) => u.tier)).toEqual(["pro", "team", "enterprise"]);
});

test("without Stripe keys the card routes answer 503 STRIPE_NOT_CONFIGURED", async () => {
	const r = await call("POST", "/billing/checkout", { user: "u1", body: { kind: "pack", itemId: "starter" } });
	expectError(r, 503, "STRIPE_NOT_CONFIGURED");
	expect(r.json.error.message).toMatch(/STRIPE_SECRET_KEY/);
	expect(r.headers.get("retry-after")).toBe("5");
	expectError(
		await call("POST", "/billing/stripe/webhook", { body: "{}", headers: { "stripe-signature": "t=1,v1=x" } }),
		503,
		"STRIPE_NOT_CONFIGURED"
	);
	expectError(await call("GET", `/billing/checkout/${UUID}`, { user: "u1" }), 404, "NOT_FOUND");
});

test("without an RPC URL the FORGE routes answer 503 CHAIN_NOT_CONFIGURED", async () => {
	const r = await call("POST", "/billing/crypto/invoices", { user: "u1", body: { credits: 10 } });
	expectError(r, 503, "CHAIN_NOT_CONFIGURED");
	expect(r.json.error.message).toMatch(/CHAIN_RPC_URL/);
	expectError(
		await call("POST", "/billing/crypto/payments", { user: "u1", body: { chainId: 31337, txHash: TX } }),
		503,
		"CHAIN_NOT_CONFIGURED"
	);
	expectError(await call("GET", `/billing/crypto/payments/${UUID}`, { user: "u1" }), 503, "CHAIN_NOT_CONFIGURED");
	expect((await node.broker.call("payments.facts", { userId: "u1" })) as Json).toMatchObject({
		tier: "free",
		positions: []
	});
});

test("bad inputs are 4xx in the contract's shape", async () => {
	for (const q of ["limit=0", "limit=101", "limit=abc", "cursor=abc", "cursor=-1"])
		expectError(await call("GET", `/billing/ledger?${q}`, { user: "u1" }), 422, "VALIDATION_ERROR");
	expectError(
		await call("POST", "/billing/checkout", { user: "u1", body: '{"kind": "pack",' }),
		400,
		"MALFORMED_JSON"
	);
	expectError(
		await call("POST", "/billing/checkout", {
			user: "u1",
			body: "kind=pack",
			headers: { "content-type": "application/x-www-form-urlencoded" }
		}),
		415,
		"UNSUPPORTED_MEDIA_TYPE"
	);
	const bad = await call("POST", "/billing/checkout", { user: "u1", body: { kind: "gift", itemId: "" } });
	expectError(bad, 422, "VALIDATION_ERROR");
	expect(bad.json.error.details.map((d: Json) => d.field).sort()).toEqual(["itemId", "kind"]);
	expectError(
		await call("POST", "/billing/checkout", {
			user: "u1",
			body: { kind: "pack", itemId: "starter", userId: "admin" }
		}),
		422,
		"VALIDATION_ERROR"
	);
	expectError(
		await call("POST", "/billing/checkout", {
			user: "u1",
			body: { kind: "pack", itemId: "starter" },
			headers: { "idempotency-key": "short" }
		}),
		422,
		"VALIDATION_ERROR"
	);
	expectError(await call("GET", "/billing/checkout/not-a-uuid", { user: "u1" }), 422, "VALIDATION_ERROR");
	expectError(
		await call("POST", "/billing/crypto/invoices", { user: "u1", body: { credits: -5 } }),
		422,
		"VALIDATION_ERROR"
	);
	expectError(
		await call("POST", "/billing/crypto/invoices", { user: "u1", body: { credits: "lots" } }),
		422,
		"VALIDATION_ERROR"
	);
	expectError(
		await call("POST", "/billing/crypto/payments", { user: "u1", body: { chainId: 0, txHash: "0xzz" } }),
		422,
		"VALIDATION_ERROR"
	);
	expectError(await call("GET", "/billing/crypto/invoices/0x1234", { user: "u1" }), 422, "VALIDATION_ERROR");
});

test("a user sees only their own ledger", async () => {
	await node.broker.call("payments.grant", {
		userId: "anna",
		credits: 700,
		operator: "test",
		reason: "welcome",
		source: "promo"
	});
	const a = await call("GET", "/billing/ledger", { user: "anna" });
	expect(a.json.items).toHaveLength(1);
	expect(a.json.items[0]).toMatchObject({
		kind: "grant",
		availableDelta: 700,
		description: "welcome",
		operator: "test"
	});
	const b = await call("GET", "/billing/ledger", { user: "boris" });
	expect(b.json).toEqual({ items: [], nextCursor: null });
	// A client cannot pick the user: unknown query fields are dropped, the token decides.
	const c = await call("GET", "/billing/ledger?userId=anna", { user: "boris" });
	expect(c.json.items).toEqual([]);
	expect((await call("GET", "/billing/balance?userId=anna", { user: "boris" })).json.available).toBe(0);
});

test("the OpenAPI document lists the billing routes with their parameters", async () => {
	const doc = (await (await fetch(`${node.baseUrl}/api/openapi.json`)).json()) as Json;
	for (const p of [
		"/api/v1/billing/balance",
		"/api/v1/billing/ledger",
		"/api/v1/billing/checkout",
		"/api/v1/billing/crypto/payments",
		"/api/v1/staking"
	])
		expect(Object.keys(doc.paths).some(k => k.startsWith(p))).toBe(true);
	expect(JSON.stringify(doc)).not.toContain("payments.reserve");
});
