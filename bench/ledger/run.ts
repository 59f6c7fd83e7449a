/**
 * Ledger benchmark: reserve + settle pairs (the two ledger transactions every AI task costs) on
 * PostgreSQL, by concurrent workers, in two shapes:
 *   - spread: many users, as in production (users never wait for each other);
 *   - hot:    every worker on one user (all serialise on that user's lock: the worst case).
 * Prints pairs/s, latency p50/p99 of each call, the machine, and checks the ledger's invariants.
 *
 *   node -r @swc-node/register bench/ledger/run.ts
 *   (env: DURATION_S=10 CONCURRENCY=32 USERS=200 POOL=10 BATCH_MAX=64 BATCH_IN_FLIGHT=2 BATCH_BY_USER=1 CAPS=payer)
 * CAPS=payer (default): every hold moves its payer's monthly spend counter (no cap set), as every hold
 * of payments.reserve does; CAPS=none: no counter (the shape of the figures before the caps).
 */
import fs from "node:fs";
import os from "node:os";
import { Client } from "pg";
import { QueryTypes } from "sequelize";
import { createSequelize } from "../../src/db/sequelize";
import { migrate } from "../../src/db/migrate";
import { Ledger } from "../../src/payments/ledger";
import { spendCounters } from "../../src/payments/spend-caps";
import { machine } from "../support/machine";

const DURATION_S = Number(process.env.DURATION_S ?? 10);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 32);
const USERS = Number(process.env.USERS ?? 200);
const POOL = Number(process.env.POOL ?? 10);
/** Group commit: most operations per ledger_apply statement, most statements in flight (the Ledger's defaults: 64, 2). */
const BATCH_MAX = Number(process.env.BATCH_MAX ?? 64);
const BATCH_IN_FLIGHT = Number(process.env.BATCH_IN_FLIGHT ?? 2);
/** 0: batches by order of arrival alone (a user's operation may go in a second batch behind its own lock). */
const BATCH_BY_USER = process.env.BATCH_BY_USER !== "0";
const CAPS = process.env.CAPS ?? "payer";
if (CAPS !== "payer" && CAPS !== "none") throw new Error(`CAPS must be payer or none, got ${CAPS}`);
const PG_ADMIN = process.env.BENCH_PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const DB = `ff_bench_ledger_${Date.now().toString(36)}`;

function pct(sorted: number[], p: number) {
	return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}
const ms = (v: number) => `${v.toFixed(1)} ms`;

/**
 * CPU time (ms) of the bench database's server processes, by pid, from /proc (PostgreSQL on this
 * machine; empty otherwise). Unlike pairs/s, CPU per pair hardly depends on what else the machine runs.
 */
