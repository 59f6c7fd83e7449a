/**
 * Where a task's context comes from: `context.select` when a context node answers within
 * CONTEXT_TIMEOUT_MS, otherwise the degraded context from `projects.contextManifest`: the included
 * paths, then the files whose paths the prompt's words name (src/ai/path-rank.ts), whole, then a
 * repository map of the manifest. Either way it returns, bounded by the timeout and the
 * request timeout of the projects calls: a missing, dead or silent context node never hangs a task.
 */
import { BYTES_PER_TOKEN } from "./prompt";
import { selectByPath, type ManifestFile } from "./path-rank";
import { type ContextFrame, type ContextSelection, type ContextState, degradedFrames } from "./context-frames";

export interface ContextSourceDeps {
	call<T = unknown>(action: string, params: unknown, opts?: { timeout?: number; retries?: number }): Promise<T>;
	timeoutMs: number;
	logger: { warn(...a: unknown[]): void };
	/** Called once per task with how the context was obtained (metrics). */
	onOutcome?(ev: { state: ContextState; reason?: string; ms: number }): void;
}

export interface TaskContextRequest {
	taskId: string;
	projectId: string;
	userId: string;
	prompt: string;
	include?: string[];
	exclude?: string[];
	/**
	 * The head version read by the access check of the task's own submission moments before (a task
	 * leased at insert, docs/task-lifecycle.md "Dispatch"): then that check stands and none is made here.
	 */
	checkedHeadVersion?: number;
}

export interface TaskContext {
	version: number;
	state: ContextState;
	reason?: string;
	tokenizer: string;
	frames: ContextFrame[];
}

/** The query sent to `context.select`: the prompt, cut to what a ranker can use. */
const MAX_QUERY_CHARS = 10_000;
/** Most manifest entries the degraded path lists (a map of more would not fit any budget anyway). */
const MAX_MANIFEST_FILES = 50_000;
const ESTIMATE_TOKENIZER = "estimate-bytes/3";

interface ManifestPage {
	total: number;
	files: Array<{ path: string; sha256: string; size: number }>;
}

interface ReadContextResult {
	version: number;
	files: Array<{ path: string; content: string }>;
	omitted: Array<{ path: string; reason: string }>;
}

/**
 * The budget asked of `context.select`: the task's context budget less room for the frame headers
 * the platform adds (charged on the byte estimate, ~10-20 tokens each), so the service's frames are
 * not cut at the end for want of header room. fitFrames still enforces the whole budget.
 */
export const selectBudget = (budgetTokens: number) => Math.max(0, budgetTokens - Math.ceil(budgetTokens / 25) - 32);

/** The failures that say the node went away with the request, not that the selection failed. */
const NODE_GONE = new Set(["REQUEST_REJECTED", "SERVICE_NOT_AVAILABLE"]);
/** Below this much time left, a second node is not asked. */
const MIN_RETRY_MS = 50;

/**
 * `context.select` within one deadline for the whole attempt. A selection is a read, so when the node
 * that had the request is gone (killed, evicted by the registry: REQUEST_REJECTED), the call goes once
 * more to another node with the time that is left, instead of degrading a task for one lost node.
 */
async function selectWithinDeadline(deps: ContextSourceDeps, params: object, deadline: number): Promise<unknown> {
	try {
		return await deps.call<ContextSelection>("context.select", params, { timeout: deps.timeoutMs, retries: 0 });
	} catch (err) {
		const left = deadline - performance.now();
		if (!NODE_GONE.has(String((err as { type?: string })?.type)) || left < MIN_RETRY_MS) throw err;
		return await deps.call<ContextSelection>("context.select", params, { timeout: Math.floor(left), retries: 0 });
	}
}

/** Why `context.select` gave no context, as a stable code for the task view, the metric and the log. */
export function degradedReason(err: unknown): string {
	const type = (err as { type?: string })?.type;
	if (type === "REQUEST_TIMEOUT") return "CONTEXT_TIMEOUT";
	if (type === "SERVICE_NOT_FOUND" || type === "SERVICE_NOT_AVAILABLE" || type === "REQUEST_REJECTED")
		return "CONTEXT_UNAVAILABLE";
	if (type === "INVALID_CONTEXT") return "CONTEXT_INVALID";
	return "CONTEXT_ERROR";
}

