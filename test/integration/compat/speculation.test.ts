/**
 * Speculation on /v1 (src/compat/speculation.ts, docs/compat.md "Speculation"): with the payer's
 * balance known to cover its requests, the upstream call starts beside the hold, and no byte reaches
 * the client before the hold is confirmed. Accepted: the answer arrives once the hold is confirmed
 * and is charged exactly what it used. Refused (the balance was spent elsewhere since it was read):
 * the client gets the protocol's own 402/429 error and no stream byte, the upstream call is aborted,
 * the user is charged nothing, and the refusal is counted as the platform's.
 */
import Anthropic from "@anthropic-ai/sdk";
import { Client } from "pg";
import { eventually } from "../../support/env";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(90_000);

let w: CompatWorld;

interface AiInternals {
	chatDeps: {
		reserve: (...a: unknown[]) => Promise<void>;
		onSpeculation?: (ev: { outcome: string; unpaidMicroCredits: number }) => void;
		speculation?: { known(payerId: string): { available: number } | null };
	};
}
const ai = () => w.node.broker.getLocalService("ai") as unknown as AiInternals;
const seen: Array<{ outcome: string; unpaidMicroCredits: number }> = [];

beforeAll(async () => {
	// The balance is read once and not again during a test: the refusal below depends on a stale read.
	w = await startCompatWorld({ AI_COMPAT_SPECULATE_REFRESH_MS: "600000", AI_FIRST_TOKEN_TIMEOUT_MS: "30000" });
	const deps = ai().chatDeps;
	const count = deps.onSpeculation;
	deps.onSpeculation = ev => {
		seen.push(ev);
		count?.(ev);
	};
});
afterAll(() => w?.close());

/** Wraps ai's reserve: `before` runs first (with the hold's payer and id), then the real one. */
function aroundReserve(before: (payerId: string, holdId: string) => Promise<void>) {
	const deps = ai().chatDeps;
	const real = deps.reserve;
	deps.reserve = async (...a: unknown[]) => {
		await before(a[0] as string, a[1] as string);
		return real(...a);
	};
	return () => void (deps.reserve = real);
}

const post = (key: string, body: unknown) =>
	fetch(`${w.node.baseUrl}/v1/chat/completions`, {
		method: "POST",
		headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
		body: JSON.stringify(body)
	});

/** A first request teaches the ai node the payer's balance (read in the background). */
async function learnBalance(u: { id: string; key: string }) {
	const r = await post(u.key, { model: "gpt-4o-mini", max_tokens: 8, messages: [{ role: "user", content: "hi" }] });
	expect(r.status).toBe(200);
	await r.text();
	await eventually(() => ai().chatDeps.speculation?.known(u.id) != null);
}

const chatHolds = async (userId: string) => {
	const c = new Client({ connectionString: w.db.url });
	await c.connect();
	try {
		return (
			await c.query<{ task_id: string; state: string; charged: string | null }>(
				`SELECT task_id, state, charged FROM credit_holds WHERE user_id = $1 AND task_id LIKE 'chat:%' ORDER BY task_id`,
				[userId]
			)
		).rows;
	} finally {
		await c.end();
	}
};

test("accepted: the upstream call starts before the hold is confirmed, no byte goes out before it, and the charge is exact", async () => {
	const u = await w.user(100_000);
	await learnBalance(u);
	const before = await w.settled(u.token);
	const upstream0 = w.openai.requests.length;
	let confirm!: () => void;
	const confirmed = new Promise<void>(r => (confirm = r));
	const restore = aroundReserve(() => confirmed);
	const seen0 = seen.length;
	try {
		w.openai.enqueue({ kind: "ok", chunks: ["one", " two", " three"] });
		let answered = false;
		const res = post(u.key, {
			model: "gpt-4o-mini",
			max_tokens: 64,
			stream: true,
			stream_options: { include_usage: true },
			messages: [{ role: "user", content: "hi" }]
		}).then(r => ((answered = true), r));
		// The upstream has the request while the hold is still being placed...
		await w.openai.waitForRequests(upstream0 + 1);
		// ...and its answer is there too; the client still has nothing (not even the status line).
		await new Promise(r => setTimeout(r, 300));
		expect(answered).toBe(false);
		confirm();
		const r = await res;
		expect(r.status).toBe(200);
		const text = await r.text();
		const chunks = text
			.split("\n")
			.filter(l => l.startsWith("data: ") && l !== "data: [DONE]")
			.map(l => JSON.parse(l.slice(6)));
		expect(chunks.map(c => c.choices[0]?.delta?.content ?? "").join("")).toBe("one two three");
		const usage = chunks[chunks.length - 1].usage as { prompt_tokens: number; completion_tokens: number };
		expect(usage.completion_tokens).toBe(3);
		// gpt-4o-mini: 150 input / 600 output credits per 1M tokens, rounded up once.
		const cost = Math.ceil((usage.prompt_tokens * 150 + usage.completion_tokens * 600) / 1e6);
		const after = await w.settled(u.token);
		expect(before.available - after.available).toBe(cost);
		const holds = await chatHolds(u.id);
		expect(holds.filter(h => h.state === "settled").map(h => Number(h.charged))).toEqual([cost, cost]);
		expect(seen.slice(seen0)).toEqual([{ outcome: "confirmed", unpaidMicroCredits: 0 }]);
	} finally {
		restore();
	}
});

