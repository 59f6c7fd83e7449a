import pg from "pg";
import { readFileSync } from "node:fs";

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); null elsewhere. */
export function cpuSeconds(pid: number | undefined): number | null {
	if (!pid) return null;
	try {
		const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
		return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
	} catch {
		return null;
	}
}

/**
 * User + system CPU (ms) of each PostgreSQL backend serving database `name` (from /proc; Linux only,
 * the server on this machine). `tag`: a comment put before the query (a bench's own statements).
 */
export async function pgBackendCpu(url: string, name: string, tag = ""): Promise<Map<number, number>> {
	const c = new pg.Client({ connectionString: url });
	await c.connect();
	try {
		const { rows } = await c.query<{ pid: number }>(
			`${tag}SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
			[name]
		);
		const out = new Map<number, number>();
		for (const { pid } of rows) {
			const s = cpuSeconds(pid);
			if (s != null) out.set(pid, s * 1000);
		}
		return out;
	} finally {
		await c.end();
	}
}

/** CPU (ms) the database's backends spent between two samples (backends new in the second count from 0). */
export function pgBackendCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
	let ms = 0;
	for (const [pid, t] of after) ms += t - (before.get(pid) ?? 0);
	return ms;
}
