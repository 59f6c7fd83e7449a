/**
 * Path globs for `include` / `exclude` (POST /tasks, `context.select`). The same rules hold on every
 * node that matches paths (the Python context service implements them too; docs/context.md):
 *
 * - `*` matches any characters within one path segment, `?` exactly one, `[abc]` / `[a-z]` / `[!abc]`
 *   one character of (or not of) a class;
 * - `**` as a whole segment matches any number of segments, none included (`src/**` / `**` / `a/** /b`);
 * - a pattern with no glob character also names a directory: `src` matches `src` and everything under it;
 * - matching is case-sensitive, against the project's normalised paths (no leading `/`, `/` separators);
 * - `exclude` wins over `include`; no `include` means every path.
 *
 * Patterns are bounded (count and length) and must be relative, with no `..` or empty segment, so a
 * client cannot send a pattern that is expensive or meaningless; `validateGlobs` says what is wrong.
 */

export const MAX_GLOBS = 50;
export const MAX_GLOB_LENGTH = 256;

const GLOB_CHARS = /[*?[]/;

export interface GlobProblem {
	index: number;
	message: string;
}

/** What is wrong with a list of patterns (empty when it is fine). */
export function validateGlobs(patterns: readonly string[]): GlobProblem[] {
	const problems: GlobProblem[] = [];
	if (patterns.length > MAX_GLOBS) problems.push({ index: MAX_GLOBS, message: `at most ${MAX_GLOBS} patterns` });
	patterns.slice(0, MAX_GLOBS).forEach((p, index) => {
		const why = globProblem(p);
		if (why) problems.push({ index, message: why });
	});
	return problems;
}

function globProblem(p: string): string | null {
	if (typeof p !== "string" || !p.length) return "is empty";
	if (p.length > MAX_GLOB_LENGTH) return `is longer than ${MAX_GLOB_LENGTH} characters`;
	// eslint-disable-next-line no-control-regex
	if (/[\u0000-\u001f\\]/.test(p)) return "has a control character or a backslash";
	const body = normalise(p);
	if (p.startsWith("/")) return "must be relative to the project root";
	if (!body.length) return "matches nothing (only './')";
	const segments = body.split("/");
	if (segments.some(s => s === "")) return "has an empty path segment";
	if (segments.some(s => s === ".." || s === ".")) return "may not contain '.' or '..' segments";
	for (const s of segments) if (s.includes("**") && s !== "**") return "uses '**' inside a segment (write a/**/b)";
	if (!compiles(body)) return "has an unclosed character class";
	return null;
}

const normalise = (p: string) => p.replace(/^(\.\/)+/, "").replace(/\/+$/, "");

function compiles(body: string): boolean {
	try {
		toRegExp(body);
		return true;
	} catch {
		return false;
	}
}

function segmentSource(seg: string): string {
	let out = "";
	for (let i = 0; i < seg.length; i++) {
		const c = seg[i];
		if (c === "*") out += "[^/]*";
		else if (c === "?") out += "[^/]";
		else if (c === "[") {
			const end = seg.indexOf("]", i + 2);
			if (end < 0) throw new Error("unclosed class");
			let cls = seg.slice(i + 1, end);
			const negate = cls.startsWith("!") || cls.startsWith("^");
			if (negate) cls = cls.slice(1);
			// Inside a class only `\`, `]` and `^` are special to RegExp; `-` keeps its range meaning.
			cls = cls.replace(/[\\\]^]/g, "\\$&");
			out += negate ? `[^/${cls}]` : `[${cls}]`;
			i = end;
		} else out += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
	}
	return out;
}

function toRegExp(body: string): RegExp {
	if (!GLOB_CHARS.test(body)) {
		const lit = body.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
		return new RegExp(`^${lit}(?:/.*)?$`);
	}
	const segs = body.split("/");
	let src = "";
	segs.forEach((s, i) => {
		const last = i === segs.length - 1;
		if (s === "**") src += last ? (i === 0 ? ".*" : "(?:/.*)?") : i === 0 ? "(?:.*/)?" : "(?:/.*)?/";
		else src += (i > 0 && segs[i - 1] !== "**" ? "/" : "") + segmentSource(s);
	});
	return new RegExp(`^${src}$`);
}

/** A compiled predicate over project paths. Throws on a pattern that `validateGlobs` refuses. */
export function globMatcher(patterns: readonly string[]): (path: string) => boolean {
	const res = patterns.map(p => {
		const why = globProblem(p);
		if (why) throw new Error(`glob '${p}' ${why}`);
		return toRegExp(normalise(p));
	});
	return path => res.some(r => r.test(path));
}

/** The paths that `include` / `exclude` select, in the order given. */
export function selectPaths(
	paths: Iterable<string>,
	include: readonly string[] | undefined,
	exclude: readonly string[] | undefined
): string[] {
	const inc = include?.length ? globMatcher(include) : () => true;
	const exc = exclude?.length ? globMatcher(exclude) : () => false;
	const out: string[] = [];
	for (const p of paths) if (inc(p) && !exc(p)) out.push(p);
	return out;
}