async function serverCpu(admin: Client): Promise<Map<number, number>> {
	const { rows } = await admin.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = $1`, [DB]);
	const out = new Map<number, number>();
	const tick = 1000 / 100; // USER_HZ
	for (const { pid } of rows) {
		try {
			const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
			out.set(pid, (Number(f[11]) + Number(f[12])) * tick);
		} catch {
			// not on this machine, or gone
		}
	}
	return out;
}

async function scenario(admin: Client, ledger: Ledger, name: string, userOf: (worker: number, i: number) => string) {
	const reserveLat: number[] = [];
	const settleLat: number[] = [];
	let pairs = 0;
	let failures = 0;
	const until = Date.now() + DURATION_S * 1000;
	const cpu0 = process.cpuUsage();
	const server0 = await serverCpu(admin);
	const started = performance.now();
	await Promise.all(
		Array.from({ length: CONCURRENCY }, async (_, w) => {
			for (let i = 0; Date.now() < until; i++) {
				const userId = userOf(w, i);
				const taskId = `${name}-${w}-${i}`;
				try {
					let t = performance.now();
					await ledger.reserve({
						userId,
						taskId,
						listMaxCost: 100n,
						boostMs: 0,
						listBoostFee: 0n,
						tier: "pro",
						discountBps: 250,
						caps: CAPS === "payer" ? spendCounters({ payerId: userId }) : []
					});
					reserveLat.push(performance.now() - t);
					t = performance.now();
					await ledger.settle({ userId, taskId, listActualCost: 60n });
					settleLat.push(performance.now() - t);
					pairs++;
				} catch (err) {
					failures++;
					if (failures < 5) console.error(`${name}: ${(err as Error).message}`);
				}
			}
		})
	);
	const seconds = (performance.now() - started) / 1000;
	const cpu = process.cpuUsage(cpu0);
	const server1 = await serverCpu(admin);
	// A connection opened during the run counts whole.
	const serverMs = [...server1].reduce((s, [pid, t]) => s + t - (server0.get(pid) ?? 0), 0);
	reserveLat.sort((a, b) => a - b);
	settleLat.sort((a, b) => a - b);
	return {
		scenario: name,
		pairsPerS: Math.round(pairs / seconds),
		ledgerTxPerS: Math.round((2 * pairs) / seconds),
		reserveP50: ms(pct(reserveLat, 50)),
		reserveP99: ms(pct(reserveLat, 99)),
		settleP50: ms(pct(settleLat, 50)),
		settleP99: ms(pct(settleLat, 99)),
		benchCpuUsPerPair: Math.round((cpu.user + cpu.system) / Math.max(1, pairs)),
		pgCpuUsPerPair: server1.size ? Math.round((serverMs * 1000) / Math.max(1, pairs)) : null,
		failures
	};
}

async function main() {
	const admin = new Client({ connectionString: PG_ADMIN });
	await admin.connect();
	await admin.query(`CREATE DATABASE "${DB}"`);
	const url = PG_ADMIN.replace(/\/[^/]*$/, `/${DB}`);
	const sequelize = createSequelize(url, { poolMax: POOL });
	try {
		await migrate(url, sequelize);
		const [{ server_version: version }] = await sequelize.query<{ server_version: string }>("SHOW server_version", {
			type: QueryTypes.SELECT
		});
		const ledger = new Ledger(sequelize, {
			batchMax: BATCH_MAX,
			batchInFlight: BATCH_IN_FLIGHT,
			batchByUser: BATCH_BY_USER
		});
		const users = Array.from({ length: USERS }, (_, i) => `bench-user-${i}`);
		for (const u of [...users, "bench-hot"])
			await ledger.run(tx =>
				ledger.credit(tx, {
					kind: "grant",
					userId: u,
					credits: 1_000_000_000n,
					from: "sys:promo",
					source: "paid",
					expiresAt: null,
					causeType: "bench",
					causeId: u,
					description: "bench funds"
				})
			);
		console.log(
			`Ledger benchmark — ${machine()}, PostgreSQL ${version}, load average ${os
				.loadavg()
				.map(l => l.toFixed(2))
				.join(" ")}`
		);
		console.log(
			`reserve(100) + settle(60) pairs, ${CONCURRENCY} concurrent workers, pool ${POOL}, group commit of up to ${BATCH_MAX} operations with ${BATCH_IN_FLIGHT} statements in flight${BATCH_BY_USER ? " (a user in one at a time)" : ""}, spend counters: ${CAPS}, ${DURATION_S} s per scenario\n`
		);
		const rows = [
			await scenario(admin, ledger, `spread over ${USERS} users`, (w, i) => users[(w * 7919 + i) % USERS]),
			await scenario(admin, ledger, "hot: one user", () => "bench-hot")
		];
		console.table(rows);

		const [{ total }] = await sequelize.query<{ total: string | null }>(
			`SELECT SUM(amount) AS total FROM ledger_entries`,
			{ type: QueryTypes.SELECT }
		);
		const negative = await sequelize.query(
			`SELECT key FROM ledger_accounts WHERE user_id IS NOT NULL AND balance < 0`,
			{ type: QueryTypes.SELECT }
		);
		const [{ n }] = await sequelize.query<{ n: string }>(`SELECT COUNT(*) AS n FROM ledger_entries`, {
			type: QueryTypes.SELECT
		});
		console.log(
			`\ninvariants: entries ${n}, sum of all entries ${total ?? 0} (must be 0), negative user balances ${negative.length} (must be 0)`
		);
		if (Number(total ?? 0) !== 0 || negative.length) process.exitCode = 1;
	} finally {
		await sequelize.close();
		await admin.query(`DROP DATABASE IF EXISTS "${DB}" WITH (FORCE)`);
		await admin.end();
	}
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
