/**
 * Projects benchmark: commit and read throughput through the gateway over HTTP, one process with
 * the api and projects services on the real PostgreSQL and Redis (a fresh database, dropped after).
 *
 *   1,000-file project: the initial commit (one change set), small follow-up commits (10 files
 *   modified on the head), file reads (concurrent, random paths), the tree, a diff.
 *   10 MiB binary file: commit (base64 in JSON) and raw read.
 *
 * Run: node -r @swc-node/register bench/projects/run.ts
 * Options (environment): BLOB_STORE=pg|fs  ROUNDS=5  READ_S=5  CONCURRENCY=16
 *   BENCH_PG_ADMIN_URL, BENCH_REDIS_URL (default: the local servers)
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Client } from "pg";
import { loadConfig } from "../../src/config";
import { signAccessToken } from "../../src/auth/jwt";
import { createNode } from "../../app/node";
import { machine } from "../support/machine";

const ROUNDS = Number(process.env.ROUNDS ?? 5);
const READ_S = Number(process.env.READ_S ?? 5);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16);
const STORE = process.env.BLOB_STORE === "fs" ? "fs" : "pg";
const PG_ADMIN = process.env.BENCH_PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const id = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
const DB = `ff_bench_projects_${id}`;
const FILES = 1000;
const BIG = 10 * 1024 * 1024;

function percentile(sorted: number[], p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function summary(ms: number[]): { p50: number; p95: number; max: number } {
	const s = [...ms].sort((a, b) => a - b);
	const r = (x: number) => Math.round(x * 10) / 10;
	return { p50: r(percentile(s, 50)), p95: r(percentile(s, 95)), max: r(s[s.length - 1]) };
}

/** A source-like file of about 2 KiB. */
function sourceFile(i: number): string {
	const lines = [`// module ${i}`, `export const id${i} = ${i};`];
	for (let l = 0; lines.join("\n").length < 2000; l++)
		lines.push(`export function f${i}_${l}(x: number): number { return x * ${l} + ${i}; }`);
	return `${lines.join("\n")}\n`;
}

