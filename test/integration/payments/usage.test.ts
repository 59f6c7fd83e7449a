/**
 * The usage report (GET /billing/usage) against the ledger: a generated history of 10,000 settled
 * tasks of an organisation's payer, spread over 30 days: one in 20 held and settled through
 * payments.reserve / payments.settle (which write the attribution and the usage), the rest in bulk on
 * the same ledger functions (Ledger.reserve / settle, 500 operations per ledger_apply statement) with
 * their attributions in one statement per 2,000;
 * the report must equal the ledger's settlement entries per group and in total, for every grouping,
 * as JSON and as CSV. Then the range checks and who may read it.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { Ledger } from "../../../src/payments/ledger";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };

const ORG = randomUUID();
const PAYER = `org:${ORG}`;
const OWNER = randomUUID();
const BILLING = randomUUID();
const PLAIN_MEMBER = randomUUID();
const OUTSIDER = randomUUID();
const ORG_B = randomUUID();
const MEMBERS = [OWNER, BILLING, PLAIN_MEMBER, randomUUID(), randomUUID()];
const KEYS = [null, "key1", "key2", "key3"];
const PROJECTS = ["p-alpha", "p-beta", "p-gamma", "p-delta"];
const MODELS = ["dev-echo", "gpt-4o-mini", "claude-haiku"];
const N = 10_000;
const DAYS = 30;

type Json = Record<string, any>; // response bodies are checked field by field
interface Made {
	member: string | null;
	key: string | null;
	project: string | null;
	model: string | null;
	input: number | null;
	output: number | null;
}
const made = new Map<string, Made>();

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

async function call(path: string, user: string, headers: Record<string, string> = {}) {
	const res = await fetch(`${node.baseUrl}/api/v1${path}`, {
		headers: { authorization: `Bearer ${bearerFor(node.config, user)}`, ...headers }
	});
	const text = await res.text();
	const json = res.headers.get("content-type")?.startsWith("application/json") ? (JSON.parse(text) as Json) : null;
	return { status: res.status, text, json, headers: res.headers };
}

/**
 * Deterministic pseudo-random numbers (the history is the same on every run): mulberry32, scaled into
 * [0, n). Not `state % n` of a power-of-two LCG: its low bit alternates on every call, so with an odd
 * number of calls between them `pick(2) === 0` always preceded an odd `pick(10)`, and no settlement ever
 * ran on the fallback model.
 */
