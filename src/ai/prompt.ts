/**
 * Preprocessing: choosing models, budgeting tokens and credits, and building the prompt.
 *
 * Token counts are estimates, deliberately high: `ceil(utf8Bytes / 3)` per text plus 4 per
 * message (English prose runs ~4 bytes per token and code ~3, so this overestimates both).
 * Reservations use the estimate; charges use the provider's reported usage when it gives one.
 *
 * Context budget of a task (tokens of project files put into the prompt):
 *   min(AI_MAX_CONTEXT_TOKENS, contextWindow − maxOutputTokens − promptTokens − 256 margin)
 * and at least 0. It depends only on the task's own fields, so the worker recomputes exactly
 * the budget that `ai.prepare` reserved for. Files are read with `projects.readContext` with
 * `maxBytes = 3 × budget` (whole files, path order, files that do not fit are skipped, binaries
 * never sent), and each file is framed as "--- path ---" followed by its content; the frames'
 * overhead is charged against the budget too, so a prompt never exceeds it.
 */
import { TIERS, TierName, allowsModelGroup } from "../domain/tiers";
import type { AiConfig } from "./config";
import { CATALOG, CatalogModel, costCredits, findModel } from "./catalog";

export type { TaskKind } from "../tasks/contract";
import type { TaskKind } from "../tasks/contract";
import { DomainError } from "../errors";

export const BYTES_PER_TOKEN = 3;
const MESSAGE_OVERHEAD_TOKENS = 4;
const WINDOW_MARGIN_TOKENS = 256;

