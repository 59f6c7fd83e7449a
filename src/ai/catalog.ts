/**
 * The model catalogue: what the platform sells, in which group, at which price, to which tiers.
 *
 * Prices are integer credits per 1,000,000 tokens (1 credit = 1/1000 USD, so a list price of
 * $0.15 per 1M tokens is 150). A usage is charged `ceil((in × inPrice + out × outPrice) / 1e6)`:
 * rounding up once per charge, never per token, so the platform never undercharges and a user
 * loses less than one credit to rounding. The payments service serves the same numbers
 * (`modelPrices()` in src/payments/prices.ts reads `CATALOG` and `tiersForGroup`).
 *
 * Which tiers may use a model follows from its group and `src/domain/tiers.ts` (`modelGroups`);
 * the catalogue never repeats the tier table.
 */
import { MODEL_GROUPS, ModelGroup, TIERS, TIER_ORDER, TierName, allowsModelGroup } from "../domain/tiers";

export type ProviderKind = "openai" | "anthropic" | "local" | "dev";

export interface CatalogModel {
	id: string;
	/** Wire protocol / SDK used to reach it. */
	provider: ProviderKind;
	/** Model name sent upstream unless a deployment overrides it. */
	upstreamModel: string;
	group: ModelGroup;
	contextWindow: number;
	/** Largest completion the model can produce in one answer. */
	maxOutputTokens: number;
	inputPricePer1M: number;
	outputPricePer1M: number;
	/** Input tokens read from the provider's prompt cache (OpenAI: half the input price; Anthropic: a tenth). */
	cachedInputPricePer1M: number;
	/** Input tokens written to the prompt cache (Anthropic: 1.25 × input; OpenAI charges no write). */
	cacheWritePricePer1M: number;
	/** Accepts image content parts. */
	vision: boolean;
	/** Served by the built-in dev provider (canned answers, no network). */
	dev?: boolean;
	description: string;
}

export const CATALOG: readonly CatalogModel[] = Object.freeze(
	[
		{
			id: "gpt-4o-mini",
			provider: "openai",
			upstreamModel: "gpt-4o-mini",
			group: "small",
			contextWindow: 128_000,
			maxOutputTokens: 16_384,
			inputPricePer1M: 150,
			outputPricePer1M: 600,
			cachedInputPricePer1M: 75,
			cacheWritePricePer1M: 150,
			vision: true,
			description: "OpenAI GPT-4o mini"
		},
		{
			id: "claude-haiku",
			provider: "anthropic",
			upstreamModel: "claude-3-5-haiku-latest",
			group: "small",
			contextWindow: 200_000,
			maxOutputTokens: 8_192,
			inputPricePer1M: 800,
			outputPricePer1M: 4_000,
			cachedInputPricePer1M: 80,
			cacheWritePricePer1M: 1000,
			vision: true,
			description: "Anthropic Claude Haiku"
		},
		{
			id: "local-small",
			provider: "local",
			upstreamModel: "llama3.1:8b",
			group: "small",
			contextWindow: 8_192,
			maxOutputTokens: 4_096,
			inputPricePer1M: 20,
			outputPricePer1M: 20,
			cachedInputPricePer1M: 20,
			cacheWritePricePer1M: 20,
			vision: false,
			description: "Self-hosted OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio)"
		},
		{
			id: "gpt-4o",
			provider: "openai",
			upstreamModel: "gpt-4o",
			group: "large",
			contextWindow: 128_000,
			maxOutputTokens: 16_384,
			inputPricePer1M: 2_500,
			outputPricePer1M: 10_000,
			cachedInputPricePer1M: 1250,
			cacheWritePricePer1M: 2500,
			vision: true,
			description: "OpenAI GPT-4o"
		},
		{
			id: "claude-sonnet",
			provider: "anthropic",
			upstreamModel: "claude-sonnet-4-20250514",
			group: "large",
			contextWindow: 200_000,
			maxOutputTokens: 16_000,
			inputPricePer1M: 3_000,
			outputPricePer1M: 15_000,
			cachedInputPricePer1M: 300,
			cacheWritePricePer1M: 3750,
			vision: true,
			description: "Anthropic Claude Sonnet"
		},
		{
			id: "o3-mini",
			provider: "openai",
			upstreamModel: "o3-mini",
			group: "reasoning",
			contextWindow: 200_000,
			maxOutputTokens: 100_000,
			inputPricePer1M: 1_100,
			outputPricePer1M: 4_400,
			cachedInputPricePer1M: 550,
			cacheWritePricePer1M: 1100,
			vision: false,
			description: "OpenAI o3-mini (reasoning)"
		},
		{
			id: "claude-opus",
			provider: "anthropic",
			upstreamModel: "claude-opus-4-20250514",
			group: "reasoning",
			contextWindow: 200_000,
			maxOutputTokens: 32_000,
			inputPricePer1M: 15_000,
			outputPricePer1M: 75_000,
			cachedInputPricePer1M: 1500,
			cacheWritePricePer1M: 18750,
			vision: true,
			description: "Anthropic Claude Opus (extended reasoning)"
		},
		{
			id: "dev-echo",
			provider: "dev",
			upstreamModel: "dev-echo",
			group: "small",
			contextWindow: 32_000,
			maxOutputTokens: 4_096,
			inputPricePer1M: 1,
			outputPricePer1M: 1,
			cachedInputPricePer1M: 1,
			cacheWritePricePer1M: 1,
			vision: false,
			dev: true,
			description: "DEV PROVIDER: canned local answers for development, not a real model"
		}
	].map(m => Object.freeze(m as CatalogModel))
);

export function findModel(id: string): CatalogModel | undefined {
	return CATALOG.find(m => m.id === id);
}

export function tiersForGroup(group: ModelGroup): TierName[] {
	return TIER_ORDER.filter(t => allowsModelGroup(t, group, TIERS));
}

/** Credits a usage costs on `model`, rounded up once. */
export function costCredits(
	model: Pick<CatalogModel, "inputPricePer1M" | "outputPricePer1M">,
	promptTokens: number,
	completionTokens: number
): number {
	const micro = promptTokens * model.inputPricePer1M + completionTokens * model.outputPricePer1M;
	return Math.ceil(micro / 1_000_000);
}

/**
 * Most completion tokens that fit in `budgetCredits` after `promptTokens` of input, so that
 * `costCredits(model, promptTokens, result) <= budgetCredits`.
 */
export function affordableOutputTokens(
	model: Pick<CatalogModel, "inputPricePer1M" | "outputPricePer1M">,
	promptTokens: number,
	budgetCredits: number
): number {
	const left = budgetCredits * 1_000_000 - promptTokens * model.inputPricePer1M;
	if (left <= 0) return 0;
	return model.outputPricePer1M === 0 ? Number.MAX_SAFE_INTEGER : Math.floor(left / model.outputPricePer1M);
}

export { MODEL_GROUPS };