test.each(["openai", "anthropic"] as const)(
	"%s: a hold refused after speculation sends no byte, aborts the upstream call and charges nothing",
	async protocol => {
		const u = await w.user(1_000);
		await learnBalance(u);
		const fake = protocol === "openai" ? w.openai : w.anthropic;
		// Spent elsewhere since the ai node read it (another node, a task): everything left is held.
		const left = (await w.settled(u.token)).available;
		await w.node.broker.call("payments.reserve", { userId: u.id, taskId: `elsewhere-${protocol}`, maxCost: left });
		const upstream0 = fake.requests.length;
		// The answer would stream at once; the real reserve goes out once the upstream has the request.
		fake.enqueue({ kind: "endless", chunkDelayMs: 20 });
		const restore = aroundReserve(() => fake.waitForRequests(upstream0 + 1));
		const seen0 = seen.length;
		try {
			if (protocol === "openai") {
				const r = await post(u.key, {
					model: "gpt-4o-mini",
					max_tokens: 64,
					stream: true,
					messages: [{ role: "user", content: "hi" }]
				});
				// The protocol's own refusal, as without speculation: a JSON error, not a stream.
				expect(r.status).toBe(429);
				expect(r.headers.get("content-type")).toMatch(/^application\/json/);
				expect(r.headers.get("x-should-retry")).toBe("false");
				const body = (await r.json()) as { error: { type: string; code: string } };
				expect(body.error.type).toBe("insufficient_quota");
				expect(body.error.code).toBe("insufficient_quota");
			} else {
				const client = new Anthropic({ apiKey: u.key, baseURL: w.node.baseUrl, maxRetries: 0 });
				const err = await client.messages
					.stream({ model: "claude-haiku", max_tokens: 64, messages: [{ role: "user", content: "hi" }] })
					.finalMessage()
					.catch((e: unknown) => e);
				expect(err).toBeInstanceOf(Anthropic.APIError);
				expect((err as InstanceType<typeof Anthropic.APIError>).status).toBe(402);
			}
			// The upstream had the request, and it was aborted.
			expect(fake.requests.length).toBe(upstream0 + 1);
			await eventually(() => fake.requests[upstream0].aborted);
			await eventually(() => seen.length > seen0);
			expect(seen.slice(seen0).map(e => e.outcome)).toEqual(["refused"]);
			// Nothing charged: the only chat hold is the first request's; the balance is whole once the
			// other hold is given back.
			await w.node.broker.call("payments.release", { userId: u.id, taskId: `elsewhere-${protocol}` });
			const after = await w.settled(u.token);
			expect(after.available).toBe(left);
			expect((await chatHolds(u.id)).length).toBe(1);
		} finally {
			restore();
		}
	}
);

test("a user's own monthly cap is in the read: a request it would refuse does not speculate and never reaches the upstream", async () => {
	const u = await w.user(100_000);
	// gpt-4o-mini: 600 credits per 1M output tokens. The cap leaves room for the first request's
	// worst case (max_tokens 8: 1 credit), not for the next one's (16,000 tokens: 10 credits).
	const set = await w.api("PUT", "/billing/cap", u.token, { monthlyCapCredits: 5 });
	expect(set.status).toBe(200);
	await learnBalance(u);
	// The balance covers the next request many times over; what the cap leaves does not.
	expect(ai().chatDeps.speculation?.known(u.id)?.available).toBeLessThanOrEqual(5);
	const upstream0 = w.openai.requests.length;
	const seen0 = seen.length;
	const r = await post(u.key, {
		model: "gpt-4o-mini",
		max_tokens: 16_000,
		stream: true,
		messages: [{ role: "user", content: "hi" }]
	});
	expect(r.status).toBe(429);
	const body = (await r.json()) as { error: { code: string } };
	expect(body.error.code).toBe("payer_cap_reached");
	// Refused at the hold, before any upstream call: no provider tokens spent, nothing unpaid.
	expect(w.openai.requests.length).toBe(upstream0);
	expect(seen.slice(seen0)).toEqual([]);
});
