/**
 * One compatible request on an ai worker, in two steps:
 *
 * 1. `admitChat` (before anything is streamed, every refusal is a proper HTTP error): prepare
 *    (model, rights, capabilities, worst case), the tier's and the key's rate limits (Redis), the
 *    key's monthly budget (SQL conditional update), the worst-case hold on the user's credits
 *    (payments.reserve), then a worker slot (SlotGate: waits its turn or 429). Each step undoes the
 *    earlier ones when a later one refuses. Speculation (src/compat/speculation.ts): when the
 *    payer's known balance comfortably covers what it has in flight and a slot is free, the slot is
 *    taken first and admission returns while the holds are being placed (`held`); the generation
 *    starts at once, and its events wait for `held`: no byte leaves before the hold is confirmed. A
 *    refused hold aborts the generation, its buffered events are dropped, the refusal is the one
 *    event sent (the gateway answers it with its status), and the user is charged nothing.
 * 2. `runChat`: the generation through `generate()` (the routing, cooldowns, circuits, timeouts,
 *    budget and continuation of every ai call), its events sent as they come; then the slot is
 *    freed and the bookkeeping runs (settle the hold at the actual charge, the key's budget, the
 *    token-rate give-back). The bookkeeping is after the last event, so it never delays a token.
 */
import { randomUUID } from "node:crypto";
import type { TierName } from "../domain/tiers";
import type { AiConfig } from "../ai/config";
import { GenerationError, generate } from "../ai/generate";
import type { DeploymentRouter } from "../ai/router";
import { AdmissionRefused, SlotGate } from "./admission";
import { CompatError } from "./errors";
import { KeyLimits, PreparedChat, chargeCredits, chargeMicroCredits, prepareChat } from "./prepare";
import type { ChatEvent, ChatRequest, ChatUsage } from "./types";
import { ZERO_USAGE } from "./types";
import { AttemptSideChannel, platformStream } from "./upstream";
import { fromPlatformError } from "./errors";
import type { Speculation, Tracked } from "./speculation";

export interface ChatInput {
	/** Also the hold's id (`chat:<id>` in the ledger). */
	id: string;
	/** The caller (rate limits, attribution as the member). */
	userId: string;
	/** Whose wallet holds and pays: the caller, or `org:<uuid>` for an organisation key (src/payments/payer.ts). */
	payerId: string;
	/** The organisation's member and payer caps for an organisation key (none otherwise: payments reads a user's own). */
	caps: { member?: number | null; payer?: number | null };
	tier: TierName;
	keyId: string | null;
	key: KeyLimits | null;
	request: ChatRequest;
}

export class Refused extends Error {
	constructor(
		readonly what: string,
		readonly retryAfterS: number
	) {
		super(what);
	}
}

