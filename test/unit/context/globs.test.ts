import { MAX_GLOBS, globMatcher, selectPaths, validateGlobs } from "../../../src/context/globs";

const PATHS = [
	"README.md",
	"src/index.ts",
	"src/ai/prompt.ts",
	"src/ai/task-runner.ts",
	"src/ai/deep/x.test.ts",
	"test/unit/a.test.ts",
	"docs/ai.md",
	"srcx/other.ts"
];

describe("globMatcher", () => {
	const sel = (inc?: string[], exc?: string[]) => selectPaths(PATHS, inc, exc);

	test("* stays within a segment, ** spans segments", () => {
		expect(sel(["src/*.ts"])).toEqual(["src/index.ts"]);
		expect(sel(["src/**/*.ts"])).toEqual([
			"src/index.ts",
			"src/ai/prompt.ts",
			"src/ai/task-runner.ts",
			"src/ai/deep/x.test.ts"
		]);
		expect(sel(["**/*.test.ts"])).toEqual(["src/ai/deep/x.test.ts", "test/unit/a.test.ts"]);
		expect(sel(["**"])).toEqual(PATHS);
		expect(sel(["src/ai/**"])).toEqual(["src/ai/prompt.ts", "src/ai/task-runner.ts", "src/ai/deep/x.test.ts"]);
	});

	test("a plain path is a file or a directory, never a prefix of a name", () => {
		expect(sel(["src"])).toEqual([
			"src/index.ts",
			"src/ai/prompt.ts",
			"src/ai/task-runner.ts",
			"src/ai/deep/x.test.ts"
		]);
		expect(sel(["src/"])).toEqual(sel(["src"]));
		expect(sel(["./README.md"])).toEqual(["README.md"]);
		expect(sel(["READ"])).toEqual([]);
	});

	test("?, classes and negated classes", () => {
		expect(sel(["docs/a?.md"])).toEqual(["docs/ai.md"]);
		expect(sel(["src/ai/[pt]*.ts"])).toEqual(["src/ai/prompt.ts", "src/ai/task-runner.ts"]);
		expect(sel(["src/ai/[!p]*.ts"])).toEqual(["src/ai/task-runner.ts"]);
	});

	test("exclude wins over include; dots and regex characters are literal", () => {
		expect(sel(["src/**"], ["**/*.test.ts", "src/ai/prompt.ts"])).toEqual([
			"src/index.ts",
			"src/ai/task-runner.ts"
		]);
		expect(globMatcher(["a+b.(c)"])("a+b.(c)")).toBe(true);
		expect(globMatcher(["a+b.(c)"])("aab.(c)")).toBe(false);
		expect(globMatcher(["*.md"])("READMExmd")).toBe(false);
	});

	test("a pattern that matches nothing selects nothing", () => {
		expect(sel(["nothing/**"])).toEqual([]);
	});
});

describe("validateGlobs", () => {
	test("refuses absolute, .., empty segments, control characters, bad classes and ** inside a segment", () => {
		const bad = ["/etc/passwd", "../x", "a/../b", "a//b", "", "a\u0000b", "a\\b", "src/[ab", "src/a**b", "./"];
		const problems = validateGlobs(bad);
		expect(problems.map(p => p.index)).toEqual(bad.map((_, i) => i));
		for (const p of problems) expect(p.message.length).toBeGreaterThan(3);
		expect(() => globMatcher(["../x"])).toThrow(/may not contain/);
	});

	test("bounds the count and the length", () => {
		expect(validateGlobs(Array.from({ length: MAX_GLOBS }, (_, i) => `f${i}`))).toEqual([]);
		expect(validateGlobs(Array.from({ length: MAX_GLOBS + 1 }, (_, i) => `f${i}`))).toEqual([
			{ index: MAX_GLOBS, message: `at most ${MAX_GLOBS} patterns` }
		]);
		expect(validateGlobs(["a".repeat(257)])[0].message).toMatch(/longer than 256/);
		expect(validateGlobs(["src/**/*.{ts,js}", "**/*.md", "a/**/b"])).toEqual([]);
	});
});
