/**
 * Garbage collection of blobs that no version of any project references, safe against commits
 * running at the same time (see blob-store.ts for the race). Blobs are scanned without a lock;
 * each batch of candidates is then re-checked and deleted while `exclusive` keeps commits out
 * (the service uses a PostgreSQL advisory lock that commits take in shared mode). A commit either
 * finished before the batch's lock (its references are visible to the re-check) or starts after
 * it (and, holding the shared lock, finds the blob missing and stores it again).
 */
import type { Transaction } from "sequelize";
import type { BlobStore, GcResult } from "./blob-store";
import type { ProjectsRepository } from "./repository";

export interface GcDeps<L> {
	store: BlobStore;
	/** Runs `fn` while no commit can record references or store blobs. */
	exclusive<T>(fn: (lock: L) => Promise<T>): Promise<T>;
	/** Which of `shas` some version references, seen from inside the lock. */
	referenced(shas: string[], lock: L): Promise<Set<string>>;
	/** Deletes blobs from inside the lock; returns how many were deleted. */
	deleteBlobs(shas: string[], lock: L): Promise<number>;
}

export interface CollectGarbageOptions {
	/** Unreferenced blobs created at or after this instant are spared (in-flight commits). */
	olderThan?: Date;
	/** Candidates per locked re-check. Default 500. */
	batchSize?: number;
	dryRun?: boolean;
}

export async function collectGarbage<L>(deps: GcDeps<L>, options: CollectGarbageOptions = {}): Promise<GcResult> {
	const { olderThan, batchSize = 500, dryRun = false } = options;
	const result: GcResult = { scanned: 0, deleted: 0, spared: 0 };
	let young: string[] = [];
	let batch: string[] = [];
	const flush = async (): Promise<void> => {
		const candidates = batch;
		const spare = young;
		batch = [];
		young = [];
		if (candidates.length === 0 && spare.length === 0) return;
		const { deleted, spared } = await deps.exclusive(async lock => {
			const refs = await deps.referenced([...candidates, ...spare], lock);
			const doomed = candidates.filter(sha => !refs.has(sha));
			const sparedCount = spare.filter(sha => !refs.has(sha)).length;
			if (doomed.length === 0 || dryRun) return { deleted: doomed.length, spared: sparedCount };
			return { deleted: await deps.deleteBlobs(doomed, lock), spared: sparedCount };
		});
		result.deleted += deleted;
		result.spared += spared;
	};
	for await (const blob of deps.store.iterate()) {
		result.scanned++;
		if (olderThan !== undefined && blob.createdAt >= olderThan) young.push(blob.sha256);
		else batch.push(blob.sha256);
		if (batch.length + young.length >= batchSize) await flush();
	}
	await flush();
	return result;
}

export interface BlobGcDeps {
	store: BlobStore;
	repo: Pick<ProjectsRepository, "lockForGc" | "referencedBlobs">;
	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
}

/**
 * The service's GC: `collectGarbage` with the exclusive side of the advisory lock commits share
 * (repository.ts), deleting in the lock's transaction, then the store's own leftovers (temporary
 * files of crashed fs writers) older than the grace period.
 */
export async function runBlobGc(
	deps: BlobGcDeps,
	opts: { dryRun: boolean; graceS: number }
): Promise<GcResult & { removedTempFiles: number }> {
	const { store, repo } = deps;
	const olderThan = new Date(Date.now() - opts.graceS * 1000);
	const result = await collectGarbage<Transaction>(
		{
			store,
			exclusive: fn =>
				deps.transaction(async tx => {
					await repo.lockForGc(tx);
					return fn(tx);
				}),
			referenced: (shas, tx) => repo.referencedBlobs(shas, tx),
			deleteBlobs: (shas, tx) => store.delete(shas, { transaction: tx })
		},
		{ olderThan, dryRun: opts.dryRun }
	);
	const removedTempFiles = opts.dryRun ? 0 : ((await store.removeStaleTempFiles?.(olderThan)) ?? 0);
	return { ...result, removedTempFiles };
}
