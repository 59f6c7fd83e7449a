/**
 * Project path rules. A path names a file in a project manifest; it is what a sandbox writes to
 * disk and what users see in diffs, so it must be unambiguous, portable and free of tricks.
 *
 * `normaliseProjectPath(input)` returns the canonical form or throws `PathInvalidError`
 * (code `PATH_INVALID`, details `{ field, reason, path }`). Nothing is silently repaired except
 * Unicode normalisation: a path that is wrong is refused, so the client learns about it.
 *
 * 1. Unicode: the input must be well-formed (no lone surrogates) and is normalised to NFC.
 *    All other rules apply to the NFC form, which is what gets stored.
 * 2. Separator: `/` only. A backslash anywhere is refused (not converted).
 * 3. Relative only: a leading `/` is refused, and so is a drive prefix (`C:`, `C:\`, `C:/`,
 *    any first segment that is a letter followed by `:`).
 * 4. Segments: no empty segment (`a//b`, leading or trailing `/`), no `.` or `..` segment
 *    (`a/./b` is refused, not simplified).
 * 5. Characters refused anywhere: C0 controls including NUL (U+0000–U+001F), DEL (U+007F),
 *    C1 controls (U+0080–U+009F); bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E,
 *    U+2066–U+2069); zero-width and other default-ignorable characters (U+200B–U+200D, U+FEFF,
 *    U+00AD, U+2060–U+206F, variation selectors, tag characters: Unicode's
 *    Default_Ignorable_Code_Point); line and paragraph separators (U+2028, U+2029);
 *    noncharacters (U+FFFE, U+FFFF, ...).
 * 6. Look-alikes of the path syntax: a character is refused if its NFKC form differs from itself
 *    and contains `/`, `.` or `\` (fullwidth `．` `／` `＼`, U+2024 ONE DOT LEADER, U+2025,
 *    U+2026 `…`, U+FE52, U+FE68, ...), and so are slash look-alikes that NFKC leaves alone
 *    (U+2044 FRACTION SLASH, U+2215 DIVISION SLASH, U+2216, U+2571, U+2572, U+27CB, U+27CD,
 *    U+29F5, U+29F8, U+29F9, U+1735, and the combining solidus overlays U+0337, U+0338, U+20E5).
 * 7. Sizes (UTF-8 bytes of the NFC form): a segment at most 255 bytes, the whole path at most
 *    1024 bytes, at most 32 segments.
 * 8. Windows device names are refused as a segment, case-insensitively, with or without an
 *    extension and ignoring trailing dots and spaces before it: CON, PRN, AUX, NUL, COM0–COM9,
 *    LPT0–LPT9 (and the superscript-digit forms COM¹²³, LPT¹²³), CONIN$, CONOUT$. Decision:
 *    projects must check out on Windows, and writing `nul.txt` there silently loses data.
 *    Other Windows restrictions (`<>:"|?*`, trailing dots or spaces) are not enforced.
 * 9. `.git` as a segment (any case) is refused: a checked-out project must not be able to plant
 *    Git metadata or hooks into a sandbox's working tree.
 *
 * Case: paths are case-sensitive (`A.txt` and `a.txt` are different paths), but one manifest may
 * not hold two paths with the same `caseFoldKey`, so every project checks out on case-insensitive
 * file systems (macOS, Windows). The change-set code enforces that with `caseFoldKey`.
 */
import { PathInvalidError } from "./errors";

const MAX_PATH_BYTES = 1024;
const MAX_SEGMENT_BYTES = 255;
const MAX_PATH_DEPTH = 32;

const LONE_SURROGATE = /\p{Cs}/u;
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/u;
const BIDI_CONTROL = /\p{Bidi_Control}/u;
const INVISIBLE = /\p{Default_Ignorable_Code_Point}/u;
const LINE_SEPARATOR = /[\u2028\u2029]/u;
const NONCHARACTER = /\p{Noncharacter_Code_Point}/u;
/** Slash look-alikes whose NFKC form is themselves, so rule 6's NFKC test misses them. */
// eslint-disable-next-line no-misleading-character-class -- the combining overlays (U+0337, U+0338, U+20E5) are listed on purpose, each alone
const SLASH_LOOKALIKE = /[\u0337\u0338\u1735\u2044\u20E5\u2215\u2216\u2571\u2572\u27CB\u27CD\u29F5\u29F8\u29F9]/u;
const NFKC_SYNTAX = /[/.\\]/;
const DRIVE_PREFIX = /^[A-Za-z]:/;
const WINDOWS_DEVICE = /^(?:con|prn|aux|nul|com[0-9\u00B9\u00B2\u00B3]|lpt[0-9\u00B9\u00B2\u00B3]|conin\$|conout\$)$/i;

function refuse(input: string, field: string, reason: string): never {
	throw new PathInvalidError(`Invalid path: ${reason}`, { field, reason, path: input });
}

