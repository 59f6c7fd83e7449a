import { PathInvalidError } from "../../../src/projects/errors";
import { caseFoldKey, comparePaths, isValidProjectPath, normaliseProjectPath } from "../../../src/projects/paths";

function reasonFor(input: string): string {
	try {
		normaliseProjectPath(input, "changes[0].path");
	} catch (err) {
		expect(err).toBeInstanceOf(PathInvalidError);
		const e = err as PathInvalidError;
		expect(e.code).toBe("PATH_INVALID");
		expect(e.status).toBe(422);
		expect(e.details.field).toBe("changes[0].path");
		return e.details.reason;
	}
	throw new Error(`expected ${JSON.stringify(input)} to be refused`);
}

describe("normaliseProjectPath", () => {
	it.each([
		"README.md",
		"src/index.ts",
		"a/b/c/d.txt",
		".gitignore",
		".github/workflows/ci.yml",
		"...",
		"a..b",
		"dir.with.dots/file",
		"名前/ファイル.txt",
		"émoji 🎉.md",
		"with space/and-dash_underscore",
		"__proto__",
		"constructor/prototype",
		"console.log",
		"com10",
		"lpt.txt",
		"ab:c",
		"x".repeat(255),
		"日本語。txt"
	])("accepts %j", path => {
		expect(normaliseProjectPath(path)).toBe(path.normalize("NFC"));
		expect(isValidProjectPath(path)).toBe(true);
	});

	it("normalises to NFC", () => {
		const decomposed = "cafe\u0301/re\u0301sume\u0301.txt";
		const out = normaliseProjectPath(decomposed);
		expect(out).toBe("caf\u00e9/r\u00e9sum\u00e9.txt");
		expect(out).toBe(decomposed.normalize("NFC"));
		expect(normaliseProjectPath("caf\u00e9")).toBe(normaliseProjectPath("cafe\u0301"));
	});

	it.each<[string, string, RegExp]>([
		["empty", "", /empty/],
		["backslash", "a\\b", /backslash/],
		["windows path", "src\\index.ts", /backslash/],
		["absolute", "/etc/passwd", /absolute/],
		["absolute root", "/", /absolute/],
		["drive backslash", "C:\\Windows", /backslash/],
		["drive slash", "C:/Windows", /drive/],
		["drive relative", "c:foo", /drive/],
		["dotdot", "../etc/passwd", /"\.\."/],
		["inner dotdot", "a/../../b", /"\.\."/],
		["dot", "./a", /"\."/],
		["inner dot", "a/./b", /"\."/],
		["lone dot", ".", /"\."/],
		["trailing dotdot", "a/..", /"\.\."/],
		["empty segment", "a//b", /empty path segment/],
		["trailing slash", "a/b/", /trailing slash/],
		["NUL", "a\u0000b", /U\+0000/],
		["newline", "a\nb", /control/],
		["tab", "a\tb", /control/],
		["escape", "a\u001b[31mred", /control/],
		["DEL", "a\u007fb", /control/],
		["C1 NEL", "a\u0085b", /control/],
		["C1 CSI", "a\u009bb", /control/],
		["RLO", "invoice\u202Efdp.exe", /bidirectional/],
		["LRE", "a\u202Ab", /bidirectional/],
		["PDF", "a\u202Cb", /bidirectional/],
		["LRI", "a\u2066b", /bidirectional/],
		["PDI", "a\u2069b", /bidirectional/],
		["RLM", "a\u200Fb", /bidirectional/],
		["ALM", "a\u061Cb", /bidirectional/],
		["ZWSP", "a\u200Bb", /invisible/],
		["ZWNJ", "a\u200Cb", /invisible/],
		["ZWJ", "a\u200Db", /invisible/],
		["BOM", "\uFEFFREADME.md", /invisible/],
		["soft hyphen", "pay\u00ADpal", /invisible/],
		["word joiner", "a\u2060b", /invisible/],
		["line separator", "a\u2028b", /line separator/],
		["noncharacter", "a\uFFFEb", /noncharacter/],
		["lone surrogate", "a\uD800b", /surrogate/],
		["fullwidth dot-dot-slash", "．．／etc/passwd", /compatibility form/],
		["fullwidth dot segment", "a/．．/b", /compatibility form/],
		["fullwidth solidus", "a\uFF0Fb", /compatibility form/],
		["fullwidth reverse solidus", "a\uFF3Cb", /compatibility form/],
		["one dot leader", "\u2024\u2024/x", /compatibility form/],
		["two dot leader", "\u2025/x", /compatibility form/],
		["ellipsis", "wait\u2026", /compatibility form/],
		["small full stop", "a\uFE52b", /compatibility form/],
		["small reverse solidus", "a\uFE68b", /compatibility form/],
		["division slash", "etc\u2215passwd", /path separator/],
		["fraction slash", "a\u2044b", /path separator/],
		["big solidus", "a\u29F8b", /path separator/],
		["set minus", "a\u2216b", /path separator/],
		["combining long solidus overlay", "a\u0338b", /path separator/],
		["segment too long", "a/" + "x".repeat(256), /segment 2 is 256 bytes/],
		["multibyte segment too long", "é".repeat(128), /256 bytes/],
		["path too long", Array.from({ length: 5 }, () => "y".repeat(250)).join("/"), /limit is 1024/],
		["too deep", Array.from({ length: 33 }, () => "d").join("/"), /33 segments/],
		["CON", "CON", /reserved Windows device/],
		["nul.txt", "src/nul.txt", /reserved Windows device/],
		["Aux with extension", "docs/Aux.tar.gz", /reserved Windows device/],
		["com1", "com1", /reserved Windows device/],
		["lpt9 trailing dot", "lpt9.", /reserved Windows device/],
		["prn trailing space", "prn .md", /reserved Windows device/],
		["superscript com", "COM\u00B9", /reserved Windows device/],
		["conout$", "CONOUT$", /reserved Windows device/],
		[".git", ".git/hooks/pre-commit", /"\.git"/],
		[".GIT nested", "vendor/.GIT/config", /"\.GIT"/]
	])("refuses %s", (_label, input, reason) => {
		expect(reasonFor(input)).toMatch(reason);
		expect(isValidProjectPath(input)).toBe(false);
	});

	it("accepts the limits exactly", () => {
		expect(() => normaliseProjectPath(Array.from({ length: 32 }, () => "d").join("/"))).not.toThrow();
		const exactly1024 = [...Array.from({ length: 4 }, () => "y".repeat(250)), "z".repeat(20)].join("/");
		expect(Buffer.byteLength(exactly1024)).toBe(1024);
		expect(() => normaliseProjectPath(exactly1024)).not.toThrow();
		expect(() => normaliseProjectPath("é".repeat(127))).not.toThrow();
	});

	it("refuses non-strings", () => {
		expect(() => normaliseProjectPath(42 as unknown as string)).toThrow(PathInvalidError);
	});
});

describe("caseFoldKey", () => {
	it("folds case so checkouts on case-insensitive file systems do not collide", () => {
		expect(caseFoldKey("README.md")).toBe(caseFoldKey("readme.MD"));
		expect(caseFoldKey("Straße")).toBe(caseFoldKey("STRASSE"));
		expect(caseFoldKey("\u212Aelvin")).toBe(caseFoldKey("kelvin"));
		expect(caseFoldKey("ΣΊΣΥΦΟΣ")).toBe(caseFoldKey("σίσυφος"));
		expect(caseFoldKey("cafe\u0301")).toBe(caseFoldKey("CAF\u00C9"));
		expect(caseFoldKey("a.txt")).not.toBe(caseFoldKey("b.txt"));
	});
});

describe("comparePaths", () => {
	it("orders by code point, i.e. UTF-8 byte order", () => {
		const paths = ["b", "a/b", "a", "\uFF21", "\u{1F600}", "A", "a-b"];
		const sorted = [...paths].sort(comparePaths);
		const byBytes = [...paths].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
		expect(sorted).toEqual(byBytes);
		expect(sorted.indexOf("\uFF21")).toBeLessThan(sorted.indexOf("\u{1F600}"));
	});
});
