/**
 * Response headers for a project file served as raw bytes. User files are untrusted content on the
 * API's origin: every response says `nosniff` and carries a `sandbox` CSP (a browser that renders
 * it anyway gets an opaque origin and no script); types a browser would execute (HTML, SVG, XML,
 * JavaScript) are additionally sent as attachments so they are downloaded, not rendered.
 */
import { isActiveContent } from "./content-type";

export interface FileServingInfo {
	path: string;
	contentType: string;
	sha256: string;
	version: number;
	/** The client named the version: the bytes behind the URL can never change. */
	pinned: boolean;
}

/** `filename` for Content-Disposition: an ASCII fallback plus the exact UTF-8 name (RFC 6266/5987). */
export function contentDisposition(kind: "inline" | "attachment", path: string): string {
	const name = path.slice(path.lastIndexOf("/") + 1);
	const ascii = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
	const encoded = encodeURIComponent(name).replace(/['()*]/g, c => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
	return `${kind}; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

export function fileResponseHeaders(info: FileServingInfo): Record<string, string> {
	const active = isActiveContent(info.contentType);
	return {
		"X-Content-Type-Options": "nosniff",
		"Content-Security-Policy": "sandbox; default-src 'none'",
		"Content-Disposition": contentDisposition(active ? "attachment" : "inline", info.path),
		ETag: `"${info.sha256}"`,
		"Cache-Control": info.pinned ? "private, max-age=31536000, immutable" : "private, no-cache",
		"X-Project-Version": String(info.version),
		"X-Content-SHA256": info.sha256
	};
}
