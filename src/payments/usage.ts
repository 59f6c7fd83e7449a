/**
 * The usage report (GET /billing/usage, REPL billing-usage): a payer's settled work over a range,
 * grouped by day, model, project, member or API key.
 *
 * THE RULE. Every row comes from the ledger: one settle transaction of cause `task` is one unit of
 * work, its charge is what left the payer's held account and did not come back (-(available_delta +
 * held_delta)), its list cost the transaction's `list_amount`. `usage_attributions` (written with the
 * hold, completed at settlement) only names the group a settlement falls in; a settlement without one
 * falls in the group `null`. So the report's total over a range is the sum of the payer's settlement
 * entries in that range, whatever the attribution says, and the groups partition it.
 *
 * A range is half-open, [from, to), on the settle transaction's time, at most `maxSpanDays` long.
 */
import { stringify } from "csv-stringify/sync";
import { QueryTypes, type Sequelize } from "sequelize";
import { directQuery } from "../db/direct";
import { BadRequest } from "../errors";
import { GroupCommit } from "./group-commit";

export const USAGE_GROUPS = ["day", "model", "project", "member", "key"] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

export interface UsageRange {
	from: Date;
	to: Date;
}

export interface UsageRow {
	/** The group: a UTC day (YYYY-MM-DD), a model id, a project id, a member's user id or an API key id; null when unknown. */
	key: string | null;
	tasks: number;
	/** Credits charged (discounted, boost fees included), as the ledger has them. */
	credits: string;
	/** The list (undiscounted) cost of the same work. */
	listCredits: string;
	/** Tokens where the settlement reported them (null when none did). */
	inputTokens: string | null;
	outputTokens: string | null;
}

export interface UsageReport {
	payerId: string;
	from: string;
	to: string;
	groupBy: UsageGroup;
	rows: UsageRow[];
	total: Omit<UsageRow, "key">;
}

/** Who ran a held task and with what (the hold's attribution). */
export interface UsageAttribution {
	memberId?: string | null;
	keyId?: string | null;
	projectId?: string | null;
	model?: string | null;
	source?: "task" | "chat";
}

/** Tokens and the model(s) a settled task used, as its worker reported them. */
export interface SettledUsage {
	inputTokens?: number;
	outputTokens?: number;
	models?: string[];
}

const DAY_MS = 86_400_000;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/** Whether the YYYY-MM-DD a value starts with is a day of the calendar (Date reads 2026-02-30 as 2 March). */
function isCalendarDate(v: string): boolean {
	const [y, m, d] = v.slice(0, 10).split("-").map(Number);
	const day = new Date(Date.UTC(y, m - 1, d));
	return day.getUTCFullYear() === y && day.getUTCMonth() === m - 1 && day.getUTCDate() === d;
}

function parseInstant(field: "from" | "to", v: string): Date {
	// A bare date is midnight UTC of that day; a date-time without a zone is read as UTC.
	const s = /T/.test(v) && !/(Z|[+-]\d{2}:?\d{2})$/.test(v) ? `${v}Z` : v;
	const d = ISO_DATE.test(v) && isCalendarDate(v) ? new Date(s) : new Date(Number.NaN);
	if (Number.isNaN(d.getTime()))
		throw BadRequest(
			`${field} must be an ISO-8601 date or date-time (e.g. 2026-12-01 or 2026-12-01T00:00:00Z)`,
			"INVALID_RANGE",
			{
				field,
				value: v
			}
		);
	return d;
}

/**
 * The range of a request: `to` defaults to now, `from` to 30 days before `to`. 400 `INVALID_RANGE`
 * for a malformed date, `from` not before `to`, or a span over `maxSpanDays`.
 */
export function usageRange(p: { from?: string; to?: string }, now: Date, maxSpanDays: number): UsageRange {
	const to = p.to ? parseInstant("to", p.to) : now;
	const from = p.from ? parseInstant("from", p.from) : new Date(to.getTime() - 30 * DAY_MS);
	if (from.getTime() >= to.getTime())
		throw BadRequest("from must be before to", "INVALID_RANGE", { from: from.toISOString(), to: to.toISOString() });
	if (to.getTime() - from.getTime() > maxSpanDays * DAY_MS)
		throw BadRequest(`The range may span at most ${maxSpanDays} days`, "INVALID_RANGE", { maxSpanDays });
	return { from, to };
}

/** The model a settlement is grouped under: the one used, or the models of a comparison joined with "+". */
export function modelKey(models: string[] | undefined, asked: string | null | undefined): string | null {
	const used = [...new Set(models ?? [])].sort();
	if (used.length) return used.join("+");
	return asked ?? null;
}