function checkSelection(s: unknown, budget: number): ContextSelection {
	const sel = s as ContextSelection;
	const ok =
		!!sel &&
		Array.isArray(sel.frames) &&
		sel.frames.every(
			f =>
				f &&
				(f.kind === "file" || f.kind === "definitions" || f.kind === "map") &&
				typeof f.text === "string" &&
				Number.isInteger(f.tokens) &&
				f.tokens >= 0 &&
				(f.lines === undefined || (Array.isArray(f.lines) && f.lines.length === 2))
		) &&
		typeof sel.usedTokens === "number" &&
		sel.usedTokens <= budget;
	if (!ok)
		throw Object.assign(new Error("context.select answered with a malformed selection"), {
			type: "INVALID_CONTEXT"
		});
	return sel;
}

export async function taskContext(
	deps: ContextSourceDeps,
	req: TaskContextRequest,
	budgetTokens: number
): Promise<TaskContext> {
	// Access (viewer or better) and the version the task reads (and a code task commits on) come from
	// projects, whatever answers the context: the context service is never the authority on access.
	const version =
		req.checkedHeadVersion ??
		(
			await deps.call<{ headVersion: number }>("projects.access", {
				projectId: req.projectId,
				userId: req.userId
			})
		).headVersion;
	// No room (or nothing to show): nothing to ask for. The service refuses a budget of 0.
	const budget = selectBudget(budgetTokens);
	if (budget <= 0 || version <= 0) return { version, state: "selected", tokenizer: ESTIMATE_TOKENIZER, frames: [] };

	const t = performance.now();
	const params = {
		projectId: req.projectId,
		version,
		userId: req.userId,
		query: req.prompt.slice(0, MAX_QUERY_CHARS),
		budgetTokens: budget,
		...(req.include?.length ? { include: req.include } : {}),
		...(req.exclude?.length ? { exclude: req.exclude } : {})
	};
	try {
		const sel = checkSelection(await selectWithinDeadline(deps, params, t + deps.timeoutMs), budget);
		deps.onOutcome?.({ state: "selected", ms: performance.now() - t });
		return { version, state: "selected", tokenizer: sel.tokenizer, frames: sel.frames };
	} catch (err) {
		const reason = degradedReason(err);
		deps.onOutcome?.({ state: "degraded", reason, ms: performance.now() - t });
		deps.logger.warn(
			`task ${req.taskId}: context degraded (${reason}): ${(err as Error).message}; running with the included paths, the files the prompt's words name and the repository map`
		);
		return {
			version,
			state: "degraded",
			reason,
			tokenizer: ESTIMATE_TOKENIZER,
			frames: await degraded(deps, req, version, budgetTokens)
		};
	}
}

/** Manifest entries per `projects.contextManifest` page (its maximum). */
const MANIFEST_PAGE = 5_000;

/** Every path and size of the version, page by page (bounded by MAX_MANIFEST_FILES). */
async function manifest(deps: ContextSourceDeps, req: TaskContextRequest, version: number): Promise<ManifestFile[]> {
	const files: ManifestFile[] = [];
	for (let offset = 0; offset < MAX_MANIFEST_FILES; offset += MANIFEST_PAGE) {
		const page = await deps.call<ManifestPage>("projects.contextManifest", {
			projectId: req.projectId,
			userId: req.userId,
			version,
			offset,
			limit: MANIFEST_PAGE
		});
		for (const f of page.files) files.push({ path: f.path, size: f.size });
		if (page.files.length < MANIFEST_PAGE || offset + MANIFEST_PAGE >= page.total) break;
	}
	return files;
}

async function degraded(
	deps: ContextSourceDeps,
	req: TaskContextRequest,
	version: number,
	budgetTokens: number
): Promise<ContextFrame[]> {
	const pick = selectByPath(await manifest(deps, req, version), req.prompt, budgetTokens, req.include, req.exclude);
	// readContext answers in the order asked, skipping binaries and what passes maxBytes
	const files = pick.read.length
		? (
				await deps.call<ReadContextResult>("projects.readContext", {
					projectId: req.projectId,
					userId: req.userId,
					version,
					maxBytes: Math.max(1, budgetTokens * BYTES_PER_TOKEN),
					paths: pick.read
				})
			).files
		: [];
	return degradedFrames(files, pick.mapPaths, budgetTokens);
}
