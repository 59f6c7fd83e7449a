/**
 * The worker's durable copy of a finished task's outcome (docs/faults.md, "Finished work is never
 * thrown away"). A worker writes the `tasks.complete` / `tasks.fail` it is about to send here first,
 * deletes it once the tasks service has it (or answers that the lease is another attempt's), and
 * sends whatever is left here again when it starts: a worker killed (or restarted) between the end
 * of a generation and the report's landing keeps the work it was paid for.
 *
 * One JSON file per outcome, `<namespace>~<taskId>~<leaseId>.json`, written atomically: the content
 * goes to a unique temporary name in the same directory, is fsynced, then renamed over the final
 * name, and the directory is fsynced. A crash before the rename leaves only a temporary file, which
 * `list()` ignores (and removes once it is older than `staleTmpMs`); a crash after it leaves the
 * whole outcome. `put` resolves only once the outcome is on disk. The namespace in the name keeps
 * clusters (and test suites) that share a directory apart: a worker replays only its own.
 *
 * Files that cannot be read back as an outcome are moved aside (`.corrupt`), never deleted, and
 * never block the others.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { randomUUID } from "node:crypto";

export type ReportAction = "tasks.complete" | "tasks.fail";

export interface SpooledOutcome {
	action: ReportAction;
	params: { taskId: string; leaseId: string } & Record<string, unknown>;
	/** When the outcome was spooled (ms since the epoch). */
	at: number;
}

const SUFFIX = ".json";
const SEP = "~";
const ACTIONS: readonly ReportAction[] = ["tasks.complete", "tasks.fail"];
/** Characters allowed in a file-name part; anything else is percent-encoded. */
const safe = (s: string) => encodeURIComponent(s).replace(/[~*'()!]/g, c => `%${c.charCodeAt(0).toString(16)}`);

export interface OutcomeSpoolOptions {
	/** A temporary file this old belongs to a put that died before its rename: removed by list(). */
	staleTmpMs?: number;
	now?: () => number;
}

export class OutcomeSpool {
	private readonly prefix: string;
	private readonly staleTmpMs: number;
	private readonly now: () => number;

	constructor(
		readonly dir: string,
		namespace: string,
		opts: OutcomeSpoolOptions = {}
	) {
		this.prefix = safe(namespace) + SEP;
		this.staleTmpMs = opts.staleTmpMs ?? 60_000;
		this.now = opts.now ?? Date.now;
	}

	/** The file an outcome lives in (one per task and lease: a second put of the same one replaces it). */
	fileOf(o: { taskId: string; leaseId: string }): string {
		return path.join(this.dir, `${this.prefix}${safe(o.taskId)}${SEP}${safe(o.leaseId)}${SUFFIX}`);
	}

	/** Writes the outcome durably; resolves once it is on disk (fsynced and renamed into place). */
	async put(action: ReportAction, params: SpooledOutcome["params"]): Promise<void> {
		const body = JSON.stringify({ action, params, at: this.now() } satisfies SpooledOutcome);
		const final = this.fileOf(params);
		await fs.mkdir(this.dir, { recursive: true });
		const tmp = `${final}.${process.pid}.${randomUUID()}.tmp`;
		let fh: fs.FileHandle | null = null;
		try {
			fh = await fs.open(tmp, "wx", 0o600);
			await fh.writeFile(body, "utf8");
			await fh.sync();
			await fh.close();
			fh = null;
			await fs.rename(tmp, final);
		} catch (err) {
			await fh?.close().catch(() => undefined);
			await fs.rm(tmp, { force: true }).catch(() => undefined);
			throw err;
		}
		await this.syncDir();
	}

	/** Forgets an outcome (the tasks service has it, or it is no longer wanted). Missing is fine. */
	async remove(o: { taskId: string; leaseId: string }): Promise<void> {
		await fs.rm(this.fileOf(o), { force: true });
	}

	/** Moves an outcome the tasks service refused aside (`.rejected`): kept for an operator, never replayed. */
	async reject(o: { taskId: string; leaseId: string }): Promise<void> {
		const file = this.fileOf(o);
		await fs.rename(file, `${file}.rejected`).catch(err => {
			if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
		});
	}

	/**
	 * Every outcome of this namespace on disk, oldest first. Unreadable files are moved aside to
	 * `<name>.corrupt` and named in `corrupt`; temporary files of puts that never finished are skipped
	 * (and removed once stale).
	 */
	async list(): Promise<{ outcomes: SpooledOutcome[]; corrupt: string[] }> {
		let names: string[];
		try {
			names = await fs.readdir(this.dir);
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code === "ENOENT") return { outcomes: [], corrupt: [] };
			throw err;
		}
		const outcomes: SpooledOutcome[] = [];
		const corrupt: string[] = [];
		for (const name of names) {
			if (!name.startsWith(this.prefix)) continue;
			const file = path.join(this.dir, name);
			if (name.endsWith(".tmp")) {
				const st = await fs.stat(file).catch(() => null);
				if (st && this.now() - st.mtimeMs > this.staleTmpMs) await fs.rm(file, { force: true });
				continue;
			}
			if (!name.endsWith(SUFFIX)) continue;
			let text: string;
			try {
				text = await fs.readFile(file, "utf8");
			} catch (err) {
				if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // removed meanwhile
				throw err;
			}
			const o = parseOutcome(text);
			if (o && this.fileOf(o.params) === file) outcomes.push(o);
			else {
				await fs.rename(file, `${file}.corrupt`).catch(() => undefined);
				corrupt.push(name);
			}
		}
		outcomes.sort((a, b) => a.at - b.at);
		return { outcomes, corrupt };
	}

	private async syncDir() {
		// Makes the rename itself durable. Not every platform can open a directory (Windows): best effort.
		let dh: fs.FileHandle | null = null;
		try {
			dh = await fs.open(this.dir, "r");
			await dh.sync();
		} catch {
			// ignored: the file's own content is already synced
		} finally {
			await dh?.close().catch(() => undefined);
		}
	}
}

function parseOutcome(text: string): SpooledOutcome | null {
	let v: unknown;
	try {
		v = JSON.parse(text);
	} catch {
		return null;
	}
	const o = v as Partial<SpooledOutcome> | null;
	if (!o || typeof o !== "object" || !ACTIONS.includes(o.action as ReportAction)) return null;
	const p = o.params as SpooledOutcome["params"] | undefined;
	if (!p || typeof p !== "object" || typeof p.taskId !== "string" || typeof p.leaseId !== "string") return null;
	return { action: o.action as ReportAction, params: p, at: typeof o.at === "number" ? o.at : 0 };
}
