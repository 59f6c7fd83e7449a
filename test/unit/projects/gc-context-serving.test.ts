import type { BlobInfo, BlobStore } from "../../../src/projects/blob-store";
import { selectContext } from "../../../src/projects/context";
import { collectGarbage } from "../../../src/projects/gc";
import { sha256Hex } from "../../../src/projects/hash";
import { manifestFromEntries } from "../../../src/projects/manifest";
import type { ManifestEntry } from "../../../src/projects/manifest";
import { contentDisposition, fileResponseHeaders } from "../../../src/projects/serving";

class MemoryStore implements BlobStore {
	blobs = new Map<string, { data: Buffer; createdAt: Date }>();
	async put(sha: string, data: Buffer) {
		if (this.blobs.has(sha)) return false;
		this.blobs.set(sha, { data, createdAt: new Date() });
		return true;
	}
	async putMany(blobs: Iterable<readonly [string, Buffer]>) {
		const created = new Set<string>();
		for (const [sha, data] of blobs) if (await this.put(sha, data)) created.add(sha);
		return created;
	}
	async get(sha: string) {
		return this.blobs.get(sha)?.data ?? null;
	}
	async has(shas: readonly string[]) {
		return new Set(shas.filter(s => this.blobs.has(s)));
	}
	async delete(shas: readonly string[]) {
		let n = 0;
		for (const s of shas) if (this.blobs.delete(s)) n++;
		return n;
	}
	async *iterate(): AsyncIterable<BlobInfo> {
		for (const [sha256, b] of [...this.blobs].sort(([a], [c]) => (a < c ? -1 : 1)))
			yield { sha256, size: b.data.length, createdAt: b.createdAt };
	}
}

const sha = (s: string) => sha256Hex(Buffer.from(s));

describe("collectGarbage", () => {
	function setup(names: string[], referenced: string[], old = true) {
		const store = new MemoryStore();
		for (const n of names)
			store.blobs.set(sha(n), { data: Buffer.from(n), createdAt: old ? new Date(0) : new Date() });
		const refs = new Set(referenced.map(sha));
		const locks: string[] = [];
		const deps = {
			store,
			exclusive: async <T>(fn: (lock: string) => Promise<T>) => {
				locks.push("lock");
				return fn("lock");
			},
			referenced: async (shas: string[], lock: string) => {
				expect(lock).toBe("lock");
				return new Set(shas.filter(s => refs.has(s)));
			},
			deleteBlobs: async (shas: string[], lock: string) => {
				expect(lock).toBe("lock");
				return store.delete(shas);
			}
		};
		return { store, refs, deps, locks };
	}

	test("deletes exactly the unreferenced blobs, in locked batches", async () => {
		const names = Array.from({ length: 25 }, (_, i) => `blob-${i}`);
		const { store, deps, locks } = setup(names, names.slice(0, 10));
		const r = await collectGarbage(deps, { batchSize: 10 });
		expect(r).toEqual({ scanned: 25, deleted: 15, spared: 0 });
		expect([...store.blobs.keys()].sort()).toEqual(names.slice(0, 10).map(sha).sort());
		expect(locks.length).toBe(3);
	});

	test("a reference recorded after the scan but before the locked re-check saves the blob", async () => {
		const { store, refs, deps } = setup(["a", "b"], []);
		const original = deps.exclusive;
		deps.exclusive = async fn => {
			refs.add(sha("a")); // a commit that finished while GC was scanning
			return original(fn);
		};
		const r = await collectGarbage(deps);
		expect(r.deleted).toBe(1);
		expect(await store.has([sha("a"), sha("b")])).toEqual(new Set([sha("a")]));
	});

	test("young blobs are spared; dry runs delete nothing", async () => {
		const young = setup(["x", "y"], ["y"], false);
		expect(await collectGarbage(young.deps, { olderThan: new Date(Date.now() - 60_000) })).toEqual({
			scanned: 2,
			deleted: 0,
			spared: 1
		});
		expect(young.store.blobs.size).toBe(2);
		const dry = setup(["x", "y"], []);
		expect(await collectGarbage(dry.deps, { dryRun: true })).toEqual({ scanned: 2, deleted: 2, spared: 0 });
		expect(dry.store.blobs.size).toBe(2);
	});
});

describe("selectContext", () => {
	const files: Record<string, Buffer> = {
		"a.ts": Buffer.from("export const a = 1;\n"),
		"big.txt": Buffer.from("x".repeat(100)),
		"img.png": Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 0, 0]),
		"z.md": Buffer.from("# z\n")
	};
	const manifest = manifestFromEntries(
		Object.entries(files).map(([p, d]) => [p, { sha256: sha256Hex(d), size: d.length }] as [string, ManifestEntry])
	);
	const bySha = new Map(Object.values(files).map(d => [sha256Hex(d), d]));
	const load = async (e: ManifestEntry) => bySha.get(e.sha256)!;

	test("text files in path order within the budget; big and binary ones listed as omitted", async () => {
		const r = await selectContext(manifest, load, { maxBytes: 40 });
		expect(r.files.map(f => f.path)).toEqual(["a.ts", "z.md"]);
		expect(r.files[0].content).toBe("export const a = 1;\n");
		expect(r.omitted).toEqual([
			{ path: "big.txt", size: 100, reason: "budget" },
			{ path: "img.png", size: 7, reason: "binary" }
		]);
		expect(r.totalBytes).toBe(24);
	});

	test("requested paths come first, in the order asked; unknown ones are reported", async () => {
		const r = await selectContext(manifest, load, { maxBytes: 1000, paths: ["z.md", "nope.txt", "a.ts"] });
		expect(r.files.map(f => f.path)).toEqual(["z.md", "a.ts"]);
		expect(r.omitted).toEqual([{ path: "nope.txt", size: 0, reason: "not-found" }]);
	});
});

describe("file serving headers", () => {
	test("active content is an attachment; everything is nosniff and CSP-sandboxed", () => {
		const html = fileResponseHeaders({
			path: "site/index.html",
			contentType: "text/html; charset=utf-8",
			sha256: "ab",
			version: 3,
			pinned: true
		});
		expect(html).toMatchObject({
			"X-Content-Type-Options": "nosniff",
			"Content-Security-Policy": "sandbox; default-src 'none'",
			"Content-Disposition": `attachment; filename="index.html"; filename*=UTF-8''index.html`,
			ETag: '"ab"',
			"Cache-Control": "private, max-age=31536000, immutable",
			"X-Project-Version": "3"
		});
		const png = fileResponseHeaders({
			path: "a.png",
			contentType: "image/png",
			sha256: "cd",
			version: 1,
			pinned: false
		});
		expect(png["Content-Disposition"]).toBe(`inline; filename="a.png"; filename*=UTF-8''a.png`);
		expect(png["Cache-Control"]).toBe("private, no-cache");
	});

	test("file names are header-safe", () => {
		expect(contentDisposition("inline", 'dir/é "q"\\.txt')).toBe(
			`inline; filename="_ _q__.txt"; filename*=UTF-8''%C3%A9%20%22q%22%5C.txt`
		);
	});
});
