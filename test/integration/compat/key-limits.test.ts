/**
 * API key limits on /v1: the monthly budget holds under 100 concurrent streams (a budget that
 * covers 10 worst cases admits exactly 10; the rest are refused before any upstream call; what
 * settles is exactly what the answers used, on the key and in the ledger), the key's monthly spend
 * cap at the ledger's hold (exact under concurrency, its own code, its counter equal to the charges),
 * the model allow-list, and per-key requests and tokens per minute.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { Client } from "pg";
import { estimateChatTokens } from "../../../src/compat/prepare";
import { eventually } from "../../support/env";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(120_000);

let w: CompatWorld;

beforeAll(async () => {
	// Answers held at the upstream (below) must not reach the first-token timeout on a loaded machine.
	w = await startCompatWorld({ AI_CONCURRENCY: "16", AI_FIRST_TOKEN_TIMEOUT_MS: "60000" });
});
afterAll(() => w?.close());

const keyIdOf = (key: string) => key.split("_")[1];
const leasesLeft = async () => {
	const c = new Client({ connectionString: w.db.url });
	await c.connect();
	try {
		return Number((await c.query(`SELECT count(*) AS n FROM chat_hold_leases`)).rows[0].n);
	} finally {
		await c.end();
	}
};

test("100 concurrent streams on a key whose budget covers 10 worst cases: exactly 10 run, the rest get 402, spend settles exactly", async () => {
	const maxTokens = 2000;
	const messages = [{ role: "user" as const, content: "hi" }];
	const prompt = estimateChatTokens({ messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] });
	// claude-haiku: 800 input / 4000 output credits per 1M tokens.
	const worst = Math.ceil((prompt * 800 + maxTokens * 4000) / 1e6);
	const u = await w.user(100_000, ["ai:use"], { monthlyBudgetCredits: 10 * worst }, "team");
	const before = await w.balance(u.token);
	const upstreamBefore = w.anthropic.requests.length;
	// Every admitted answer is held at the upstream until all 100 requests are decided, so no
	// settlement can free budget for a latecomer: exactly ten worst cases fit, whatever the order.
	let letGo!: () => void;
	const until = new Promise<void>(r => (letGo = r));
	w.anthropic.setDefault({ kind: "ok", until });
	const client = new Anthropic({ apiKey: u.key, baseURL: w.node.baseUrl, maxRetries: 0 });
	let decided = 0;
	const outcomes = Array.from({ length: 100 }, () => {
		const s = client.messages.stream({ model: "claude-haiku", max_tokens: maxTokens, messages });
		// Admitted: the gateway answers 200 once the upstream starts; refused: the 402 arrives at once.
		return s
			.finalMessage()
			.then(m => ({ ok: true as const, m }))
			.catch(e => ({ ok: false as const, e }))
			.finally(() => decided++);
	});
	await eventually(() => decided + (w.anthropic.requests.length - upstreamBefore) >= 100, 60_000, 20);
	letGo();
	const done = await Promise.all(outcomes);
	w.anthropic.setDefault({ kind: "ok" });
	const ok = done.filter(o => o.ok);
	const refused = done.filter(o => !o.ok);
	expect(ok.length).toBe(10);
	expect(refused.length).toBe(90);
	for (const r of refused) {
		expect((r as { e: unknown }).e).toBeInstanceOf(Anthropic.PaymentRequiredError);
		expect(
			((r as { e: InstanceType<typeof Anthropic.APIError> }).e.error as { error: { type: string } }).error.type
		).toBe("billing_error");
	}
	expect(w.anthropic.requests.length - upstreamBefore).toBe(10);
	const charged = ok.reduce((n, o) => {
		const usage = (o as { m: Anthropic.Message }).m.usage;
		return n + Math.ceil((usage.input_tokens * 800 + usage.output_tokens * 4000) / 1e6);
	}, 0);
	const after = await w.settled(u.token);
	// Charged once each, at what the answers used: nothing lost, nothing twice.
	expect(before.available - after.available).toBe(charged);
	const spendOf = () =>
		w.node.broker.call<{ spent: number; reserved: number }, { keyId: string }>("users.keySpend", {
			keyId: keyIdOf(u.key)
		});
	// The key's budget settles just after the ledger (both after the answer).
	await eventually(async () => (await spendOf()).reserved === 0, 15_000, 20);
	expect(await spendOf()).toEqual({ spent: charged, reserved: 0 });
	// Every request's hold lease is gone with its holds (run or refused), none left for the sweeper.
	await eventually(async () => (await leasesLeft()) === 0, 15_000, 20);
});

test("100 concurrent streams from a user whose credits cover 10 worst cases: exactly 10 run, the rest get 402", async () => {
	const maxTokens = 2000;
	const messages = [{ role: "user" as const, content: "hi" }];
	const prompt = estimateChatTokens({ messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] });
	const worst = Math.ceil((prompt * 800 + maxTokens * 4000) / 1e6);
	const u = await w.user(10 * worst, ["ai:use"], {}, "team");
	const upstreamBefore = w.anthropic.requests.length;
	let letGo!: () => void;
	const until = new Promise<void>(r => (letGo = r));
	w.anthropic.setDefault({ kind: "ok", until });
	const client = new Anthropic({ apiKey: u.key, baseURL: w.node.baseUrl, maxRetries: 0 });
	let decided = 0;
	const outcomes = Array.from({ length: 100 }, () =>
		client.messages
			.stream({ model: "claude-haiku", max_tokens: maxTokens, messages })
			.finalMessage()
			.then(m => ({ ok: true as const, m }))
			.catch(e => ({ ok: false as const, e }))
			.finally(() => decided++)
	);
	await eventually(() => decided + (w.anthropic.requests.length - upstreamBefore) >= 100, 60_000, 20);
	letGo();
	const done = await Promise.all(outcomes);
	w.anthropic.setDefault({ kind: "ok" });
	const ok = done.filter(o => o.ok);
	expect(ok.length).toBe(10);
	for (const r of done.filter(o => !o.ok))
		expect((r as { e: unknown }).e).toBeInstanceOf(Anthropic.PaymentRequiredError);
	const charged = ok.reduce((n, o) => {
		const usage = (o as { m: Anthropic.Message }).m.usage;
		return n + Math.ceil((usage.input_tokens * 800 + usage.output_tokens * 4000) / 1e6);
	}, 0);
	const after = await w.settled(u.token);
	expect(10 * worst - after.available).toBe(charged);
	await eventually(async () => (await leasesLeft()) === 0, 15_000, 20);
});

test("a key's monthly spend cap (payments, at the hold) covering 3 worst cases: 3 of 20 concurrent streams run, 17 get 402 key_cap_reached", async () => {
	const maxTokens = 200;
	const messages = [{ role: "user" as const, content: "hi" }];
	const prompt = estimateChatTokens({ messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }] });
	// claude-haiku: 800 input / 4000 output credits per 1M tokens: 1 credit, which the team tier's fee
	// discount (rounded up) leaves at 1, so the hold is the worst case. Team: its rate limits stay out of the way.
	const worst = Math.ceil((prompt * 800 + maxTokens * 4000) / 1e6);
	expect(worst).toBe(1);
	const u = await w.user(100_000, ["ai:use"], { monthlyCapCredits: 3 * worst }, "team");
	const upstreamBefore = w.anthropic.requests.length;
	let letGo!: () => void;
	const until = new Promise<void>(r => (letGo = r));
	w.anthropic.setDefault({ kind: "ok", until });
	const client = new Anthropic({ apiKey: u.key, baseURL: w.node.baseUrl, maxRetries: 0 });
	let decided = 0;
	const outcomes = Array.from({ length: 20 }, () =>
		client.messages
			.stream({ model: "claude-haiku", max_tokens: maxTokens, messages })
			.finalMessage()
			.then(m => ({ ok: true as const, m }))
			.catch(e => ({ ok: false as const, e }))
			.finally(() => decided++)
	);
	await eventually(() => decided + (w.anthropic.requests.length - upstreamBefore) >= 20, 60_000, 20);
	letGo();
	const done = await Promise.all(outcomes);
	w.anthropic.setDefault({ kind: "ok" });
	expect(done.filter(o => o.ok).length).toBe(3);
	for (const r of done.filter(o => !o.ok))
		expect((r as { e: unknown }).e).toBeInstanceOf(Anthropic.PaymentRequiredError);
	expect(w.anthropic.requests.length - upstreamBefore).toBe(3);
	await w.settled(u.token);
	// Set to 0 (PATCH), the key spends nothing more.
	const patched = await w.api("PATCH", `/users/me/api-keys/${keyIdOf(u.key)}`, u.token, { monthlyCapCredits: 0 });
	expect(patched.status).toBe(200);
	const oa = new OpenAI({ apiKey: u.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 0 });
	const err = await oa.chat.completions.create({ model: "claude-haiku", max_tokens: maxTokens, messages }).then(
		() => null,
		(e: InstanceType<typeof OpenAI.APIError>) => e
	);
	// OpenAI's "not enough quota" is 429 insufficient_quota (src/compat/errors.ts); the code names the cap.
	expect({ status: err?.status, type: err?.type, code: err?.code }).toEqual({
		status: 429,
		type: "insufficient_quota",
		code: "key_cap_reached"
	});
	// What the key spent this month is the three charges (the holds' tails were given back).
	const counted = new Client({ connectionString: w.db.url });
	await counted.connect();
	try {
		const { rows } = await counted.query(
			`SELECT s.spent, (SELECT sum(charged) FROM credit_holds h WHERE h.counters @> ARRAY[s.counter]) AS charged
			 FROM spend_counters s WHERE s.counter = $1`,
			[`key:${keyIdOf(u.key)}`]
		);
		expect(rows).toHaveLength(1);
		expect(Number(rows[0].spent)).toBe(Number(rows[0].charged));
	} finally {
		await counted.end();
	}
});

test("model allow-list: other models are refused with 403 and not listed", async () => {
	const u = await w.user(10_000, ["ai:use"], { models: ["gpt-4o-mini"] });
	const oa = new OpenAI({ apiKey: u.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 0 });
	const r = await oa.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
	expect(r.choices[0].message.content).toBeTruthy();
	const e = await oa.chat.completions
		.create({ model: "claude-haiku", messages: [{ role: "user", content: "hi" }] })
		.catch(x => x);
	expect(e).toBeInstanceOf(OpenAI.PermissionDeniedError);
	expect(e.code).toBe("model_not_allowed");
	expect((await oa.models.list()).data.map(m => m.id)).toEqual(["gpt-4o-mini"]);
	await w.settled(u.token);
});

test("per-key requests per minute and tokens per minute: 429 with retry-after", async () => {
	const u = await w.user(10_000, ["ai:use"], { rpm: 2 });
	const oa = new OpenAI({ apiKey: u.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 0 });
	const ask = () =>
		oa.chat.completions.create({
			model: "gpt-4o-mini",
			max_tokens: 20,
			messages: [{ role: "user", content: "hi" }]
		});
	await ask();
	await ask();
	const e = await ask().catch(x => x);
	expect(e).toBeInstanceOf(OpenAI.RateLimitError);
	expect(Number(e.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
	expect(Number(e.headers.get("retry-after"))).toBeLessThanOrEqual(60);

	const t = await w.user(10_000, ["ai:use"], { tpm: 100 });
	const ot = new OpenAI({ apiKey: t.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries: 0 });
	await ot.chat.completions.create({
		model: "gpt-4o-mini",
		max_tokens: 60,
		messages: [{ role: "user", content: "hi" }]
	});
	const e2 = await ot.chat.completions
		.create({ model: "gpt-4o-mini", max_tokens: 60, messages: [{ role: "user", content: "hi" }] })
		.catch(x => x);
	expect(e2).toBeInstanceOf(OpenAI.RateLimitError);
	expect(e2.message).toMatch(/tokens per minute/);
	await w.settled(u.token);
	await w.settled(t.token);
});
