/**
 * Versions: committing a change set, comparing two versions, serving a file of one and checking
 * one against the store.
 * The collaborators come in as parameters (the repository's queries, the blob store, the caches,
 * the transaction runner and the durable publisher), so unit tests drive every branch with fakes.
 *
 * A commit: check the base against the head, apply the change set to the parent manifest (pure,
 * changeset.ts), then in one transaction: take the shared GC lock, advance the head conditionally,
 * store the blobs the store lacks (in that transaction: blob-store.ts), insert the version and its
 * blob references, and publish `projects.version.created`. Only once that committed is the new
 * manifest cached. Any failure rolls the whole transaction back: nothing of the version remains.
 */
import type { Transaction } from "sequelize";
import { Conflict, DomainError, NotFound } from "../errors";
import type { BlobStore } from "./blob-store";
import { applyChangeSet } from "./changeset";
import type { ChangeOp, ChangeSetLimits } from "./changeset";
import type { ProjectCaches } from "./caches";
import { contentTypeFor } from "./content-type";
import { ProjectDomainError } from "./errors";
import { resolveVersion } from "./guard";
import { sha256Hex } from "./hash";
import { manifestDiff } from "./manifest";
import type { Manifest, ManifestEntry } from "./manifest";
import { normaliseProjectPath } from "./paths";
import type { ProjectRecord, ProjectsRepository, VersionRecord } from "./repository";
import { fileResponseHeaders } from "./serving";
import type { UnifiedDiffKind } from "./textdiff";
import { unifiedDiff } from "./textdiff";
import { entryView, iso } from "./views";

export const VERSION_CREATED = "projects.version.created";

export interface CommitInput {
	projectId: string;
	userId: string;
	baseVersion: number;
	message: string;
	changes: ChangeOp[];
	taskId: string | null;
	idempotencyKey: string | null;
}

export interface VersionCreatedEvent {
	projectId: string;
	version: number;
	parentVersion: number;
	authorId: string;
	taskId: string | null;
	message: string;
	fileCount: number;
	totalBytes: number;
	changes: { added: number; removed: number; modified: number; renamed: number };
	createdAt: string;
}

export interface CommitDeps {
	repo: Pick<
		ProjectsRepository,
		"project" | "versionByIdempotencyKey" | "lockOutGc" | "advanceHead" | "insertVersion" | "addBlobRefs"
	>;
	blobs: BlobStore;
	caches: {
		manifest(projectId: string, version: number): Promise<Manifest>;
		rememberManifest(projectId: string, version: number, manifest: Manifest): Promise<void>;
	};
	/** Runs `fn` in a transaction: commits when it resolves, rolls back when it throws. */
	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
	/** Writes a durable event in `tx` (transactional outbox). */
	publish(tx: Transaction, topic: string, payload: unknown): Promise<unknown>;
	limits: Partial<ChangeSetLimits>;
}

function isUniqueViolation(err: unknown): boolean {
	const e = err as { parent?: { code?: string }; original?: { code?: string } } | null;
	return (e?.parent ?? e?.original)?.code === "23505";
}

const archived = () => Conflict("The project is archived; unarchive it to commit", "PROJECT_ARCHIVED");

function stale(baseVersion: number, headVersion: number) {
	return Conflict(
		`Version ${baseVersion} is not the head; the head is version ${headVersion}. Rebase your changes on it.`,
		"VERSION_CONFLICT",
		{ field: "baseVersion", reason: "the base version is not the head", baseVersion, headVersion }
	);
}

/** The live project a commit may go to: 404 when gone, 409 when archived. */
function committable(project: ProjectRecord | null): ProjectRecord {
	if (!project || project.status === "deleted") throw NotFound("Project");
	if (project.status === "archived") throw archived();
	return project;
}

/**
 * Commits a change set as the next version. With an idempotency key, a retry answers with the
 * version the first attempt made, also when retries raced each other (one made the version, the
 * others found the head moved or the key taken: they are the same request).
 */
