/**
 * Unified diffs of one file between two versions, in `git diff` layout (`--- a/path`,
 * `+++ b/path`, `/dev/null` for a side that does not exist).
 *
 * Text is content that is valid UTF-8 and has no NUL in its first 8 KiB (Git's heuristic plus
 * the UTF-8 check, since the diff is returned as a JSON string). Anything else yields
 * `Binary files a/x and b/x differ`. Caps keep a request from pinning the event loop: files
 * over `maxBytes` (default 1 MiB per side) are not diffed at all, and the Myers search gives up
 * after `maxEditLength` edits (default 20,000 lines) or `timeoutMs` (default 500 ms). Both
 * yield `kind: "too-large"` with a one-line note in place of the patch.
 */
import { isUtf8 } from "node:buffer";
import { createTwoFilesPatch, FILE_HEADERS_ONLY } from "diff";

const TEXT_SNIFF_BYTES = 8 * 1024;

export function isProbablyText(buf: Uint8Array): boolean {
	return !buf.subarray(0, TEXT_SNIFF_BYTES).includes(0) && isUtf8(buf);
}

export interface UnifiedDiffOptions {
	/** Lines of context around each hunk. Default 3, like git. */
	context?: number;
	/** Larger sides are not diffed. Default 1 MiB. */
	maxBytes?: number;
	/** The diff algorithm stops after this many edits. Default 20,000. */
	maxEditLength?: number;
	/** The diff algorithm stops after this many milliseconds. Default 500. */
	timeoutMs?: number;
}

export type UnifiedDiffKind = "text" | "binary" | "too-large" | "identical";

export interface UnifiedDiff {
	kind: UnifiedDiffKind;
	/** The patch, the `Binary files ... differ` line, the too-large note, or "" when identical. */
	patch: string;
}

const DEFAULT_DIFF_MAX_BYTES = 1024 * 1024;
const DEFAULT_DIFF_MAX_EDIT_LENGTH = 20_000;
const DEFAULT_DIFF_TIMEOUT_MS = 500;

/**
 * Diff of one file. `oldBuf` null means the file was added, `newBuf` null that it was deleted;
 * `path` may be `{ from, to }` for a rename.
 */
export function unifiedDiff(
	path: string | { from: string; to: string },
	oldBuf: Uint8Array | null,
	newBuf: Uint8Array | null,
	options: UnifiedDiffOptions = {}
): UnifiedDiff {
	const {
		context = 3,
		maxBytes = DEFAULT_DIFF_MAX_BYTES,
		maxEditLength = DEFAULT_DIFF_MAX_EDIT_LENGTH,
		timeoutMs = DEFAULT_DIFF_TIMEOUT_MS
	} = options;
	const fromPath = typeof path === "string" ? path : path.from;
	const toPath = typeof path === "string" ? path : path.to;
	const oldName = oldBuf === null ? "/dev/null" : `a/${fromPath}`;
	const newName = newBuf === null ? "/dev/null" : `b/${toPath}`;
	const oldData = oldBuf ?? new Uint8Array(0);
	const newData = newBuf ?? new Uint8Array(0);

	if (oldBuf !== null && newBuf !== null && Buffer.compare(oldData, newData) === 0) {
		return { kind: "identical", patch: "" };
	}
	if (!isProbablyText(oldData) || !isProbablyText(newData)) {
		return { kind: "binary", patch: `Binary files ${oldName} and ${newName} differ\n` };
	}
	if (oldData.byteLength > maxBytes || newData.byteLength > maxBytes) {
		return {
			kind: "too-large",
			patch: `File too large to diff: ${oldName} and ${newName} (limit ${maxBytes} bytes)\n`
		};
	}

	// Keep a byte-order mark as text, so adding or removing one shows up in the diff.
	const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
	const patch = createTwoFilesPatch(
		oldName,
		newName,
		decoder.decode(oldData),
		decoder.decode(newData),
		undefined,
		undefined,
		{
			context,
			maxEditLength,
			timeout: timeoutMs,
			headerOptions: FILE_HEADERS_ONLY
		}
	);
	if (patch === undefined) {
		return {
			kind: "too-large",
			patch: `Diff too large: ${oldName} and ${newName} (more than ${maxEditLength} edits or ${timeoutMs} ms)\n`
		};
	}
	return { kind: "text", patch };
}