async function main() {
	const blobDir = STORE === "fs" ? await mkdtemp(path.join(tmpdir(), "ff-bench-blobs-")) : null;
	const env: Record<string, string> = {
		DATABASE_URL: PG_ADMIN.replace(/\/[^/]*$/, `/${DB}`),
		REDIS_URL: process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/0",
		REDIS_PREFIX: `ffbench:${id}:`,
		NAMESPACE: `ffbench-${id}`,
		JWT_KEYS: "bench:bench-secret-0123456789abcdef0123456789",
		RATE_LIMIT_PER_MINUTE: "1000000",
		PORT: "0",
		HOST: "127.0.0.1",
		LOG_LEVEL: "error",
		// Tokens are signed here; no users service runs to confirm their sessions.
		AUTH_SESSION_CHECK: "false",
		PROJECTS_BLOB_STORE: STORE,
		...(blobDir ? { PROJECTS_BLOB_DIR: blobDir } : {})
	};
	const config = loadConfig(env);
	const admin = new Client({ connectionString: PG_ADMIN });
	await admin.connect();
	await admin.query(`CREATE DATABASE "${DB}"`);
	let node: Awaited<ReturnType<typeof createNode>> | null = null;
	try {
		node = await createNode(config, { services: ["api", "projects"] });
		const api = node.broker.getLocalService("api") as unknown as { server: import("node:http").Server };
		const addr = api.server.address() as { port: number };
		const base = `http://127.0.0.1:${addr.port}/api/v1`;
		const token = signAccessToken(config.jwt, { sub: "bench-user", role: "user", scopes: [] });
		const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
		const call = async (
			method: string,
			url: string,
			body?: unknown
		): Promise<{ status: number; bytes: Buffer }> => {
			const res = await fetch(base + url, {
				method,
				headers,
				body: body === undefined ? undefined : JSON.stringify(body)
			});
			const bytes = Buffer.from(await res.arrayBuffer());
			if (res.status >= 300)
				throw new Error(`${method} ${url}: ${res.status} ${bytes.toString("utf8").slice(0, 300)}`);
			return { status: res.status, bytes };
		};
		const json = async (method: string, url: string, body?: unknown) =>
			JSON.parse((await call(method, url, body)).bytes.toString("utf8"));
		const timed = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
			const t = performance.now();
			const v = await fn();
			return [v, performance.now() - t];
		};

		// 1. The initial commit of a 1,000-file project, in fresh projects.
		const files = Array.from({ length: FILES }, (_, i) => ({
			path: `src/pkg${i % 20}/mod${i}.ts`,
			content: sourceFile(i)
		}));
		const projectBytes = files.reduce((n, f) => n + Buffer.byteLength(f.content), 0);
		const initial: number[] = [];
		let projectId = "";
		for (let r = 0; r < ROUNDS; r++) {
			const p = await json("POST", "/projects", { name: `bench ${r}` });
			// Distinct content per round, so every round stores its blobs (no dedup against the last).
			const changes = files.map(f => ({ op: "add", path: f.path, content: `${f.content}// round ${r}\n` }));
			const [, ms] = await timed(() =>
				call("POST", `/projects/${p.id}/versions`, { baseVersion: 0, message: "import", changes })
			);
			initial.push(ms);
			projectId = p.id;
		}

		// 2. Small commits on the head: 10 modified files each.
		const small: number[] = [];
		for (let v = 1; v <= ROUNDS * 6; v++) {
			const changes = Array.from({ length: 10 }, (_, k) => {
				const f = files[(v * 10 + k) % FILES];
				return { op: "modify", path: f.path, content: `${f.content}// edit ${v}\n` };
			});
			const [, ms] = await timed(() =>
				call("POST", `/projects/${projectId}/versions`, { baseVersion: v, message: `edit ${v}`, changes })
			);
			small.push(ms);
		}
		const head = ROUNDS * 6 + 1;

		// 3. Reads: random files at the head, CONCURRENCY requests in flight for READ_S seconds.
		const readLatencies: number[] = [];
		let readBytes = 0;
		const readUntil = performance.now() + READ_S * 1000;
		await Promise.all(
			Array.from({ length: CONCURRENCY }, async () => {
				while (performance.now() < readUntil) {
					const f = files[Math.floor(Math.random() * FILES)];
					const [res, ms] = await timed(() =>
						call("GET", `/projects/${projectId}/files/${f.path}?version=${head}`)
					);
					readLatencies.push(ms);
					readBytes += res.bytes.length;
				}
			})
		);
		const tree: number[] = [];
		const diff: number[] = [];
		for (let r = 0; r < ROUNDS; r++) {
			tree.push((await timed(() => call("GET", `/projects/${projectId}/files?version=${head}`)))[1]);
			diff.push((await timed(() => call("GET", `/projects/${projectId}/diff?from=${head - 5}&to=${head}`)))[1]);
		}

		// 4. A 10 MiB binary file: commit and raw read.
		const bigP = await json("POST", "/projects", { name: "big file" });
		const bigCommit: number[] = [];
		const bigRead: number[] = [];
		for (let r = 0; r < ROUNDS; r++) {
			const data = randomBytes(BIG);
			const op = r === 0 ? "add" : "modify";
			const [, c] = await timed(() =>
				call("POST", `/projects/${bigP.id}/versions`, {
					baseVersion: r,
					message: `big ${r}`,
					changes: [{ op, path: "assets/big.bin", content: data.toString("base64"), encoding: "base64" }]
				})
			);
			const [res, g] = await timed(() =>
				call("GET", `/projects/${bigP.id}/files/assets/big.bin?version=${r + 1}`)
			);
			if (Buffer.compare(res.bytes, data) !== 0)
				throw new Error("the 10 MiB file did not come back byte-identical");
			bigCommit.push(c);
			bigRead.push(g);
		}

		const pgVersion = (await admin.query("SHOW server_version")).rows[0].server_version;
		const perS = (n: number, ms: number) => Math.round((n / ms) * 1000);
		const mbs = (bytes: number, ms: number) => Math.round((bytes / 2 ** 20 / ms) * 1000 * 10) / 10;
		const init = summary(initial);
		const sm = summary(small);
		const rd = summary(readLatencies);
		const bc = summary(bigCommit);
		const br = summary(bigRead);
		console.log(`\nProjects benchmark — ${machine()}, PostgreSQL ${pgVersion}, Redis cacher, blob store ${STORE}`);
		console.log(
			`rounds ${ROUNDS}, reads ${READ_S}s at concurrency ${CONCURRENCY}; latencies in ms (p50 / p95 / max)\n`
		);
		const rows: Array<[string, string, string]> = [
			[
				`commit 1,000 files (${(projectBytes / 2 ** 20).toFixed(1)} MiB), one change set`,
				`${init.p50} / ${init.p95} / ${init.max}`,
				`${perS(FILES, init.p50)} files/s, ${mbs(projectBytes, init.p50)} MiB/s`
			],
			[
				"commit 10 modified files on a 1,000-file head",
				`${sm.p50} / ${sm.p95} / ${sm.max}`,
				`${perS(1, sm.p50)} commits/s (sequential)`
			],
			[
				`read one ~2 KiB file (random path), ${CONCURRENCY} in flight`,
				`${rd.p50} / ${rd.p95} / ${rd.max}`,
				`${Math.round(readLatencies.length / READ_S)} reads/s, ${mbs(readBytes, READ_S * 1000)} MiB/s`
			],
			["tree of 1,000 files", (({ p50, p95, max }) => `${p50} / ${p95} / ${max}`)(summary(tree)), ""],
			[
				"diff over 5 versions (50 files, with patches)",
				(({ p50, p95, max }) => `${p50} / ${p95} / ${max}`)(summary(diff)),
				""
			],
			[
				"commit one 10 MiB binary file (base64 JSON)",
				`${bc.p50} / ${bc.p95} / ${bc.max}`,
				`${mbs(BIG, bc.p50)} MiB/s`
			],
			[
				"read one 10 MiB binary file (raw bytes)",
				`${br.p50} / ${br.p95} / ${br.max}`,
				`${mbs(BIG, br.p50)} MiB/s`
			]
		];
		const w0 = Math.max(...rows.map(r => r[0].length));
		const w1 = Math.max(...rows.map(r => r[1].length));
		for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
	} finally {
		await node?.stop();
		await admin.query(`DROP DATABASE IF EXISTS "${DB}" WITH (FORCE)`).catch(() => undefined);
		await admin.end();
		if (blobDir) await rm(blobDir, { recursive: true, force: true });
	}
}

main().then(
	() => process.exit(0),
	err => {
		console.error(err);
		process.exit(1);
	}
);