function describe(ch: string): string {
	return `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** Windows resolves `nul.txt`, `NUL .tar.gz` and `nul...` to the device: compare the part before the first dot, right-trimmed. */
function isWindowsDeviceName(segment: string): boolean {
	const stem = segment.split(".")[0].replace(/[ .]+$/, "");
	return WINDOWS_DEVICE.test(stem);
}

function checkCharacters(path: string, field: string): void {
	for (const ch of path) {
		if (CONTROL.test(ch)) refuse(path, field, `control character ${describe(ch)} is not allowed`);
		if (BIDI_CONTROL.test(ch))
			refuse(path, field, `bidirectional control character ${describe(ch)} is not allowed`);
		if (INVISIBLE.test(ch)) refuse(path, field, `invisible character ${describe(ch)} is not allowed`);
		if (LINE_SEPARATOR.test(ch)) refuse(path, field, `line separator ${describe(ch)} is not allowed`);
		if (NONCHARACTER.test(ch)) refuse(path, field, `noncharacter ${describe(ch)} is not allowed`);
		if (SLASH_LOOKALIKE.test(ch)) refuse(path, field, `character ${describe(ch)} looks like a path separator`);
		if (ch.charCodeAt(0) > 0x7f) {
			const compat = ch.normalize("NFKC");
			if (compat !== ch && NFKC_SYNTAX.test(compat)) {
				refuse(path, field, `character ${describe(ch)} is a compatibility form of "${compat}"`);
			}
		}
	}
}

/**
 * Canonical form of a project path (NFC), or `PathInvalidError` explaining the first rule it
 * breaks. `field` names the request field for the error details.
 */
export function normaliseProjectPath(input: string, field = "path"): string {
	if (typeof input !== "string") refuse(String(input), field, "path must be a string");
	if (input.length === 0) refuse(input, field, "path is empty");
	if (LONE_SURROGATE.test(input)) refuse(input, field, "path is not valid Unicode (lone surrogate)");
	const path = input.normalize("NFC");

	if (path.includes("\\")) refuse(path, field, "backslash is not allowed; use / as the separator");
	if (path.startsWith("/")) refuse(path, field, "absolute paths are not allowed");
	if (DRIVE_PREFIX.test(path)) refuse(path, field, "drive-letter paths are not allowed");
	checkCharacters(path, field);

	const bytes = Buffer.byteLength(path, "utf8");
	if (bytes > MAX_PATH_BYTES) refuse(path, field, `path is ${bytes} bytes, the limit is ${MAX_PATH_BYTES}`);

	const segments = path.split("/");
	if (segments.length > MAX_PATH_DEPTH) {
		refuse(path, field, `path has ${segments.length} segments, the limit is ${MAX_PATH_DEPTH}`);
	}
	segments.forEach((segment, i) => {
		if (segment === "") {
			refuse(
				path,
				field,
				i === segments.length - 1 ? "trailing slash is not allowed" : "empty path segment (//) is not allowed"
			);
		}
		if (segment === "." || segment === "..") refuse(path, field, `"${segment}" segments are not allowed`);
		const segmentBytes = Buffer.byteLength(segment, "utf8");
		if (segmentBytes > MAX_SEGMENT_BYTES) {
			refuse(path, field, `segment ${i + 1} is ${segmentBytes} bytes, the limit is ${MAX_SEGMENT_BYTES}`);
		}
		if (isWindowsDeviceName(segment)) refuse(path, field, `"${segment}" is a reserved Windows device name`);
		if (caseFoldKey(segment) === ".git") refuse(path, field, `"${segment}" segments are not allowed`);
	});
	return path;
}

/** `normaliseProjectPath` as a predicate. */
export function isValidProjectPath(input: string): boolean {
	try {
		normaliseProjectPath(input);
		return true;
	} catch {
		return false;
	}
}

/**
 * Key under which two paths collide on a case-insensitive file system. JavaScript has no
 * Unicode case folding, so this upper-cases then lower-cases (which folds `ß`/`SS`, `ſ`/`s`,
 * Kelvin sign/`k`, final and medial sigma) and re-applies NFC, since case mapping can
 * denormalise (`İ` lower-cases to `i` + combining dot).
 */
export function caseFoldKey(path: string): string {
	return path.normalize("NFC").toUpperCase().toLowerCase().normalize("NFC");
}

/**
 * Orders paths by Unicode code point, which is UTF-8 byte order, so sorted output is the same
 * in every locale and in PostgreSQL's `COLLATE "C"`. (Plain `<` compares UTF-16 code units,
 * which puts U+E000–U+FFFF after astral characters.)
 */
export function comparePaths(a: string, b: string): number {
	const n = Math.min(a.length, b.length);
	for (let i = 0; i < n; i++) {
		const ca = a.charCodeAt(i);
		const cb = b.charCodeAt(i);
		if (ca === cb) continue;
		// Surrogates (D800–DFFF) encode code points above FFFF, so they sort after E000–FFFF.
		const ka = ca >= 0xd800 && ca <= 0xdfff ? ca + 0x2000 : ca >= 0xe000 ? ca - 0x800 : ca;
		const kb = cb >= 0xd800 && cb <= 0xdfff ? cb + 0x2000 : cb >= 0xe000 ? cb - 0x800 : cb;
		return ka - kb;
	}
	return a.length - b.length;
}