export interface ChatDeps {
	cfg: AiConfig;
	router: DeploymentRouter;
	gate: SlotGate;
	/** Tier limits; throws Refused. */
	admitTokens(userId: string, tier: TierName, tokens: number): Promise<{ windowEndMs: number | null }>;
	settleTokens(
		userId: string,
		tier: TierName,
		p: { counted: number; used: number; windowEndMs: number | null; firstAttempt: boolean }
	): Promise<void>;
	/** The key's own RPM/TPM; throws Refused. */
	admitKey(keyId: string, limits: KeyLimits, tokens: number): Promise<void>;
	/** The key's monthly budget: holds `credits` or throws (CompatError insufficient_credits). */
	reserveKeyBudget(keyId: string, holdId: string, credits: number, limit: number): Promise<void>;
	settleKeyBudget(keyId: string, holdId: string, credits: number): Promise<void>;
	/**
	 * `attribution`: who holds it and with what, for the usage report (src/payments/usage.ts) and the
	 * key's spend counter; `caps`: the monthly caps payments enforces in the hold's own statement (402).
	 */
	reserve(
		payerId: string,
		holdId: string,
		maxCost: number,
		tier: TierName,
		attribution?: { memberId: string; keyId: string | null; model: string; source: "chat" },
		caps?: { key?: number | null; member?: number | null; payer?: number | null }
	): Promise<void>;
	settle(
		userId: string,
		holdId: string,
		cost: number,
		usage?: { inputTokens: number; outputTokens: number; models: string[] }
	): Promise<void>;
	release(userId: string, holdId: string): Promise<void>;
	/** The hold's lease (src/compat/hold-leases.ts): opened before the holds, deleted after both settled. */
	openLease(holdId: string, userId: string, keyId: string | null): Promise<void>;
	recordCost(holdId: string, cost: number): Promise<void>;
	dropLease(holdId: string): Promise<void>;
	/** The node's leases in flight, renewed together while they stream. */
	leases: { add(holdId: string): void; delete(holdId: string): void };
	onAttempt?(ev: { deployment: string; outcome: "ok" | "failed"; reason?: string; ttftMs?: number }): void;
	/** When the upstream call may start beside the hold; absent: never. */
	speculation?: Speculation;
	/**
	 * A speculated request's hold was confirmed, or refused: then its aborted upstream call's cost
	 * (`unpaidMicroCredits`, what it had used by the abort) is the platform's, not the user's.
	 */
	onSpeculation?(ev: { outcome: "confirmed" | "refused"; unpaidMicroCredits: number }): void;
	logger: { warn(...a: unknown[]): void };
}

export const holdIdOf = (id: string) => `chat:${id}`;

export interface Admitted {
	prep: PreparedChat;
	windowEndMs: number | null;
	releaseSlot: () => void;
	/**
	 * Resolves once the holds are placed. Speculated: still pending when admission returns; rejects
	 * with the refusal after every step was undone. Not speculated: already resolved.
	 */
	held: Promise<void>;
	speculative: boolean;
	/** The request in its payer's in-flight sum (speculation), done once settled. */
	tracked: Tracked | null;
}

/**
 * Opens the request's hold lease (a SQL write). The ai node starts it as soon as the request
 * arrives, so it runs while the tier is read and the rate limits are counted.
 */
export function openLeaseOf(deps: Pick<ChatDeps, "openLease">, input: Pick<ChatInput, "id" | "payerId" | "keyId">) {
	return deps.openLease(holdIdOf(input.id), input.payerId, input.keyId).then(
		() => null,
		(err: unknown) => err
	);
}

/** Waits for both; on a refusal, `undo` is told of each that succeeded, then the first refusal is thrown. */
async function both<A, B>(
	a: Promise<A>,
	b: Promise<B>,
	undo: { a?: (v: A) => void; b?: (v: B) => void }
): Promise<[A, B]> {
	const [ra, rb] = await Promise.allSettled([a, b]);
	if (ra.status === "fulfilled" && rb.status === "fulfilled") return [ra.value, rb.value];
	if (ra.status === "fulfilled") undo.a?.(ra.value);
	if (rb.status === "fulfilled") undo.b?.(rb.value);
	throw ra.status === "rejected" ? ra.reason : (rb as PromiseRejectedResult).reason;
}