export async function commitVersion(deps: CommitDeps, input: CommitInput): Promise<VersionRecord> {
	const { projectId, userId, idempotencyKey } = input;
	if (!idempotencyKey) return commitOnce(deps, input);
	const earlier = await deps.repo.versionByIdempotencyKey(projectId, userId, idempotencyKey);
	if (earlier) return earlier;
	try {
		return await commitOnce(deps, input);
	} catch (err) {
		if ((err instanceof DomainError && err.code === "VERSION_CONFLICT") || isUniqueViolation(err)) {
			const made = await deps.repo.versionByIdempotencyKey(projectId, userId, idempotencyKey);
			if (made) return made;
		}
		throw err;
	}
}

async function commitOnce(deps: CommitDeps, input: CommitInput): Promise<VersionRecord> {
	const { repo } = deps;
	const { projectId, baseVersion, idempotencyKey } = input;
	const project = committable(await repo.project(projectId));
	if (baseVersion !== project.headVersion) throw stale(baseVersion, project.headVersion);

	const parent = await deps.caches.manifest(projectId, baseVersion);
	const next = applyChangeSet(parent, input.changes, deps.limits);
	const { manifest, newBlobs, fileCount, totalBytes } = next;

	let version: VersionRecord;
	try {
		version = await deps.transaction(async tx => {
			// Shared with other commits, exclusive with GC: a blob found here stays until this commits.
			await repo.lockOutGc(tx);
			if (!(await repo.advanceHead(tx, projectId, baseVersion, fileCount, totalBytes)))
				throw stale(baseVersion, committable(await repo.project(projectId, tx)).headVersion);
			await storeMissing(deps.blobs, newBlobs, tx);
			const created = await repo.insertVersion(tx, {
				projectId,
				number: baseVersion + 1,
				manifest,
				message: input.message,
				authorId: input.userId,
				taskId: input.taskId,
				idempotencyKey,
				fileCount,
				totalBytes
			});
			await repo.addBlobRefs(tx, projectId, [...newBlobs.keys()]);
			await deps.publish(tx, VERSION_CREATED, createdEvent(input, created, parent, next));
			return created;
		});
	} catch (err) {
		// A unique violation on the key is commitVersion's to answer; on the number, another commit won.
		if (isUniqueViolation(err) && !idempotencyKey) {
			const now = await repo.project(projectId);
			throw stale(baseVersion, now?.headVersion ?? baseVersion + 1);
		}
		throw err;
	}
	await deps.caches.rememberManifest(projectId, version.number, manifest);
	return version;
}

/** Stores the blobs of `blobs` that `store` lacks, in `tx`; returns how many it created. */
export async function storeMissing(store: BlobStore, blobs: Map<string, Buffer>, tx: Transaction): Promise<number> {
	if (blobs.size === 0) return 0;
	const present = await store.has([...blobs.keys()], { transaction: tx });
	const missing = [...blobs].filter(([sha]) => !present.has(sha));
	if (missing.length === 0) return 0;
	return (await store.putMany(missing, { transaction: tx })).size;
}

function createdEvent(
	input: CommitInput,
	created: VersionRecord,
	parent: Manifest,
	next: { manifest: Manifest; fileCount: number; totalBytes: number }
): VersionCreatedEvent {
	const d = manifestDiff(parent, next.manifest);
	return {
		projectId: input.projectId,
		version: created.number,
		parentVersion: input.baseVersion,
		authorId: input.userId,
		taskId: input.taskId,
		message: input.message,
		fileCount: next.fileCount,
		totalBytes: next.totalBytes,
		changes: {
			added: d.added.length,
			removed: d.removed.length,
			modified: d.modified.length,
			renamed: d.renamed.length
		},
		createdAt: iso(created.createdAt)!
	};
}

export interface DiffOptions {
	/** Compute unified patches (at most `maxPatchFiles`); sides over `maxFileBytes` are "too-large". */
	patches: boolean;
	maxPatchFiles: number;
	maxFileBytes: number;
}

