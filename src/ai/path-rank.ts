/**
 * The degraded context's selection, when no context node answers: which files of the manifest to
 * show whole, chosen from their paths and sizes alone (no contents are read to rank).
 *
 * THE RULE. Included paths (globs) first, in path order; then every other path the query names,
 * best first, by a path score: for each query term (words split at camelCase, snake_case, digits and
 * punctuation, lower-cased, stopwords dropped) that is a term of the path's segments, its idf over
 * the manifest's paths (a term every path has says nothing), doubled when it is the file's stem; a
 * path (or a tail of it, with or without the extension) spelled out in the query scores above any of
 * that. Files go in whole, in that order, while their byte estimate fits what is left of the budget
 * after a reserve for the repository map; one that does not fit is skipped and smaller ones after it
 * still go in. Excluded paths never appear, not even in the map.
 *
 * WHY. Without the index, a path is what names a file's subject (`src/billing/invoice.ts` for "the
 * invoice total"); path order fills the budget with licences and CI files instead.
 */
import { BYTES_PER_TOKEN } from "./prompt";
import { selectPaths } from "../context/globs";

export interface ManifestFile {
	path: string;
	size: number;
}

export interface PathSelection {
	/** Paths to read and show whole, in order (included first, then by path score). */
	read: string[];
	/** Every allowed path, for the repository map. */
	mapPaths: string[];
}

/** Share of the budget kept back for the repository map when ranked files would take it all. */
export const MAP_RESERVE = 0.1;
/** Tokens charged per frame for its header on the byte estimate (path, line range, newlines). */
const HEADER_TOKENS = 24;
/** At most this many ranked (not included) files are read. */
const MAX_RANKED = 200;

const STOPWORDS = new Set(
	(
		"the a an and or of to in on for is are be by with as at it its this that from into not no " +
		"when what which how why where who use used uses using do does did can should would will make " +
		"makes made add adds added get gets set sets new now so than then there these those all any " +
		"one two we you i our your their them they he she was were has have had but if else also only " +
		"src lib test tests index ts js py md json"
	).split(" ")
);

/** The lexical terms of a word or a path: split identifiers, lower-cased, no stopwords, ≥ 2 chars. */
export function splitTerms(text: string): string[] {
	const out: string[] = [];
	for (const word of text.match(/[A-Za-z0-9]+/g) ?? []) {
		const parts = word
			.replace(/([a-z0-9])([A-Z])/g, "$1 $2")
			.replace(/([A-Z]+)([A-Z][a-z])/g, "$1 $2")
			.replace(/([A-Za-z])([0-9])/g, "$1 $2")
			.split(" ");
		for (const p of parts) {
			const t = p.toLowerCase();
			if (t.length >= 2 && !STOPWORDS.has(t)) out.push(t);
		}
	}
	return out;
}

const stemOf = (path: string) => {
	const base = path.slice(path.lastIndexOf("/") + 1);
	const dot = base.indexOf(".");
	return (dot > 0 ? base.slice(0, dot) : base).toLowerCase();
};

/** Each path's score for the query (0: the query does not name it). */
export function pathScores(paths: readonly string[], query: string): number[] {
	const qterms = new Set(splitTerms(query));
	// spelled-out paths: tokens with a slash or a dot, as written (`src/ai/report.ts`, `report.ts`)
	const spelled = new Set(
		(query.match(/[A-Za-z0-9_][A-Za-z0-9_./-]*[A-Za-z0-9_]/g) ?? [])
			.filter(t => t.includes("/") || t.includes("."))
			.map(t => t.toLowerCase().replace(/^\.\//, ""))
	);
	const termsOf = paths.map(p => new Set(splitTerms(p)));
	const df = new Map<string, number>();
	for (const terms of termsOf) for (const t of terms) if (qterms.has(t)) df.set(t, (df.get(t) ?? 0) + 1);
	const n = paths.length;
	return paths.map((path, i) => {
		let s = 0;
		const stemTerms = new Set(splitTerms(stemOf(path)));
		for (const t of termsOf[i]) {
			const d = df.get(t);
			if (!d) continue;
			const idf = Math.log(1 + n / d);
			s += stemTerms.has(t) ? 2 * idf : idf;
		}
		if (spelled.size) {
			const low = path.toLowerCase();
			const noExt = low.replace(/\.[^./]+$/, "");
			for (const sp of spelled)
				if (
					low === sp ||
					noExt === sp ||
					low.endsWith("/" + sp) ||
					noExt.endsWith("/" + sp) ||
					low.startsWith(sp.replace(/\/$/, "") + "/")
				) {
					s += 10 * Math.log(1 + n);
					break;
				}
		}
		return s;
	});
}

const estimate = (size: number) => Math.ceil(size / BYTES_PER_TOKEN) + HEADER_TOKENS;

/** The degraded context's files (see THE RULE above) within `budgetTokens`. */
export function selectByPath(
	files: readonly ManifestFile[],
	query: string,
	budgetTokens: number,
	include?: readonly string[],
	exclude?: readonly string[]
): PathSelection {
	const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
	const allowedPaths = selectPaths(
		sorted.map(f => f.path),
		undefined,
		exclude
	);
	const allowedSet = new Set(allowedPaths);
	const allowed = sorted.filter(f => allowedSet.has(f.path));
	const includedSet = new Set(include?.length ? selectPaths(allowedPaths, include, undefined) : []);
	const scores = pathScores(
		allowed.map(f => f.path),
		query
	);
	const ranked = allowed
		.map((f, i) => ({ f, s: scores[i] }))
		.filter(x => x.s > 0 && !includedSet.has(x.f.path))
		.sort((a, b) => b.s - a.s || (a.f.path < b.f.path ? -1 : 1))
		.slice(0, MAX_RANKED)
		.map(x => x.f);
	const read: string[] = [];
	let left = budgetTokens;
	for (const f of allowed)
		if (includedSet.has(f.path) && estimate(f.size) <= left) {
			read.push(f.path);
			left -= estimate(f.size);
		}
	left -= Math.ceil(budgetTokens * MAP_RESERVE);
	for (const f of ranked)
		if (estimate(f.size) <= left) {
			read.push(f.path);
			left -= estimate(f.size);
		}
	return { read, mapPaths: allowedPaths };
}