export async function admitChat(
	deps: ChatDeps,
	input: ChatInput,
	signal: AbortSignal,
	leased: Promise<unknown> = openLeaseOf(deps, input)
): Promise<Admitted> {
	const prep = prepareChat(deps.cfg, input.request, input.tier, input.key);
	const tokens = prep.promptTokens + prep.maxOutputTokens;
	const undo: Array<() => Promise<void>> = [];
	const holdId = holdIdOf(input.id);
	let tracked: Tracked | null = null;
	const unwind = async () => {
		let undone = true;
		for (const u of undo.reverse())
			await u().catch(err => {
				undone = false;
				deps.logger.warn(`chat ${input.id}: undo failed: ${(err as Error).message}`);
			});
		deps.leases.delete(holdId);
		// A hold that could not be given back keeps its lease: the sweeper releases it once it expires.
		if (undone && !(await leased))
			await deps
				.dropLease(holdId)
				.catch(err => deps.logger.warn(`chat ${input.id}: lease: ${(err as Error).message}`));
	};
	try {
		const refusedToRate = (err: unknown) =>
			err instanceof Refused
				? new CompatError("rate_limited", err.what, null, "rate_limit_exceeded", err.retryAfterS)
				: err;
		const giveTokensBack = (windowEndMs: number | null) => () =>
			deps.settleTokens(input.userId, input.tier, { counted: tokens, used: 0, windowEndMs, firstAttempt: true });
		// The key's own rates and the tier's are counted together (two Redis round trips in one wait).
		const [, window] = await both(
			input.keyId && input.key && (input.key.rpm || input.key.tpm)
				? deps.admitKey(input.keyId, input.key, tokens)
				: Promise.resolve(),
			deps.admitTokens(input.userId, input.tier, tokens),
			{ b: w => undo.push(giveTokensBack(w.windowEndMs)) }
		).catch(err => {
			throw refusedToRate(err);
		});
		undo.push(giveTokensBack(window.windowEndMs));
		const leaseError = await leased;
		if (leaseError) throw leaseError;
		deps.leases.add(holdId);
		// The key's monthly budget and the credit hold are placed together; either refusal gives the other back.
		const keyBudget = input.keyId && input.key?.monthlyBudgetCredits != null;
		const placeHolds = async () => {
			await both(
				keyBudget
					? deps.reserveKeyBudget(input.keyId!, holdId, prep.maxCostCredits, input.key!.monthlyBudgetCredits!)
					: Promise.resolve(),
				deps.reserve(
					input.payerId,
					holdId,
					prep.maxCostCredits,
					input.tier,
					{ memberId: input.userId, keyId: input.keyId, model: prep.model.id, source: "chat" },
					{ ...input.caps, key: input.key?.monthlyCapCredits ?? null }
				),
				{
					a: () => keyBudget && undo.push(() => deps.settleKeyBudget(input.keyId!, holdId, 0)),
					b: () => undo.push(() => deps.release(input.payerId, holdId))
				}
			);
			if (keyBudget) undo.push(() => deps.settleKeyBudget(input.keyId!, holdId, 0));
			undo.push(() => deps.release(input.payerId, holdId));
		};
		// Speculate only where every refusal the hold can give is one this node can foresee: no key
		// budget, no key, member or organisation cap (a user's own payer cap is in the balance read,
		// payments.available, as what it leaves this month), and a slot free now (a request that must
		// wait holds first).
		const foreseeable =
			!keyBudget && input.key?.monthlyCapCredits == null && input.caps.member == null && input.caps.payer == null;
		tracked = deps.speculation?.track(input.payerId, prep.maxCostCredits, foreseeable) ?? null;
		const early = tracked?.speculate ? deps.gate.tryAcquire() : null;
		if (early) {
			const t = tracked!;
			const held = placeHolds().catch(async (err: unknown) => {
				t.refused();
				t.done(0);
				await unwind();
				throw err;
			});
			// Observed by runChat; never an unhandled rejection when the request is gone.
			held.catch(() => undefined);
			return { prep, windowEndMs: window.windowEndMs, releaseSlot: early, held, speculative: true, tracked: t };
		}
		await placeHolds().catch((err: unknown) => {
			tracked?.refused();
			throw err;
		});
		let releaseSlot: () => void;
		try {
			releaseSlot = await deps.gate.acquire(input.tier, signal);
		} catch (err) {
			if (err instanceof AdmissionRefused)
				throw new CompatError("rate_limited", err.message, null, "queue_full", err.retryAfterS);
			throw new CompatError("api_error", "The request was cancelled before it started");
		}
		return {
			prep,
			windowEndMs: window.windowEndMs,
			releaseSlot,
			held: Promise.resolve(),
			speculative: false,
			tracked
		};
	} catch (err) {
		tracked?.done(0);
		await unwind();
		throw err;
	}
}

