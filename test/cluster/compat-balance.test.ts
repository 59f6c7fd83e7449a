/**
 * Admission across ai nodes (docs/compat.md, "Admission across nodes"): a gateway sends each /v1
 * request to the ai node with the most free worker slots, by the load the ai nodes announce. Two ai
 * processes, one with 1 slot and one with 3, and 4 long streams at once from one gateway: every
 * stream starts at once (1 + 3). Moleculer's round-robin would put 2 on the 1-slot node, where one
 * waits for the other to end. Then the announcements of a node that was killed stop counting.
 */
import type { ChildProcess } from "node:child_process";
import { ServiceBroker } from "moleculer";
import { createTestDatabase, freePort, isolatedEnv, NATS_URL, TestDatabase } from "../support/env";
import { startFakeOpenAI } from "../support/fake-openai";
import type { FakeServer } from "../support/fake-llm-server";
import { startForgeNode, stopForgeNodes } from "../support/node-process";
import { signUp } from "../support/sign-up";

jest.setTimeout(120_000);

const STREAM_MS = 4_000;
let db: TestDatabase;
let openai: FakeServer;
let operator: ServiceBroker;
const procs = new Map<string, ChildProcess>();
let gatewayPort = 0;
let apiKey = "";

beforeAll(async () => {
	db = await createTestDatabase();
	openai = await startFakeOpenAI();
	// Eight chunks half a second apart: a stream holds its slot for ~4 s; the first chunk comes at once.
	openai.setDefault({
		kind: "ok",
		chunks: Array.from({ length: 8 }, (_, i) => `w${i} `),
		chunkDelayMs: STREAM_MS / 8
	});
	gatewayPort = await freePort();
	const env = isolatedEnv(db, {
		TRANSPORTER: NATS_URL,
		LOG_LEVEL: "warn",
		AI_DEPLOYMENTS: JSON.stringify([
			{ id: "oa-1", model: "gpt-4o-mini", provider: "openai", baseUrl: openai.url, apiKey: "sk-1" }
		]),
		AI_DEV_PROVIDER: "false",
		AI_COMPAT_MAX_WAIT_MS: "20000",
		RATE_LIMIT_ANON_PER_MINUTE: "10000"
	});
	const start = async (name: string, extra: Record<string, string>) =>
		procs.set(name, await startForgeNode({ ...env, ...extra, NODE_ID: name }));
	// The first applies the migrations.
	await start("core-1", { SERVICES: "users,payments", PORT: "0" });
	await Promise.all([
		start("ai-small", { SERVICES: "ai", PORT: "0", AI_CONCURRENCY: "1" }),
		start("ai-big", { SERVICES: "ai", PORT: "0", AI_CONCURRENCY: "3" }),
		start("gateway-1", { SERVICES: "api", PORT: String(gatewayPort) })
	]);
	operator = new ServiceBroker({
		namespace: env.NAMESPACE,
		nodeID: "test-operator",
		transporter: { type: "NATS", options: { url: NATS_URL } },
		logger: false
	});
	await operator.start();
	await operator.waitForServices(["users", "payments", "ai", "api"], 30_000);
	const reg = await signUp(`http://127.0.0.1:${gatewayPort}`, "balance@example.com", "a long enough passphrase");
	await operator.call("payments.grant", {
		userId: reg.userId,
		credits: 100_000,
		operator: "cluster-test",
		reason: "test",
		source: "paid"
	});
	const k = await fetch(`http://127.0.0.1:${gatewayPort}/api/v1/users/me/api-keys`, {
		method: "POST",
		headers: { authorization: `Bearer ${reg.accessToken}`, "content-type": "application/json" },
		body: JSON.stringify({ name: "balance", scopes: ["ai:use"] })
	});
	expect(k.status).toBe(201);
	apiKey = ((await k.json()) as { key: string }).key;
	// Both ai nodes announced their load at least once (every second).
	await new Promise(r => setTimeout(r, 2_500));
});

afterAll(async () => {
	await operator?.stop();
	await stopForgeNodes(procs.values());
	await openai?.close();
	await db?.drop();
});

/** One streamed request: when its first content chunk came (ms after `t0`), and whether it ended well. */
async function stream(t0: number): Promise<{ firstMs: number; done: boolean; status: number }> {
	const res = await fetch(`http://127.0.0.1:${gatewayPort}/v1/chat/completions`, {
		method: "POST",
		headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
		body: JSON.stringify({
			model: "gpt-4o-mini",
			stream: true,
			max_tokens: 50,
			messages: [{ role: "user", content: "talk slowly" }]
		})
	});
	if (res.status !== 200) return { firstMs: -1, done: false, status: res.status };
	const reader = res.body!.getReader();
	let text = "";
	let firstMs = -1;
	for (;;) {
		const r = await reader.read();
		if (r.done) break;
		text += new TextDecoder().decode(r.value);
		if (firstMs < 0 && text.includes('"content":"w0')) firstMs = Date.now() - t0;
	}
	return { firstMs, done: text.includes("[DONE]"), status: 200 };
}

test("four long streams at once on a 1-slot and a 3-slot node all start at once", async () => {
	const t0 = Date.now();
	const all = await Promise.all([0, 1, 2, 3].map(() => stream(t0)));
	expect(all.map(s => s.status)).toEqual([200, 200, 200, 200]);
	expect(all.every(s => s.done)).toBe(true);
	// None waited for another stream's slot (that would be ≥ STREAM_MS).
	expect(Math.max(...all.map(s => s.firstMs))).toBeLessThan(STREAM_MS / 2);
});

test("a killed node's load stops counting: requests go to the node that is left", async () => {
	procs.get("ai-big")!.kill("SIGKILL");
	procs.delete("ai-big");
	// Once the gateway no longer sees it, every request goes to ai-small: one at a time, all served.
	await new Promise(r => setTimeout(r, 6_000));
	const t0 = Date.now();
	const all = await Promise.all([0, 1].map(() => stream(t0)));
	expect(all.map(s => s.status)).toEqual([200, 200]);
	expect(all.every(s => s.done)).toBe(true);
	// One slot: the second waited for the first.
	const firsts = all.map(s => s.firstMs).sort((a, b) => a - b);
	expect(firsts[1]).toBeGreaterThanOrEqual(STREAM_MS * 0.75);
});
