/**
 * Content-addressed blob storage for project files. A blob's key is the SHA-256 of its bytes
 * (lower-case hex); stores refuse data that does not hash to its key (`BLOB_HASH_MISMATCH`)
 * and keys that are not 64 hex digits (`BLOB_KEY_INVALID`), and by default re-hash on read,
 * reporting damage as `BLOB_CORRUPT`. Blobs are shared across versions and projects, so a blob
 * is only ever deleted by `gcUnreferenced`.
 *
 * Garbage collection and commits race: a commit may `put` (or find already present) a blob
 * that GC has just judged unreferenced, then record a manifest pointing at a deleted blob.
 * `olderThan` protects freshly created blobs but not old ones being re-used, so the caller must
 * keep GC and commits apart (e.g. a PostgreSQL advisory lock taken by both) or re-check
 * references inside the predicate under that lock.
 *
 * Every call takes the caller's database transaction (`{ transaction }`), so a commit uses any store
 * alike: a store that keeps blobs in the database (pg) reads and writes inside it, so its writes
 * commit or roll back with the version; one that keeps them elsewhere (fs) ignores it, and what a
 * rolled-back commit wrote is unreferenced, left for GC after its grace period.
 */
import type { Transaction } from "sequelize";

export interface BlobInfo {
	sha256: string;
	size: number;
	createdAt: Date;
}

/** The caller's transaction, for stores that keep blobs in the database. */
export interface BlobCallOptions {
	transaction?: Transaction;
}

export interface BlobStore {
	/** Stores `data` under `sha256`; false if the blob was already there. */
	put(sha256: string, data: Buffer, options?: BlobCallOptions): Promise<boolean>;
	/** Stores several blobs; returns the keys that were newly created. */
	putMany(blobs: Iterable<readonly [string, Buffer]>, options?: BlobCallOptions): Promise<Set<string>>;
	/** The blob's bytes, or null if it is not stored. */
	get(sha256: string, options?: BlobCallOptions): Promise<Buffer | null>;
	/** Which of `shas` are stored. */
	has(shas: readonly string[], options?: BlobCallOptions): Promise<Set<string>>;
	/** Deletes the blobs that exist among `shas`; returns how many were deleted. */
	delete(shas: readonly string[], options?: BlobCallOptions): Promise<number>;
	/** Every stored blob, without its data, for GC and audits. */
	iterate(): AsyncIterable<BlobInfo>;
	/** Removes what crashed writers left behind before `olderThan` (files of the fs store); how many. */
	removeStaleTempFiles?(olderThan: Date): Promise<number>;
}

export type ReferencePredicate = (sha256: string) => Promise<boolean>;

export interface GcOptions {
	/** Only blobs created before this instant are candidates (a grace period for in-flight commits). */
	olderThan?: Date;
	/** Blobs deleted per `delete` call. Default 500. */
	batchSize?: number;
	/** Count what would be deleted, delete nothing. */
	dryRun?: boolean;
}

export interface GcResult {
	scanned: number;
	deleted: number;
	/** Unreferenced blobs spared by `olderThan`. */
	spared: number;
}

/**
 * Deletes every blob in `store` that `referenced` does not contain (or for which it answers
 * false). See the module comment for the race with commits that the caller must exclude.
 */
export async function gcUnreferenced(
	store: BlobStore,
	referenced: ReadonlySet<string> | ReferencePredicate,
	options: GcOptions = {}
): Promise<GcResult> {
	const { olderThan, batchSize = 500, dryRun = false } = options;
	const isReferenced: ReferencePredicate =
		typeof referenced === "function" ? referenced : async sha => referenced.has(sha);
	const result: GcResult = { scanned: 0, deleted: 0, spared: 0 };
	let batch: string[] = [];
	const flush = async (): Promise<void> => {
		if (batch.length === 0) return;
		result.deleted += dryRun ? batch.length : await store.delete(batch);
		batch = [];
	};
	for await (const blob of store.iterate()) {
		result.scanned++;
		if (await isReferenced(blob.sha256)) continue;
		if (olderThan !== undefined && blob.createdAt >= olderThan) {
			result.spared++;
			continue;
		}
		batch.push(blob.sha256);
		if (batch.length >= batchSize) await flush();
	}
	await flush();
	return result;
}