const GENERATION_ERRORS: Record<GenerationError["code"], CompatError["kind"]> = {
	CANCELLED: "api_error",
	PROVIDER_FAILED: "overloaded",
	NO_DEPLOYMENT: "overloaded",
	DEADLINE: "timeout",
	PROVIDER_REFUSED: "api_error",
	BUDGET_EXHAUSTED: "insufficient_credits"
};

/** True once `fn` succeeded; false after 5 tries (logged). */
async function retrying(what: string, fn: () => Promise<void>, logger: ChatDeps["logger"]): Promise<boolean> {
	for (let i = 0; ; i++) {
		try {
			await fn();
			return true;
		} catch (err) {
			if (i >= 4) {
				logger.warn(`${what} failed for good: ${(err as Error).message}`);
				return false;
			}
			await new Promise(r => setTimeout(r, 200 * 2 ** i));
		}
	}
}

/**
 * A speculated request's upstream stream: its first event is read at once (the first token is
 * waiting when the hold is confirmed), the rest only after the hold is settled, so a node short of
 * CPU does not spend it on answers that may be refused before the holds it waits for.
 */
async function* untilConfirmed<T>(src: AsyncIterable<T>, confirmed: Promise<boolean>): AsyncGenerator<T> {
	let first = true;
	for await (const ev of src) {
		yield ev;
		if (first) {
			first = false;
			await confirmed;
		}
	}
}

