import { applyChangeSet, DEFAULT_CHANGESET_LIMITS } from "../../../src/projects/changeset";
import type { ChangeOp } from "../../../src/projects/changeset";
import {
	ChangeSetInvalidError,
	LimitExceededError,
	PathConflictError,
	PathInvalidError,
	ProjectDomainError
} from "../../../src/projects/errors";
import { sha256Hex } from "../../../src/projects/hash";
import { emptyManifest, manifestFromEntries } from "../../../src/projects/manifest";
import type { Manifest } from "../../../src/projects/manifest";

const sha = (s: string | Buffer): string => sha256Hex(typeof s === "string" ? Buffer.from(s) : s);

function base(): Manifest {
	return applyChangeSet(emptyManifest(), [
		{ op: "add", path: "README.md", content: "# hello\n" },
		{ op: "add", path: "src/index.ts", content: "export {};\n" },
		{ op: "add", path: "bin/run", content: "#!/bin/sh\n", mode: 0o755 }
	]).manifest;
}

function thrown(fn: () => unknown): ProjectDomainError {
	try {
		fn();
	} catch (err) {
		expect(err).toBeInstanceOf(ProjectDomainError);
		return err as ProjectDomainError;
	}
	throw new Error("expected an error");
}

describe("applyChangeSet", () => {
	it("adds files, hashing their content and returning only new blobs", () => {
		const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0xff]);
		const { manifest, newBlobs, fileCount, totalBytes } = applyChangeSet(emptyManifest(), [
			{ op: "add", path: "b.txt", content: "hi" },
			{ op: "add", path: "a/logo.png", content: png.toString("base64"), encoding: "base64" }
		]);
		expect(Object.keys(manifest)).toEqual(["a/logo.png", "b.txt"]);
		expect(manifest["b.txt"]).toEqual({ sha256: sha("hi"), size: 2 });
		expect(manifest["a/logo.png"]).toEqual({ sha256: sha(png), size: png.length });
		expect(newBlobs.get(sha(png))).toEqual(png);
		expect(newBlobs.get(sha("hi"))!.toString()).toBe("hi");
		expect(fileCount).toBe(2);
		expect(totalBytes).toBe(2 + png.length);
		expect(Object.getPrototypeOf(manifest)).toBeNull();
	});

	it("normalises paths (NFC) on the way in", () => {
		const { manifest } = applyChangeSet(emptyManifest(), [{ op: "add", path: "cafe\u0301.txt", content: "x" }]);
		expect(Object.keys(manifest)).toEqual(["caf\u00e9.txt"]);
	});

	it("stores __proto__ as an ordinary path", () => {
		const { manifest } = applyChangeSet(emptyManifest(), [{ op: "add", path: "__proto__", content: "x" }]);
		expect(Object.hasOwn(manifest, "__proto__")).toBe(true);
		expect(JSON.parse(JSON.stringify(manifest))).toEqual({ ["__proto__"]: { sha256: sha("x"), size: 1 } });
		const next = applyChangeSet(manifest, [{ op: "delete", path: "__proto__" }]);
		expect(Object.keys(next.manifest)).toEqual([]);
	});

	it("modifies, deletes and renames without touching the parent", () => {
		const parent = base();
		const snapshot = JSON.stringify(parent);
		const { manifest, newBlobs } = applyChangeSet(parent, [
			{ op: "modify", path: "README.md", content: "# changed\n" },
			{ op: "delete", path: "src/index.ts" },
			{ op: "rename", from: "bin/run", to: "scripts/run" }
		]);
		expect(JSON.stringify(parent)).toBe(snapshot);
		expect(Object.keys(manifest)).toEqual(["README.md", "scripts/run"]);
		expect(manifest["README.md"].sha256).toBe(sha("# changed\n"));
		expect(manifest["scripts/run"]).toEqual(parent["bin/run"]);
		expect([...newBlobs.keys()]).toEqual([sha("# changed\n")]);
	});

	it("keeps the mode on modify unless one is given, and validates modes", () => {
		const parent = base();
		expect(applyChangeSet(parent, [{ op: "modify", path: "bin/run", content: "x" }]).manifest["bin/run"].mode).toBe(
			0o755
		);
		expect(
			applyChangeSet(parent, [{ op: "modify", path: "bin/run", content: "x", mode: 0o644 }]).manifest["bin/run"]
				.mode
		).toBeUndefined();
		const err = thrown(() => applyChangeSet(parent, [{ op: "add", path: "x", content: "", mode: 0o777 as 0o755 }]));
		expect(err.code).toBe("CHANGESET_INVALID");
		expect(err.details.field).toBe("changes[0].mode");
	});

	it("dedups content: within the change set and against the parent", () => {
		const parent = base();
		const { manifest, newBlobs } = applyChangeSet(parent, [
			{ op: "add", path: "copy-of-readme.md", content: "# hello\n" },
			{ op: "add", path: "one.txt", content: "same" },
			{ op: "add", path: "two.txt", content: Buffer.from("same").toString("base64"), encoding: "base64" }
		]);
		expect(manifest["copy-of-readme.md"].sha256).toBe(parent["README.md"].sha256);
		expect(manifest["one.txt"].sha256).toBe(manifest["two.txt"].sha256);
		expect([...newBlobs.keys()]).toEqual([sha("same")]);
	});

	describe("conflicts with the parent (409)", () => {
		it.each<[string, ChangeOp[], string, string]>([
			[
				"add onto an existing path",
				[{ op: "add", path: "README.md", content: "x" }],
				"PATH_EXISTS",
				"changes[0].path"
			],
			[
				"modify a missing path",
				[{ op: "modify", path: "nope", content: "x" }],
				"PATH_NOT_FOUND",
				"changes[0].path"
			],
			["delete a missing path", [{ op: "delete", path: "nope" }], "PATH_NOT_FOUND", "changes[0].path"],
			["rename a missing source", [{ op: "rename", from: "nope", to: "x" }], "PATH_NOT_FOUND", "changes[0].from"],
			[
				"rename onto an existing target",
				[{ op: "rename", from: "README.md", to: "src/index.ts" }],
				"PATH_EXISTS",
				"changes[0].to"
			],
			[
				"add a case variant",
				[{ op: "add", path: "readme.MD", content: "x" }],
				"CASE_CONFLICT",
				"changes[0].path"
			],
			[
				"add a case-folding variant",
				[{ op: "add", path: "SRC/INDEX.TS", content: "x" }],
				"CASE_CONFLICT",
				"changes[0].path"
			],
			[
				"rename onto a case variant",
				[{ op: "rename", from: "src/index.ts", to: "Readme.md" }],
				"CASE_CONFLICT",
				"changes[0].to"
			],
			[
				"add a file where a directory is",
				[{ op: "add", path: "src", content: "x" }],
				"FILE_DIRECTORY_CONFLICT",
				"changes[0].path"
			],
			[
				"add a file where a directory is, other case",
				[{ op: "add", path: "Src", content: "x" }],
				"FILE_DIRECTORY_CONFLICT",
				"changes[0].path"
			],
			[
				"add under a file",
				[{ op: "add", path: "README.md/x", content: "x" }],
				"FILE_DIRECTORY_CONFLICT",
				"changes[0].path"
			],
			[
				"two new paths differing by case",
				[
					{ op: "add", path: "new/A.txt", content: "x" },
					{ op: "add", path: "new/a.txt", content: "y" }
				],
				"CASE_CONFLICT",
				"changes[0].path"
			]
		])("%s", (_label, ops, code, field) => {
			const err = thrown(() => applyChangeSet(base(), ops));
			expect(err).toBeInstanceOf(PathConflictError);
			expect(err.status).toBe(409);
			expect(err.code).toBe(code);
			expect(err.details.field).toBe(field);
		});

		it("allows changing a file name's case by rename, or by delete + add", () => {
			expect(
				Object.keys(applyChangeSet(base(), [{ op: "rename", from: "README.md", to: "readme.md" }]).manifest)
			).toContain("readme.md");
			const { manifest } = applyChangeSet(base(), [
				{ op: "delete", path: "README.md" },
				{ op: "add", path: "Readme.md", content: "x" }
			]);
			expect(Object.keys(manifest)).toEqual(["Readme.md", "bin/run", "src/index.ts"]);
		});

		it("allows replacing a file by a directory of the same name when the file goes", () => {
			const { manifest } = applyChangeSet(base(), [
				{ op: "delete", path: "README.md" },
				{ op: "add", path: "README.md/index.md", content: "x" }
			]);
			expect(Object.keys(manifest)).toContain("README.md/index.md");
		});
	});

	describe("malformed change sets (422)", () => {
		it.each<[string, unknown, string, string]>([
			["not an array", { op: "add" }, "CHANGESET_INVALID", "changes"],
			["empty", [], "CHANGESET_EMPTY", "changes"],
			["not an object", ["add"], "CHANGESET_INVALID", "changes[0]"],
			["unknown op", [{ op: "chmod", path: "a" }], "CHANGESET_INVALID", "changes[0].op"],
			["missing path", [{ op: "add", content: "x" }], "CHANGESET_INVALID", "changes[0].path"],
			["missing content", [{ op: "add", path: "a" }], "CHANGESET_INVALID", "changes[0].content"],
			[
				"bad encoding",
				[{ op: "add", path: "a", content: "x", encoding: "latin1" }],
				"CHANGESET_INVALID",
				"changes[0].encoding"
			],
			[
				"bad base64",
				[{ op: "add", path: "a", content: "not base64!", encoding: "base64" }],
				"CHANGESET_INVALID",
				"changes[0].content"
			],
			[
				"truncated base64",
				[{ op: "add", path: "a", content: "QUJDR", encoding: "base64" }],
				"CHANGESET_INVALID",
				"changes[0].content"
			],
			[
				"base64 with whitespace",
				[{ op: "add", path: "a", content: "QUJD\nREVG", encoding: "base64" }],
				"CHANGESET_INVALID",
				"changes[0].content"
			],
			[
				"lone surrogate in utf8 content",
				[{ op: "add", path: "a", content: "\uD800" }],
				"CHANGESET_INVALID",
				"changes[0].content"
			],
			[
				"rename onto itself",
				[
					{ op: "delete", path: "src/index.ts" },
					{ op: "rename", from: "README.md", to: "README.md" }
				],
				"CHANGESET_INVALID",
				"changes[1].to"
			],
			[
				"two ops on one path",
				[
					{ op: "modify", path: "README.md", content: "x" },
					{ op: "delete", path: "README.md" }
				],
				"DUPLICATE_PATH_IN_CHANGESET",
				"changes[1].path"
			],
			[
				"two ops on one path after normalisation",
				[
					{ op: "add", path: "caf\u00e9", content: "x" },
					{ op: "add", path: "cafe\u0301", content: "y" }
				],
				"DUPLICATE_PATH_IN_CHANGESET",
				"changes[1].path"
			],
			[
				"rename source used again",
				[
					{ op: "rename", from: "README.md", to: "docs/README.md" },
					{ op: "add", path: "README.md", content: "new" }
				],
				"DUPLICATE_PATH_IN_CHANGESET",
				"changes[1].path"
			],
			[
				"rename chain",
				[
					{ op: "rename", from: "README.md", to: "x" },
					{ op: "rename", from: "x", to: "y" }
				],
				"DUPLICATE_PATH_IN_CHANGESET",
				"changes[1].from"
			]
		])("%s", (_label, ops, code, field) => {
			const err = thrown(() => applyChangeSet(base(), ops as ChangeOp[]));
			expect(err).toBeInstanceOf(ChangeSetInvalidError);
			expect(err.status).toBe(422);
			expect(err.code).toBe(code);
			expect(err.details.field).toBe(field);
		});

		it("refuses invalid paths with the op's field", () => {
			const err = thrown(() =>
				applyChangeSet(base(), [
					{ op: "delete", path: "src/index.ts" },
					{ op: "rename", from: "README.md", to: "../escape" }
				])
			);
			expect(err).toBeInstanceOf(PathInvalidError);
			expect(err.details.field).toBe("changes[1].to");
		});

		it("accepts unpadded base64", () => {
			const { manifest } = applyChangeSet(emptyManifest(), [
				{ op: "add", path: "a", content: "QUJDRA", encoding: "base64" }
			]);
			expect(manifest.a).toEqual({ sha256: sha("ABCD"), size: 4 });
		});
	});

	describe("limits (413)", () => {
		it("has the documented defaults", () => {
			expect(DEFAULT_CHANGESET_LIMITS).toEqual({
				maxFileBytes: 10 * 1024 * 1024,
				maxProjectBytes: 200 * 1024 * 1024,
				maxFiles: 10_000,
				maxOps: 1_000
			});
		});

		it("refuses a file over maxFileBytes, counting decoded bytes", () => {
			const ok = applyChangeSet(
				emptyManifest(),
				[{ op: "add", path: "a", content: Buffer.alloc(8).toString("base64"), encoding: "base64" }],
				{ maxFileBytes: 8 }
			);
			expect(ok.totalBytes).toBe(8);
			const err = thrown(() =>
				applyChangeSet(emptyManifest(), [{ op: "add", path: "a", content: "é".repeat(5) }], { maxFileBytes: 9 })
			);
			expect(err).toBeInstanceOf(LimitExceededError);
			expect(err.code).toBe("FILE_TOO_LARGE");
			expect(err.status).toBe(413);
			expect(err.details).toMatchObject({ field: "changes[0].content", path: "a", limit: 9, actual: 10 });
		});

		it("refuses the default 10 MiB + 1 byte", () => {
			const content = Buffer.alloc(10 * 1024 * 1024 + 1).toString("base64");
			expect(
				thrown(() => applyChangeSet(emptyManifest(), [{ op: "add", path: "big", content, encoding: "base64" }]))
					.code
			).toBe("FILE_TOO_LARGE");
		});

		it("refuses growing the project over maxProjectBytes, but allows shrinking an oversized one", () => {
			const parent = manifestFromEntries([["a", { sha256: sha("a"), size: 100 }]]);
			const err = thrown(() =>
				applyChangeSet(parent, [{ op: "add", path: "b", content: "xx" }], { maxProjectBytes: 101 })
			);
			expect(err.code).toBe("PROJECT_TOO_LARGE");
			expect(err.details).toMatchObject({ limit: 101, actual: 102 });
			expect(() =>
				applyChangeSet(parent, [{ op: "modify", path: "a", content: "x" }], { maxProjectBytes: 50 })
			).not.toThrow();
		});

		it("counts duplicated content towards the project size", () => {
			const err = thrown(() =>
				applyChangeSet(
					emptyManifest(),
					[
						{ op: "add", path: "a", content: "12345" },
						{ op: "add", path: "b", content: "12345" }
					],
					{ maxProjectBytes: 9 }
				)
			);
			expect(err.code).toBe("PROJECT_TOO_LARGE");
		});

		it("refuses more than maxFiles files, but allows deleting from an oversized project", () => {
			const parent = base();
			expect(
				thrown(() => applyChangeSet(parent, [{ op: "add", path: "x", content: "" }], { maxFiles: 3 })).code
			).toBe("TOO_MANY_FILES");
			expect(() => applyChangeSet(parent, [{ op: "delete", path: "README.md" }], { maxFiles: 1 })).not.toThrow();
			expect(() =>
				applyChangeSet(
					parent,
					[
						{ op: "add", path: "x", content: "" },
						{ op: "delete", path: "README.md" }
					],
					{ maxFiles: 3 }
				)
			).not.toThrow();
		});

		it("refuses more than maxOps operations before looking at them", () => {
			const ops = Array.from({ length: 3 }, () => ({ op: "bogus" }) as unknown as ChangeOp);
			const err = thrown(() => applyChangeSet(emptyManifest(), ops, { maxOps: 2 }));
			expect(err.code).toBe("TOO_MANY_OPS");
			expect(err.details).toMatchObject({ field: "changes", limit: 2, actual: 3 });
		});
	});
});
