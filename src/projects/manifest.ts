/**
 * A version's manifest: normalised path → content hash, size and mode. Manifests are plain JSON
 * objects so they store as JSONB as-is, but they are built with a null prototype, because
 * `__proto__` and `constructor` are valid project paths.
 */
import { comparePaths } from "./paths";

/** Regular file (0o644, the default when `mode` is absent) or executable (0o755). */
export type FileMode = 0o644 | 0o755;
export const DEFAULT_FILE_MODE: FileMode = 0o644;

export interface ManifestEntry {
	/** Lower-case hex SHA-256 of the content; the key of its blob. */
	readonly sha256: string;
	/** Content length in bytes. */
	readonly size: number;
	/** Absent means 0o644. */
	readonly mode?: FileMode;
}

export type Manifest = Readonly<Record<string, ManifestEntry>>;

export function emptyManifest(): Manifest {
	return Object.create(null) as Manifest;
}

/** A manifest object with keys in `comparePaths` order, so the stored JSON is deterministic. */
export function manifestFromEntries(entries: Iterable<readonly [string, ManifestEntry]>): Manifest {
	const sorted = [...entries].sort(([a], [b]) => comparePaths(a, b));
	const manifest = Object.create(null) as Record<string, ManifestEntry>;
	for (const [path, entry] of sorted) manifest[path] = entry;
	return manifest;
}

export function fileModeOf(entry: ManifestEntry): FileMode {
	return entry.mode ?? DEFAULT_FILE_MODE;
}

/** Every blob a manifest references, for GC and for `BlobStore.has`. */
export function referencedBlobs(manifest: Manifest): Set<string> {
	return new Set(Object.values(manifest).map(entry => entry.sha256));
}

export interface PathEntry {
	path: string;
	entry: ManifestEntry;
}

export interface ModifiedPath {
	path: string;
	from: ManifestEntry;
	to: ManifestEntry;
}

export interface RenamedPath {
	from: string;
	to: string;
	/** The entry at `to` in the newer manifest; its mode may differ from the old one. */
	entry: ManifestEntry;
}

export interface ManifestDiff {
	added: PathEntry[];
	removed: PathEntry[];
	/** Same path, different content or mode. */
	modified: ModifiedPath[];
	/** Same content moved: a path removed and a path added with the same SHA-256. */
	renamed: RenamedPath[];
}

function basename(path: string): string {
	return path.slice(path.lastIndexOf("/") + 1);
}

function groupBySha(items: PathEntry[]): Map<string, PathEntry[]> {
	const groups = new Map<string, PathEntry[]>();
	for (const item of items) {
		const group = groups.get(item.entry.sha256);
		if (group) group.push(item);
		else groups.set(item.entry.sha256, [item]);
	}
	return groups;
}

/**
 * Pairs removed and added paths of one hash: first those with the same file name (a move to
 * another directory), then the rest in path order.
 */
function pairRenames(removed: PathEntry[], added: PathEntry[]): RenamedPath[] {
	const pairs: RenamedPath[] = [];
	const unmatchedAdded = [...added];
	const unmatchedRemoved: PathEntry[] = [];
	for (const old of removed) {
		const i = unmatchedAdded.findIndex(candidate => basename(candidate.path) === basename(old.path));
		if (i >= 0) {
			pairs.push({ from: old.path, to: unmatchedAdded[i].path, entry: unmatchedAdded[i].entry });
			unmatchedAdded.splice(i, 1);
		} else {
			unmatchedRemoved.push(old);
		}
	}
	const n = Math.min(unmatchedRemoved.length, unmatchedAdded.length);
	for (let i = 0; i < n; i++) {
		pairs.push({ from: unmatchedRemoved[i].path, to: unmatchedAdded[i].path, entry: unmatchedAdded[i].entry });
	}
	return pairs;
}

/**
 * What changed from manifest `a` to manifest `b`, every list sorted by path (`renamed` by its
 * source path). Empty files are never reported as renames: they all share one hash, so
 * "deleted one empty file, added another" is not a move.
 */
export function manifestDiff(a: Manifest, b: Manifest): ManifestDiff {
	const removedAll: PathEntry[] = [];
	const addedAll: PathEntry[] = [];
	const modified: ModifiedPath[] = [];
	for (const [path, from] of Object.entries(a)) {
		if (!Object.hasOwn(b, path)) {
			removedAll.push({ path, entry: from });
			continue;
		}
		const to = b[path];
		if (to.sha256 !== from.sha256 || fileModeOf(to) !== fileModeOf(from)) modified.push({ path, from, to });
	}
	for (const [path, entry] of Object.entries(b)) {
		if (!Object.hasOwn(a, path)) addedAll.push({ path, entry });
	}
	const byPath = (x: PathEntry, y: PathEntry): number => comparePaths(x.path, y.path);
	removedAll.sort(byPath);
	addedAll.sort(byPath);

	const addedBySha = groupBySha(addedAll.filter(item => item.entry.size > 0));
	const renamed: RenamedPath[] = [];
	for (const [sha, removedGroup] of groupBySha(removedAll.filter(item => item.entry.size > 0))) {
		const addedGroup = addedBySha.get(sha);
		if (addedGroup) renamed.push(...pairRenames(removedGroup, addedGroup));
	}
	const renamedFrom = new Set(renamed.map(r => r.from));
	const renamedTo = new Set(renamed.map(r => r.to));
	renamed.sort((x, y) => comparePaths(x.from, y.from) || comparePaths(x.to, y.to));
	modified.sort((x, y) => comparePaths(x.path, y.path));

	return {
		added: addedAll.filter(item => !renamedTo.has(item.path)),
		removed: removedAll.filter(item => !renamedFrom.has(item.path)),
		modified,
		renamed
	};
}
