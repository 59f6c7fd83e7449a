/**
 * The circuit breaker stays closed under client-made failures (issue 13, finding 3): 1,000 requests
 * through one action, each ending in a documented 503 or a 4xx, then a valid request succeeds. Before
 * the fix, about ten documented 503s opened the circuit and every caller got 503 for CB_HALF_OPEN_MS.
 */
import { bearerFor, createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { startStripeFake, type StripeFake } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

jest.setTimeout(180_000);

let db: TestDatabase;
let fake: StripeFake;
const nodes: Array<ForgeNode & { baseUrl: string }> = [];

beforeAll(async () => {
	fake = await startStripeFake();
	db = await createTestDatabase();
});
afterAll(async () => {
	for (const n of nodes) await n.stop();
	await db?.drop();
	await fake?.stop();
});

async function start(env: Record<string, string>) {
	const node = await startTestNode({
		db,
		services: ["api", "payments"],
		env: {
			RATE_LIMIT_PER_MINUTE: "1000000",
			RATE_LIMIT_ANON_PER_MINUTE: "1000000",
			STRIPE_INBOX_POLL_MS: "60000",
			...env
		}
	});
	nodes.push(node);
	return node;
}

async function checkout(node: ForgeNode & { baseUrl: string }, user: string, body: unknown) {
	const res = await fetch(`${node.baseUrl}/api/v1/billing/checkout`, {
		method: "POST",
		headers: { Authorization: `Bearer ${bearerFor(node.config, user)}`, "Content-Type": "application/json" },
		body: JSON.stringify(body)
	});
	const json = (await res.json()) as { error?: { code: string } };
	return { status: res.status, code: json.error?.code ?? null };
}

/** `count` requests, `parallel` at a time; a tally of "status code" answers. */
async function drive(
	count: number,
	parallel: number,
	one: (i: number) => Promise<{ status: number; code: string | null }>
) {
	const tally: Record<string, number> = {};
	let next = 0;
	await Promise.all(
		Array.from({ length: parallel }, async () => {
			while (next < count) {
				const i = next++;
				const r = await one(i);
				const k = `${r.status} ${r.code}`;
				tally[k] = (tally[k] ?? 0) + 1;
			}
		})
	);
	return tally;
}

test("1,000 documented 503s (Stripe down) and 4xx through payments.checkout, then a valid checkout succeeds", async () => {
	const node = await start({ ...fake.env(), STRIPE_MAX_NETWORK_RETRIES: "0" });
	fake.failNext(1_000_000);
	const tally = await drive(1000, 20, i =>
		i % 2 === 0
			? checkout(node, `buyer-${i}`, { kind: "pack", itemId: "starter" })
			: checkout(node, `buyer-${i}`, {
					kind: i % 4 === 1 ? "gift" : "pack",
					itemId: i % 4 === 1 ? "starter" : ""
				})
	);
	expect(tally).toEqual({ "503 STRIPE_UNAVAILABLE": 500, "422 VALIDATION_ERROR": 500 });
	fake.failNext(0);
	const ok = await checkout(node, "buyer-final", { kind: "pack", itemId: "starter" });
	expect(ok).toEqual({ status: 201, code: null });
});

test("1,000 × STRIPE_NOT_CONFIGURED and 4xx: the answer stays the documented one, never the breaker's", async () => {
	const node = await start({});
	const tally = await drive(1000, 20, i =>
		checkout(node, `user-${i}`, i % 2 === 0 ? { kind: "pack", itemId: "starter" } : { kind: "pack" })
	);
	expect(tally).toEqual({ "503 STRIPE_NOT_CONFIGURED": 500, "422 VALIDATION_ERROR": 500 });
	// An open circuit would answer SERVICE_UNAVAILABLE here.
	expect(await checkout(node, "user-final", { kind: "pack", itemId: "starter" })).toEqual({
		status: 503,
		code: "STRIPE_NOT_CONFIGURED"
	});
	const health = await fetch(`${node.baseUrl}/metrics`).then(r => r.text());
	expect(health).not.toMatch(/moleculer_circuit_breaker_opened_total\{[^}]*payments\.checkout[^}]*\} [1-9]/);
});
