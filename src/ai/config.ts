/**
 * The ai service's settings, read from the environment (listed in .env.example and docs/ai.md).
 *
 * Deployments (where a catalogue model is served) come from two places, merged:
 * - `AI_DEPLOYMENTS`: a JSON array of `{ id, model, provider, baseUrl?, apiKey?, apiKeyEnv?,
 *   upstreamModel?, weight?, timeoutMs? }` for any number of keys / base URLs per model;
 * - shortcuts: `OPENAI_API_KEY` (+ `OPENAI_BASE_URL`) serves every `openai` catalogue model,
 *   `ANTHROPIC_API_KEY` (+ `ANTHROPIC_BASE_URL`) every `anthropic` one, `LOCAL_LLM_BASE_URL`
 *   (+ `LOCAL_LLM_MODEL`, `LOCAL_LLM_API_KEY`) the `local` ones.
 * The dev provider (no key, no network) is on by default only in embedded mode; a cluster node
 * uses it only when `AI_DEV_PROVIDER=true`, so a misconfigured cluster never answers from it
 * silently.
 */
import os from "node:os";
import path from "node:path";
import type { EnvReader } from "../env-reader";
import { CATALOG, ProviderKind } from "./catalog";

export interface DeploymentConfig {
	/** Stable name shown to operators and in metrics (e.g. `openai-1`). */
	id: string;
	/** Catalogue model id this deployment serves. */
	model: string;
	provider: ProviderKind;
	baseUrl: string | null;
	apiKey: string | null;
	/** Model name sent upstream (defaults to the catalogue's). */
	upstreamModel: string;
	/** Relative share for balancing (1..1000). */
	weight: number;
	/** Per-attempt timeout until the first token (overrides AI_FIRST_TOKEN_TIMEOUT_MS). */
	timeoutMs: number | null;
}

export type Balancing = "least-busy" | "weighted";

export interface AiConfig {
	deployments: DeploymentConfig[];
	devProvider: boolean;
	balancing: Balancing;
	/** Worker slots of this node (tasks run at once). */
	concurrency: number;
	/** Whether this node's free slots are offered to its own submissions (the lease at insert, src/ai/slot-claims.ts). */
	leaseAtInsert: boolean;
	pollMs: number;
	heartbeatMs: number;
	/** Attempts per generation (first try + retries/fallbacks). */
	maxAttempts: number;
	/** Longest Retry-After the router waits for in place; longer ones cool the deployment down instead. */
	maxRetryWaitMs: number;
	firstTokenTimeoutMs: number;
	stallTimeoutMs: number;
	/** Whole-generation deadline, across attempts. */
	streamTimeoutMs: number;
	circuitFailures: number;
	circuitCooldownMs: number;
	defaultMaxOutputTokens: number;
	/** Upper bound of project context put into a prompt, whatever the model's window. */
	maxContextTokens: number;
	/** Model groups may fall back to another model of the same group. */
	groupFallback: boolean;
	/** Longest a compatible request (/v1/chat/completions, /v1/messages) waits for a worker slot before a 429. */
	compatMaxWaitMs: number;
	/** Lease of a /v1 request's holds, renewed every third of it while it runs; a dead node's expire and are swept. */
	compatHoldLeaseMs: number;
	/**
	 * Speculation (src/compat/speculation.ts): a /v1 request's upstream call starts beside its hold
	 * when the payer's known balance is at least this many times the worst case of what it has in
	 * flight on the node (0: never; the hold is confirmed before the upstream call starts).
	 */
	compatSpeculateCover: number;
	/** Longest a payer's balance read is trusted for speculation. */
	compatSpeculateMaxAgeMs: number;
	/** A payer's balance is read again (in the background, when it has requests) once older than this. */
	compatSpeculateRefreshMs: number;
	/**
	 * Where finished outcomes wait until the tasks service has them (src/ai/outcome-spool.ts); it must
	 * survive a restart of the worker process. Default: `forgefluid-outcomes` under the OS temp dir.
	 */
	outcomeSpoolDir: string;
}

const PROVIDERS: readonly ProviderKind[] = ["openai", "anthropic", "local", "dev"];

