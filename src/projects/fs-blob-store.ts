/**
 * Blobs as files under a root directory, fanned out as `ab/cd/<sha256>` so no directory grows
 * past 65,536 entries per level. A blob is written to a temporary file in its final directory,
 * fsynced, renamed into place and the directory fsynced, so a crash leaves either the whole
 * blob or a `.tmp-*` file (`removeStaleTempFiles` clears those), never a torn blob. Files are
 * created read-only (0444): blobs are immutable.
 *
 * Two concurrent puts of the same new blob may both report `true`; the content is identical,
 * so only the count is off. The files are outside any database transaction, so the store takes
 * none (blob-store.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { BlobInfo, BlobStore } from "./blob-store";
import { BlobIntegrityError } from "./errors";
import { assertSha256Hex, isSha256Hex, sha256Hex, verifyBlob } from "./hash";

export interface FsBlobStoreOptions {
	/** Re-hash blobs on `get`. Default true. */
	verifyOnRead?: boolean;
	/** fsync files and directories on `put`. Default true; tests may turn it off. */
	fsync?: boolean;
}

const FAN_OUT = /^[0-9a-f]{2}$/;
const TEMP_PREFIX = ".tmp-";
const PARALLEL_STATS = 64;
/** `put` fsyncs each file; a few at a time overlap the syncs. */
const PARALLEL_PUTS = 16;

function isMissing(err: unknown): boolean {
	return (err as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

async function fsyncDirectory(dir: string): Promise<void> {
	const handle = await open(dir, "r");
	try {
		await handle.sync();
	} finally {
		await handle.close();
	}
}

async function sortedNames(dir: string): Promise<string[]> {
	try {
		return (await readdir(dir)).sort();
	} catch (err) {
		if (isMissing(err)) return [];
		throw err;
	}
}

export class FsBlobStore implements BlobStore {
	private readonly verifyOnRead: boolean;
	private readonly fsync: boolean;

	constructor(
		readonly root: string,
		options: FsBlobStoreOptions = {}
	) {
		this.verifyOnRead = options.verifyOnRead ?? true;
		this.fsync = options.fsync ?? true;
	}

	/** Where a blob lives; the key is validated first, since it becomes a file name. */
	pathFor(sha256: string): string {
		assertSha256Hex(sha256);
		return join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
	}

	async put(sha256: string, data: Buffer): Promise<boolean> {
		verifyBlob(sha256, data);
		const target = this.pathFor(sha256);
		if (await this.exists(target)) return false;
		const dir = dirname(target);
		const createdDir = await mkdir(dir, { recursive: true });
		const temp = join(dir, `${TEMP_PREFIX}${sha256}-${randomBytes(6).toString("hex")}`);
		try {
			const handle = await open(temp, "wx", 0o444);
			try {
				await handle.writeFile(data);
				if (this.fsync) await handle.sync();
			} finally {
				await handle.close();
			}
			await rename(temp, target);
		} catch (err) {
			await rm(temp, { force: true });
			throw err;
		}
		if (this.fsync) {
			await fsyncDirectory(dir);
			// New fan-out directories must themselves survive a crash.
			if (createdDir !== undefined) {
				await fsyncDirectory(dirname(dir));
				await fsyncDirectory(this.root);
			}
		}
		return true;
	}

	async putMany(blobs: Iterable<readonly [string, Buffer]>): Promise<Set<string>> {
		const list = [...new Map(blobs)];
		for (const [sha256, data] of list) verifyBlob(sha256, data);
		const created = new Set<string>();
		for (let i = 0; i < list.length; i += PARALLEL_PUTS) {
			const slice = list.slice(i, i + PARALLEL_PUTS);
			const done = await Promise.all(slice.map(([sha256, data]) => this.put(sha256, data)));
			slice.forEach(([sha256], j) => done[j] && created.add(sha256));
		}
		return created;
	}

	async get(sha256: string): Promise<Buffer | null> {
		let data: Buffer;
		try {
			data = await readFile(this.pathFor(sha256));
		} catch (err) {
			if (isMissing(err)) return null;
			throw err;
		}
		if (this.verifyOnRead && sha256Hex(data) !== sha256) {
			const reason = `stored data no longer hashes to ${sha256}`;
			throw new BlobIntegrityError("BLOB_CORRUPT", `Blob corrupt: ${reason}`, { field: "sha256", reason });
		}
		return data;
	}

	async has(shas: readonly string[]): Promise<Set<string>> {
		const unique = [...new Set(shas)];
		const paths = unique.map(sha => this.pathFor(sha));
		const found = new Set<string>();
		for (let i = 0; i < unique.length; i += PARALLEL_STATS) {
			const slice = unique.slice(i, i + PARALLEL_STATS);
			const present = await Promise.all(slice.map((_, j) => this.exists(paths[i + j])));
			slice.forEach((sha, j) => present[j] && found.add(sha));
		}
		return found;
	}

	async delete(shas: readonly string[]): Promise<number> {
		let deleted = 0;
		for (const sha of new Set(shas)) {
			try {
				await unlink(this.pathFor(sha));
				deleted++;
			} catch (err) {
				if (!isMissing(err)) throw err;
			}
		}
		return deleted;
	}

	async *iterate(): AsyncIterable<BlobInfo> {
		for (const first of await sortedNames(this.root)) {
			if (!FAN_OUT.test(first)) continue;
			for (const second of await sortedNames(join(this.root, first))) {
				if (!FAN_OUT.test(second)) continue;
				const dir = join(this.root, first, second);
				for (const name of await sortedNames(dir)) {
					if (!isSha256Hex(name) || !name.startsWith(first + second)) continue;
					try {
						const info = await stat(join(dir, name));
						yield { sha256: name, size: info.size, createdAt: new Date(info.mtimeMs) };
					} catch (err) {
						if (!isMissing(err)) throw err; // deleted while we were listing
					}
				}
			}
		}
	}

	/** Deletes temporary files that crashed writers left behind before `olderThan`. */
	async removeStaleTempFiles(olderThan: Date): Promise<number> {
		let removed = 0;
		for (const first of await sortedNames(this.root)) {
			if (!FAN_OUT.test(first)) continue;
			for (const second of await sortedNames(join(this.root, first))) {
				const dir = join(this.root, first, second);
				for (const name of await sortedNames(dir)) {
					if (!name.startsWith(TEMP_PREFIX)) continue;
					const path = join(dir, name);
					const info = await stat(path).catch(() => null);
					if (info && info.mtime < olderThan) {
						await rm(path, { force: true });
						removed++;
					}
				}
			}
		}
		return removed;
	}

	private async exists(path: string): Promise<boolean> {
		try {
			await stat(path);
			return true;
		} catch (err) {
			if (isMissing(err)) return false;
			throw err;
		}
	}
}