export function estimateTokens(text: string): number {
	return Math.ceil(Buffer.byteLength(text, "utf8") / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS;
}

export const SYSTEM_PROMPTS: Record<TaskKind, string> = {
	chat: "You are ForgeFluid's assistant. Answer the user's question about their project. The project's files follow the question when available.",
	code: [
		"You are ForgeFluid's coding assistant. Change the user's project as asked.",
		"Write every file you create or change in full, as a fenced block whose info string names it:",
		"```ts path=src/example.ts",
		"<the whole new file>",
		"```",
		"To delete a file write an empty block: ```delete path=src/old.ts``` followed by a closing fence.",
		"Text outside the blocks is your explanation."
	].join("\n"),
	compare:
		"You are ForgeFluid's assistant. Answer the user's question about their project. The project's files follow the question when available."
};

export interface PrepareInput {
	tier: TierName;
	kind: TaskKind;
	prompt: string;
	model?: string;
	models?: string[];
	maxOutputTokens?: number;
}

export interface PreparedModel {
	model: string;
	group: CatalogModel["group"];
	provider: CatalogModel["provider"];
	dev: boolean;
	promptTokens: number;
	contextTokensBudget: number;
	maxOutputTokens: number;
	maxCostCredits: number;
}

export interface Prepared {
	models: PreparedModel[];
	promptTokens: number;
	contextTokensBudget: number;
	maxOutputTokens: number;
	maxCostCredits: number;
}

/** The tokens a task's rate limit counts at admission: every fan-out model's prompt plus its output budget. */
export function worstCaseTokens(p: Pick<Prepared, "models">): number {
	return p.models.reduce((n, m) => n + m.promptTokens + m.maxOutputTokens, 0);
}

export type PrepareErrorCode =
	"VALIDATION_ERROR" | "UNKNOWN_MODEL" | "MODEL_NOT_ALLOWED" | "PROMPT_TOO_LONG" | "MODEL_UNAVAILABLE";

/** A refusal of `ai.prepare`: 403 for a model the tier may not use, 422 (naming the field) otherwise. */
export class PrepareError extends DomainError {
	declare readonly code: PrepareErrorCode;
	declare readonly status: 403 | 422;
	constructor(
		status: 403 | 422,
		code: PrepareErrorCode,
		message: string,
		readonly field: string
	) {
		super(code, status, message, status === 422 ? [{ field, message, type: code }] : undefined);
	}
}

/** The models that can be used: in the catalogue and served by at least one deployment. */
export function servedModels(cfg: AiConfig): CatalogModel[] {
	const served = new Set(cfg.deployments.map(d => d.model));
	return CATALOG.filter(m => served.has(m.id));
}

/** The model a task without `model` gets: the cheapest served model of the tier's groups. */
function defaultModel(cfg: AiConfig, tier: TierName): CatalogModel | undefined {
	return servedModels(cfg)
		.filter(m => allowsModelGroup(tier, m.group, TIERS))
		.sort((a, b) => a.inputPricePer1M + a.outputPricePer1M - (b.inputPricePer1M + b.outputPricePer1M))[0];
}

function promptTokensOf(kind: TaskKind, prompt: string): number {
	return estimateTokens(SYSTEM_PROMPTS[kind]) + estimateTokens(prompt);
}

function contextBudget(cfg: AiConfig, model: CatalogModel, promptTokens: number, maxOutputTokens: number): number {
	return Math.max(
		0,
		Math.min(cfg.maxContextTokens, model.contextWindow - maxOutputTokens - promptTokens - WINDOW_MARGIN_TOKENS)
	);
}

/** Validates a task against the catalogue and the tier, and computes its worst-case cost. Pure. */
export function prepareTask(cfg: AiConfig, input: PrepareInput): Prepared {
	if (!input.prompt.trim()) throw new PrepareError(422, "VALIDATION_ERROR", "The prompt is empty", "prompt");
	let ids: string[];
	if (input.kind === "compare") {
		ids = input.models ?? [];
		if (ids.length < 2 || ids.length > 3)
			throw new PrepareError(422, "VALIDATION_ERROR", "A compare task names 2 or 3 models", "models");
		if (new Set(ids).size !== ids.length)
			throw new PrepareError(422, "VALIDATION_ERROR", "A compare task names each model once", "models");
	} else if (input.model) {
		ids = [input.model];
	} else {
		const def = defaultModel(cfg, input.tier);
		if (!def) throw new PrepareError(422, "MODEL_UNAVAILABLE", "No model is configured for this tier", "model");
		ids = [def.id];
	}
	const served = new Set(cfg.deployments.map(d => d.model));
	const promptTokens = promptTokensOf(input.kind, input.prompt);
	const models = ids.map((id, i): PreparedModel => {
		const field = input.kind === "compare" ? `models[${i}]` : "model";
		const m = findModel(id);
		if (!m || (m.dev && !cfg.devProvider))
			throw new PrepareError(422, "UNKNOWN_MODEL", `Unknown model '${id}'`, field);
		if (!allowsModelGroup(input.tier, m.group, TIERS))
			throw new PrepareError(
				403,
				"MODEL_NOT_ALLOWED",
				`The ${input.tier} tier may not use ${m.group} models such as '${id}'`,
				field
			);
		if (!served.has(m.id))
			throw new PrepareError(422, "MODEL_UNAVAILABLE", `Model '${id}' has no configured deployment`, field);
		const maxOutputTokens = Math.min(input.maxOutputTokens ?? cfg.defaultMaxOutputTokens, m.maxOutputTokens);
		if (promptTokens + maxOutputTokens + WINDOW_MARGIN_TOKENS > m.contextWindow)
			throw new PrepareError(
				422,
				"PROMPT_TOO_LONG",
				`The prompt (~${promptTokens} tokens) and ${maxOutputTokens} output tokens do not fit ${id}'s ${m.contextWindow}-token context`,
				"prompt"
			);
		const budget = contextBudget(cfg, m, promptTokens, maxOutputTokens);
		return {
			model: m.id,
			group: m.group,
			provider: m.provider,
			dev: !!m.dev,
			promptTokens,
			contextTokensBudget: budget,
			maxOutputTokens,
			maxCostCredits: costCredits(m, promptTokens + budget, maxOutputTokens)
		};
	});
	return {
		models,
		promptTokens,
		contextTokensBudget: Math.max(...models.map(m => m.contextTokensBudget)),
		maxOutputTokens: Math.max(...models.map(m => m.maxOutputTokens)),
		maxCostCredits: models.reduce((s, m) => s + m.maxCostCredits, 0)
	};
}

export interface ContextFile {
	path: string;
	content: string;
}

export interface ChatMessage {
	role: "system" | "user" | "assistant";
	content: string;
}

/**
 * The conversation sent upstream: system prompt, then the user's prompt followed by the project
 * files that fit `budgetTokens` (in the order given; a file that does not fit is left out and
 * named in a closing note, so the model knows what it did not see).
 */
export function buildMessages(
	kind: TaskKind,
	prompt: string,
	files: readonly ContextFile[],
	budgetTokens: number,
	omitted: readonly string[] = []
): { messages: ChatMessage[]; contextTokens: number } {
	let used = 0;
	const parts: string[] = [];
	const left = [...omitted];
	for (const f of files) {
		const frame = `\n--- ${f.path} ---\n${f.content}\n`;
		const t = Math.ceil(Buffer.byteLength(frame, "utf8") / BYTES_PER_TOKEN);
		if (used + t > budgetTokens) {
			left.push(f.path);
			continue;
		}
		used += t;
		parts.push(frame);
	}
	let user = prompt;
	if (parts.length) user += `\n\nProject files:${parts.join("")}`;
	if (left.length) {
		const note = `\n(Files not shown for lack of room: ${left.slice(0, 50).join(", ")}${left.length > 50 ? ", …" : ""})`;
		const t = Math.ceil(Buffer.byteLength(note, "utf8") / BYTES_PER_TOKEN);
		if (used + t <= budgetTokens) {
			user += note;
			used += t;
		}
	}
	return {
		messages: [
			{ role: "system", content: SYSTEM_PROMPTS[kind] },
			{ role: "user", content: user }
		],
		contextTokens: used
	};
}
