import type { Transaction } from "sequelize";
import { DomainError } from "../../../src/errors";
import { ProjectCaches } from "../../../src/projects/caches";
import { sha256Hex } from "../../../src/projects/hash";
import {
	commitVersion,
	diffManifests,
	fileAt,
	storeMissing,
	verifyManifest,
	VERSION_CREATED
} from "../../../src/projects/versions";
import type { CommitDeps, CommitInput } from "../../../src/projects/versions";
import { FakeBlobStore, FakeCacher, FakeDb, PROJECT_ID, rejection } from "./fakes";

function setup(opts: { limits?: CommitDeps["limits"]; blobsInDb?: boolean } = {}) {
	const db = new FakeDb();
	const blobs = new FakeBlobStore(opts.blobsInDb === false ? null : db);
	const cacher = new FakeCacher();
	const caches = new ProjectCaches({
		cacher,
		warn: () => {},
		readManifest: async (_projectId, n) => db.manifestOf(n),
		blobs,
		ttlS: 60,
		blobMaxBytes: 1024
	});
	const remembered: number[] = [];
	const deps: CommitDeps = {
		repo: db.repo,
		blobs,
		caches: {
			manifest: (projectId, n) => caches.manifest(projectId, n),
			rememberManifest: async (projectId, n, manifest) => {
				remembered.push(n);
				await caches.rememberManifest(projectId, n, manifest);
			}
		},
		transaction: db.transaction,
		publish: db.publish,
		limits: opts.limits ?? {}
	};
	return { db, blobs, cacher, caches, deps, remembered };
}

function input(over: Partial<CommitInput> = {}): CommitInput {
	return {
		projectId: PROJECT_ID,
		userId: "u1",
		baseVersion: 0,
		message: "m",
		changes: [{ op: "add", path: "a.txt", content: "hello" }],
		taskId: null,
		idempotencyKey: null,
		...over
	};
}

const codeOf = async (p: Promise<unknown>) => (await rejection(p)).code;

/** Nothing of a refused commit remains: head, versions, references, events, blobs and caches. */
function expectNothingWritten(s: ReturnType<typeof setup>, headVersion = 0) {
	expect(s.db.project.headVersion).toBe(headVersion);
	expect(s.db.versionNumbers()).toEqual([0]);
	expect(s.db.state.blobRefs.size).toBe(0);
	expect(s.db.state.events).toEqual([]);
	expect(s.db.state.dbBlobs.size).toBe(0);
	expect(s.remembered).toEqual([]);
	expect(s.cacher.sets.filter(k => k !== `projects.manifest:${PROJECT_ID}:0`)).toEqual([]);
}