/** What changed from manifest `a` to `b`, with unified patches read through `readBlob`. */
export async function diffManifests(
	a: Manifest,
	b: Manifest,
	readBlob: (entry: ManifestEntry) => Promise<Buffer>,
	opts: DiffOptions
) {
	const d = manifestDiff(a, b);
	const maxBytes = opts.maxFileBytes;
	const work: Array<{ path: string; old: ManifestEntry | null; new: ManifestEntry | null }> = [
		...d.added.map(x => ({ path: x.path, old: null, new: x.entry })),
		...d.removed.map(x => ({ path: x.path, old: x.entry, new: null })),
		...d.modified.map(x => ({ path: x.path, old: x.from, new: x.to }))
	];
	const wanted = opts.patches ? work.slice(0, opts.maxPatchFiles) : [];
	const patches: Array<{ path: string; kind: UnifiedDiffKind; patch: string }> = [];
	for (const w of wanted) {
		if ((w.old?.size ?? 0) > maxBytes || (w.new?.size ?? 0) > maxBytes) {
			patches.push({
				path: w.path,
				kind: "too-large",
				patch: `File too large to diff (limit ${maxBytes} bytes)\n`
			});
			continue;
		}
		const [oldBuf, newBuf] = await Promise.all([w.old && readBlob(w.old), w.new && readBlob(w.new)]);
		const u = unifiedDiff(w.path, oldBuf, newBuf, { maxBytes });
		if (u.kind !== "identical") patches.push({ path: w.path, kind: u.kind, patch: u.patch });
	}
	patches.sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
	return {
		added: d.added.map(x => ({ path: x.path, ...entryView(x.entry) })),
		removed: d.removed.map(x => ({ path: x.path, ...entryView(x.entry) })),
		modified: d.modified.map(x => ({ path: x.path, from: entryView(x.from), to: entryView(x.to) })),
		renamed: d.renamed.map(x => ({ from: x.from, to: x.to, ...entryView(x.entry) })),
		patches: opts.patches ? patches : undefined,
		patchesTruncated: opts.patches && work.length > wanted.length
	};
}

export type BlobProblem = "missing" | "corrupt" | "size-mismatch";

/**
 * Re-reads every blob of `manifest` straight from the store (never a cache) and re-hashes it here,
 * whatever the store's own setting.
 */
export async function verifyManifest(store: BlobStore, manifest: Manifest) {
	const problems: Array<{ path: string; sha256: string; problem: BlobProblem }> = [];
	let checked = 0;
	for (const [path, entry] of Object.entries(manifest)) {
		checked++;
		const problem = await blobProblem(store, entry);
		if (problem) problems.push({ path, sha256: entry.sha256, problem });
	}
	return { checked, ok: problems.length === 0, problems };
}

async function blobProblem(store: BlobStore, entry: ManifestEntry): Promise<BlobProblem | null> {
	let data: Buffer | null;
	try {
		data = await store.get(entry.sha256);
	} catch (err) {
		if (err instanceof ProjectDomainError && err.code === "BLOB_CORRUPT") return "corrupt";
		throw err;
	}
	if (data === null) return "missing";
	if (sha256Hex(data) !== entry.sha256) return "corrupt";
	return data.length !== entry.size ? "size-mismatch" : null;
}

/**
 * One file of a version (default the head) as served: its bytes, content type and response headers
 * (serving.ts), or a 404 naming the path. `rawPath` is validated by the path rules first.
 */
export async function fileAt(
	caches: Pick<ProjectCaches, "manifest" | "blob">,
	project: ProjectRecord,
	rawPath: string,
	requested: number | undefined
): Promise<{ data: Buffer; contentType: string; headers: Record<string, string> }> {
	const path = normaliseProjectPath(rawPath, "path");
	const version = resolveVersion(project, requested);
	const manifest = await caches.manifest(project.id, version);
	const entry = Object.hasOwn(manifest, path) ? manifest[path] : undefined;
	if (!entry) throw NotFound("File", { field: "path", reason: `no file "${path}" in version ${version}`, path });
	const data = await caches.blob(entry);
	const contentType = contentTypeFor(path, data);
	const pinned = requested !== undefined;
	const headers = fileResponseHeaders({ path, contentType, sha256: entry.sha256, version, pinned });
	return { data, contentType, headers: { ...headers, "Content-Length": String(data.length) } };
}
