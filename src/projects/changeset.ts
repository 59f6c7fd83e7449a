/**
 * Applying a change set to a parent manifest. Pure: values in, values out (content is hashed
 * here, nothing is stored). The service puts `newBlobs` into the blob store and then records
 * `manifest` as the next version.
 *
 * Rules:
 * - Operations: `add` (path must not exist), `modify` (path must exist), `delete` (path must
 *   exist), `rename` (source must exist, target must not). `add`/`modify` carry `content` as a
 *   string with `encoding` "utf8" (default; lone surrogates refused) or "base64" (standard
 *   alphabet, padding optional, no whitespace), and an optional `mode` 0o644 or 0o755; `modify`
 *   without a mode keeps the old one, `rename` keeps the entry unchanged.
 * - Every path is normalised and validated by paths.ts first.
 * - A path may appear in only one operation of a change set (a rename's source and target
 *   both count), so the order of operations never matters. Deleting `a.txt` and adding
 *   `A.txt` in one change set is fine: those are different paths.
 * - After applying, no path added or renamed into place may share a `caseFoldKey` with
 *   another path, or be a file where another path needs a directory (`a` and `a/b`),
 *   compared case-insensitively as well.
 * - Limits (`DEFAULT_CHANGESET_LIMITS`): 10 MiB per file (decoded bytes), 200 MiB per project
 *   (sum of file sizes, counting duplicates each time: it is what a checkout writes), 10,000
 *   files per project, 1,000 operations per change set. The project-wide limits only refuse a
 *   change set that grows the project past them, so a project over a since-lowered limit can
 *   still shrink.
 * - Content already referenced by the parent, or repeated within the change set, is stored
 *   once: `newBlobs` holds only hashes the parent does not reference.
 */
import { ChangeSetInvalidError, LimitExceededError, PathConflictError } from "./errors";
import { sha256Hex } from "./hash";
import { DEFAULT_FILE_MODE, fileModeOf, manifestFromEntries, referencedBlobs } from "./manifest";
import type { FileMode, Manifest, ManifestEntry } from "./manifest";
import { caseFoldKey, normaliseProjectPath } from "./paths";

export { manifestDiff } from "./manifest";
export type { ManifestDiff } from "./manifest";

export type ContentEncoding = "utf8" | "base64";

export interface AddOp {
	op: "add";
	path: string;
	content: string;
	encoding?: ContentEncoding;
	mode?: FileMode;
}

export interface ModifyOp {
	op: "modify";
	path: string;
	content: string;
	encoding?: ContentEncoding;
	mode?: FileMode;
}

export interface DeleteOp {
	op: "delete";
	path: string;
}

export interface RenameOp {
	op: "rename";
	from: string;
	to: string;
}

export type ChangeOp = AddOp | ModifyOp | DeleteOp | RenameOp;