describe("commitVersion", () => {
	test("stores the new blobs in the commit's transaction, records the version and its references, publishes, then caches", async () => {
		const s = setup();
		const v = await commitVersion(s.deps, input());
		expect(v.number).toBe(1);
		expect(s.db.project).toMatchObject({ headVersion: 1, fileCount: 1, totalBytes: 5 });
		const sha = sha256Hex(Buffer.from("hello"));
		expect(s.db.state.blobRefs).toEqual(new Set([sha]));
		expect(s.blobs.keys()).toEqual([sha]);
		const [{ tx, committed }] = s.db.transactions;
		expect(committed).toBe(true);
		expect(s.db.gcLockedIn).toEqual([tx]);
		// Every store call of the commit runs in its transaction (the pg store commits with it).
		expect(s.blobs.calls.map(c => [c.method, c.transaction])).toEqual([
			["has", tx],
			["putMany", tx]
		]);
		expect(s.db.state.events).toEqual([
			{
				topic: VERSION_CREATED,
				payload: expect.objectContaining({
					projectId: PROJECT_ID,
					version: 1,
					parentVersion: 0,
					fileCount: 1,
					totalBytes: 5,
					changes: { added: 1, removed: 0, modified: 0, renamed: 0 },
					createdAt: "2026-12-02T00:00:00.000Z"
				})
			}
		]);
		expect(s.remembered).toEqual([1]);
		expect(await s.caches.manifest(PROJECT_ID, 1)).toEqual(s.db.manifestOf(1));
	});

	test("a base that is not the head is a VERSION_CONFLICT naming the head; nothing is written", async () => {
		const s = setup();
		s.db.moveHead(3);
		const err = await rejection(commitVersion(s.deps, input({ baseVersion: 2 })));
		expect(err).toBeInstanceOf(DomainError);
		expect(err.code).toBe("VERSION_CONFLICT");
		expect(err.status).toBe(409);
		expect(err.details).toMatchObject({ field: "baseVersion", baseVersion: 2, headVersion: 3 });
		expect(s.db.transactions).toEqual([]);
		expect(s.blobs.calls).toEqual([]);
		expect(s.remembered).toEqual([]);
	});

	test("losing the race for the head rolls the transaction back and answers the new head", async () => {
		const s = setup();
		s.db.beforeAdvance = () => s.db.moveHead(1);
		const err = await rejection(commitVersion(s.deps, input()));
		expect(err.code).toBe("VERSION_CONFLICT");
		expect(err.details).toMatchObject({ baseVersion: 0, headVersion: 1 });
		expect(s.db.transactions.map(t => t.committed)).toEqual([false]);
		expect(s.blobs.calls).toEqual([]);
		expectNothingWritten(s, 1);
	});

	test("the head moving to an archived or deleted project is PROJECT_ARCHIVED or 404, not a conflict", async () => {
		const archived = setup();
		archived.db.beforeAdvance = () => (archived.db.project.status = "archived");
		expect(await codeOf(commitVersion(archived.deps, input()))).toBe("PROJECT_ARCHIVED");
		const deleted = setup();
		deleted.db.beforeAdvance = () => (deleted.db.project.status = "deleted");
		expect(await codeOf(commitVersion(deleted.deps, input()))).toBe("NOT_FOUND");
	});

	test("archived and deleted projects take no commit", async () => {
		const s = setup();
		s.db.project.status = "archived";
		expect(await codeOf(commitVersion(s.deps, input()))).toBe("PROJECT_ARCHIVED");
		s.db.project.status = "deleted";
		expect(await codeOf(commitVersion(s.deps, input()))).toBe("NOT_FOUND");
		expect(s.db.transactions).toEqual([]);
	});

	test("a failing blob write rolls everything back: no head, version, references, event or cache entry", async () => {
		const s = setup();
		s.blobs.failPut = new Error("disk full");
		await expect(commitVersion(s.deps, input())).rejects.toThrow("disk full");
		expect(s.db.transactions.map(t => t.committed)).toEqual([false]);
		expectNothingWritten(s);
	});

	test("a failure after the blobs were stored rolls the blobs back with the version (store in the database)", async () => {
		const s = setup();
		s.db.insertError = new Error("connection reset");
		await expect(commitVersion(s.deps, input())).rejects.toThrow("connection reset");
		expectNothingWritten(s);
		expect(s.blobs.keys()).toEqual([]);
	});

	test("with a store outside the database, a rolled-back commit's blobs stay unreferenced (left for GC)", async () => {
		const s = setup({ blobsInDb: false });
		s.db.insertError = new Error("connection reset");
		await expect(commitVersion(s.deps, input())).rejects.toThrow("connection reset");
		expectNothingWritten(s);
		expect(s.blobs.keys()).toHaveLength(1);
		expect(s.db.state.blobRefs.size).toBe(0);
	});

	test("a unique violation on the version number (another commit won) is a VERSION_CONFLICT", async () => {
		const s = setup();
		s.db.insertError = Object.assign(new Error("duplicate key"), { parent: { code: "23505" } });
		s.db.beforeAdvance = () => {
			s.db.beforeAdvance = null;
		};
		const err = await rejection(commitVersion(s.deps, input()));
		expect(err.code).toBe("VERSION_CONFLICT");
		expectNothingWritten(s);
	});

	test("content the store already has is not written again; the version is still made", async () => {
		const s = setup();
		await commitVersion(s.deps, input());
		s.blobs.calls = [];
		const v = await commitVersion(
			s.deps,
			input({ baseVersion: 1, changes: [{ op: "rename", from: "a.txt", to: "b.txt" }] })
		);
		expect(v.number).toBe(2);
		expect(s.blobs.calls).toEqual([]);
		const sameContent = await commitVersion(
			s.deps,
			input({ baseVersion: 2, changes: [{ op: "add", path: "c.txt", content: "hello" }] })
		);
		expect(sameContent.number).toBe(3);
		expect(s.blobs.calls.map(c => c.method)).toEqual([]);
		expect(s.db.state.events.map(e => (e.payload as { changes: unknown }).changes)).toEqual([
			{ added: 1, removed: 0, modified: 0, renamed: 0 },
			{ added: 0, removed: 0, modified: 0, renamed: 1 },
			{ added: 1, removed: 0, modified: 0, renamed: 0 }
		]);
	});

	test("an empty change set is refused before anything is written", async () => {
		const s = setup();
		expect(await codeOf(commitVersion(s.deps, input({ changes: [] })))).toBe("CHANGESET_EMPTY");
		expect(s.db.transactions).toEqual([]);
	});

	test("size and count limits refuse the change set before the transaction (413)", async () => {
		const big = setup({ limits: { maxFileBytes: 4 } });
		const err = await rejection(commitVersion(big.deps, input()));
		expect([err.code, err.status]).toEqual(["FILE_TOO_LARGE", 413]);
		expect(err.details).toMatchObject({ limit: 4, actual: 5 });
		expect(big.db.transactions).toEqual([]);

		const many = setup({ limits: { maxFiles: 1 } });
		const two = [
			{ op: "add" as const, path: "a", content: "1" },
			{ op: "add" as const, path: "b", content: "2" }
		];
		expect(await codeOf(commitVersion(many.deps, input({ changes: two })))).toBe("TOO_MANY_FILES");
		const heavy = setup({ limits: { maxProjectBytes: 6, maxFileBytes: 6 } });
		const grow = [
			{ op: "add" as const, path: "a", content: "1234" },
			{ op: "add" as const, path: "b", content: "5678" }
		];
		expect(await codeOf(commitVersion(heavy.deps, input({ changes: grow })))).toBe("PROJECT_TOO_LARGE");
		const ops = setup({ limits: { maxOps: 1 } });
		expect(await codeOf(commitVersion(ops.deps, input({ changes: two })))).toBe("TOO_MANY_OPS");
		for (const s of [many, heavy, ops]) expectNothingWritten(s);
	});

	test("a retry with the same idempotency key answers the first version without committing again", async () => {
		const s = setup();
		const first = await commitVersion(s.deps, input({ idempotencyKey: "k" }));
		const again = await commitVersion(s.deps, input({ idempotencyKey: "k" }));
		expect(again).toEqual(first);
		expect(s.db.transactions).toHaveLength(1);
		// Another user's key is another request.
		expect(await codeOf(commitVersion(s.deps, input({ idempotencyKey: "k", userId: "u2" })))).toBe(
			"VERSION_CONFLICT"
		);
	});

	test("retries that raced: the loser's conflict answers with the winner's version", async () => {
		const s = setup();
		s.db.beforeAdvance = () => {
			s.db.beforeAdvance = null;
			// The rival attempt of the same request commits first.
			s.db.rival(st =>
				st.versions.push({ ...st.versions[0], number: 1, idempotencyKey: "k", message: "winner" })
			);
			s.db.moveHead(1);
		};
		const v = await commitVersion(s.deps, input({ idempotencyKey: "k" }));
		expect(v).toMatchObject({ number: 1, message: "winner" });
		const taken = setup();
		taken.db.insertError = Object.assign(new Error("duplicate key"), { original: { code: "23505" } });
		taken.db.beforeAdvance = () => {
			taken.db.beforeAdvance = null;
			taken.db.rival(st => st.versions.push({ ...st.versions[0], number: 1, idempotencyKey: "k" }));
		};
		expect((await commitVersion(taken.deps, input({ idempotencyKey: "k" }))).number).toBe(1);
	});

	test("a conflict that no earlier attempt explains stays a conflict with an idempotency key", async () => {
		const s = setup();
		s.db.moveHead(2);
		expect(await codeOf(commitVersion(s.deps, input({ idempotencyKey: "k" })))).toBe("VERSION_CONFLICT");
	});

	test("the cache is seeded only after the transaction committed", async () => {
		const s = setup();
		s.db.publish = async () => {
			throw new Error("outbox down");
		};
		s.deps.publish = s.db.publish;
		await expect(commitVersion(s.deps, input())).rejects.toThrow("outbox down");
		expectNothingWritten(s);
		await expect(s.caches.manifest(PROJECT_ID, 1)).rejects.toMatchObject({ code: "NOT_FOUND" });
	});
});

