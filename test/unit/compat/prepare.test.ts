/** Preparing a compatible request: model resolution, rights, capabilities, worst case; the charge. */
import type { AiConfig } from "../../../src/ai/config";
import { findModel } from "../../../src/ai/catalog";
import { AdmissionRefused, SlotGate } from "../../../src/compat/admission";
import { CompatError } from "../../../src/compat/errors";
import { readOpenAIRequest } from "../../../src/compat/openai-in";
import { chargeCredits, chargeMicroCredits, estimateChatTokens, prepareChat } from "../../../src/compat/prepare";

const served = (...models: string[]) =>
	({ devProvider: false, deployments: models.map(m => ({ model: m })) }) as unknown as Pick<
		AiConfig,
		"deployments" | "devProvider"
	>;
const req = (extra: Record<string, unknown> = {}) =>
	readOpenAIRequest({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }], ...extra });
const kindOf = (f: () => unknown) => {
	try {
		f();
	} catch (e) {
		return [(e as CompatError).kind, (e as CompatError).code];
	}
	return null;
};

test("worst case: prompt estimate × input + output cap × output, rounded up once", () => {
	const p = prepareChat(served("gpt-4o-mini"), req({ max_tokens: 1000 }), "free", null);
	expect(p.promptTokens).toBe(estimateChatTokens(req()));
	expect(p.maxOutputTokens).toBe(1000);
	expect(p.maxCostCredits).toBe(Math.ceil((p.promptTokens * 150 + 1000 * 600) / 1e6));
	// Cache breakpoints: the input may be billed at the (dearer) cache-write price.
	const haiku = readOpenAIRequest({
		model: "claude-haiku",
		max_tokens: 10,
		messages: [{ role: "user", content: "x".repeat(30_000) }]
	});
	haiku.messages[0].content[0] = { ...haiku.messages[0].content[0], cacheControl: { type: "ephemeral" } } as never;
	const h = prepareChat(served("claude-haiku"), haiku, "free", null);
	expect(h.maxCostCredits).toBe(Math.ceil((h.promptTokens * 1000 + 10 * 4000) / 1e6));
});

test("model by upstream name; refusals: unknown, not served, tier, key allow-list, images, reasoning options", () => {
	expect(prepareChat(served("claude-haiku"), req({ model: "claude-3-5-haiku-latest" }), "free", null).model.id).toBe(
		"claude-haiku"
	);
	expect(kindOf(() => prepareChat(served("gpt-4o-mini"), req({ model: "gpt-5" }), "free", null))).toEqual([
		"not_found",
		"model_not_found"
	]);
	expect(kindOf(() => prepareChat(served(), req(), "free", null))).toEqual(["not_found", "model_not_found"]);
	expect(kindOf(() => prepareChat(served("gpt-4o"), req({ model: "gpt-4o" }), "free", null))).toEqual([
		"permission",
		"model_not_allowed"
	]);
	const key = { models: ["claude-haiku"], monthlyBudgetCredits: null, rpm: null, tpm: null };
	expect(kindOf(() => prepareChat(served("gpt-4o-mini"), req(), "free", key))).toEqual([
		"permission",
		"model_not_allowed"
	]);
	const image = {
		messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] }]
	};
	expect(kindOf(() => prepareChat(served("o3-mini"), req({ model: "o3-mini", ...image }), "team", null))).toEqual([
		"invalid_request",
		"image_not_supported"
	]);
	expect(prepareChat(served("gpt-4o-mini"), req(image), "free", null).promptTokens).toBeGreaterThanOrEqual(1600);
	expect(
		kindOf(() => prepareChat(served("o3-mini"), req({ model: "o3-mini", temperature: 0.5 }), "team", null))
	).toEqual(["invalid_request", "unsupported_parameter"]);
	expect(kindOf(() => prepareChat(served("gpt-4o-mini"), req({ reasoning_effort: "low" }), "free", null))).toEqual([
		"invalid_request",
		"unsupported_parameter"
	]);
	expect(
		kindOf(() =>
			prepareChat(served("claude-haiku"), req({ model: "claude-haiku", temperature: 1.5 }), "free", null)
		)
	).toEqual(["invalid_request", "unsupported_parameter"]);
	expect(kindOf(() => prepareChat(served("gpt-4o-mini"), req({ max_tokens: 20_000 }), "free", null))).toEqual([
		"invalid_request",
		"invalid_value"
	]);
});

test("charge: cache reads at the cached price, cache writes at the write price, capped at the hold", () => {
	const haiku = findModel("claude-haiku")!;
	// generate() counted 1000 input at 800 and 100 output at 4000.
	const micro = 1000 * 800 + 100 * 4000;
	const last = {
		promptTokens: 1000,
		completionTokens: 100,
		cachedTokens: 600,
		cacheWriteTokens: 100,
		reasoningTokens: 0
	};
	expect(chargeMicroCredits(haiku, micro, last)).toBe(300 * 800 + 600 * 80 + 100 * 1000 + 100 * 4000);
	expect(chargeCredits(1_000_001, 5)).toBe(2);
	expect(chargeCredits(9_000_000, 5)).toBe(5);
});

describe("SlotGate", () => {
	test("free slots at once; then higher tiers first; a full line refuses; waits time out", async () => {
		let other = 0;
		const gate = new SlotGate({ slots: () => 2, otherBusy: () => other, maxWaitMs: 10_000 });
		const a = await gate.acquire("free");
		const b = await gate.acquire("free");
		const order: string[] = [];
		const free1 = gate.acquire("free").then(r => (order.push("free"), r));
		const ent = gate.acquire("enterprise").then(r => (order.push("enterprise"), r));
		// free's line holds 1 × slots = 2 waiting at or above its rank: a third free waiter is refused.
		await expect(gate.acquire("free")).rejects.toBeInstanceOf(AdmissionRefused);
		a();
		(await ent)();
		b();
		(await free1)();
		expect(order).toEqual(["enterprise", "free"]);
		expect(gate.inUse).toBe(0);
		// Slots held by tasks count too; kick() hands a slot over when they free it.
		other = 2;
		const waiting = gate.acquire("pro");
		other = 0;
		gate.kick();
		(await waiting)();
		const quick = new SlotGate({ slots: () => 1, otherBusy: () => 1, maxWaitMs: 20 });
		await expect(quick.acquire("team")).rejects.toMatchObject({ retryAfterS: 1 });
	});
});
