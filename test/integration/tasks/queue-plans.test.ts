/**
 * The queue's plans do not depend on how many finished rows the table holds, nor on whether its
 * statistics have caught up with them (issue #16): the plans PostgreSQL runs for a one-slot lease, a
 * 16-slot lease, the admission read and the backlog query, nested statements included (auto_explain),
 * are the same on a table of queued tasks only, after FINISHED finished rows were added with the
 * statistics of the small table (VACUUM only: row counts current, column statistics stale), and after
 * ANALYZE; and none of them reads the table but through the partial indexes of queued or running rows
 * and the primary key (the lease's update of the task it took).
 */
import pg from "pg";
import { admin, seedQueue, taskStoreNode } from "../../support/task-store-node";

const h = taskStoreNode();
const FINISHED = 100_000;
const ALLOWED_INDEXES = new Set(["tasks_queued", "tasks_queued_boost", "tasks_running", "tasks_pkey"]);

/** The statements the store sent while `fn` ran (text and values), by `label`. */
async function recorded(fn: () => Promise<unknown>): Promise<Array<{ text: string; values: unknown[] }>> {
	const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
	const query = proto.query;
	const out: Array<{ text: string; values: unknown[] }> = [];
	proto.query = function (this: unknown, ...args: unknown[]) {
		const q = args[0] as { text?: string; values?: unknown[] } | string;
		if (typeof q === "object" && q?.text) out.push({ text: q.text, values: q.values ?? [] });
		return query.apply(this, args);
	};
	try {
		await fn();
	} finally {
		proto.query = query;
	}
	return out;
}

interface PlanNode {
	"Node Type": string;
	"Index Name"?: string;
	"Relation Name"?: string;
	"Parent Relationship"?: string;
	Plans?: PlanNode[];
}

/** A plan's shape: its nodes with the index or relation each reads, indented by depth. */
function shape(n: PlanNode, depth = 0): string[] {
	const on = n["Index Name"] ?? n["Relation Name"];
	return [
		`${"  ".repeat(depth)}${n["Node Type"]}${on ? ` ${on}` : ""}`,
		...(n.Plans ?? []).flatMap(c => shape(c, depth + 1))
	];
}

/** Distinct plan shapes of a statement and of each statement it runs (auto_explain, JSON). */
async function plansOf(st: { text: string; values: unknown[] }): Promise<string[]> {
	const c = new pg.Client({ connectionString: h.db.url });
	await c.connect();
	const notices: string[] = [];
	c.on("notice", n => notices.push(n.message ?? ""));
	try {
		await c.query(`LOAD 'auto_explain'`);
		await c.query(
			`SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
			 SET auto_explain.log_format = json; SET auto_explain.log_level = notice`
		);
		await c.query("BEGIN");
		await c.query(st);
		await c.query("ROLLBACK");
	} finally {
		await c.end();
	}
	const shapes = notices
		.filter(n => n.includes("{"))
		.map(n => shape((JSON.parse(n.slice(n.indexOf("{"))) as { Plan: PlanNode }).Plan).join("\n"));
	return [...new Set(shapes)].sort();
}

async function queuePlans(): Promise<Record<string, string[]>> {
	const now = Date.now();
	const lease = (slots: number) =>
		recorded(() => h.store.lease({ nodeId: "plans", slots, now, leaseMs: 60_000, totalWorkers: 100_000 }));
	const statements: Record<string, { text: string; values: unknown[] }> = {
		"lease 1": (await lease(1)).find(s => s.text.includes("FROM tasks_lease("))!,
		"lease 16": (await lease(16)).find(s => s.text.includes("FROM tasks_lease("))!,
		backlog: (await recorded(() => h.store.backlog(now)))[0],
		admit: (
			await recorded(() =>
				h.store.admit({ now, rankAbove: 0, intent: { taskId: crypto.randomUUID(), payerId: "plans" } })
			)
		)[0]
	};
	// The leases above ran for real: their tasks go back to the queue, so every phase sees the same queue.
	await admin(
		h.db.url,
		`UPDATE tasks SET state = 'queued', lease_id = NULL, lease_expires_at = NULL WHERE state = 'running'`
	);
	const out: Record<string, string[]> = {};
	for (const [what, st] of Object.entries(statements)) out[what] = await plansOf(st);
	return out;
}

/** What the plans read the table through: index names, or the scan type when it is not an index. */
function scansOf(plans: Record<string, string[]>): string[] {
	const scans = new Set<string>();
	for (const shapes of Object.values(plans))
		for (const p of shapes)
			for (const line of p.split("\n")) {
				const m = /^\s*(.*Scan) (\w+)$/.exec(line);
				if (m && (m[2] === "tasks" || m[2].startsWith("tasks_"))) scans.add(m[2] === "tasks" ? m[1] : m[2]);
			}
	return [...scans].sort();
}

test(`the lease, admission and backlog plans are the same with ${FINISHED.toLocaleString("en")} finished rows, stale statistics or analyzed`, async () => {
	await seedQueue(h.store);
	await admin(h.db.url, `ANALYZE tasks; ALTER TABLE tasks SET (autovacuum_enabled = false)`);
	const small = await queuePlans();
	await admin(
		h.db.url,
		`INSERT INTO tasks (id, user_id, project_id, tier, kind, prompt, request, prepared, request_hash, max_cost_credits,
			boost_ms, state, attempts, max_attempts, enqueued_at, started_at, last_started_at, finished_at, cost_credits,
			settlement, created_at, updated_at)
		 SELECT gen_random_uuid(), 'u' || (g % 2000), 'prefill', (ARRAY['free', 'pro', 'team', 'enterprise'])[1 + g % 4], 'chat',
			'finished', '{}'::jsonb, '{"models":[],"promptTokens":1,"contextTokensBudget":0,"maxOutputTokens":1,"maxCostCredits":1}'::jsonb,
			'h', 1, (g % 4) * 30000, 'succeeded', 1, 3, t, t, t, t + interval '1 second', 1, 'settled', t, t
		 FROM generate_series(1, ${FINISHED}) g, LATERAL (SELECT now() - interval '40 days' + g * interval '2 seconds' AS t) x`
	);
	await admin(h.db.url, `VACUUM tasks`);
	const stale = await queuePlans();
	await admin(h.db.url, `ANALYZE tasks`);
	const analyzed = await queuePlans();

	expect(stale).toEqual(small);
	expect(analyzed).toEqual(small);
	for (const plans of [small, stale, analyzed]) {
		expect(Object.values(plans).every(p => p.length > 0)).toBe(true);
		for (const scan of scansOf(plans)) expect(ALLOWED_INDEXES).toContain(scan);
	}
}, 240_000);