describe("storeMissing", () => {
	test("puts only what the store lacks, in the given transaction; nothing to put is no call", async () => {
		const store = new FakeBlobStore();
		const tx = { id: 9 } as unknown as Transaction;
		const a = Buffer.from("a");
		const b = Buffer.from("b");
		expect(await storeMissing(store, new Map(), tx)).toBe(0);
		expect(store.calls).toEqual([]);
		expect(await storeMissing(store, new Map([[sha256Hex(a), a]]), tx)).toBe(1);
		store.calls = [];
		const both = new Map([
			[sha256Hex(a), a],
			[sha256Hex(b), b]
		]);
		expect(await storeMissing(store, both, tx)).toBe(1);
		expect(store.calls).toEqual([
			{ method: "has", transaction: tx, keys: [sha256Hex(a), sha256Hex(b)] },
			{ method: "putMany", transaction: tx, keys: [sha256Hex(b)] }
		]);
		store.calls = [];
		expect(await storeMissing(store, both, tx)).toBe(0);
		expect(store.calls.map(c => c.method)).toEqual(["has"]);
	});
});

describe("diffManifests", () => {
	const entry = (text: string) => ({ sha256: sha256Hex(Buffer.from(text)), size: Buffer.byteLength(text) });
	const blobs = new Map(["one\n", "two\n", "big content\n"].map(t => [sha256Hex(Buffer.from(t)), Buffer.from(t)]));
	const read = async (e: { sha256: string }) => blobs.get(e.sha256)!;

	test("lists the changes with patches in path order, marks sides over the limit too large", async () => {
		const a = { "x.txt": entry("one\n"), "gone.txt": entry("two\n") };
		const b = { "x.txt": entry("two\n"), "new.txt": entry("big content\n") };
		const d = await diffManifests(a, b, read, { patches: true, maxPatchFiles: 10, maxFileBytes: 5 });
		expect(d.added.map(x => x.path)).toEqual(["new.txt"]);
		expect(d.removed.map(x => x.path)).toEqual(["gone.txt"]);
		expect(d.modified.map(x => x.path)).toEqual(["x.txt"]);
		expect(d.patches!.map(p => [p.path, p.kind])).toEqual([
			["gone.txt", "text"],
			["new.txt", "too-large"],
			["x.txt", "text"]
		]);
		expect(d.patchesTruncated).toBe(false);
	});

	test("caps the patches and says so; patches=false reads no blob", async () => {
		const a = {};
		const b = { "1.txt": entry("one\n"), "2.txt": entry("two\n") };
		const capped = await diffManifests(a, b, read, { patches: true, maxPatchFiles: 1, maxFileBytes: 100 });
		expect([capped.patches!.length, capped.patchesTruncated]).toEqual([1, true]);
		const none = await diffManifests(a, b, () => Promise.reject(new Error("no reads")), {
			patches: false,
			maxPatchFiles: 1,
			maxFileBytes: 100
		});
		expect([none.patches, none.patchesTruncated]).toEqual([undefined, false]);
	});
});

