/**
 * In-memory fakes of the projects use cases' collaborators: a database whose transactions commit
 * or roll back every row they wrote (projects, versions, blob references, outbox events, and the
 * blobs of a store that keeps them in the database), a blob store that can be told to fail, and a
 * cacher. Just enough behaviour for the use cases' branches; the SQL itself is integration-tested.
 */
import type { Transaction } from "sequelize";
import { DomainError } from "../../../src/errors";
import type { BlobCallOptions, BlobInfo, BlobStore } from "../../../src/projects/blob-store";
import type { Manifest } from "../../../src/projects/manifest";
import type { ProjectRecord, VersionRecord } from "../../../src/projects/repository";
import type { CommitDeps } from "../../../src/projects/versions";

export const PROJECT_ID = "11111111-2222-4333-8444-555555555555";

interface StoredVersion extends VersionRecord {
	manifest: Manifest;
	idempotencyKey: string | null;
}

interface State {
	projects: Map<string, ProjectRecord>;
	versions: StoredVersion[];
	blobRefs: Set<string>;
	events: Array<{ topic: string; payload: unknown }>;
	/** Blobs of a store that lives in the database (pg-like); rolled back with the rest. */
	dbBlobs: Map<string, Buffer>;
}

function project(headVersion = 0): ProjectRecord {
	const now = new Date("2026-12-01T00:00:00Z");
	return {
		id: PROJECT_ID,
		seq: 1,
		ownerId: "u1",
		orgId: null,
		name: "p",
		description: "",
		status: "active",
		headVersion,
		fileCount: 0,
		totalBytes: 0,
		createdAt: now,
		updatedAt: now,
		archivedAt: null,
		deletedAt: null
	};
}

function clone(s: State): State {
	return {
		projects: new Map([...s.projects].map(([k, v]) => [k, { ...v }])),
		versions: [...s.versions],
		blobRefs: new Set(s.blobRefs),
		events: [...s.events],
		dbBlobs: new Map(s.dbBlobs)
	};
}

/** A database with one project at version 0 (empty manifest). */
export class FakeDb {
	state: State = {
		projects: new Map([[PROJECT_ID, project()]]),
		versions: [
			{
				projectId: PROJECT_ID,
				number: 0,
				parentNumber: null,
				message: "Project created",
				authorId: "u1",
				taskId: null,
				fileCount: 0,
				totalBytes: 0,
				createdAt: new Date("2026-12-01T00:00:00Z"),
				manifest: {},
				idempotencyKey: null
			}
		],
		blobRefs: new Set(),
		events: [],
		dbBlobs: new Map()
	};
	/** Transactions opened, and whether each committed. */
	transactions: Array<{ tx: Transaction; committed: boolean }> = [];
	gcLockedIn: Transaction[] = [];
	/** Run inside `advanceHead`, before it checks the head (to let a rival commit win the race). */
	beforeAdvance: (() => void) | null = null;
	/** Thrown by `insertVersion` when set (e.g. a unique violation). */
	insertError: unknown = null;

	/** Writes of other (committed) transactions made while one of ours runs: they survive its rollback. */
	private rivals: Array<(s: State) => void> = [];

	transaction = async <T>(fn: (tx: Transaction) => Promise<T>): Promise<T> => {
		const tx = { id: this.transactions.length + 1 } as unknown as Transaction;
		const record = { tx, committed: false };
		this.transactions.push(record);
		const before = clone(this.state);
		this.rivals = [];
		try {
			const result = await fn(tx);
			record.committed = true;
			return result;
		} catch (err) {
			this.state = before;
			for (const write of this.rivals) write(this.state);
			throw err;
		} finally {
			this.rivals = [];
		}
	};

	/** A write another transaction commits right now. */
	rival(write: (s: State) => void): void {
		write(this.state);
		this.rivals.push(write);
	}

	publish = async (_tx: Transaction, topic: string, payload: unknown): Promise<void> => {
		this.state.events.push({ topic, payload });
	};

	get project(): ProjectRecord {
		return this.state.projects.get(PROJECT_ID)!;
	}

