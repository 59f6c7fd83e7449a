import { manifestDiff } from "../../../src/projects/changeset";
import { sha256Hex } from "../../../src/projects/hash";
import { emptyManifest, manifestFromEntries, referencedBlobs } from "../../../src/projects/manifest";
import type { ManifestEntry } from "../../../src/projects/manifest";

const entry = (content: string, mode?: 0o755): ManifestEntry =>
	mode
		? { sha256: sha256Hex(Buffer.from(content)), size: content.length, mode }
		: { sha256: sha256Hex(Buffer.from(content)), size: content.length };

describe("manifestDiff", () => {
	it("reports added, removed and modified paths, sorted", () => {
		const a = manifestFromEntries([
			["z.txt", entry("z")],
			["keep", entry("k")],
			["b/changed", entry("old")],
			["gone", entry("gone")]
		]);
		const b = manifestFromEntries([
			["keep", entry("k")],
			["b/changed", entry("new")],
			["new2", entry("n2")],
			["a-new", entry("n1")],
			["z.txt", entry("z", 0o755)]
		]);
		const diff = manifestDiff(a, b);
		expect(diff.added.map(x => x.path)).toEqual(["a-new", "new2"]);
		expect(diff.removed).toEqual([{ path: "gone", entry: entry("gone") }]);
		expect(diff.modified).toEqual([
			{ path: "b/changed", from: entry("old"), to: entry("new") },
			{ path: "z.txt", from: entry("z"), to: entry("z", 0o755) }
		]);
		expect(diff.renamed).toEqual([]);
	});

	it("treats an explicit 0o644 mode as the default", () => {
		const a = manifestFromEntries([["f", entry("x")]]);
		const b = manifestFromEntries([["f", { ...entry("x"), mode: 0o644 }]]);
		expect(manifestDiff(a, b).modified).toEqual([]);
	});

	it("reports a removed and an added path with the same hash as a rename", () => {
		const a = manifestFromEntries([
			["src/util.ts", entry("util")],
			["other", entry("other")]
		]);
		const b = manifestFromEntries([
			["lib/util.ts", entry("util")],
			["other", entry("other")]
		]);
		expect(manifestDiff(a, b)).toEqual({
			added: [],
			removed: [],
			modified: [],
			renamed: [{ from: "src/util.ts", to: "lib/util.ts", entry: entry("util") }]
		});
	});

	it("pairs several same-content renames by file name first, leaving extras as adds or removes", () => {
		const a = manifestFromEntries([
			["x/LICENSE", entry("mit")],
			["y/COPYING", entry("mit")],
			["z/LICENSE.txt", entry("mit")]
		]);
		const b = manifestFromEntries([
			["new/COPYING", entry("mit")],
			["new/LICENSE", entry("mit")]
		]);
		const diff = manifestDiff(a, b);
		expect(diff.renamed).toEqual([
			{ from: "x/LICENSE", to: "new/LICENSE", entry: entry("mit") },
			{ from: "y/COPYING", to: "new/COPYING", entry: entry("mit") }
		]);
		expect(diff.removed.map(x => x.path)).toEqual(["z/LICENSE.txt"]);
		expect(diff.added).toEqual([]);
	});

	it("does not call swapping empty files a rename", () => {
		const a = manifestFromEntries([["pkg/__init__.py", entry("")]]);
		const b = manifestFromEntries([["other/.keep", entry("")]]);
		const diff = manifestDiff(a, b);
		expect(diff.renamed).toEqual([]);
		expect(diff.added.map(x => x.path)).toEqual(["other/.keep"]);
		expect(diff.removed.map(x => x.path)).toEqual(["pkg/__init__.py"]);
	});

	it("is empty for identical manifests and complete against the empty manifest", () => {
		const a = manifestFromEntries([["a", entry("a")]]);
		expect(manifestDiff(a, a)).toEqual({ added: [], removed: [], modified: [], renamed: [] });
		expect(manifestDiff(emptyManifest(), a).added).toEqual([{ path: "a", entry: entry("a") }]);
		expect(manifestDiff(a, emptyManifest()).removed).toEqual([{ path: "a", entry: entry("a") }]);
	});

	it("works on manifests read back from JSON, including a __proto__ path", () => {
		const a = JSON.parse('{"__proto__":{"sha256":"' + entry("p").sha256 + '","size":1}}');
		const diff = manifestDiff(a, emptyManifest());
		expect(diff.removed.map(x => x.path)).toEqual(["__proto__"]);
		expect(referencedBlobs(a)).toEqual(new Set([entry("p").sha256]));
	});
});
