/**
 * Organisation API keys on /v1 (docs/compat.md "Organisation keys"): the official `openai` SDK with
 * an organisation key streams and not, every request held on and charged to the organisation's
 * wallet (`org:<uuid>`) at the catalogue price of its usage, never the member's own; an empty
 * organisation wallet is the protocol's insufficient-quota error; the member's monthly cap in the
 * organisation bounds the key's requests (402-kind, before any upstream call); a removed member's
 * key stops at once.
 */
import OpenAI from "openai";
import type { ForgeNode } from "../../../app/node";
import { orgPayerId } from "../../../src/payments/payer";
import { createTestDatabase, eventually, startTestNode, type TestDatabase } from "../../support/env";
import { startFakeOpenAI } from "../../support/fake-openai";
import type { FakeServer } from "../../support/fake-llm-server";
import { orgPeople, type Person } from "../../support/org-people";
import { httpClient } from "../users/http";

jest.setTimeout(120_000);

const PASSWORD = "correct horse battery staple";
let db: TestDatabase;
let upstream: FakeServer;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const { person, newOrg, join } = orgPeople(call, { prefix: "ck", password: PASSWORD });

beforeAll(async () => {
	db = await createTestDatabase();
	upstream = await startFakeOpenAI();
	node = await startTestNode({
		db,
		services: ["api", "users", "orgs", "payments", "ai"],
		env: {
			AI_DEPLOYMENTS: JSON.stringify([
				{ id: "oa-1", model: "gpt-4o-mini", provider: "openai", baseUrl: upstream.url, apiKey: "sk-1" }
			]),
			AI_DEV_PROVIDER: "false",
			AUTH_SESSION_CHECK: "true",
			RATE_LIMIT_PER_MINUTE: "100000",
			RATE_LIMIT_ANON_PER_MINUTE: "10000"
		}
	});
});
afterAll(async () => {
	await node?.stop();
	await upstream?.close();
	await db?.drop();
});

const grant = (payer: string, credits: number) =>
	node.broker.call("payments.grant", { userId: payer, credits, operator: "test", reason: "test", source: "paid" });

async function orgKey(p: Person, orgId: string): Promise<string> {
	const r = await call("POST", `/api/v1/orgs/${orgId}/keys`, {
		token: p.token,
		body: { name: "ide", scopes: ["ai:use"] }
	});
	expect(r.status).toBe(201);
	return r.json.key as string;
}

const balanceOf = async (p: Person, orgId?: string) =>
	(await call("GET", `/api/v1/billing/balance${orgId ? `?orgId=${orgId}` : ""}`, { token: p.token })).json as {
		available: number;
		held: number;
	};

/** Waits until nothing is held on the wallet and returns its balance. */
async function settled(p: Person, orgId?: string) {
	let b = await balanceOf(p, orgId);
	await eventually(async () => (b = await balanceOf(p, orgId)).held === 0, 15_000, 20);
	return b;
}

// gpt-4o-mini: 150 in / 600 out credits per 1M tokens, rounded up once per request.
const costOf = (u: { prompt_tokens: number; completion_tokens: number }) =>
	Math.ceil((u.prompt_tokens * 150 + u.completion_tokens * 600) / 1e6);

test("an organisation key runs on /v1, charged to the organisation's wallet, never the member's", async () => {
	const alice = await person();
	const org = await newOrg(alice, "Compat");
	await grant(orgPayerId(org), 100_000);
	await grant(alice.id, 1_000);
	const client = new OpenAI({ apiKey: await orgKey(alice, org), baseURL: `${node.baseUrl}/v1`, maxRetries: 0 });

	const r = await client.chat.completions.create({
		model: "gpt-4o-mini",
		max_tokens: 50,
		messages: [{ role: "user", content: "hi" }]
	});
	expect(r.choices[0].message.content).toBeTruthy();
	const s = await client.chat.completions.create({
		model: "gpt-4o-mini",
		max_tokens: 50,
		stream: true,
		stream_options: { include_usage: true },
		messages: [{ role: "user", content: "hi" }]
	});
	let text = "";
	let usage: { prompt_tokens: number; completion_tokens: number } | null = null;
	for await (const ch of s) {
		text += ch.choices[0]?.delta?.content ?? "";
		if (ch.usage) usage = ch.usage;
	}
	expect(text).toBeTruthy();
	expect(usage).not.toBeNull();

	const orgAfter = await settled(alice, org);
	expect(orgAfter.available).toBe(100_000 - costOf(r.usage!) - costOf(usage!));
	expect(costOf(r.usage!)).toBeGreaterThan(0);
	expect((await settled(alice)).available).toBe(1_000);

	const models = await client.models.list();
	expect(models.data.map(m => m.id)).toContain("gpt-4o-mini");
});

test("an empty organisation wallet is insufficient_quota; the member's own credits are not used", async () => {
	const bob = await person();
	const org = await newOrg(bob, "Broke");
	await grant(bob.id, 100_000);
	const client = new OpenAI({ apiKey: await orgKey(bob, org), baseURL: `${node.baseUrl}/v1`, maxRetries: 0 });
	const before = upstream.requests.length;
	const err = await client.chat.completions
		.create({ model: "gpt-4o-mini", max_tokens: 50, messages: [{ role: "user", content: "hi" }] })
		.catch((e: unknown) => e);
	expect(err).toBeInstanceOf(OpenAI.RateLimitError);
	expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe("insufficient_quota");
	expect(upstream.requests.length).toBe(before);
	expect((await settled(bob)).available).toBe(100_000);
});

test("the member's monthly cap in the organisation bounds their key; a removed member's key stops at once", async () => {
	const owner = await person();
	const adam = await person();
	const org = await newOrg(owner, "Capped");
	await join(org, owner, adam, "admin");
	await grant(orgPayerId(org), 100_000);
	const client = new OpenAI({ apiKey: await orgKey(adam, org), baseURL: `${node.baseUrl}/v1`, maxRetries: 0 });
	const ask = () =>
		client.chat.completions
			.create({ model: "gpt-4o-mini", max_tokens: 20, messages: [{ role: "user", content: "hi" }] })
			.catch((e: unknown) => e as InstanceType<typeof OpenAI.APIError>);
	expect(await ask()).toHaveProperty("choices");
	await settled(owner, org);

	const capped = await call("PATCH", `/api/v1/orgs/${org}/members/${adam.id}`, {
		token: owner.token,
		body: { monthlyCapCredits: 0 }
	});
	expect(capped.status).toBe(200);
	const before = upstream.requests.length;
	const refused = await ask();
	expect(refused).toBeInstanceOf(OpenAI.RateLimitError);
	expect((refused as InstanceType<typeof OpenAI.APIError>).code).toBe("member_cap_reached");
	expect(upstream.requests.length).toBe(before);

	const lifted = await call("PATCH", `/api/v1/orgs/${org}/members/${adam.id}`, {
		token: owner.token,
		body: { monthlyCapCredits: null }
	});
	expect(lifted.status).toBe(200);
	expect(await ask()).toHaveProperty("choices");
	expect(
		(await call("DELETE", `/api/v1/orgs/${org}/members/${adam.id}`, { token: owner.token })).status
	).toBeLessThan(300);
	const gone = await ask();
	expect(gone).toBeInstanceOf(OpenAI.AuthenticationError);
	expect(upstream.requests.length).toBe(before + 1);
	expect((await settled(owner, org)).held).toBe(0);
});
