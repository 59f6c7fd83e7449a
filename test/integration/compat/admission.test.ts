/**
 * Admission to the ai worker's slots (one slot here): a request that finds it busy waits its
 * turn; one that finds the line full gets 429 with retry-after, and the SDK's own retry (which
 * honours it) then succeeds.
 */
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { eventually } from "../../support/env";
import { CompatWorld, startCompatWorld } from "./support";

jest.setTimeout(60_000);

let w: CompatWorld;

beforeAll(async () => {
	w = await startCompatWorld({ AI_CONCURRENCY: "1", AI_COMPAT_MAX_WAIT_MS: "10000" });
});
afterAll(() => w?.close());

test.each(["openai", "anthropic"] as const)(
	"%s SDK: the second waits its turn, the third gets 429 and its retry succeeds",
	async sdk => {
		// Free tier: a line of one (QUEUE_FACTOR × slots).
		const u = await w.user(10_000);
		const fake = sdk === "openai" ? w.openai : w.anthropic;
		// The first holds the slot long enough for the others to line up behind it on a loaded machine.
		fake.enqueue({ kind: "ok", firstChunkDelayMs: 2500 });
		fake.setDefault({ kind: "ok", firstChunkDelayMs: 300 });
		const n0 = fake.requests.length;
		const statuses: number[] = [];
		// Records what the gateway answered to each of the SDK's attempts.
		const recording: typeof fetch = async (input, init) => {
			const res = await fetch(input, init);
			statuses.push(res.status);
			return res;
		};
		const ask = (maxRetries: number, f: typeof fetch = fetch) =>
			sdk === "openai"
				? new OpenAI({ apiKey: u.key, baseURL: `${w.node.baseUrl}/v1`, maxRetries, fetch: f }).chat.completions
						.create({ model: "gpt-4o-mini", max_tokens: 20, messages: [{ role: "user", content: "hi" }] })
						.then(r => r.choices[0].message.content)
				: new Anthropic({ apiKey: u.key, baseURL: w.node.baseUrl, maxRetries, fetch: f }).messages
						.create({ model: "claude-haiku", max_tokens: 20, messages: [{ role: "user", content: "hi" }] })
						.then(m => (m.content[0] as { text: string }).text);
		const first = ask(0);
		await fake.waitForRequests(n0 + 1);
		const second = ask(0);
		// The second is waiting for the slot (no upstream call yet) when the third arrives.
		const gate = (w.node.broker.getLocalService("ai") as unknown as { gate: { queued: number } }).gate;
		await eventually(() => gate.queued === 1);
		expect(fake.requests.length).toBe(n0 + 1);
		const refused = await ask(0).catch(e => e);
		expect(refused).toBeInstanceOf(sdk === "openai" ? OpenAI.RateLimitError : Anthropic.RateLimitError);
		expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
		// The same again, with the SDK's own retries: refused while the line is full, then admitted.
		const started = Date.now();
		const third = await ask(3, recording);
		expect(third).toBeTruthy();
		expect(statuses[0]).toBe(429);
		expect(statuses[statuses.length - 1]).toBe(200);
		// It waited what retry-after said (2 s for a full line) before retrying.
		expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
		expect(await first).toBeTruthy();
		expect(await second).toBeTruthy();
		fake.setDefault({ kind: "ok" });
		await w.settled(u.token);
	}
);
