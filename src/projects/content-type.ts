/**
 * Content type of a project file, from its extension and its bytes, without a MIME database.
 *
 * - Known binary formats (images, fonts, archives, PDF, wasm) get their type from the extension.
 * - Known text formats (source code, markup, data) get their type with `; charset=utf-8` when the
 *   content is text by `isProbablyText`; if it is not, the extension lied: octet-stream.
 * - Anything else: `text/plain; charset=utf-8` for text, `application/octet-stream` otherwise.
 *
 * Serving note for the route: HTML, SVG, XML and JavaScript run in a browser. `isActiveContent`
 * says when a response needs `Content-Disposition: attachment` or a `Content-Security-Policy:
 * sandbox` header (and always send `X-Content-Type-Options: nosniff`) so user files cannot run
 * script on the API's origin.
 */
import { isProbablyText } from "./textdiff";

const OCTET_STREAM = "application/octet-stream";
const PLAIN_TEXT = "text/plain; charset=utf-8";

const BINARY_TYPES: Readonly<Record<string, string>> = {
	png: "image/png",
	jpg: "image/jpeg",
	jpeg: "image/jpeg",
	gif: "image/gif",
	webp: "image/webp",
	avif: "image/avif",
	ico: "image/vnd.microsoft.icon",
	bmp: "image/bmp",
	tif: "image/tiff",
	tiff: "image/tiff",
	pdf: "application/pdf",
	zip: "application/zip",
	gz: "application/gzip",
	tgz: "application/gzip",
	tar: "application/x-tar",
	wasm: "application/wasm",
	woff: "font/woff",
	woff2: "font/woff2",
	ttf: "font/ttf",
	otf: "font/otf",
	mp3: "audio/mpeg",
	wav: "audio/wav",
	ogg: "audio/ogg",
	mp4: "video/mp4",
	webm: "video/webm"
};

/** Types without the charset; it is added when the content turns out to be text. */
const TEXT_TYPES: Readonly<Record<string, string>> = {
	txt: "text/plain",
	md: "text/markdown",
	markdown: "text/markdown",
	html: "text/html",
	htm: "text/html",
	css: "text/css",
	csv: "text/csv",
	js: "text/javascript",
	mjs: "text/javascript",
	cjs: "text/javascript",
	jsx: "text/javascript",
	// .ts is registered as video/mp2t; in a code base it is TypeScript.
	ts: "text/typescript",
	mts: "text/typescript",
	cts: "text/typescript",
	tsx: "text/typescript",
	json: "application/json",
	map: "application/json",
	xml: "application/xml",
	svg: "image/svg+xml",
	yaml: "application/yaml",
	yml: "application/yaml",
	toml: "application/toml",
	sol: "text/plain",
	py: "text/x-python",
	rb: "text/x-ruby",
	go: "text/x-go",
	rs: "text/x-rust",
	java: "text/x-java",
	c: "text/x-c",
	h: "text/x-c",
	cpp: "text/x-c++",
	hpp: "text/x-c++",
	sh: "text/x-shellscript",
	sql: "application/sql"
};

const ACTIVE_TYPES = new Set([
	"text/html",
	"image/svg+xml",
	"application/xml",
	"text/xml",
	"application/xhtml+xml",
	"text/javascript"
]);

function extensionOf(path: string): string {
	const name = path.slice(path.lastIndexOf("/") + 1);
	const dot = name.lastIndexOf(".");
	return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

/** The `Content-Type` for serving the file at `path` with bytes `content`. */
export function contentTypeFor(path: string, content: Uint8Array): string {
	const ext = extensionOf(path);
	const binaryType = Object.hasOwn(BINARY_TYPES, ext) ? BINARY_TYPES[ext] : undefined;
	if (binaryType !== undefined) return binaryType;
	if (!isProbablyText(content)) return OCTET_STREAM;
	const textType = Object.hasOwn(TEXT_TYPES, ext) ? TEXT_TYPES[ext] : undefined;
	return textType === undefined ? PLAIN_TEXT : `${textType}; charset=utf-8`;
}

/** Whether a browser would run script in a response of this type. */
export function isActiveContent(contentType: string): boolean {
	return ACTIVE_TYPES.has(contentType.split(";")[0].trim().toLowerCase());
}