function rng(seed: number) {
	let s = seed >>> 0;
	return (n: number) => {
		s = (s + 0x6d2b79f5) >>> 0;
		let t = s;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
	};
}

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "payments", "orgs"],
		env: { RATE_LIMIT_PER_MINUTE: "100000", RATE_LIMIT_ANON_PER_MINUTE: "100000" }
	});
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Acme', $2)`, [ORG, OWNER]);
	for (const [u, role] of [
		[OWNER, "owner"],
		[BILLING, "billing"],
		[PLAIN_MEMBER, "member"]
	])
		await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3)`, [ORG, u, role]);
	// The outsider owns another organisation: a member of B, nothing of A.
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Globex', $2)`, [ORG_B, OUTSIDER]);
	await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, 'owner')`, [ORG_B, OUTSIDER]);

	await node.broker.call("payments.grant", {
		userId: PAYER,
		credits: 1_000_000_000,
		operator: "test",
		reason: "usage history",
		source: "paid",
		key: "usage-history"
	});
	const pick = rng(19);
	const tasks = Array.from({ length: N }, (_, i) => {
		const id = randomUUID();
		// 1 in 50 has no attribution (a hold from before attributions existed): it counts under null.
		const attributed = i % 50 !== 7;
		const m: Made = attributed
			? {
					member: MEMBERS[pick(MEMBERS.length)],
					key: KEYS[pick(KEYS.length)],
					project: PROJECTS[pick(PROJECTS.length)],
					model: MODELS[pick(MODELS.length)],
					input: null,
					output: null
				}
			: { member: null, key: null, project: null, model: null, input: null, output: null };
		// Half report tokens at settlement (and the model they ran on); 1 in 10 runs on a fallback model.
		const reportsUsage = attributed && pick(2) === 0;
		const fallback = reportsUsage && pick(10) === 0 ? "gpt-4o" : null;
		const usage = reportsUsage
			? { inputTokens: 1 + pick(5000), outputTokens: pick(2000), models: [fallback ?? m.model!] }
			: undefined;
		if (usage) Object.assign(m, { input: usage.inputTokens, output: usage.outputTokens, model: usage.models[0] });
		made.set(id, m);
		const maxCost = 50 + pick(500);
		const attribution = attributed
			? {
					memberId: made.get(id)!.member,
					keyId: m.key,
					projectId: m.project,
					model: fallback ? MODELS[0] : m.model
				}
			: undefined;
		return { id, maxCost, actualCost: pick(maxCost + 1), boostMs: pick(20) === 0 ? 2000 : 0, attribution, usage };
	});
	// One task in 20 goes the way a task's hold goes: payments.reserve (which writes its attribution) and
	// payments.settle (which adds its usage), concurrently in chunks.
	const viaActions = tasks.filter((_, i) => i % 20 === 0);
	for (let i = 0; i < viaActions.length; i += 100) {
		const chunk = viaActions.slice(i, i + 100);
		await Promise.all(
			chunk.map(t =>
				node.broker.call("payments.reserve", {
					userId: PAYER,
					taskId: t.id,
					maxCost: t.maxCost,
					boostMs: t.boostMs,
					tier: "pro",
					attribution: t.attribution
				})
			)
		);
		await Promise.all(
			chunk.map(t =>
				node.broker.call("payments.settle", {
					userId: PAYER,
					taskId: t.id,
					actualCost: t.actualCost,
					usage: t.usage
				})
			)
		);
	}
	// The rest in bulk, on the same ledger functions: the attributions in one statement per chunk (what
	// the reserve writes beside each hold), then the holds and the settlements (with their usage) through
	// a Ledger of its own whose group commit puts 500 operations in one ledger_apply statement. Some pay
	// a boost fee and some a plan discount, so charged and list credits differ.
	const bulk = tasks.filter((_, i) => i % 20 !== 0);
	const ledger = new Ledger(node.runtime.sequelize, { batchMax: 500, batchInFlight: 1 });
	for (let i = 0; i < bulk.length; i += 2000) {
		const chunk = bulk.slice(i, i + 2000);
		const rows = chunk.flatMap(t =>
			t.attribution
				? [
						{
							task_id: t.id,
							member_id: t.attribution.memberId,
							key_id: t.attribution.keyId,
							project_id: t.attribution.projectId,
							model: t.attribution.model
						}
					]
				: []
		);
		await node.runtime.sequelize.query(
			`INSERT INTO usage_attributions (task_id, payer_id, member_id, key_id, project_id, model, source)
			 SELECT r.task_id, $2, r.member_id, r.key_id, r.project_id, r.model, 'task'
			 FROM jsonb_to_recordset($1::jsonb) AS r(task_id text, member_id text, key_id text, project_id text, model text)`,
			{ bind: [JSON.stringify(rows), PAYER] }
		);
		const discountBps = (t: (typeof chunk)[number]) => (t.boostMs ? 0 : t.maxCost % 7 === 0 ? 1500 : 0);
		await Promise.all(
			chunk.map(t =>
				ledger.reserve({
					userId: PAYER,
					taskId: t.id,
					listMaxCost: BigInt(t.maxCost),
					boostMs: t.boostMs,
					listBoostFee: t.boostMs ? 25n : 0n,
					tier: "pro",
					discountBps: discountBps(t)
				})
			)
		);
		await Promise.all(
			chunk.map(t =>
				ledger.settle({ userId: PAYER, taskId: t.id, listActualCost: BigInt(t.actualCost), usage: t.usage })
			)
		);
	}
	// Spread the history over 30 days (the ledger is append-only; this test's own database lets it move
	// the times of what it just made).
	await node.runtime.sequelize.query(`
		ALTER TABLE ledger_transactions DISABLE TRIGGER ledger_transactions_append_only;
		UPDATE ledger_transactions SET created_at = now() - (abs(hashtext(cause_id)) % ${DAYS * 1440}) * interval '1 minute'
			WHERE kind = 'settle';
		ALTER TABLE ledger_transactions ENABLE TRIGGER ledger_transactions_append_only;`);
}, 300_000);

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

/** The ledger's side: each settlement's revenue entry (what the payer was charged), its time and list cost. */
async function settlements(from: Date, to: Date) {
	return sql<{ cause_id: string; created_at: Date; charged: string; list_amount: string }>(
		// A settlement that charged nothing has no revenue entry (entries are never 0): it still counts as a task.
		`SELECT t.cause_id, t.created_at, coalesce(e.amount, 0) AS charged, t.list_amount FROM ledger_transactions t
		 LEFT JOIN ledger_entries e ON e.transaction_id = t.id AND e.account_key = 'sys:revenue'
		 WHERE t.kind = 'settle' AND t.user_id = $1 AND t.created_at >= $2 AND t.created_at < $3`,
		[PAYER, from.toISOString(), to.toISOString()]
	);
}

const groupOf: Record<string, (s: { cause_id: string; created_at: Date }) => string | null> = {
	day: s => s.created_at.toISOString().slice(0, 10),
	model: s => made.get(s.cause_id)!.model,
	project: s => made.get(s.cause_id)!.project,
	member: s => made.get(s.cause_id)!.member,
	key: s => made.get(s.cause_id)!.key
};

function expected(rows: Awaited<ReturnType<typeof settlements>>, groupBy: string) {
	const out = new Map<
		string | null,
		{ tasks: number; credits: bigint; list: bigint; input: bigint; output: bigint }
	>();
	for (const s of rows) {
		const k = groupOf[groupBy](s);
		const g = out.get(k) ?? { tasks: 0, credits: 0n, list: 0n, input: 0n, output: 0n };
		const m = made.get(s.cause_id)!;
		g.tasks++;
		g.credits += BigInt(s.charged);
		g.list += BigInt(s.list_amount);
		g.input += BigInt(m.input ?? 0);
		g.output += BigInt(m.output ?? 0);
		out.set(k, g);
	}
	return out;
}

test("the report equals the ledger per group and in total, for every grouping, as JSON and as CSV", async () => {
	const to = new Date(Date.now() + 60_000);
	const from = new Date(to.getTime() - (DAYS + 1) * 86_400_000);
	const ledger = await settlements(from, to);
	expect(ledger).toHaveLength(N);
	const ledgerTotal = ledger.reduce((a, s) => a + BigInt(s.charged), 0n);
	expect(ledgerTotal).toBeGreaterThan(0n);
	const range = `from=${from.toISOString()}&to=${to.toISOString()}`;
	for (const groupBy of ["day", "model", "project", "member", "key"]) {
		const r = await call(`/billing/usage?${range}&groupBy=${groupBy}&orgId=${ORG}`, BILLING);
		expect(r.status).toBe(200);
		expect(r.json!.payerId).toBe(PAYER);
		expect(r.json!.total.tasks).toBe(N);
		expect(BigInt(r.json!.total.credits)).toBe(ledgerTotal);
		const want = expected(ledger, groupBy);
		expect(r.json!.rows).toHaveLength(want.size);
		for (const row of r.json!.rows) {
			const w = want.get(row.key)!;
			expect(w).toBeDefined();
			expect([row.tasks, row.credits, row.listCredits]).toEqual([w.tasks, String(w.credits), String(w.list)]);
			// Tokens: the sum where known; null for a group in which no settlement reported any.
			if (w.input === 0n && w.output === 0n) expect(row.inputTokens ?? "0").toBe("0");
			else expect([row.inputTokens, row.outputTokens]).toEqual([String(w.input), String(w.output)]);
		}
		if (groupBy === "day") expect(r.json!.rows.length).toBeGreaterThanOrEqual(DAYS);
		if (groupBy === "model") expect(r.json!.rows.map((x: Json) => x.key)).toContain("gpt-4o");

		const csv = await call(`/billing/usage?${range}&groupBy=${groupBy}&orgId=${ORG}`, BILLING, {
			accept: "text/csv"
		});
		expect(csv.status).toBe(200);
		expect(csv.headers.get("content-type")).toMatch(/^text\/csv/);
		// No key of this history needs quoting, so a split reads it (the quoting has its own test).
		const [header, ...lines] = csv.text.split("\r\n").filter(l => l.length);
		expect(header).toBe(`${groupBy},tasks,credits,listCredits,inputTokens,outputTokens`);
		expect(lines).toEqual(
			r.json!.rows.map((x: Json) =>
				[x.key ?? "", x.tasks, x.credits, x.listCredits, x.inputTokens ?? "", x.outputTokens ?? ""].join(",")
			)
		);
	}
	// A sub-range: the report's total is the ledger's over that range.
	const mid = new Date(to.getTime() - 10 * 86_400_000);
	const part = await call(`/billing/usage?from=${mid.toISOString()}&to=${to.toISOString()}&orgId=${ORG}`, OWNER);
	const partLedger = await settlements(mid, to);
	expect(part.json!.total.tasks).toBe(partLedger.length);
	expect(BigInt(part.json!.total.credits)).toBe(partLedger.reduce((a, s) => a + BigInt(s.charged), 0n));
}, 120_000);

test("a CSV field with a comma, a quote or a line break is quoted", async () => {
	const user = randomUUID();
	await node.broker.call("payments.grant", {
		userId: user,
		credits: 1000,
		operator: "t",
		reason: "r",
		key: `g-${user}`
	});
	const taskId = randomUUID();
	const project = 'my "big", odd\nproject';
	await node.broker.call("payments.reserve", {
		userId: user,
		taskId,
		maxCost: 10,
		tier: "free",
		attribution: { projectId: project }
	});
	await node.broker.call("payments.settle", { userId: user, taskId, actualCost: 7 });
	const r = await call(`/billing/usage?groupBy=project`, user, { accept: "text/csv" });
	expect(r.text).toBe(
		`project,tasks,credits,listCredits,inputTokens,outputTokens\r\n"my ""big"", odd\nproject",1,7,7,,\r\n`
	);
	const json = await call(`/billing/usage?groupBy=project`, user, { accept: "application/json, text/csv;q=0.5" });
	expect(json.json!.rows).toEqual([
		{ key: project, tasks: 1, credits: "7", listCredits: "7", inputTokens: null, outputTokens: null }
	]);
});

test("a bad range is a clear 400", async () => {
	for (const q of [
		"from=yesterday",
		"from=2026-13-45",
		"to=2026-12-01T25:00:00Z",
		"from=2026-12-02&to=2026-12-01",
		"from=2026-12-01&to=2026-12-01",
		"from=2024-01-01&to=2026-01-01"
	]) {
		const r = await call(`/billing/usage?${q}`, OWNER);
		expect([q, r.status, r.json?.error?.code]).toEqual([q, 400, "INVALID_RANGE"]);
	}
	const g = await call(`/billing/usage?groupBy=colour`, OWNER);
	expect([g.status, g.json?.error?.code]).toEqual([422, "VALIDATION_ERROR"]);
});

test("only the organisation's owners, admins and billing members read its usage; a member of another organisation gets 404; others see their own", async () => {
	const member = await call(`/billing/usage?orgId=${ORG}`, PLAIN_MEMBER);
	expect([member.status, member.json?.error?.code]).toEqual([403, "INSUFFICIENT_ROLE"]);
	const outsider = await call(`/billing/usage?orgId=${ORG}`, OUTSIDER);
	expect([outsider.status, outsider.json?.error?.code]).toEqual([404, "NOT_FOUND"]);
	// B's owner reads B's usage (none), never A's.
	const ownB = await call(`/billing/usage?orgId=${ORG_B}`, OUTSIDER);
	expect(ownB.json).toMatchObject({ payerId: `org:${ORG_B}`, rows: [], total: { tasks: 0, credits: "0" } });
	expect((await call(`/billing/usage?orgId=${ORG_B}`, OWNER)).status).toBe(404);
	// Without orgId a caller gets their own payer's usage, never the organisation's.
	const own = await call(`/billing/usage`, OUTSIDER);
	expect(own.status).toBe(200);
	expect(own.json).toMatchObject({ payerId: OUTSIDER, rows: [], total: { tasks: 0, credits: "0" } });
	const unauth = await fetch(`${node.baseUrl}/api/v1/billing/usage`);
	expect(unauth.status).toBe(401);
});