/** Tokens and models out of a worker's usage report ({ promptTokens, completionTokens, byModel }). */
export function settledUsageOf(usage: unknown): SettledUsage | undefined {
	if (!usage || typeof usage !== "object") return undefined;
	const u = usage as { promptTokens?: unknown; completionTokens?: unknown; byModel?: unknown };
	const n = (v: unknown) => (Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : undefined);
	const out: SettledUsage = {};
	const i = n(u.promptTokens);
	const o = n(u.completionTokens);
	if (i !== undefined) out.inputTokens = i;
	if (o !== undefined) out.outputTokens = o;
	if (u.byModel && typeof u.byModel === "object") {
		const models = Object.keys(u.byModel).filter(m => m.length > 0 && m.length <= 200);
		if (models.length) out.models = models.slice(0, 8);
	}
	return Object.keys(out).length ? out : undefined;
}

const GROUP_SQL: Record<UsageGroup, string> = {
	day: `to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`,
	model: `a.model`,
	project: `a.project_id`,
	// A payer's own work without an attribution row is still the payer's (a user pays for itself).
	member: `coalesce(a.member_id, CASE WHEN t.user_id NOT LIKE 'org:%' THEN t.user_id END)`,
	key: `a.key_id`
};

interface Sums {
	key: string | null;
	tasks: string;
	credits: string;
	list_credits: string;
	input_tokens: string | null;
	output_tokens: string | null;
}

const rowOf = (r: Sums): UsageRow => ({
	key: r.key,
	tasks: Number(r.tasks),
	credits: String(r.credits),
	listCredits: String(r.list_credits),
	inputTokens: r.input_tokens == null ? null : String(r.input_tokens),
	outputTokens: r.output_tokens == null ? null : String(r.output_tokens)
});

const ATTRIBUTION_INSERT = `INSERT INTO usage_attributions (task_id, payer_id, member_id, key_id, project_id, model, source)
	VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (task_id) DO NOTHING`;

const attributionBind = (taskId: string, payerId: string, a: UsageAttribution) => [
	taskId,
	payerId,
	a.memberId ?? null,
	a.keyId ?? null,
	a.projectId ?? null,
	a.model ?? null,
	a.source ?? "task"
];

/** One settled task's usage as a row of `settledUsageUpdate`'s JSON array. */
export interface SettledUsageRow {
	task_id: string;
	input_tokens: number | null;
	output_tokens: number | null;
	model: string | null;
}

export function settledUsageRow(taskId: string, u: SettledUsage): SettledUsageRow {
	return {
		task_id: taskId,
		input_tokens: u.inputTokens ?? null,
		output_tokens: u.outputTokens ?? null,
		model: u.models?.length ? modelKey(u.models, null) : null
	};
}

/**
 * The UPDATE that adds settled tasks' usage to their attributions, from a JSON array of
 * `SettledUsageRow` in the parameter `param`: what is reported replaces, what is not keeps its value.
 * Idempotent. The ledger runs it as a CTE of its settle statement (Ledger.settle with `usage`).
 */
export function settledUsageUpdate(param: string): string {
	return `UPDATE usage_attributions a SET input_tokens = coalesce(u.input_tokens, a.input_tokens),
		output_tokens = coalesce(u.output_tokens, a.output_tokens), model = coalesce(u.model, a.model)
	 FROM jsonb_to_recordset(${param}::jsonb) AS u(task_id text, input_tokens bigint, output_tokens bigint, model text)
	 WHERE a.task_id = u.task_id`;
}

interface AttributionOp {
	taskId: string;
	payerId: string;
	a: UsageAttribution;
}

/**
 * `attributeReadingPayerCap` for a batch: the attributions inserted in the batch's order (a task id
 * twice in one batch: the first stays, as one by one), each one's payer's cap read beside them.
 */
const ATTRIBUTION_BATCH = `WITH b AS (
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
		WITH ORDINALITY AS b(task_id, payer_id, member_id, key_id, project_id, model, source, n)
	), attribution AS (
		INSERT INTO usage_attributions (task_id, payer_id, member_id, key_id, project_id, model, source)
		SELECT task_id, payer_id, member_id, key_id, project_id, model, source FROM b ORDER BY n
		ON CONFLICT (task_id) DO NOTHING
	)
	SELECT (SELECT monthly_cap_credits FROM payer_caps WHERE payer_id = b.payer_id) AS c FROM b ORDER BY n`;

export class UsageStore {
	/**
	 * The reserves' attributions, group-committed (src/payments/group-commit.ts): a lone one goes out
	 * at once, those that arrive while a batch is in flight go together as the next statement.
	 */
	private readonly attributions = new GroupCommit<AttributionOp, number | null>({
		maxBatch: 128,
		maxInFlight: 1,
		run: async ops => {
			try {
				return (await this.attributeBatch(ops)).map(value => ({ status: "fulfilled", value }));
			} catch (err) {
				if (ops.length === 1) return [{ status: "rejected", reason: err }];
				// Failed as a whole (a lost connection): each alone, so one's failure is its own (each is idempotent).
				return Promise.allSettled(ops.map(async op => (await this.attributeBatch([op]))[0]));
			}
		}
	});

