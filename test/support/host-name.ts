/**
 * Whether a metrics page names this machine: the host name as a whole token (between characters that
 * are not letters or digits) anywhere in the page. A plain substring check fails at random when a
 * short host name (e.g. "vm") happens to occur inside a test's random namespace.
 */
import os from "node:os";

export function namesHost(text: string, host = os.hostname()): boolean {
	const escaped = host.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
	return new RegExp(`(^|[^A-Za-z0-9])${escaped}($|[^A-Za-z0-9])`, "m").test(text);
}