describe("verifyManifest", () => {
	test("reports missing, corrupt and wrongly sized blobs", async () => {
		const store = new FakeBlobStore();
		const ok = Buffer.from("ok");
		await store.put(sha256Hex(ok), ok);
		const bad = Buffer.from("bad");
		const badSha = sha256Hex(Buffer.from("original"));
		(store as unknown as { own: Map<string, Buffer> }).own.set(badSha, bad);
		const r = await verifyManifest(store, {
			"ok.txt": { sha256: sha256Hex(ok), size: 2 },
			"size.txt": { sha256: sha256Hex(ok), size: 3 },
			"corrupt.txt": { sha256: badSha, size: 8 },
			"missing.txt": { sha256: sha256Hex(Buffer.from("nope")), size: 4 }
		});
		expect(r.checked).toBe(4);
		expect(r.ok).toBe(false);
		expect(r.problems.map(p => [p.path, p.problem])).toEqual([
			["size.txt", "size-mismatch"],
			["corrupt.txt", "corrupt"],
			["missing.txt", "missing"]
		]);
	});
});

describe("fileAt", () => {
	test("serves a version's file with its headers; pinned versions are immutable; unknown and invalid paths are refused", async () => {
		const s = setup();
		await commitVersion(s.deps, input());
		const project = { ...s.db.project };
		const head = await fileAt(s.caches, project, "a.txt", undefined);
		expect(head.data.toString()).toBe("hello");
		expect(head.contentType).toBe("text/plain; charset=utf-8");
		expect(head.headers).toMatchObject({
			"Content-Length": "5",
			"X-Project-Version": "1",
			"Cache-Control": "private, no-cache"
		});
		const pinned = await fileAt(s.caches, project, "a.txt", 1);
		expect(pinned.headers["Cache-Control"]).toContain("immutable");
		const missing = await rejection(fileAt(s.caches, project, "b.txt", 1));
		expect([missing.status, missing.details]).toEqual([
			404,
			expect.objectContaining({ field: "path", path: "b.txt" })
		]);
		expect((await rejection(fileAt(s.caches, project, "../x", 1))).code).toBe("PATH_INVALID");
		expect((await rejection(fileAt(s.caches, project, "a.txt", 2))).code).toBe("NOT_FOUND");
	});
});