export interface ChangeSetLimits {
	maxFileBytes: number;
	maxProjectBytes: number;
	maxFiles: number;
	maxOps: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_CHANGESET_LIMITS: Readonly<ChangeSetLimits> = Object.freeze({
	maxFileBytes: 10 * MiB,
	maxProjectBytes: 200 * MiB,
	maxFiles: 10_000,
	maxOps: 1_000
});

export interface ChangeSetResult {
	/** The new version's manifest, keys in path order. */
	manifest: Manifest;
	/** Content the parent does not reference, by SHA-256; the caller stores what the store lacks. */
	newBlobs: Map<string, Buffer>;
	fileCount: number;
	/** Sum of file sizes in `manifest`. */
	totalBytes: number;
}

/** An operation after validation: normalised paths, content decoded later (it is the costly part). */
type ParsedOp =
	| {
			kind: "write";
			op: "add" | "modify";
			index: number;
			path: string;
			content: string;
			encoding: ContentEncoding;
			mode?: FileMode;
	  }
	| { kind: "delete"; index: number; path: string }
	| { kind: "rename"; index: number; from: string; to: string };

const BASE64_BODY = /^[A-Za-z0-9+/]*$/;
const LONE_SURROGATE = /\p{Cs}/u;

function invalid(field: string, reason: string): never {
	throw new ChangeSetInvalidError("CHANGESET_INVALID", `Invalid change set: ${reason}`, { field, reason });
}

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

function readPath(op: Record<string, unknown>, key: string, field: string): string {
	const value = op[key];
	if (typeof value !== "string") invalid(`${field}.${key}`, `"${key}" must be a string`);
	return normaliseProjectPath(value, `${field}.${key}`);
}

function readMode(op: Record<string, unknown>, field: string): FileMode | undefined {
	const mode = op.mode;
	if (mode === undefined) return undefined;
	if (mode !== 0o644 && mode !== 0o755) invalid(`${field}.mode`, "mode must be 420 (0o644) or 493 (0o755)");
	return mode;
}

function parseOp(raw: unknown, index: number): ParsedOp {
	const field = `changes[${index}]`;
	if (!isRecord(raw)) invalid(field, "operation must be an object");
	switch (raw.op) {
		case "add":
		case "modify": {
			const path = readPath(raw, "path", field);
			if (typeof raw.content !== "string") invalid(`${field}.content`, '"content" must be a string');
			const encoding = raw.encoding ?? "utf8";
			if (encoding !== "utf8" && encoding !== "base64")
				invalid(`${field}.encoding`, 'encoding must be "utf8" or "base64"');
			return {
				kind: "write",
				op: raw.op,
				index,
				path,
				content: raw.content,
				encoding,
				mode: readMode(raw, field)
			};
		}
		case "delete":
			return { kind: "delete", index, path: readPath(raw, "path", field) };
		case "rename": {
			const from = readPath(raw, "from", field);
			const to = readPath(raw, "to", field);
			if (from === to) invalid(`${field}.to`, "rename source and target are the same path");
			return { kind: "rename", index, from, to };
		}
		default:
			return invalid(`${field}.op`, 'op must be "add", "modify", "delete" or "rename"');
	}
}

function touchedPaths(op: ParsedOp): [path: string, field: string][] {
	const field = `changes[${op.index}]`;
	return op.kind === "rename"
		? [
				[op.from, `${field}.from`],
				[op.to, `${field}.to`]
			]
		: [[op.path, `${field}.path`]];
}

function refuseDuplicatePaths(ops: ParsedOp[]): void {
	const firstUse = new Map<string, string>();
	for (const op of ops) {
		for (const [path, field] of touchedPaths(op)) {
			const earlier = firstUse.get(path);
			if (earlier !== undefined) {
				const reason = `"${path}" is already used by ${earlier}; one operation per path`;
				throw new ChangeSetInvalidError("DUPLICATE_PATH_IN_CHANGESET", `Invalid change set: ${reason}`, {
					field,
					reason,
					path
				});
			}
			firstUse.set(path, field);
		}
	}
}

/** Decoded length without decoding, so an oversized upload is refused before it is copied. */
function decodedLength(content: string, encoding: ContentEncoding, field: string): number {
	if (encoding === "utf8") {
		if (LONE_SURROGATE.test(content)) invalid(field, "content is not valid Unicode (lone surrogate)");
		return Buffer.byteLength(content, "utf8");
	}
	const body = content.replace(/={1,2}$/, "");
	const padded = body.length !== content.length;
	if (!BASE64_BODY.test(body) || body.length % 4 === 1 || (padded && content.length % 4 !== 0)) {
		invalid(field, "content is not valid base64");
	}
	return Math.floor((body.length * 3) / 4);
}

function sumSizes(entries: Iterable<ManifestEntry>): number {
	let total = 0;
	for (const entry of entries) total += entry.size;
	return total;
}

function parentDirectories(path: string): string[] {
	const dirs: string[] = [];
	for (let i = path.indexOf("/"); i >= 0; i = path.indexOf("/", i + 1)) dirs.push(path.slice(0, i));
	return dirs;
}

/** Case and file/directory conflicts that the paths in `placed` introduce into `files`. */
function refuseCheckoutConflicts(files: Map<string, ManifestEntry>, placed: [path: string, field: string][]): void {
	if (placed.length === 0) return;
	const pathsByFold = new Map<string, string[]>();
	const directoryFolds = new Set<string>();
	for (const path of files.keys()) {
		const fold = caseFoldKey(path);
		const same = pathsByFold.get(fold);
		if (same) same.push(path);
		else pathsByFold.set(fold, [path]);
		for (const dir of parentDirectories(fold)) directoryFolds.add(dir);
	}
	for (const [path, field] of placed) {
		const fold = caseFoldKey(path);
		const other = pathsByFold.get(fold)!.find(candidate => candidate !== path);
		if (other !== undefined) {
			const reason = `"${path}" differs from "${other}" only by case`;
			throw new PathConflictError("CASE_CONFLICT", `Conflict: ${reason}`, { field, reason, path });
		}
		if (directoryFolds.has(fold)) {
			const reason = `"${path}" is a directory of other files`;
			throw new PathConflictError("FILE_DIRECTORY_CONFLICT", `Conflict: ${reason}`, { field, reason, path });
		}
		for (const dir of parentDirectories(path)) {
			const file = pathsByFold.get(caseFoldKey(dir));
			if (file) {
				const reason = `"${path}" needs "${dir}" to be a directory, but "${file[0]}" is a file`;
				throw new PathConflictError("FILE_DIRECTORY_CONFLICT", `Conflict: ${reason}`, { field, reason, path });
			}
		}
	}
}

/**
 * The manifest that results from applying `ops` to `parent`, and the content it introduces.
 * Throws `ChangeSetInvalidError` (422), `PathInvalidError` (422), `PathConflictError` (409) or
 * `LimitExceededError` (413).
 */
export function applyChangeSet(
	parent: Manifest,
	ops: readonly ChangeOp[],
	limits: Partial<ChangeSetLimits> = {}
): ChangeSetResult {
	const { maxFileBytes, maxProjectBytes, maxFiles, maxOps } = { ...DEFAULT_CHANGESET_LIMITS, ...limits };
	// Callers pass request bodies straight through, so the declared type is checked, not trusted.
	const rawOps: unknown = ops;
	if (!Array.isArray(rawOps)) invalid("changes", "changes must be an array");
	if (rawOps.length === 0) {
		throw new ChangeSetInvalidError("CHANGESET_EMPTY", "Invalid change set: no operations", {
			field: "changes",
			reason: "no operations"
		});
	}
	if (rawOps.length > maxOps) {
		const reason = `${rawOps.length} operations, the limit is ${maxOps}`;
		throw new LimitExceededError("TOO_MANY_OPS", `Change set too large: ${reason}`, {
			field: "changes",
			reason,
			limit: maxOps,
			actual: rawOps.length
		});
	}

	const parsed = rawOps.map((raw: unknown, index) => parseOp(raw, index));
	refuseDuplicatePaths(parsed);
	for (const op of parsed) {
		if (op.kind !== "write") continue;
		const field = `changes[${op.index}].content`;
		const size = decodedLength(op.content, op.encoding, field);
		if (size > maxFileBytes) {
			const reason = `"${op.path}" is ${size} bytes, the limit is ${maxFileBytes}`;
			throw new LimitExceededError("FILE_TOO_LARGE", `File too large: ${reason}`, {
				field,
				reason,
				path: op.path,
				limit: maxFileBytes,
				actual: size
			});
		}
	}

	const parentShas = referencedBlobs(parent);
	const files = new Map<string, ManifestEntry>(Object.entries(parent));
	const newBlobs = new Map<string, Buffer>();
	const placed: [string, string][] = [];
	for (const op of parsed) {
		const field = `changes[${op.index}]`;
		if (op.kind === "rename") {
			const entry = files.get(op.from);
			if (entry === undefined) missing(op.from, `${field}.from`);
			if (files.has(op.to)) exists(op.to, `${field}.to`);
			files.delete(op.from);
			files.set(op.to, entry);
			placed.push([op.to, `${field}.to`]);
			continue;
		}
		const current = files.get(op.path);
		if (op.kind === "delete") {
			if (current === undefined) missing(op.path, `${field}.path`);
			files.delete(op.path);
			continue;
		}
		if (op.op === "add" && current !== undefined) exists(op.path, `${field}.path`);
		if (op.op === "modify" && current === undefined) missing(op.path, `${field}.path`);
		const data = Buffer.from(op.content, op.encoding);
		const sha256 = sha256Hex(data);
		if (!parentShas.has(sha256) && !newBlobs.has(sha256)) newBlobs.set(sha256, data);
		const mode = op.mode ?? (current ? fileModeOf(current) : DEFAULT_FILE_MODE);
		files.set(
			op.path,
			mode === DEFAULT_FILE_MODE ? { sha256, size: data.length } : { sha256, size: data.length, mode }
		);
		if (op.op === "add") placed.push([op.path, `${field}.path`]);
	}

	refuseCheckoutConflicts(files, placed);

	const parentCount = Object.keys(parent).length;
	if (files.size > maxFiles && files.size > parentCount) {
		const reason = `the project would have ${files.size} files, the limit is ${maxFiles}`;
		throw new LimitExceededError("TOO_MANY_FILES", `Project too large: ${reason}`, {
			field: "changes",
			reason,
			limit: maxFiles,
			actual: files.size
		});
	}
	const totalBytes = sumSizes(files.values());
	if (totalBytes > maxProjectBytes && totalBytes > sumSizes(Object.values(parent))) {
		const reason = `the project would be ${totalBytes} bytes, the limit is ${maxProjectBytes}`;
		throw new LimitExceededError("PROJECT_TOO_LARGE", `Project too large: ${reason}`, {
			field: "changes",
			reason,
			limit: maxProjectBytes,
			actual: totalBytes
		});
	}

	return { manifest: manifestFromEntries(files), newBlobs, fileCount: files.size, totalBytes };
}

function missing(path: string, field: string): never {
	const reason = `"${path}" does not exist in the parent version`;
	throw new PathConflictError("PATH_NOT_FOUND", `Conflict: ${reason}`, { field, reason, path });
}

function exists(path: string, field: string): never {
	const reason = `"${path}" already exists`;
	throw new PathConflictError("PATH_EXISTS", `Conflict: ${reason}`, { field, reason, path });
}
