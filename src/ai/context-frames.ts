/**
 * The project context of a prompt, as frames: each says which file and which line range it covers.
 *
 * Normally the frames come from `context.select` (the Python context service: ranked whole files,
 * then definitions with their line ranges, then a repository map; its `tokens` are counted with a
 * real tokenizer and never exceed the budget). When no context node answers in time the task runs
 * on the degraded context built here: the included paths (whole files that fit) and a repository
 * map from the manifest in the space left, counted on the byte estimate.
 *
 * In the prompt each frame is a header line and its text. The header is the platform's, so its
 * tokens are charged here on the byte estimate (deliberately high); frames are dropped from the end
 * (the lowest ranked) until frames plus headers fit the budget, so a prompt never exceeds it.
 */
import { BYTES_PER_TOKEN, type ChatMessage, SYSTEM_PROMPTS, type TaskKind } from "./prompt";

export type FrameKind = "file" | "definitions" | "map";

export interface ContextFrame {
	kind: FrameKind;
	path?: string;
	/** 1-based, inclusive. */
	lines?: [number, number];
	tokens: number;
	text: string;
}

/** What `context.select` answers (the contract in docs/context.md). */
export interface ContextSelection {
	projectId: string;
	version: number;
	budgetTokens: number;
	usedTokens: number;
	tokenizer: string;
	indexed: boolean;
	frames: ContextFrame[];
}

/** What the task view shows of one frame: which file, which lines, how many tokens. Never the text. */
export interface ShownFrame {
	kind: FrameKind;
	path?: string;
	lines?: [number, number];
	tokens: number;
}

export type ContextState = "selected" | "degraded";

/** The task's record of its context (stored with the task, shown by GET /tasks/:id). */
export interface ContextRecord {
	state: ContextState;
	/** Why the context is degraded (e.g. CONTEXT_TIMEOUT, CONTEXT_UNAVAILABLE). */
	reason?: string;
	tokenizer: string;
	version: number;
	frames: ShownFrame[];
}

export const estimateTextTokens = (text: string) => Math.ceil(Buffer.byteLength(text, "utf8") / BYTES_PER_TOKEN);

export function frameHeader(f: Pick<ContextFrame, "kind" | "path" | "lines">): string {
	if (f.kind === "map") return "--- repository map ---";
	const where = f.lines ? ` (lines ${f.lines[0]}-${f.lines[1]})` : "";
	const what = f.kind === "definitions" ? " definitions" : "";
	return `--- ${f.path ?? "?"}${what}${where} ---`;
}

const renderFrame = (f: ContextFrame) => `\n${frameHeader(f)}\n${f.text.replace(/\n$/, "")}\n`;
/** The frame's cost in the prompt: its own tokens plus its header and newlines on the byte estimate. */
const frameCost = (f: ContextFrame) => f.tokens + estimateTextTokens(`\n${frameHeader(f)}\n\n`);

/** The frames, in rank order, that fit `budgetTokens` with their headers (one too big is skipped, smaller later ones still get in). */
export function fitFrames(
	frames: readonly ContextFrame[],
	budgetTokens: number
): { frames: ContextFrame[]; tokens: number } {
	const kept: ContextFrame[] = [];
	let used = 0;
	for (const f of frames) {
		const c = frameCost(f);
		if (used + c > budgetTokens) continue; // a smaller frame further down may still fit
		kept.push(f);
		used += c;
	}
	return { frames: kept, tokens: used };
}

function renderFrames(frames: readonly ContextFrame[]): string {
	return frames.length ? `\n\nProject context:${frames.map(renderFrame).join("")}` : "";
}

export const shownFrames = (frames: readonly ContextFrame[]): ShownFrame[] =>
	frames.map(f => ({
		kind: f.kind,
		...(f.path !== undefined ? { path: f.path } : {}),
		...(f.lines ? { lines: f.lines } : {}),
		tokens: f.tokens
	}));

const lineCount = (text: string) => (text.length ? text.split("\n").length - (text.endsWith("\n") ? 1 : 0) : 0);

/**
 * The degraded context: the included files in the order given (whole files only, skipping any that
 * do not fit), then a repository map of `paths` (one line per directory, its files' names) in what
 * is left, cut with a count of what did not fit.
 */
export function degradedFrames(
	files: ReadonlyArray<{ path: string; content: string }>,
	paths: readonly string[],
	budgetTokens: number
): ContextFrame[] {
	const frames: ContextFrame[] = [];
	let used = 0;
	for (const f of files) {
		const frame: ContextFrame = {
			kind: "file",
			path: f.path,
			lines: [1, Math.max(1, lineCount(f.content))],
			tokens: estimateTextTokens(f.content),
			text: f.content
		};
		const c = frameCost(frame);
		if (used + c > budgetTokens) continue;
		frames.push(frame);
		used += c;
	}
	const map = repositoryMap(paths, budgetTokens - used - frameCost({ kind: "map", tokens: 0, text: "" }));
	if (map) frames.push(map);
	return frames;
}

/**
 * A compact map of paths, grouped by directory (a directory too long to list as its file count),
 * within `budgetTokens` (null when nothing fits).
 */
export function repositoryMap(paths: readonly string[], budgetTokens: number): ContextFrame | null {
	if (budgetTokens <= 0 || !paths.length) return null;
	const dirs = new Map<string, string[]>();
	for (const p of [...paths].sort()) {
		const i = p.lastIndexOf("/");
		const dir = i < 0 ? "" : p.slice(0, i + 1);
		const list = dirs.get(dir) ?? [];
		list.push(p.slice(i + 1));
		dirs.set(dir, list);
	}
	const lines: string[] = [];
	let used = 0;
	let shown = 0;
	// Room for the closing "(… N more paths)" line is kept back while lines are added.
	const tail = estimateTextTokens(`(… ${paths.length} more paths)\n`);
	for (const [dir, names] of dirs) {
		const line = `${dir || "./"}: ${names.join(" ")}\n`;
		const t = estimateTextTokens(line);
		if (used + t + tail <= budgetTokens) {
			lines.push(line);
			used += t;
			shown += names.length;
			continue;
		}
		// a directory too long to list names its count instead, and the directories after it still go in
		const short = `${dir || "./"}: (${names.length} files)\n`;
		const ts = estimateTextTokens(short);
		if (used + ts + tail > budgetTokens) break;
		lines.push(short);
		used += ts;
	}
	if (shown < paths.length) {
		if (!lines.length && tail > budgetTokens) return null;
		lines.push(`(… ${paths.length - shown} more paths)\n`);
	}
	const text = lines.join("").replace(/\n$/, "");
	return { kind: "map", tokens: estimateTextTokens(text), text };
}

/** The conversation sent upstream: system prompt, then the user's prompt followed by the frames that fit. */
export function contextMessages(
	kind: TaskKind,
	prompt: string,
	frames: readonly ContextFrame[],
	budgetTokens: number
): { messages: ChatMessage[]; frames: ContextFrame[]; contextTokens: number } {
	const fit = fitFrames(frames, budgetTokens);
	return {
		messages: [
			{ role: "system", content: SYSTEM_PROMPTS[kind] },
			{ role: "user", content: prompt + renderFrames(fit.frames) }
		],
		frames: fit.frames,
		contextTokens: fit.tokens
	};
}
