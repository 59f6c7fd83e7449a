/**
 * How a second process finds a running embedded platform: `DATA_DIR/embedded.json` (mode 0600),
 * written once the platform is up and removed when it stops. It names the loopback NATS (URL and
 * token), the Moleculer namespace and the pids of the platform and its helpers. `./forge repl` reads
 * it to join; the next `./forge start` reads a stale one to stop helpers a killed platform left.
 */
import fs from "node:fs";
import path from "node:path";
import { isProcess } from "./child-process";

export interface EmbeddedLink {
	natsUrl: string;
	token: string;
	namespace: string;
	/** The platform's process (node). */
	pid: number;
	natsPid: number | null;
	contextPid: number | null;
	startedAt: string;
}

export const linkFile = (dataDir: string) => path.join(dataDir, "embedded.json");

export function writeLink(dataDir: string, link: EmbeddedLink): void {
	fs.mkdirSync(dataDir, { recursive: true });
	const file = linkFile(dataDir);
	const tmp = `${file}.${process.pid}.tmp`;
	fs.writeFileSync(tmp, JSON.stringify(link, null, 2), { mode: 0o600 });
	fs.renameSync(tmp, file);
}

export function readLink(dataDir: string): EmbeddedLink | null {
	try {
		const v = JSON.parse(fs.readFileSync(linkFile(dataDir), "utf8")) as EmbeddedLink;
		return typeof v?.natsUrl === "string" && typeof v.token === "string" && Number.isInteger(v.pid) ? v : null;
	} catch {
		return null;
	}
}

/** Removes the link file if it is this process's (a newer platform's file is left alone). */
export function removeLink(dataDir: string, pid = process.pid): void {
	if (readLink(dataDir)?.pid === pid) fs.rmSync(linkFile(dataDir), { force: true });
}

/** The link of a platform that is running now, or null (no file, or its platform is gone). */
export function liveLink(dataDir: string): EmbeddedLink | null {
	const link = readLink(dataDir);
	return link && isProcess(link.pid, "node") ? link : null;
}