	/** `namedStatements`: the batched attribution as a named prepared statement (DB_NAMED_STATEMENTS). */
	constructor(
		private readonly sequelize: Sequelize,
		private readonly namedStatements = false
	) {}

	/** Records who holds a task and with what; the first record of a task id stays (a retried reserve writes nothing). */
	async attribute(taskId: string, payerId: string, a: UsageAttribution): Promise<void> {
		await this.sequelize.query(ATTRIBUTION_INSERT, { bind: attributionBind(taskId, payerId, a) });
	}

	/**
	 * `attribute` and the payer's own monthly cap (payer_caps, as PayerCaps.capOf reads it) in one
	 * statement: both sit beside the hold, and the reserve needs the cap before the hold's statement.
	 * The insert is a data-modifying CTE, run whether or not the cap row exists. Concurrent calls
	 * share a statement (`attributions`).
	 */
	attributeReadingPayerCap(taskId: string, payerId: string, a: UsageAttribution): Promise<number | null> {
		return this.attributions.submit({ taskId, payerId, a });
	}

	private async attributeBatch(ops: AttributionOp[]): Promise<Array<number | null>> {
		const binds = ops.map(o => attributionBind(o.taskId, o.payerId, o.a));
		// On the task path, once per submission: straight on a pooled connection (src/db/direct.ts).
		const rows = await directQuery<{ c: string | null }>(
			this.sequelize,
			ATTRIBUTION_BATCH,
			binds[0].map((_, col) => binds.map(b => b[col])),
			this.namedStatements ? "ff_usage_attribute_batch" : null
		);
		if (rows.length !== ops.length) throw new Error("the attribution batch answered a different number of rows");
		// A BIGINT the cap routes bound to safe integers (payments.setPayerCap).
		return rows.map(r => (r.c == null ? null : Number(r.c)));
	}

	/** Adds what a settled task used (tokens, the model it ran on). Idempotent. */
	async recordSettled(taskId: string, u: SettledUsage): Promise<void> {
		await this.sequelize.query(`${settledUsageUpdate("$1")}`, {
			bind: [JSON.stringify([settledUsageRow(taskId, u)])]
		});
	}

	async report(payerId: string, range: UsageRange, groupBy: UsageGroup): Promise<UsageReport> {
		const rows = await this.sequelize.query<Sums>(
			`SELECT ${GROUP_SQL[groupBy]} AS key, count(*) AS tasks,
				sum(-(t.available_delta + t.held_delta)) AS credits, sum(coalesce(t.list_amount, 0)) AS list_credits,
				sum(a.input_tokens) AS input_tokens, sum(a.output_tokens) AS output_tokens
			 FROM ledger_transactions t LEFT JOIN usage_attributions a ON a.task_id = t.cause_id
			 WHERE t.kind = 'settle' AND t.cause_type = 'task' AND t.user_id = $1 AND t.created_at >= $2 AND t.created_at < $3
			 GROUP BY 1 ORDER BY 1 NULLS LAST`,
			{ bind: [payerId, range.from.toISOString(), range.to.toISOString()], type: QueryTypes.SELECT }
		);
		const out = rows.map(rowOf);
		const sum = (f: (r: UsageRow) => string | null) => {
			const vals = out.map(f).filter((v): v is string => v !== null);
			return vals.length ? vals.reduce((a, v) => a + BigInt(v), 0n).toString() : null;
		};
		return {
			payerId,
			from: range.from.toISOString(),
			to: range.to.toISOString(),
			groupBy,
			rows: out,
			total: {
				tasks: out.reduce((a, r) => a + r.tasks, 0),
				credits: sum(r => r.credits) ?? "0",
				listCredits: sum(r => r.listCredits) ?? "0",
				inputTokens: sum(r => r.inputTokens),
				outputTokens: sum(r => r.outputTokens)
			}
		};
	}
}

export const USAGE_CSV_COLUMNS = ["key", "tasks", "credits", "listCredits", "inputTokens", "outputTokens"] as const;

/** The report as CSV (RFC 4180 quoting by csv-stringify): a header, one line per group, no total line. */
export function usageCsv(r: UsageReport): string {
	return stringify(
		r.rows.map(row => USAGE_CSV_COLUMNS.map(c => row[c] ?? "")),
		{ header: true, columns: [r.groupBy, ...USAGE_CSV_COLUMNS.slice(1)], record_delimiter: "\r\n" }
	);
}

/** Whether an Accept header asks for CSV before JSON. */
export function wantsCsv(accept: string | undefined): boolean {
	if (!accept) return false;
	const types = accept
		.split(",")
		.map(p => {
			const [type, ...params] = p.trim().toLowerCase().split(";");
			const q = params.map(s => s.trim()).find(s => s.startsWith("q="));
			return { type: type.trim(), q: q ? Number(q.slice(2)) : 1 };
		})
		.filter(t => t.q > 0);
	const q = (type: string) => Math.max(0, ...types.filter(t => t.type === type).map(t => t.q));
	return q("text/csv") > 0 && q("text/csv") >= q("application/json");
}
