/**
 * Picking the files an AI task gets as context: text files in path order (or the requested paths
 * first, in the order asked), whole files only, until `maxBytes` of UTF-8 content is reached.
 * Files that do not fit the remaining budget are skipped, so smaller ones later in the order still
 * get in; binary files are never sent. Every file left out is listed with the reason, so the
 * caller can tell the model what it did not see.
 */
import type { Manifest, ManifestEntry } from "./manifest";
import { isProbablyText } from "./textdiff";

export interface ContextFile {
	path: string;
	size: number;
	content: string;
}

export interface OmittedFile {
	path: string;
	size: number;
	reason: "binary" | "budget" | "not-found";
}

export interface ContextSelection {
	files: ContextFile[];
	omitted: OmittedFile[];
	/** Bytes of content in `files`. */
	totalBytes: number;
}

export async function selectContext(
	manifest: Manifest,
	load: (entry: ManifestEntry) => Promise<Buffer>,
	options: { maxBytes: number; paths?: readonly string[] }
): Promise<ContextSelection> {
	const order: string[] = options.paths ? [...new Set(options.paths)] : Object.keys(manifest);
	const files: ContextFile[] = [];
	const omitted: OmittedFile[] = [];
	let remaining = options.maxBytes;
	for (const path of order) {
		const entry = Object.hasOwn(manifest, path) ? manifest[path] : undefined;
		if (entry === undefined) {
			omitted.push({ path, size: 0, reason: "not-found" });
			continue;
		}
		if (entry.size > remaining) {
			omitted.push({ path, size: entry.size, reason: "budget" });
			continue;
		}
		const data = await load(entry);
		if (!isProbablyText(data)) {
			omitted.push({ path, size: entry.size, reason: "binary" });
			continue;
		}
		files.push({ path, size: entry.size, content: new TextDecoder("utf-8", { ignoreBOM: true }).decode(data) });
		remaining -= entry.size;
	}
	return { files, omitted, totalBytes: options.maxBytes - remaining };
}
