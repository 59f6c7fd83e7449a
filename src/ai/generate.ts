/**
 * One generation: a model's answer streamed from whichever deployment can give it, with retries,
 * fallbacks, continuation of partial output, timeouts and a hard credit budget.
 *
 * Fallback order: the requested model's deployments (balanced, untried first), then — with
 * AI_GROUP_FALLBACK — the other served models of the same group, cheapest first (the tier may use
 * the whole group, so a fallback never needs more rights than the request). A failure before any
 * text tries the next choice; 429/overload with Retry-After cools that deployment down; when every
 * choice is cooling down, the loop waits for the earliest one if that is within
 * AI_MAX_RETRY_WAIT_MS and the deadline.
 *
 * Continuation rule: text already streamed is kept (it was delivered to the client) and the next
 * attempt is asked to continue it — Anthropic through a final assistant message (native prefill,
 * trailing whitespace trimmed), OpenAI-protocol servers through the partial answer as an assistant
 * message followed by a user message asking to continue without repeating. The first 64 characters
 * of a continuation are held back and any overlap with the end of the partial text (≥ 8 chars) is
 * dropped. The answer is complete only when the last attempt ends with the protocol's finish
 * signal; otherwise the generation fails.
 *
 * Budget: `maxTokens` of each attempt is min(remaining output tokens, what the remaining credits
 * buy at that model's prices after its input), and a stream whose estimated output passes that is
 * stopped (finish reason `budget`), so a provider that ignores max_tokens cannot overspend either.
 * Charges: the last attempt's input plus every delivered output token (attempts that failed before
 * delivering text cost the user nothing); reported usage when the provider gives it, estimates
 * otherwise; the total is capped at the budget.
 */
import type { AiConfig, DeploymentConfig } from "./config";
import { CatalogModel, affordableOutputTokens } from "./catalog";
import { ChatMessage, estimateTokens } from "./prompt";
import { ProviderError, StreamEvent, StreamRequest, classify, streamChat } from "./providers";
import type { DeploymentRouter } from "./router";

export type GenerationFinish = "stop" | "length" | "budget";

export interface ModelUsage {
	promptTokens: number;
	completionTokens: number;
}

export interface GenerationResult {
	text: string;
	finishReason: GenerationFinish;
	model: string;
	deployment: string;
	usage: ModelUsage;
	byModel: Record<string, ModelUsage>;
	/** Exact charge in millionths of a credit (summed before rounding). */
	microCredits: number;
	attempts: number;
}

export class GenerationError extends Error {
	constructor(
		readonly code:
			"CANCELLED" | "PROVIDER_FAILED" | "NO_DEPLOYMENT" | "DEADLINE" | "PROVIDER_REFUSED" | "BUDGET_EXHAUSTED",
		message: string,
		readonly retryable: boolean,
		readonly partial: { text: string; byModel: Record<string, ModelUsage>; microCredits: number }
	) {
		super(message);
		this.name = "GenerationError";
	}
}

/** One attempt on one deployment: it answered (with its time to first token) or failed, and why. */
export interface AttemptEvent {
	deployment: string;
	outcome: "ok" | "failed";
	reason?: string;
	ttftMs?: number;
}

export interface GenerateOptions {
	cfg: AiConfig;
	router: DeploymentRouter;
	model: CatalogModel;
	messages: ChatMessage[];
	maxOutputTokens: number;
	budgetCredits: number;
	signal: AbortSignal;
	onDelta(text: string): void;
	onFallback(ev: { from: string; to: string; reason: string }): void;
	onAttempt?(ev: AttemptEvent): void;
	/**
	 * The call of one attempt: tests of the loop inject fakes; the compatible endpoints (src/compat)
	 * inject their richer request (tools, images, response formats). Default: the SDK adapters.
	 */
	stream?: (req: StreamRequest) => AsyncIterable<StreamEvent>;
	/** The prompt's token estimate when `messages` do not carry the whole prompt (src/compat). */
	promptTokens?: number;
	servedModels?: readonly CatalogModel[];
}

const estimateOutputTokens = (text: string) => Math.ceil(Buffer.byteLength(text, "utf8") / 4);
const HOLD_BACK_CHARS = 64;
const MIN_OVERLAP = 8;

function dropOverlap(partial: string, cont: string): string {
	const max = Math.min(partial.length, cont.length);
	for (let k = max; k >= MIN_OVERLAP; k--) if (partial.endsWith(cont.slice(0, k))) return cont.slice(k);
	return cont;
}

const sleep = (ms: number, signal: AbortSignal) =>
	new Promise<void>(resolve => {
		const t = setTimeout(done, ms);
		function done() {
			clearTimeout(t);
			signal.removeEventListener("abort", done);
			resolve();
		}
		signal.addEventListener("abort", done, { once: true });
	});

