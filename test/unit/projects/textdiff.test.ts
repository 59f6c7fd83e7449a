import { isProbablyText, unifiedDiff } from "../../../src/projects/textdiff";

const buf = (s: string): Buffer => Buffer.from(s, "utf8");

describe("isProbablyText", () => {
	it("accepts UTF-8 text, including empty and non-ASCII", () => {
		expect(isProbablyText(buf(""))).toBe(true);
		expect(isProbablyText(buf("hello\n"))).toBe(true);
		expect(isProbablyText(buf("日本語 🎉\r\n"))).toBe(true);
		expect(isProbablyText(buf("\uFEFFbom"))).toBe(true);
	});

	it("refuses NUL in the first 8 KiB and invalid UTF-8 anywhere", () => {
		expect(isProbablyText(Buffer.from([0x61, 0x00, 0x62]))).toBe(false);
		expect(isProbablyText(Buffer.from([0x89, 0x50, 0x4e, 0x47]))).toBe(false);
		expect(isProbablyText(Buffer.concat([buf("a".repeat(100_000)), Buffer.from([0xc3])]))).toBe(false);
		expect(isProbablyText(Buffer.concat([buf("a".repeat(8192)), Buffer.from([0x00])]))).toBe(true);
	});
});

describe("unifiedDiff", () => {
	it("produces a git-style unified diff", () => {
		const result = unifiedDiff("src/a.ts", buf("one\ntwo\nthree\n"), buf("one\n2\nthree\n"));
		expect(result.kind).toBe("text");
		expect(result.patch).toBe(
			["--- a/src/a.ts", "+++ b/src/a.ts", "@@ -1,3 +1,3 @@", " one", "-two", "+2", " three", ""].join("\n")
		);
	});

	it("uses /dev/null for added and deleted files, and both names for renames", () => {
		expect(unifiedDiff("n.txt", null, buf("x\n")).patch).toMatch(
			/^--- \/dev\/null\n\+\+\+ b\/n.txt\n@@ -0,0 \+1,1 @@\n\+x\n$/
		);
		expect(unifiedDiff("d.txt", buf("x\n"), null).patch).toMatch(/^--- a\/d.txt\n\+\+\+ \/dev\/null\n/);
		expect(unifiedDiff({ from: "old.txt", to: "new.txt" }, buf("a\n"), buf("b\n")).patch).toMatch(
			/^--- a\/old.txt\n\+\+\+ b\/new.txt\n/
		);
	});

	it("marks a missing newline at end of file", () => {
		expect(unifiedDiff("f", buf("a\n"), buf("a")).patch).toContain("\\ No newline at end of file");
	});

	it("shows a byte-order mark being added", () => {
		const { kind, patch } = unifiedDiff("f", buf("a\n"), buf("\uFEFFa\n"));
		expect(kind).toBe("text");
		expect(patch).toContain("+\uFEFFa");
	});

	it("reports identical content", () => {
		expect(unifiedDiff("f", buf("a"), buf("a"))).toEqual({ kind: "identical", patch: "" });
	});

	it("says Binary files differ for binary content", () => {
		const result = unifiedDiff("img.png", Buffer.from([0x89, 0x50, 0x00]), Buffer.from([0x89, 0x51, 0x00]));
		expect(result).toEqual({ kind: "binary", patch: "Binary files a/img.png and b/img.png differ\n" });
		expect(unifiedDiff("x", buf("text"), Buffer.from([0xff])).kind).toBe("binary");
	});

	it("does not diff files over the size cap", () => {
		const big = buf("line\n".repeat(1000));
		const result = unifiedDiff("big.txt", big, buf("x\n"), { maxBytes: 1000 });
		expect(result.kind).toBe("too-large");
		expect(result.patch).toMatch(/too large/);
	});

	it("gives up when the edit distance is over the cap", () => {
		const a = buf(Array.from({ length: 200 }, (_, i) => `a${i}`).join("\n"));
		const b = buf(Array.from({ length: 200 }, (_, i) => `b${i}`).join("\n"));
		expect(unifiedDiff("f", a, b, { maxEditLength: 10 }).kind).toBe("too-large");
		expect(unifiedDiff("f", a, b, { timeoutMs: 10_000 }).kind).toBe("text");
	});

	it("stays fast on the largest diffable inputs", () => {
		const lines = (prefix: string): Buffer =>
			buf(
				Array.from({ length: 100_000 }, (_, i) => `${prefix}${i}`)
					.join("\n")
					.slice(0, 1024 * 1024)
			);
		const started = Date.now();
		const result = unifiedDiff("f", lines("a"), lines("b"));
		expect(result.kind).toBe("too-large");
		expect(Date.now() - started).toBeLessThan(5000);
	});
});