function parseDeployments(r: EnvReader): DeploymentConfig[] {
	const raw = r.optStr("AI_DEPLOYMENTS");
	if (!raw) return [];
	let list: unknown;
	try {
		list = JSON.parse(raw);
	} catch {
		r.problems.push("AI_DEPLOYMENTS must be a JSON array of deployments");
		return [];
	}
	if (!Array.isArray(list)) {
		r.problems.push("AI_DEPLOYMENTS must be a JSON array of deployments");
		return [];
	}
	const out: DeploymentConfig[] = [];
	list.forEach((item: Record<string, unknown>, i) => {
		const where = `AI_DEPLOYMENTS[${i}]`;
		const model = CATALOG.find(m => m.id === item?.model);
		if (!model)
			return void r.problems.push(`${where}.model must be a catalogue model id (got '${String(item?.model)}')`);
		const provider = (item.provider ?? model.provider) as ProviderKind;
		if (!PROVIDERS.includes(provider))
			return void r.problems.push(`${where}.provider must be one of ${PROVIDERS.join(", ")}`);
		const baseUrl = item.baseUrl == null ? null : String(item.baseUrl);
		if (baseUrl !== null && !/^https?:\/\//.test(baseUrl))
			return void r.problems.push(`${where}.baseUrl must be an http(s) URL`);
		const weight = item.weight == null ? 1 : Number(item.weight);
		if (!Number.isInteger(weight) || weight < 1 || weight > 1000)
			return void r.problems.push(`${where}.weight must be an integer 1..1000`);
		const timeoutMs = item.timeoutMs == null ? null : Number(item.timeoutMs);
		if (timeoutMs !== null && (!Number.isInteger(timeoutMs) || timeoutMs < 1))
			return void r.problems.push(`${where}.timeoutMs must be a positive integer`);
		// A key may be named by variable so the JSON itself carries no secret.
		const apiKey = item.apiKeyEnv
			? (r.env[String(item.apiKeyEnv)] ?? null)
			: item.apiKey == null
				? null
				: String(item.apiKey);
		out.push({
			id: item.id == null ? `${provider}-${i + 1}` : String(item.id),
			model: model.id,
			provider,
			baseUrl,
			apiKey,
			upstreamModel: item.upstreamModel == null ? model.upstreamModel : String(item.upstreamModel),
			weight,
			timeoutMs
		});
	});
	const ids = out.map(d => d.id);
	const dup = ids.find((id, i) => ids.indexOf(id) !== i);
	if (dup) r.problems.push(`AI_DEPLOYMENTS has the id '${dup}' twice`);
	return out;
}

export function loadAiConfig(r: EnvReader): AiConfig {
	const deployments = parseDeployments(r);
	const openaiKey = r.optStr("OPENAI_API_KEY");
	const openaiBase = r.optUrl("OPENAI_BASE_URL", ["http", "https"]);
	const anthropicKey = r.optStr("ANTHROPIC_API_KEY");
	const anthropicBase = r.optUrl("ANTHROPIC_BASE_URL", ["http", "https"]);
	const localBase = r.optUrl("LOCAL_LLM_BASE_URL", ["http", "https"]);
	const localModel = r.optStr("LOCAL_LLM_MODEL");
	const localKey = r.optStr("LOCAL_LLM_API_KEY");
	const shortcut = (
		provider: ProviderKind,
		apiKey: string | null,
		baseUrl: string | null,
		upstream: string | null
	) => {
		for (const m of CATALOG.filter(c => c.provider === provider))
			deployments.push({
				id: `${provider}:${m.id}`,
				model: m.id,
				provider,
				baseUrl,
				apiKey,
				upstreamModel: upstream ?? m.upstreamModel,
				weight: 1,
				timeoutMs: null
			});
	};
	if (openaiKey) shortcut("openai", openaiKey, openaiBase, null);
	if (anthropicKey) shortcut("anthropic", anthropicKey, anthropicBase, null);
	if (localBase) shortcut("local", localKey, localBase, localModel);

	const cluster = !!(r.env.TRANSPORTER ?? "").trim();
	const devProvider = r.bool("AI_DEV_PROVIDER", !cluster);
	if (devProvider) shortcut("dev", null, null, null);

	const cfg: AiConfig = {
		deployments,
		devProvider,
		balancing: r.oneOf("AI_BALANCING", "least-busy", ["least-busy", "weighted"] as const),
		concurrency: r.int("AI_CONCURRENCY", 8, 1, 10_000),
		leaseAtInsert: r.bool("AI_LEASE_AT_INSERT", true),
		pollMs: r.int("AI_POLL_MS", 1_000, 10, 600_000),
		heartbeatMs: r.int("TASK_HEARTBEAT_MS", 5_000, 50, 600_000),
		maxAttempts: r.int("AI_MAX_ATTEMPTS", 4, 1, 20),
		maxRetryWaitMs: r.int("AI_MAX_RETRY_WAIT_MS", 5_000, 0, 600_000),
		firstTokenTimeoutMs: r.int("AI_FIRST_TOKEN_TIMEOUT_MS", 30_000, 10, 600_000),
		stallTimeoutMs: r.int("AI_STALL_TIMEOUT_MS", 15_000, 10, 600_000),
		streamTimeoutMs: r.int("AI_STREAM_TIMEOUT_MS", 300_000, 100, 3_600_000),
		circuitFailures: r.int("AI_CIRCUIT_FAILURES", 3, 1, 1_000),
		circuitCooldownMs: r.int("AI_CIRCUIT_COOLDOWN_MS", 30_000, 10, 3_600_000),
		defaultMaxOutputTokens: r.int("AI_DEFAULT_MAX_OUTPUT_TOKENS", 1_024, 1, 1_000_000),
		maxContextTokens: r.int("AI_MAX_CONTEXT_TOKENS", 16_000, 0, 10_000_000),
		groupFallback: r.bool("AI_GROUP_FALLBACK", true),
		compatMaxWaitMs: r.int("AI_COMPAT_MAX_WAIT_MS", 5_000, 0, 600_000),
		compatHoldLeaseMs: r.int("AI_COMPAT_HOLD_LEASE_MS", 30_000, 300, 3_600_000),
		compatSpeculateCover: r.int("AI_COMPAT_SPECULATE_COVER", 3, 0, 1_000),
		compatSpeculateMaxAgeMs: r.int("AI_COMPAT_SPECULATE_MAX_AGE_MS", 30_000, 0, 3_600_000),
		compatSpeculateRefreshMs: r.int("AI_COMPAT_SPECULATE_REFRESH_MS", 1_000, 10, 3_600_000),
		outcomeSpoolDir: path.resolve(r.optStr("OUTCOME_SPOOL_DIR") ?? path.join(os.tmpdir(), "forgefluid-outcomes"))
	};
	if (cfg.stallTimeoutMs > cfg.streamTimeoutMs)
		r.problems.push("AI_STALL_TIMEOUT_MS must not exceed AI_STREAM_TIMEOUT_MS");
	return cfg;
}