/** Runs an admitted request; `emit` gets every event, the last one being `done` or `error`. */
export async function runChat(
	deps: ChatDeps,
	input: ChatInput,
	a: Admitted,
	emit: (ev: ChatEvent) => void,
	signal: AbortSignal
): Promise<{ costCredits: number; usage: ChatUsage }> {
	const { prep } = a;
	const model = prep.model;
	// Speculated: the events wait for the hold; a refusal aborts the generation and drops them.
	let open = !a.speculative;
	const waiting: ChatEvent[] = [];
	const refusal = new AbortController();
	let refusedBy: unknown = null;
	const confirmed = a.held.then(
		() => {
			open = true;
			for (const ev of waiting.splice(0)) emit(ev);
			return true;
		},
		(err: unknown) => {
			refusedBy = err;
			refusal.abort();
			return false;
		}
	);
	const genSignal = a.speculative ? AbortSignal.any([signal, refusal.signal]) : signal;
	const send = (ev: ChatEvent) => {
		if (open) emit(ev);
		else if (!refusedBy) waiting.push(ev);
	};
	send({
		t: "start",
		id: input.id,
		model: input.request.model,
		created: Math.floor(Date.now() / 1000),
		promptTokens: prep.promptTokens
	});
	const side: AttemptSideChannel = {
		done: null,
		toolSent: false,
		onTool: ev =>
			send({
				t: "tool",
				index: ev.index,
				...(ev.id ? { id: ev.id } : {}),
				...(ev.name ? { name: ev.name } : {}),
				args: ev.args
			})
	};
	let micro = 0;
	let usage: ChatUsage = { ...ZERO_USAGE };
	try {
		const result = await generate({
			cfg: deps.cfg,
			router: deps.router,
			model,
			messages: [],
			promptTokens: prep.promptTokens,
			maxOutputTokens: prep.maxOutputTokens,
			budgetCredits: prep.maxCostCredits,
			signal: genSignal,
			onDelta: text => send({ t: "text", text }),
			onFallback: () => undefined,
			onAttempt: deps.onAttempt,
			stream: a.speculative
				? sr => untilConfirmed(platformStream(input.request, model, side)(sr), confirmed)
				: platformStream(input.request, model, side),
			// The client named its model: no fallback to another one (its deployments still fall back to each other).
			servedModels: []
		});
		const last = side.done?.usage ?? null;
		usage = {
			promptTokens: result.usage.promptTokens,
			completionTokens: result.usage.completionTokens,
			cachedTokens: last?.cachedTokens ?? 0,
			cacheWriteTokens: last?.cacheWriteTokens ?? 0,
			reasoningTokens: last?.reasoningTokens ?? 0
		};
		micro = chargeMicroCredits(model, result.microCredits, last);
		const costCredits = chargeCredits(micro, prep.maxCostCredits);
		const finish =
			result.finishReason === "budget" || result.finishReason === "length"
				? "length"
				: (side.done?.finish ?? "stop");
		send({ t: "done", finish, stopSequence: side.done?.stopSequence ?? null, usage, costCredits });
	} catch (err) {
		const g = err instanceof GenerationError ? err : null;
		if (g) {
			micro = g.partial.microCredits;
			const u = Object.values(g.partial.byModel)[0];
			if (u) usage = { ...usage, promptTokens: u.promptTokens, completionTokens: u.completionTokens };
		} else deps.logger.warn(`chat ${input.id}: ${(err as Error).stack ?? String(err)}`);
		const kind = g ? GENERATION_ERRORS[g.code] : "api_error";
		send({
			t: "error",
			status: 0,
			code: kind,
			message: g ? g.message : "Internal error"
		});
	} finally {
		a.releaseSlot();
	}
	if (!(await confirmed)) {
		// Refused after speculation: nothing was sent, admission gave back what it had placed, the
		// user pays nothing; what the aborted call used is the platform's.
		const e = fromPlatformError(refusedBy);
		emit({
			t: "error",
			status: 0,
			code: e.kind,
			message: e.message,
			param: e.param,
			errorCode: e.code,
			retryAfterS: e.retryAfterS
		});
		deps.onSpeculation?.({ outcome: "refused", unpaidMicroCredits: Math.max(0, micro) });
		return { costCredits: 0, usage };
	}
	if (a.speculative) deps.onSpeculation?.({ outcome: "confirmed", unpaidMicroCredits: 0 });
	const costCredits = chargeCredits(micro, prep.maxCostCredits);
	const holdId = holdIdOf(input.id);
	// After the last event: none of this is between the client and its tokens. The cost goes on the
	// lease first, so a node that dies from here on is settled at it by the sweeper, not released.
	await retrying(`chat ${input.id}: cost`, () => deps.recordCost(holdId, costCredits), deps.logger);
	const used = { inputTokens: usage.promptTokens, outputTokens: usage.completionTokens, models: [prep.model.id] };
	let settled = await retrying(
		`chat ${input.id}: settle`,
		() => deps.settle(input.payerId, holdId, costCredits, used),
		deps.logger
	);
	if (input.keyId && input.key?.monthlyBudgetCredits != null)
		settled =
			(await retrying(
				`chat ${input.id}: key budget`,
				() => deps.settleKeyBudget(input.keyId!, holdId, costCredits),
				deps.logger
			)) && settled;
	// Unsettled: the lease stops being renewed and the sweeper finishes the holds once it expires.
	deps.leases.delete(holdId);
	if (settled) await retrying(`chat ${input.id}: lease`, () => deps.dropLease(holdId), deps.logger);
	await deps
		.settleTokens(input.userId, input.tier, {
			counted: prep.promptTokens + prep.maxOutputTokens,
			used: usage.promptTokens + usage.completionTokens,
			windowEndMs: a.windowEndMs,
			firstAttempt: true
		})
		.catch(err => deps.logger.warn(`chat ${input.id}: token settle failed: ${(err as Error).message}`));
	a.tracked?.done(costCredits);
	return { costCredits, usage };
}

export const newChatId = () => randomUUID().replace(/-/g, "");