export async function generate(o: GenerateOptions): Promise<GenerationResult> {
	const { cfg, router } = o;
	const started = Date.now();
	const deadline = started + cfg.streamTimeoutMs;
	const chain = [
		o.model,
		...(cfg.groupFallback
			? (o.servedModels ?? []).filter(
					m => m.id !== o.model.id && m.group === o.model.group && !m.dev === !o.model.dev
				)
			: [])
	];
	chain.splice(1, chain.length, ...chain.slice(1).sort((a, b) => a.outputPricePer1M - b.outputPricePer1M));
	const tried = new Set<string>();
	const byModel: Record<string, ModelUsage> = {};
	let partial = "";
	let micro = 0;
	let attempts = 0;
	let lastFailure = "no attempt was made";
	let lastDeployment: string | null = null;
	const add = (model: string, p: number, c: number) => {
		const u = (byModel[model] ??= { promptTokens: 0, completionTokens: 0 });
		u.promptTokens += p;
		u.completionTokens += c;
	};
	const snapshot = () => ({ text: partial, byModel: structuredClone(byModel), microCredits: micro });
	const finishEarly = (finishReason: GenerationFinish, model: string, deployment: string): GenerationResult => ({
		text: partial,
		finishReason,
		model,
		deployment,
		usage: Object.values(byModel).reduce(
			(a, u) => ({
				promptTokens: a.promptTokens + u.promptTokens,
				completionTokens: a.completionTokens + u.completionTokens
			}),
			{ promptTokens: 0, completionTokens: 0 }
		),
		byModel,
		microCredits: micro,
		attempts
	});

	while (attempts < cfg.maxAttempts) {
		if (o.signal.aborted) throw new GenerationError("CANCELLED", "The task was cancelled", false, snapshot());
		if (Date.now() >= deadline)
			throw new GenerationError(
				"DEADLINE",
				`No complete answer within ${cfg.streamTimeoutMs} ms (last failure: ${lastFailure})`,
				true,
				snapshot()
			);
		let lease = null;
		let model: CatalogModel = o.model;
		// Every untried deployment of every model in the chain comes before a second try of any.
		for (const untriedOnly of [true, false]) {
			for (const m of chain) {
				lease = router.acquire(m.id, tried, untriedOnly);
				if (lease) {
					model = m;
					break;
				}
			}
			if (lease) break;
		}
		if (!lease) {
			const next = chain.map(m => router.nextAvailableAt(m.id)).filter((t): t is number => t !== null);
			const at = next.length ? Math.min(...next) : null;
			const wait = at === null ? Infinity : at - Date.now();
			if (wait > cfg.maxRetryWaitMs || Date.now() + wait >= deadline)
				throw new GenerationError(
					"NO_DEPLOYMENT",
					`No deployment of ${o.model.id} is available (last failure: ${lastFailure})`,
					true,
					snapshot()
				);
			await sleep(Math.max(wait, 1), o.signal);
			continue;
		}
		attempts++;
		const dep: DeploymentConfig = lease.deployment;
		if (lastDeployment !== null) o.onFallback({ from: lastDeployment, to: dep.id, reason: lastFailure });
		tried.add(dep.id);

		const inTokens =
			(o.promptTokens ?? o.messages.reduce((n, m) => n + estimateTokens(m.content), 0)) +
			(partial ? estimateTokens(partial) + 32 : 0);
		const remainingCredits = o.budgetCredits - micro / 1_000_000;
		const outLeft = o.maxOutputTokens - estimateOutputTokens(partial);
		// Fractional credits left still buy tokens (flooring them would stop a continuation under a small hold).
		const maxTokens = Math.min(outLeft, affordableOutputTokens(model, inTokens, remainingCredits));
		if (maxTokens <= 0) {
			lease.neutral();
			if (partial) return finishEarly(outLeft <= 0 ? "length" : "budget", model.id, dep.id);
			throw new GenerationError(
				"BUDGET_EXHAUSTED",
				"The reservation does not cover this prompt on any available model",
				false,
				snapshot()
			);
		}

		const ctrl = new AbortController();
		let abortReason: "stall" | "timeout" | "deadline" | "cancel" | "budget" | null = null;
		const abort = (why: NonNullable<typeof abortReason>) => {
			abortReason ??= why;
			ctrl.abort();
		};
		const onCancel = () => abort("cancel");
		o.signal.addEventListener("abort", onCancel, { once: true });
		let timer = setTimeout(
			() => abort("timeout"),
			Math.min(dep.timeoutMs ?? cfg.firstTokenTimeoutMs, deadline - Date.now())
		);
		const deadlineTimer = setTimeout(() => abort("deadline"), deadline - Date.now());
		const attemptStart = Date.now();
		let ttft: number | undefined;
		let text = "";
		let textBytes = 0;
		const stopAtBytes = 4 * (maxTokens + Math.max(16, maxTokens / 4));
		let held = partial ? "" : null;
		const emit = (t: string) => {
			if (held !== null) {
				held += t;
				if (held.length < HOLD_BACK_CHARS) return;
				t = dropOverlap(partial, held);
				held = null;
			}
			if (!t) return;
			text += t;
			textBytes += Buffer.byteLength(t, "utf8");
			o.onDelta(t);
		};
		try {
			const stream = (o.stream ?? streamChat)({
				deployment: dep,
				messages: o.messages,
				maxTokens,
				prefix: partial,
				signal: ctrl.signal,
				timeoutMs: Math.max(1, deadline - Date.now())
			});
			let done: Extract<StreamEvent, { type: "done" }> | null = null;
			for await (const ev of stream) {
				if (ev.type === "done") {
					done = ev;
					break;
				}
				if (ttft === undefined) {
					// From the first token on, the timer is the stall timer; refresh() re-arms it per chunk without allocating.
					clearTimeout(timer);
					ttft = Date.now() - attemptStart;
					timer = setTimeout(() => abort("stall"), cfg.stallTimeoutMs);
				} else timer.refresh();
				emit(ev.text);
				// Honest providers stop at max_tokens themselves; the slack covers estimate error.
				if (textBytes > stopAtBytes) {
					abort("budget");
					break;
				}
			}
			if (held !== null && held) {
				const t = dropOverlap(partial, held);
				held = null;
				if (t) {
					text += t;
					o.onDelta(t);
				}
			}
			if (abortReason === "budget") {
				lease.neutral();
				add(model.id, inTokens, estimateOutputTokens(text));
				micro = Math.min(
					micro + inTokens * model.inputPricePer1M + estimateOutputTokens(text) * model.outputPricePer1M,
					o.budgetCredits * 1_000_000
				);
				partial += text;
				return finishEarly("budget", model.id, dep.id);
			}
			if (abortReason)
				throw new ProviderError(
					abortReason === "cancel" ? "aborted" : abortReason === "stall" ? "stall" : "timeout",
					`${abortReason}`
				);
			if (!done) throw new ProviderError("truncated", "the stream ended without its finish signal");
			const promptTokens = done.usage?.promptTokens ?? inTokens;
			const completionTokens = done.usage?.completionTokens ?? estimateOutputTokens(text);
			add(model.id, promptTokens, completionTokens);
			micro += promptTokens * model.inputPricePer1M + completionTokens * model.outputPricePer1M;
			partial += text;
			lease.success();
			o.onAttempt?.({ deployment: dep.id, outcome: "ok", ttftMs: ttft });
			const result = finishEarly(done.finishReason, model.id, dep.id);
			return result;
		} catch (err) {
			const pe =
				abortReason === "cancel" || o.signal.aborted
					? new ProviderError("aborted", "cancelled")
					: abortReason
						? new ProviderError(
								abortReason === "stall" ? "stall" : "timeout",
								abortReason === "stall"
									? `no chunk for ${cfg.stallTimeoutMs} ms`
									: abortReason === "deadline"
										? "whole-stream deadline passed"
										: "no first token in time"
							)
						: classify(err);
			// Delivered text stays delivered: it is carried forward and charged as output.
			if (held) text += held;
			if (text) {
				const c = estimateOutputTokens(text);
				add(model.id, 0, c);
				micro += c * model.outputPricePer1M;
				partial += text;
			}
			lastFailure = `${dep.id}: ${pe.kind}${pe.status ? ` ${pe.status}` : ""} (${pe.message.slice(0, 200)})`;
			lastDeployment = dep.id;
			if (pe.kind === "aborted") {
				lease.neutral();
				throw new GenerationError("CANCELLED", "The task was cancelled", false, snapshot());
			}
			if (pe.kind === "client") {
				lease.neutral();
				o.onAttempt?.({ deployment: dep.id, outcome: "failed", reason: pe.kind });
				throw new GenerationError(
					"PROVIDER_REFUSED",
					`The provider refused the request: ${lastFailure}`,
					false,
					snapshot()
				);
			}
			lease.failure(lastFailure, pe.retryAfterMs);
			o.onAttempt?.({ deployment: dep.id, outcome: "failed", reason: pe.kind });
		} finally {
			clearTimeout(timer);
			clearTimeout(deadlineTimer);
			o.signal.removeEventListener("abort", onCancel);
		}
	}
	throw new GenerationError(
		"PROVIDER_FAILED",
		`No complete answer after ${attempts} attempt(s); last failure: ${lastFailure}`,
		true,
		snapshot()
	);
}