	repo: CommitDeps["repo"] = {
		project: async id => {
			const p = this.state.projects.get(id);
			return p ? { ...p } : null;
		},
		versionByIdempotencyKey: async (projectId, authorId, key) =>
			this.state.versions.find(
				v => v.projectId === projectId && v.authorId === authorId && v.idempotencyKey === key
			) ?? null,
		lockOutGc: async tx => {
			this.gcLockedIn.push(tx);
		},
		advanceHead: async (_tx, projectId, base, fileCount, totalBytes) => {
			this.beforeAdvance?.();
			const p = this.state.projects.get(projectId);
			if (!p || p.headVersion !== base || p.status !== "active") return false;
			Object.assign(p, { headVersion: base + 1, fileCount, totalBytes });
			return true;
		},
		insertVersion: async (_tx, v) => {
			if (this.insertError) throw this.insertError;
			const row: StoredVersion = {
				...v,
				parentNumber: v.number - 1,
				createdAt: new Date("2026-12-02T00:00:00Z")
			};
			this.state.versions.push(row);
			return row;
		},
		addBlobRefs: async (_tx, _projectId, shas) => {
			for (const sha of shas) this.state.blobRefs.add(sha);
		}
	};

	manifestOf(number: number): Manifest | null {
		return this.state.versions.find(v => v.number === number)?.manifest ?? null;
	}

	versionNumbers(): number[] {
		return this.state.versions.map(v => v.number);
	}

	/** A rival commit moves the head to `headVersion`. */
	moveHead(headVersion: number): void {
		this.rival(s => (s.projects.get(PROJECT_ID)!.headVersion = headVersion));
	}
}

/**
 * A blob store over a map: `inDb` keeps it in the FakeDb (rolled back with its transactions, like
 * the pg store), else it keeps its own (like the fs store). Records the transaction of every call.
 */
export class FakeBlobStore implements BlobStore {
	private readonly own = new Map<string, Buffer>();
	calls: Array<{ method: string; transaction: Transaction | undefined; keys: string[] }> = [];
	failPut: Error | null = null;

	constructor(private readonly db: FakeDb | null = null) {}

	private get map(): Map<string, Buffer> {
		return this.db ? this.db.state.dbBlobs : this.own;
	}

	async put(sha: string, data: Buffer, options?: BlobCallOptions): Promise<boolean> {
		return (await this.putMany([[sha, data]], options)).size === 1;
	}

	async putMany(blobs: Iterable<readonly [string, Buffer]>, options?: BlobCallOptions): Promise<Set<string>> {
		const list = [...blobs];
		this.calls.push({ method: "putMany", transaction: options?.transaction, keys: list.map(([k]) => k) });
		if (this.failPut) throw this.failPut;
		const created = new Set<string>();
		for (const [sha, data] of list)
			if (!this.map.has(sha)) {
				this.map.set(sha, data);
				created.add(sha);
			}
		return created;
	}

	async get(sha: string): Promise<Buffer | null> {
		return this.map.get(sha) ?? null;
	}

	async has(shas: readonly string[], options?: BlobCallOptions): Promise<Set<string>> {
		this.calls.push({ method: "has", transaction: options?.transaction, keys: [...shas] });
		return new Set(shas.filter(s => this.map.has(s)));
	}

	async delete(shas: readonly string[], options?: BlobCallOptions): Promise<number> {
		this.calls.push({ method: "delete", transaction: options?.transaction, keys: [...shas] });
		let n = 0;
		for (const s of shas) if (this.map.delete(s)) n++;
		return n;
	}

	async *iterate(): AsyncIterable<BlobInfo> {
		for (const [sha256, data] of this.map) yield { sha256, size: data.length, createdAt: new Date(0) };
	}

	keys(): string[] {
		return [...this.map.keys()];
	}
}

/** Moleculer's cacher in memory, optionally failing every call. */
export class FakeCacher {
	entries = new Map<string, unknown>();
	sets: string[] = [];
	gets: string[] = [];
	fail = false;

	async get(key: string): Promise<unknown> {
		this.gets.push(key);
		if (this.fail) throw new Error("cacher down");
		return this.entries.has(key) ? structuredClone(this.entries.get(key)) : null;
	}

	async set(key: string, value: unknown): Promise<void> {
		this.sets.push(key);
		if (this.fail) throw new Error("cacher down");
		this.entries.set(key, structuredClone(value));
	}
}

/** The DomainError `p` rejects with (fails when it resolves or throws anything else). */
export async function rejection(p: Promise<unknown>): Promise<DomainError> {
	try {
		await p;
	} catch (err) {
		if (err instanceof DomainError) return err;
		throw err;
	}
	throw new Error("expected a DomainError");
}
