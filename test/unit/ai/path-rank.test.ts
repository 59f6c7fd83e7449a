/**
 * The degraded context's path-based selection: included paths first, then the paths the query's
 * words name (split identifiers, idf over the manifest, the stem counting double, spelled-out paths
 * above all), whole files within the budget, a reserve kept for the map, excluded paths nowhere.
 */
import { pathScores, selectByPath, splitTerms } from "../../../src/ai/path-rank";

const FILES = [
	{ path: ".editorconfig", size: 200 },
	{ path: "LICENSE", size: 1_000 },
	{ path: "README.md", size: 3_000 },
	{ path: "src/billing/invoice.ts", size: 600 },
	{ path: "src/billing/invoice.test.ts", size: 300 },
	{ path: "src/billing/tax.ts", size: 90 },
	{ path: "src/tasks/stream-slots.ts", size: 900 },
	{ path: "src/tasks/queue.ts", size: 30_000 },
	{ path: "docs/billing.md", size: 1_500 }
];

test("identifiers split at camelCase, snake_case, digits and punctuation; stopwords dropped", () => {
	expect(splitTerms("readContextBlobs HTTPServer max_file_bytes v2 the src/ai/report.ts")).toEqual([
		"read",
		"context",
		"blobs",
		"http",
		"server",
		"max",
		"file",
		"bytes",
		"ai",
		"report"
	]);
});

test("a path the query's words name scores; the stem counts more than a directory; unnamed paths score 0", () => {
	const paths = FILES.map(f => f.path);
	const s = Object.fromEntries(paths.map((p, i) => [p, pathScores(paths, "Fix the invoiceTotal rounding")[i]]));
	expect(s["src/billing/invoice.ts"]).toBeGreaterThan(0);
	expect(s["src/billing/tax.ts"]).toBe(0);
	expect(s["LICENSE"]).toBe(0);
	const b = Object.fromEntries(paths.map((p, i) => [p, pathScores(paths, "billing")[i]]));
	expect(b["docs/billing.md"]).toBeGreaterThan(b["src/billing/tax.ts"]);
	expect(b["src/billing/tax.ts"]).toBeGreaterThan(0);
});

test("a spelled-out path (or its tail, without the extension) outranks word matches", () => {
	const paths = FILES.map(f => f.path);
	const scores = pathScores(paths, "billing invoice: see tasks/stream-slots");
	const best = paths[scores.indexOf(Math.max(...scores))];
	expect(best).toBe("src/tasks/stream-slots.ts");
});

test("included paths first, then ranked ones; what does not fit is skipped, smaller ones still go in", () => {
	const sel = selectByPath(FILES, "queue and invoice", 800, ["src/billing/tax.ts"]);
	// tax.ts included; queue.ts (10,000 tokens) does not fit; the invoice files do
	expect(sel.read[0]).toBe("src/billing/tax.ts");
	expect(sel.read).toContain("src/billing/invoice.ts");
	expect(sel.read).toContain("src/billing/invoice.test.ts");
	expect(sel.read).not.toContain("src/tasks/queue.ts");
	expect(sel.read).not.toContain("LICENSE");
	expect(sel.mapPaths).toHaveLength(FILES.length);
});

test("the ranked files leave a reserve for the map; the estimate never passes the budget", () => {
	const many = Array.from({ length: 50 }, (_, i) => ({ path: `src/invoice/part${i}.ts`, size: 300 }));
	const budget = 2_000;
	const sel = selectByPath(many, "invoice", budget);
	const spent = sel.read.length * (Math.ceil(300 / 3) + 24);
	expect(sel.read.length).toBeGreaterThan(0);
	expect(spent).toBeLessThanOrEqual(budget * 0.9);
});

test("exclude wins over include and keeps paths out of the map; a query naming nothing reads nothing", () => {
	const sel = selectByPath(FILES, "invoice", 10_000, ["src/billing/**"], ["**/*.test.ts", "LICENSE"]);
	expect(sel.read).not.toContain("src/billing/invoice.test.ts");
	expect(sel.mapPaths).not.toContain("LICENSE");
	expect(sel.mapPaths).not.toContain("src/billing/invoice.test.ts");
	expect(selectByPath(FILES, "zzz qqq", 10_000).read).toEqual([]);
});
