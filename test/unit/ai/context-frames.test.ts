import {
	type ContextFrame,
	contextMessages,
	degradedFrames,
	estimateTextTokens,
	fitFrames,
	frameHeader,
	repositoryMap,
	shownFrames
} from "../../../src/ai/context-frames";
import { degradedReason, selectBudget } from "../../../src/ai/context-source";

const frame = (path: string, tokens: number, kind: ContextFrame["kind"] = "file"): ContextFrame => ({
	kind,
	path,
	lines: [1, 10],
	tokens,
	text: "x"
});

describe("frames in the prompt", () => {
	test("headers name the file and the line range", () => {
		expect(frameHeader({ kind: "file", path: "src/a.ts", lines: [1, 20] })).toBe("--- src/a.ts (lines 1-20) ---");
		expect(frameHeader({ kind: "definitions", path: "src/a.ts", lines: [5, 9] })).toBe(
			"--- src/a.ts definitions (lines 5-9) ---"
		);
		expect(frameHeader({ kind: "map" })).toBe("--- repository map ---");
	});

	test("fitFrames charges each header and skips what does not fit, keeping rank order", () => {
		const header = estimateTextTokens(`\n${frameHeader(frame("a.ts", 0))}\n\n`);
		const frames = [frame("a.ts", 50), frame("b.ts", 500), frame("c.ts", 20)];
		const fit = fitFrames(frames, 50 + 20 + 2 * header);
		expect(fit.frames.map(f => f.path)).toEqual(["a.ts", "c.ts"]);
		expect(fit.tokens).toBe(50 + 20 + 2 * header);
		expect(fitFrames(frames, 49 + header).frames).toEqual([frame("c.ts", 20)]);
		expect(fitFrames(frames, 0).frames).toEqual([]);
	});

	test("contextMessages puts the prompt first, then the frames; the view never carries text", () => {
		const frames: ContextFrame[] = [
			{ kind: "file", path: "a.ts", lines: [1, 2], tokens: 3, text: "one\ntwo\n" },
			{ kind: "map", tokens: 2, text: "./: a.ts b.ts" }
		];
		const built = contextMessages("chat", "Why?", frames, 1000);
		expect(built.messages[1].content).toBe(
			"Why?\n\nProject context:\n--- a.ts (lines 1-2) ---\none\ntwo\n\n--- repository map ---\n./: a.ts b.ts\n"
		);
		expect(shownFrames(built.frames)).toEqual([
			{ kind: "file", path: "a.ts", lines: [1, 2], tokens: 3 },
			{ kind: "map", tokens: 2 }
		]);
		expect(contextMessages("chat", "Why?", [], 1000).messages[1].content).toBe("Why?");
	});

	test("the select budget leaves room for headers and is never negative", () => {
		expect(selectBudget(16_000)).toBe(16_000 - 640 - 32);
		expect(selectBudget(10)).toBe(0);
		expect(selectBudget(0)).toBe(0);
	});
});

describe("degraded context", () => {
	test("included files first (whole ones that fit), then the map of the paths in what is left", () => {
		const files = [
			{ path: "src/a.ts", content: "a\nb\nc\n" },
			{ path: "src/huge.ts", content: "h".repeat(3000) },
			{ path: "src/b.ts", content: "b" }
		];
		const frames = degradedFrames(files, ["src/a.ts", "src/b.ts", "src/huge.ts", "README.md"], 200);
		expect(frames.map(f => [f.kind, f.path, f.lines])).toEqual([
			["file", "src/a.ts", [1, 3]],
			["file", "src/b.ts", [1, 1]],
			["map", undefined, undefined]
		]);
		expect(frames[2].text).toBe("./: README.md\nsrc/: a.ts b.ts huge.ts");
		expect(fitFrames(frames, 200).frames).toHaveLength(3);
	});

	test("the map stays within its budget and says how many paths it left out", () => {
		const paths = Array.from({ length: 500 }, (_, i) => `dir${i}/file${i}.ts`);
		const map = repositoryMap(paths, 100)!;
		expect(map.tokens).toBeLessThanOrEqual(100);
		expect(map.text).toMatch(/\(… \d+ more paths\)$/);
		const listed = map.text.split("\n").length - 1;
		expect(map.text).toContain(`(… ${500 - listed} more paths)`);
		expect(repositoryMap(paths, 0)).toBeNull();
		expect(repositoryMap([], 100)).toBeNull();
	});

	test("reasons are stable codes", () => {
		expect(degradedReason({ type: "REQUEST_TIMEOUT" })).toBe("CONTEXT_TIMEOUT");
		expect(degradedReason({ type: "SERVICE_NOT_FOUND" })).toBe("CONTEXT_UNAVAILABLE");
		expect(degradedReason({ type: "SERVICE_NOT_AVAILABLE" })).toBe("CONTEXT_UNAVAILABLE");
		expect(degradedReason({ type: "INDEX_BROKEN" })).toBe("CONTEXT_ERROR");
		expect(degradedReason(new Error("x"))).toBe("CONTEXT_ERROR");
	});
});
