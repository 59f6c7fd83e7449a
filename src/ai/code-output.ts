/**
 * The output format of `code` tasks, parsed into a change set for `projects.commitAsUser`.
 *
 * A file is written as a fenced block (three or more backticks) whose info string carries
 * `path=<project path>` (quoted or bare); the block's body is the whole new file. The first word
 * `delete` in the info string (```` ```delete path=old.ts ````) deletes the file; its body is
 * ignored. Rules:
 * - A block is closed by a fence of the same or more backticks alone on its line. A block that
 *   is never closed (a stream stopped mid-file) is dropped: a half-written file is never committed.
 * - A path written twice: the last block wins. Blocks without `path=` are plain explanation.
 * - Write vs. add/modify is decided against the base version's paths (`toChangeOps`).
 * - Everything outside path blocks is the explanation text.
 */
import type { ChangeOp } from "../projects/changeset";

export interface ParsedFile {
	path: string;
	action: "write" | "delete";
	content: string;
}

export interface ParsedCodeOutput {
	files: ParsedFile[];
	/** Blocks that were opened but never closed (dropped). */
	unclosed: string[];
}

const FENCE = /^(`{3,})(.*)$/;
const PATH_ATTR = /(?:^|\s)path=(?:"([^"]+)"|'([^']+)'|(\S+))/;

export function parseCodeOutput(text: string): ParsedCodeOutput {
	const lines = text.split("\n");
	const byPath = new Map<string, ParsedFile>();
	const unclosed: string[] = [];
	let i = 0;
	while (i < lines.length) {
		const open = FENCE.exec(lines[i].replace(/\r$/, ""));
		if (!open) {
			i++;
			continue;
		}
		const ticks = open[1].length;
		const info = open[2].trim();
		const body: string[] = [];
		let closed = false;
		let j = i + 1;
		for (; j < lines.length; j++) {
			const line = lines[j].replace(/\r$/, "");
			const close = /^(`{3,})\s*$/.exec(line);
			if (close && close[1].length >= ticks) {
				closed = true;
				break;
			}
			body.push(line);
		}
		const attr = PATH_ATTR.exec(info);
		if (attr) {
			const path = (attr[1] ?? attr[2] ?? attr[3]).trim();
			if (!closed) unclosed.push(path);
			else {
				const isDelete = /^delete\b/i.test(info);
				byPath.delete(path);
				byPath.set(path, {
					path,
					action: isDelete ? "delete" : "write",
					content: isDelete ? "" : body.length ? body.join("\n") + "\n" : ""
				});
			}
		}
		i = closed ? j + 1 : j;
	}
	return { files: [...byPath.values()], unclosed };
}

/**
 * Turns parsed files into the projects service's operations: a write of an existing path is
 * `modify`, of a new one `add`; a delete of a path that does not exist is skipped.
 */
export function toChangeOps(files: readonly ParsedFile[], exists: (path: string) => boolean): ChangeOp[] {
	const ops: ChangeOp[] = [];
	for (const f of files) {
		if (f.action === "delete") {
			if (exists(f.path)) ops.push({ op: "delete", path: f.path });
		} else ops.push({ op: exists(f.path) ? "modify" : "add", path: f.path, content: f.content });
	}
	return ops;
}
