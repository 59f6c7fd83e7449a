/**
 * Before a compatible request runs: which catalogue model it names, whether the caller (tier and
 * key) may use it, whether the model can do what the request asks, how many tokens it may use and
 * what it may cost at worst (the hold). And after it ran: what it costs.
 *
 * - The model is named by catalogue id or by its upstream name (`claude-3-5-haiku-latest`), so
 *   an SDK's usual model names work.
 * - Token estimate: the platform's (`estimateTokens`, deliberately high) over every text part, the
 *   JSON of tool definitions and tool calls, plus IMAGE_TOKENS per image.
 * - Output cap: the client's max_tokens (refused above the model's maximum), else
 *   min(model maximum, DEFAULT_MAX_OUTPUT_TOKENS).
 * - Worst case: prompt × the dearest input price it could be billed at (the cache-write price when
 *   the request marks cache breakpoints) + output cap × output price, rounded up once.
 * - Charge: uncached input at the input price, cache reads at the cached price, cache writes at
 *   the write price, every output token (reasoning ones included) at the output price; capped at
 *   the hold.
 */
import { TIERS, TierName, allowsModelGroup } from "../domain/tiers";
import type { AiConfig } from "../ai/config";
import { CATALOG, CatalogModel } from "../ai/catalog";
import { estimateTokens } from "../ai/prompt";
import { CompatError, invalid } from "./errors";
import type { ChatRequest, ChatUsage } from "./types";

export const IMAGE_TOKENS = 1_600;
export const DEFAULT_MAX_OUTPUT_TOKENS = 4_096;
const WINDOW_MARGIN_TOKENS = 256;

/** What an API key may do on top of its scopes (null fields: no limit). */
export interface KeyLimits {
	models: string[] | null;
	monthlyBudgetCredits: number | null;
	/** The key's monthly spend cap, enforced by payments at the hold (src/payments/spend-caps.ts). */
	monthlyCapCredits?: number | null;
	rpm: number | null;
	tpm: number | null;
}

export function resolveModel(name: string, devProvider: boolean): CatalogModel | undefined {
	const usable = CATALOG.filter(m => !m.dev || devProvider);
	return usable.find(m => m.id === name) ?? usable.find(m => m.upstreamModel === name);
}

export function estimateChatTokens(req: Pick<ChatRequest, "messages" | "tools">): number {
	let n = 0;
	for (const m of req.messages) {
		let text = "";
		for (const p of m.content) {
			if (p.type === "text") text += p.text;
			else n += IMAGE_TOKENS;
		}
		for (const c of m.toolCalls ?? []) text += c.name + c.arguments;
		n += estimateTokens(text);
	}
	if (req.tools?.length) n += estimateTokens(JSON.stringify(req.tools));
	return n;
}

export interface PreparedChat {
	model: CatalogModel;
	promptTokens: number;
	maxOutputTokens: number;
	maxCostCredits: number;
}

const hasCacheMarks = (req: ChatRequest) =>
	req.messages.some(m => m.content.some(p => p.cacheControl)) || !!req.tools?.some(t => t.cacheControl);

export function prepareChat(
	cfg: Pick<AiConfig, "deployments" | "devProvider">,
	req: ChatRequest,
	tier: TierName,
	key: KeyLimits | null
): PreparedChat {
	const model = resolveModel(req.model, cfg.devProvider);
	if (!model)
		throw new CompatError("not_found", `The model '${req.model}' does not exist`, "model", "model_not_found");
	if (key?.models && !key.models.includes(model.id) && !key.models.includes(req.model))
		throw new CompatError(
			"permission",
			`This API key may not use the model '${req.model}'`,
			"model",
			"model_not_allowed"
		);
	if (!allowsModelGroup(tier, model.group, TIERS))
		throw new CompatError(
			"permission",
			`The ${tier} tier may not use '${model.id}' (${model.group} models)`,
			"model",
			"model_not_allowed"
		);
	if (!cfg.deployments.some(d => d.model === model.id))
		throw new CompatError(
			"not_found",
			`The model '${model.id}' is not served right now`,
			"model",
			"model_not_found"
		);
	if (!model.vision)
		req.messages.forEach((m, i) => {
			if (m.content.some(p => p.type === "image"))
				throw invalid(
					`The model '${model.id}' does not accept images`,
					`messages[${i}].content`,
					"image_not_supported"
				);
		});
	const openaiReasoning = model.group === "reasoning" && model.provider === "openai";
	if (openaiReasoning) {
		if (req.temperature !== undefined && req.temperature !== 1)
			throw invalid(
				`'temperature' is not supported with the reasoning model '${model.id}'`,
				"temperature",
				"unsupported_parameter"
			);
		if (req.topP !== undefined && req.topP !== 1)
			throw invalid(
				`'top_p' is not supported with the reasoning model '${model.id}'`,
				"top_p",
				"unsupported_parameter"
			);
	} else if (req.reasoningEffort)
		throw invalid(
			`'reasoning_effort' is only supported with OpenAI reasoning models`,
			"reasoning_effort",
			"unsupported_parameter"
		);
	if (model.provider === "anthropic" && req.temperature !== undefined && req.temperature > 1)
		throw invalid(
			`'temperature' must be between 0 and 1 for '${model.id}'`,
			"temperature",
			"unsupported_parameter"
		);
	if (req.maxTokens !== undefined && req.maxTokens > model.maxOutputTokens)
		throw invalid(
			`'max_tokens' is too large: '${model.id}' produces at most ${model.maxOutputTokens} tokens`,
			"max_tokens",
			"invalid_value"
		);
	const maxOutputTokens = req.maxTokens ?? Math.min(model.maxOutputTokens, DEFAULT_MAX_OUTPUT_TOKENS);
	const promptTokens = estimateChatTokens(req);
	if (promptTokens + maxOutputTokens + WINDOW_MARGIN_TOKENS > model.contextWindow)
		throw invalid(
			`This request needs about ${promptTokens + maxOutputTokens} tokens (prompt ${promptTokens} + output ${maxOutputTokens}); '${model.id}' has a window of ${model.contextWindow}`,
			"messages",
			"context_length_exceeded"
		);
	const inPrice = hasCacheMarks(req)
		? Math.max(model.inputPricePer1M, model.cacheWritePricePer1M)
		: model.inputPricePer1M;
	const maxCostCredits = Math.ceil((promptTokens * inPrice + maxOutputTokens * model.outputPricePer1M) / 1_000_000);
	return { model, promptTokens, maxOutputTokens, maxCostCredits };
}

/**
 * The charge in millionths of a credit. `generationMicro` is what generate() counted (every attempt,
 * input at the plain input price); the last attempt's cache reads and writes are repriced here.
 */
export function chargeMicroCredits(model: CatalogModel, generationMicro: number, last: ChatUsage | null): number {
	if (!last) return generationMicro;
	return (
		generationMicro -
		last.cachedTokens * (model.inputPricePer1M - model.cachedInputPricePer1M) +
		last.cacheWriteTokens * (model.cacheWritePricePer1M - model.inputPricePer1M)
	);
}

export function chargeCredits(micro: number, maxCostCredits: number): number {
	return Math.min(Math.max(0, Math.ceil(micro / 1_000_000)), maxCostCredits);
}
