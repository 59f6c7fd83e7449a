/**
 * Run: node -r @swc-node/register bench/queue/cached-plan.ts (issue #16, migration 20261209-4900).
 * A session plans tasks_lease on a small analyzed table (400 queued), then 200,000 finished rows arrive
 * (no ANALYZE, no VACUUM: the session keeps its plan); time 40 one-slot leases in that session (rolled back).
 */
import pg from "pg";
import { TaskStore } from "../../src/tasks/store";
import { createTestDatabase, startTestNode } from "../../test/support/env";
import { admin, seedQueue } from "../../test/support/task-store-node";
async function main() {
	const db = await createTestDatabase("ff_bench");
	const node = await startTestNode({ db, services: ["tasks"], env: { LOG_LEVEL: "error" } });
	const store = new TaskStore(node.runtime.sequelize);
	try {
		await seedQueue(store);
		await admin(db.url, `ANALYZE tasks`);
		await admin(db.url, `ALTER TABLE tasks SET (autovacuum_enabled = false)`);
		let st: { text: string; values: unknown[] } | null = null;
		const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
		const q = proto.query;
		proto.query = function (this: unknown, ...a: unknown[]) {
			const x = a[0] as { text?: string; values?: unknown[] };
			if (typeof x === "object" && x?.text?.includes("FROM tasks_lease("))
				st = { text: x.text, values: x.values ?? [] };
			return q.apply(this, a);
		};
		await store.lease({ nodeId: "x", slots: 1, now: Date.now(), leaseMs: 60_000, totalWorkers: 100_000 });
		proto.query = q;
		const c = new pg.Client({ connectionString: db.url });
		await c.connect();
		const time = async (label: string) => {
			const ms: number[] = [];
			for (let i = 0; i < 40; i++) {
				await c.query("BEGIN");
				const t = performance.now();
				await c.query(st!);
				ms.push(performance.now() - t);
				await c.query("ROLLBACK");
			}
			ms.sort((a, b) => a - b);
			console.log(label, "p50", ms[20].toFixed(2), "ms");
		};
		await time("small table, session's plan:");
		await admin(
			db.url,
			`INSERT INTO tasks (id, user_id, project_id, tier, kind, prompt, request, prepared, request_hash, max_cost_credits, boost_ms, state, attempts, max_attempts, enqueued_at, started_at, last_started_at, finished_at, cost_credits, settlement, created_at, updated_at)
		 SELECT gen_random_uuid(), 'u' || (g % 20), 'prefill', (ARRAY['free','pro','team','enterprise'])[1 + g % 4], 'chat', 'f', '{}'::jsonb, '{"models":[],"promptTokens":1,"contextTokensBudget":0,"maxOutputTokens":1,"maxCostCredits":1}'::jsonb, 'h', 1, 0, 'succeeded', 1, 3, t, t, t, t, 1, 'settled', t, t
		 FROM generate_series(1, 200000) g, LATERAL (SELECT now() - interval '40 days' + g * interval '2 seconds' AS t) x`
		);
		// The queued tasks as the newest rows, as in a real table (their new versions at the heap's end).
		await admin(db.url, `UPDATE tasks SET prompt = prompt || ' ' WHERE state = 'queued'`);
		await time("+200,000 finished rows, same session, no ANALYZE/VACUUM:");
		const c2 = new pg.Client({ connectionString: db.url });
		await c2.connect();
		const r = await c2.query(`SELECT count(*) FROM tasks WHERE state='queued'`);
		console.log("queued", r.rows[0].count);
		await c.end();
		await c2.end();
	} finally {
		await node.stop();
		await db.drop();
	}
}
void main().then(
	() => process.exit(0),
	e => {
		console.error(e);
		process.exit(1);
	}
);
