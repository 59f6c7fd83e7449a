/**
 * One platform node (gateway, users, payments, ai) with the fake OpenAI and Anthropic upstreams
 * behind it, a registered user with credits and API keys: what the compatible-endpoint suites share.
 */
import { Client } from "pg";
import type { ForgeNode } from "../../../app/node";
import { createTestDatabase, eventually, startTestNode, TestDatabase } from "../../support/env";
import { startFakeAnthropic } from "../../support/fake-anthropic";
import type { FakeServer } from "../../support/fake-llm-server";
import { startFakeOpenAI } from "../../support/fake-openai";
import { signUp } from "../../support/sign-up";

export interface CompatWorld {
	db: TestDatabase;
	node: ForgeNode & { baseUrl: string };
	openai: FakeServer;
	anthropic: FakeServer;
	api(method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; json: any }>;
	/** A registered user with `credits`, a session token and an API key of the given scopes. */
	user(
		credits: number,
		scopes?: string[],
		limits?: Record<string, unknown>,
		tier?: "free" | "pro" | "team" | "enterprise"
	): Promise<{ id: string; token: string; key: string }>;
	newKey(token: string, scopes: string[], limits?: Record<string, unknown>): Promise<string>;
	balance(token: string): Promise<{ available: number; held: number }>;
	/** Waits until nothing is held (every request settled) and returns the balance. */
	settled(token: string): Promise<{ available: number; held: number }>;
	close(): Promise<void>;
}

let seq = 0;

export async function startCompatWorld(env: Record<string, string> = {}): Promise<CompatWorld> {
	const db = await createTestDatabase();
	const openai = await startFakeOpenAI();
	const anthropic = await startFakeAnthropic();
	const node = await startTestNode({
		db,
		services: ["api", "users", "payments", "ai"],
		env: {
			AI_DEPLOYMENTS: JSON.stringify([
				{ id: "oa-1", model: "gpt-4o-mini", provider: "openai", baseUrl: openai.url, apiKey: "sk-1" },
				{ id: "oa-2", model: "gpt-4o-mini", provider: "openai", baseUrl: openai.url, apiKey: "sk-2" },
				{ id: "oa-o3", model: "o3-mini", provider: "openai", baseUrl: openai.url, apiKey: "sk-1" },
				{ id: "an-1", model: "claude-haiku", provider: "anthropic", baseUrl: anthropic.url, apiKey: "ak-1" }
			]),
			AI_DEV_PROVIDER: "false",
			AUTH_SESSION_CHECK: "true",
			RATE_LIMIT_ANON_PER_MINUTE: "10000",
			RATE_LIMIT_PER_MINUTE: "100000",
			AI_FIRST_TOKEN_TIMEOUT_MS: "5000",
			AI_STALL_TIMEOUT_MS: "3000",
			...env
		}
	});
	const api: CompatWorld["api"] = async (method, path, token, body) => {
		const res = await fetch(node.baseUrl + "/api/v1" + path, {
			method,
			headers: {
				...(token ? { authorization: `Bearer ${token}` } : {}),
				...(body ? { "content-type": "application/json" } : {})
			},
			body: body ? JSON.stringify(body) : undefined
		});
		const text = await res.text();
		return { status: res.status, json: text ? JSON.parse(text) : undefined };
	};
	const newKey: CompatWorld["newKey"] = async (token, scopes, limits = {}) => {
		const k = await api("POST", "/users/me/api-keys", token, { name: `k${++seq}`, scopes, ...limits });
		if (k.status !== 201) throw new Error(`api key: ${k.status} ${JSON.stringify(k.json)}`);
		return k.json.key as string;
	};
	const balance: CompatWorld["balance"] = async token => (await api("GET", "/billing/balance", token)).json;
	return {
		db,
		node,
		openai,
		anthropic,
		api,
		newKey,
		balance,
		async user(credits, scopes = ["ai:use"], limits, tier) {
			const reg = await signUp(node, `u${Date.now()}${++seq}@example.com`, "correct horse battery staple");
			const token = reg.accessToken;
			const id = reg.userId;
			if (tier) {
				// The plan fact payments would report; written before anything reads (and caches) the tier.
				const c = new Client({ connectionString: db.url });
				await c.connect();
				await c.query(
					`INSERT INTO user_tier_facts (user_id, plan_tier, plan_as_of) VALUES ($1, $2, now())
					 ON CONFLICT (user_id) DO UPDATE SET plan_tier = $2, plan_as_of = now()`,
					[id, tier]
				);
				await c.end();
			}
			if (credits > 0)
				await node.broker.call("payments.grant", {
					userId: id,
					credits,
					operator: "test",
					reason: "test",
					source: "paid"
				});
			return { id, token, key: await newKey(token, scopes, limits) };
		},
		async settled(token) {
			let b = await balance(token);
			await eventually(async () => (b = await balance(token)).held === 0, 15_000, 20);
			return b;
		},
		async close() {
			await node?.stop();
			await openai?.close();
			await anthropic?.close();
			await db?.drop();
		}
	};
}
