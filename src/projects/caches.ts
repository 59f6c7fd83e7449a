/**
 * The manifest and blob caches. Versions are immutable and blobs content-addressed, so an entry is
 * never stale and nothing is ever invalidated: a manifest is cached once its version exists (a
 * commit seeds it only after its transaction committed), and the TTL only bounds memory.
 *
 * Manifests: first this process's parsed copies (an LRU), then the shared cacher (stored as
 * entries, which survive JSON unchanged), then SQL. Blobs: small ones only, base64 so any cacher
 * keeps them. A failing cacher is logged and bypassed; the stores stay the truth.
 */
import { DomainError, NotFound } from "../errors";
import type { BlobStore } from "./blob-store";
import { manifestFromEntries } from "./manifest";
import type { Manifest, ManifestEntry } from "./manifest";

/** The part of Moleculer's cacher used here. */
export interface CacheBackend {
	get(key: string): Promise<unknown>;
	set(key: string, value: unknown, ttlS?: number): Promise<unknown>;
}

export interface CachesDeps {
	/** The broker's cacher; null when there is none (then only the LRU caches). */
	cacher: CacheBackend | null;
	warn(message: string, detail: string): void;
	/** A version's manifest from SQL, null when it does not exist. */
	readManifest(projectId: string, version: number): Promise<Manifest | null>;
	blobs: BlobStore;
	ttlS: number;
	/** Larger blobs are always read from the store. */
	blobMaxBytes: number;
	/** Parsed manifests kept per process; at the 10,000-file limit one is a few MB. Default 32. */
	hotManifests?: number;
}

const manifestKey = (projectId: string, version: number) => `projects.manifest:${projectId}:${version}`;

export class ProjectCaches {
	/** Parsed manifests of this process, most recently used last. */
	private readonly hot = new Map<string, Manifest>();
	private readonly hotMax: number;

	constructor(private readonly deps: CachesDeps) {
		this.hotMax = deps.hotManifests ?? 32;
	}

	/** A version's manifest, or a 404 `NOT_FOUND` (Version). */
	async manifest(projectId: string, version: number): Promise<Manifest> {
		const key = manifestKey(projectId, version);
		const hot = this.hot.get(key);
		if (hot) {
			this.hot.delete(key);
			this.hot.set(key, hot);
			return hot;
		}
		const cached = await this.get<Array<[string, ManifestEntry]>>(key);
		let manifest: Manifest | null = Array.isArray(cached) ? manifestFromEntries(cached) : null;
		if (!manifest) {
			manifest = await this.deps.readManifest(projectId, version);
			if (!manifest) throw NotFound("Version");
			await this.set(key, Object.entries(manifest));
		}
		this.remember(key, manifest);
		return manifest;
	}

	/** Seeds the caches with the manifest of a version that was just committed. */
	async rememberManifest(projectId: string, version: number, manifest: Manifest): Promise<void> {
		const key = manifestKey(projectId, version);
		this.remember(key, manifest);
		await this.set(key, Object.entries(manifest));
	}

	/** A blob's bytes, or a 500 `BLOB_MISSING` when the store lost it. */
	async blob(entry: ManifestEntry): Promise<Buffer> {
		const cacheable = entry.size <= this.deps.blobMaxBytes;
		const key = `projects.blob:${entry.sha256}`;
		if (cacheable) {
			const cached = await this.get<string>(key);
			if (typeof cached === "string") return Buffer.from(cached, "base64");
		}
		const data = await this.deps.blobs.get(entry.sha256);
		if (data === null) throw new DomainError("BLOB_MISSING", 500, `Blob ${entry.sha256} is missing from the store`);
		if (cacheable) await this.set(key, data.toString("base64"));
		return data;
	}

	private remember(key: string, manifest: Manifest): void {
		this.hot.delete(key);
		this.hot.set(key, manifest);
		if (this.hot.size > this.hotMax) this.hot.delete(this.hot.keys().next().value!);
	}

	private async get<T>(key: string): Promise<T | null> {
		if (!this.deps.cacher) return null;
		try {
			return ((await this.deps.cacher.get(key)) as T | null) ?? null;
		} catch (err) {
			this.deps.warn("projects cache read failed", (err as Error).message);
			return null;
		}
	}

	private async set(key: string, value: unknown): Promise<void> {
		if (!this.deps.cacher) return;
		try {
			await this.deps.cacher.set(key, value, this.deps.ttlS);
		} catch (err) {
			this.deps.warn("projects cache write failed", (err as Error).message);
		}
	}
}
