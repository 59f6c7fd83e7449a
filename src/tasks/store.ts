/**
 * The tasks table: the durable queue. The queue head and the lease are the PostgreSQL functions
 * tasks_queue_head / tasks_lease (migration 20261126-4002): they rank only the part of the queue that
 * can reach the head, lock with FOR UPDATE SKIP LOCKED, so many nodes lease at once and never hand out
 * a task twice, and take their tier ceilings, quantum and caps as arguments built here from the tier
 * table. Reads over the whole queue (backlog, positions) use `vstSql` with the user rank computed in
 * a CTE. Every method takes `now` (epoch ms) from the caller: the service passes its clock, tests a
 * fixed one.
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { directQuery, StatementNames } from "../db/direct";
import { GroupCommit } from "../payments/group-commit";
import { TIERS, TIER_ORDER, type TierName, type TierTable, boostCeilingMs, tierConcurrencyCap } from "../domain/tiers";
import { FAIRNESS_QUANTUM_MS, vstSql, type QueuedTask } from "./scheduling";
import type { Candidate, TaskState } from "./rules";

export interface TaskRow {
	id: string;
	user_id: string;
	/** Whose wallet holds and pays (a user id or `org:<uuid>`); null on tasks from before: `user_id`. */
	payer_id: string | null;
	project_id: string;
	tier: TierName;
	kind: "chat" | "code" | "compare";
	prompt: string;
	request: {
		model?: string;
		models?: string[];
		maxOutputTokens?: number;
		priorityBoost?: "none" | "paid";
		include?: string[];
		exclude?: string[];
	};
	prepared: PreparedTask;
	request_hash: string;
	idempotency_key: string | null;
	max_cost_credits: string;
	boost_ms: number;
	state: TaskState;
	version: number;
	attempts: number;
	max_attempts: number;
	enqueued_at: Date;
	not_before: Date | null;
	lease_id: string | null;
	lease_expires_at: Date | null;
	node_id: string | null;
	cancel_requested: boolean;
	started_at: Date | null;
	last_started_at: Date | null;
	finished_at: Date | null;
	result: unknown;
	usage: unknown;
	cost_credits: string | null;
	spent_credits: string;
	error: { code: string; message: string } | null;
	settlement: "none" | "pending" | "settled" | "released";
	created_at: Date;
	updated_at: Date;
}

/** What ai.prepare answered (docs/task-lifecycle.md, submission step 3). */
export interface PreparedTask {
	models: Array<{ model: string; group: string; provider: string }>;
	promptTokens: number;
	contextTokensBudget: number;
	maxOutputTokens: number;
	maxCostCredits: number;
	/** When the rate-limit window that counted the task's tokens ends (ai.prepare; absent on older rows). */
	rateWindowEndMs?: number | null;
}

export interface NewTask {
	id: string;
	userId: string;
	/** Absent: the user pays (stored as NULL). */
	payerId?: string;
	projectId: string;
	tier: TierName;
	kind: TaskRow["kind"];
	prompt: string;
	request: TaskRow["request"];
	prepared: PreparedTask;
	requestHash: string;
	idempotencyKey: string | null;
	maxCostCredits: number;
	boostMs: number;
	maxAttempts: number;
	/** Epoch ms, whole milliseconds. */
	enqueuedAt: number;
	notBefore: number | null;
}

/**
 * The time-eligible queued tasks with their user rank (USER_RANK_SQL), read by tasks_eligible_ranked
 * (migration 20261205-4501): only the partial index of queued rows, in its order, whatever the planner
 * statistics say, so finished rows never slow the backlog or position queries.
 */
const RANKED_CTE = (alias = "r") => `
	${alias} AS (SELECT id, user_id, tier, enqueued_at, boost_ms, user_rank FROM tasks_eligible_ranked($1::timestamptz))`;

/** The hold intent's delete and the task's insert ($1–$17, insertValues), as CTEs `intent` and `ins`. */
const INSERT_CTES = `intent AS (DELETE FROM task_hold_intents WHERE task_id = $1),
	ins AS (INSERT INTO tasks (id, user_id, project_id, tier, kind, prompt, request, prepared, request_hash, idempotency_key,
		max_cost_credits, boost_ms, state, max_attempts, enqueued_at, not_before, created_at, updated_at, payer_id)
	 VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12, 'queued', $13, $14, $15, $16, $16, $17)
	 RETURNING *)`;

function insertValues(t: NewTask): unknown[] {
	return [
		t.id,
		t.userId,
		t.projectId,
		t.tier,
		t.kind,
		t.prompt,
		JSON.stringify(t.request),
		JSON.stringify(t.prepared),
		t.requestHash,
		t.idempotencyKey,
		t.maxCostCredits,
		t.boostMs,
		t.maxAttempts,
		new Date(Math.floor(t.enqueuedAt)),
		t.notBefore === null ? null : new Date(t.notBefore),
		new Date(),
		t.payerId ?? null
	];
}

/** A worker slot offered to a submission's insert (TaskStore.insertWithPosition). */
export interface LeaseAtInsert {
	nodeId: string;
	leaseId: string;
	leaseMs: number;
	/** Worker slots across the cluster, for the tier caps (as tasks.lease passes them). */
	totalWorkers: number;
}

/** A success report for TaskStore.completeLeased. */
export interface CompleteInput {
	taskId: string;
	leaseId: string;
	now: number;
	result: unknown;
	usage: unknown;
	costCredits: number;
	context?: unknown;
	event: { id: string; occurredAt: string };
}

/** completeOne's statement over a batch of reports, one array per field ($1–$9, in completeBatch's order). */
const COMPLETE_BATCH_SQL = `WITH b AS (
		SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::jsonb[], $5::jsonb[], $6::bigint[], $7::jsonb[], $8::uuid[], $9::timestamptz[])
			AS b(task_id, lease_id, at, result, usage, cost, context, event_id, occurred_at)
	), done AS (
		UPDATE tasks t SET state = 'succeeded', finished_at = b.at, updated_at = b.at, result = b.result, usage = b.usage,
			cost_credits = LEAST(t.spent_credits + b.cost, t.max_cost_credits), error = NULL, lease_id = NULL, lease_expires_at = NULL,
			settlement = 'pending', version = t.version + 1
		FROM b WHERE t.id = b.task_id AND t.lease_id = b.lease_id AND t.state IN ('running', 'queued')
		RETURNING t.*, b.context AS fold_context, b.event_id AS fold_event_id, b.occurred_at AS fold_occurred_at
	), ctx AS (
		INSERT INTO task_contexts (task_id, attempt, context)
		SELECT id, attempts, fold_context FROM done WHERE fold_context IS NOT NULL
		ON CONFLICT (task_id) DO UPDATE SET attempt = EXCLUDED.attempt, context = EXCLUDED.context, updated_at = now()
	), ev AS (
		INSERT INTO outbox_events (event_id, topic, payload, headers, created_at)
		SELECT fold_event_id, 'tasks.finished', jsonb_build_object('taskId', id, 'userId', user_id, 'projectId', project_id,
			'state', state, 'kind', kind, 'costCredits', cost_credits, 'usage', usage), '{}'::jsonb, fold_occurred_at
		FROM done
	)
	SELECT * FROM done`;

export class TaskStore {
	private readonly vst: string;
	private readonly names = new StatementNames("ff_tasks");
	/** The ordering arguments of tasks_queue_head / tasks_lease: tier names, their boost ceilings, the quantum. */
	private readonly order: [string[], number[], number];
	private readonly insertWithPositionSql: string;
	/** Success reports, group committed (completeLeased). */
	private readonly completions: GroupCommit<CompleteInput, TaskRow | null>;
	/** Settlement marks, group committed (markSettlement). */
	private readonly marks: GroupCommit<{ taskId: string; settlement: "settled" | "released" }, void>;

	constructor(
		readonly sequelize: Sequelize,
		private readonly tiers: TierTable = TIERS,
		/** false: the lease goes as an unnamed statement (PgBouncer and other poolers in transaction mode). */
		private readonly namedStatements = true
	) {
		this.vst = vstSql(
			{ enqueuedAt: "r.enqueued_at", boostMs: "r.boost_ms", tier: "r.tier", userRank: "r.user_rank" },
			{ tiers }
		);
		this.order = [[...TIER_ORDER], TIER_ORDER.map(t => boostCeilingMs(t, tiers)), FAIRNESS_QUANTUM_MS];
		// $1 id, $2 user, $4 tier, $12 boost, $14 enqueued_at (the submission's now), $15 not_before.
		const later = `CASE WHEN r.user_id = $2 AND (r.enqueued_at, r.id) > ($14::timestamptz, $1::uuid) THEN 1 ELSE 0 END`;
		const theirVst = vstSql(
			{
				enqueuedAt: "r.enqueued_at",
				boostMs: "r.boost_ms",
				tier: "r.tier",
				userRank: `(r.user_rank + ${later})`
			},
			{ tiers }
		);
		const myVst = vstSql(
			{ enqueuedAt: "$14::timestamptz", boostMs: "$12::integer", tier: "$4::text", userRank: "me.k" },
			{ tiers }
		);
		// $18 node, $19 lease id, $20 lease ms, $21 user cap, $22 tier cap (NULL: none): the lease at insert
		// (insertWithPosition); $18 NULL: no worker slot was offered, the task is queued.
		const leased = (v: string) => `CASE WHEN d.ok THEN ${v} END`;
		this.insertWithPositionSql = `WITH intent AS (DELETE FROM task_hold_intents WHERE task_id = $1),
			r AS (SELECT id, user_id, tier, enqueued_at, boost_ms, user_rank FROM tasks_eligible_ranked($14::timestamptz)
				WHERE $15::timestamptz IS NULL),
			d AS (SELECT CASE WHEN $18::text IS NULL OR $15::timestamptz IS NOT NULL THEN false
				ELSE NOT EXISTS (SELECT 1 FROM r)
					AND NOT EXISTS (SELECT 1 FROM task_drained_nodes n WHERE n.node_id = $18::text)
					AND tasks_running_room($2, $4, $21::integer, $22::integer) END AS ok),
			ins AS (INSERT INTO tasks (id, user_id, project_id, tier, kind, prompt, request, prepared, request_hash, idempotency_key,
				max_cost_credits, boost_ms, state, max_attempts, enqueued_at, not_before, created_at, updated_at, payer_id,
				lease_id, lease_expires_at, node_id, attempts, started_at, last_started_at)
			 SELECT $1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12, CASE WHEN d.ok THEN 'running' ELSE 'queued' END,
				$13, $14, $15, $16, $16, $17, ${leased("$19::uuid")}, ${leased("$16::timestamptz + $20::integer * interval '1 millisecond'")},
				${leased("$18::text")}, CASE WHEN d.ok THEN 1 ELSE 0 END, ${leased("$16::timestamptz")}, ${leased("$16::timestamptz")}
			 FROM d RETURNING *),
			me AS (SELECT count(*) AS k FROM r WHERE r.user_id = $2 AND (r.enqueued_at, r.id) < ($14::timestamptz, $1::uuid)),
			v AS (SELECT r.id, r.enqueued_at, ${theirVst} AS vst FROM r)
			SELECT ins.*, CASE WHEN $15::timestamptz IS NULL AND ins.state = 'queued' THEN 1 + (
				SELECT count(*) FROM v, me WHERE (v.vst, v.enqueued_at, v.id) < (${myVst}, $14::timestamptz, $1::uuid)
			) END AS queue_position
			FROM ins`;
		this.completions = new GroupCommit({
			maxBatch: 64,
			maxInFlight: 1,
			run: (ops: CompleteInput[]) => this.completeBatch(ops)
		});
		this.marks = new GroupCommit({
			maxBatch: 256,
			maxInFlight: 1,
			run: async (ops: Array<{ taskId: string; settlement: "settled" | "released" }>) => {
				// A task's first mark in the batch is the one that counts: one by one, the later ones would
				// find it no longer pending. (Two rows joined to one task would update it with either.)
				const first = new Map<string, "settled" | "released">();
				for (const o of ops) if (!first.has(o.taskId)) first.set(o.taskId, o.settlement);
				await this.q(
					`UPDATE tasks t SET settlement = b.settlement FROM unnest($1::uuid[], $2::text[]) AS b(id, settlement)
					 WHERE t.id = b.id AND t.settlement = 'pending'`,
					[[...first.keys()], [...first.values()]]
				);
				return ops.map(() => ({ status: "fulfilled" as const, value: undefined }));
			}
		});
	}

	/**
	 * A statement of the store. In a transaction: through Sequelize, on the transaction's connection.
	 * Otherwise (autocommit: every statement of the submit → lease → complete → settle path) straight
	 * on a pooled pg connection (src/db/direct.ts), named by its text unless `namedStatements` is off:
	 * Sequelize's own handling of a query was a measured share of the path's CPU, and a named statement
	 * is parsed and planned once per connection instead of per call.
	 */
	q<T extends object>(sql: string, bind: unknown[] = [], tx?: Transaction): Promise<T[]> {
		if (tx) return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx });
		return directQuery<T>(this.sequelize, sql, bind, this.namedStatements ? this.names.of(sql) : null);
	}

	/**
	 * The lease's statement under its own fixed name (autocommit; src/db/direct.ts). With
	 * `namedStatements` off (DB_NAMED_STATEMENTS=false) it is unnamed, parsed every time (the
	 * function's own plans stay cached in the server).
	 */
	private prepared<T extends object>(name: string, text: string, values: unknown[]): Promise<T[]> {
		return directQuery<T>(this.sequelize, text, values, this.namedStatements ? name : null);
	}

	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
		return this.sequelize.transaction(fn);
	}

	/**
	 * Inserts a queued task and deletes its hold intent in the same statement (a data-modifying CTE:
	 * both or neither, without a BEGIN/COMMIT pair around them).
	 */
	async insert(t: NewTask, tx?: Transaction): Promise<TaskRow> {
		const [row] = await this.q<TaskRow>(`WITH ${INSERT_CTES} SELECT * FROM ins`, insertValues(t), tx);
		return row;
	}

	/**
	 * `insert`, and in the same statement the new task's 1-based place in queue order as `positionOf`
	 * would count it right after (issue #16: one round trip instead of two). Null when the task is not
	 * time-eligible now (`notBefore` set: deferred), and then nothing is ranked.
	 *
	 * The statement's snapshot does not hold the new row, so the rank is counted around it: its user
	 * rank is the number of its user's eligible queued tasks before it in (enqueued_at, id) order; that
	 * user's tasks after it rank one further than the snapshot says (THE RULE, 2); every other task keeps
	 * its rank. The place is 1 + the tasks whose (vst, enqueued_at, id) comes before the new one's.
	 * `now` for eligibility is the task's enqueued_at (a submission enqueues at its own `now`).
	 *
	 * `lease`: a worker slot on this node is offered (docs/task-lifecycle.md, "Dispatch"). The task is
	 * then inserted `running` under that lease, its first attempt started, when in the statement's
	 * snapshot it would be the head of the queue and tasks_lease would take it: it is time-eligible, no
	 * time-eligible task is queued, the node is not drained, and its user and tier run fewer tasks
	 * than their caps (tasks_running_room: the same counts as tasks_lease's). Otherwise it is queued as
	 * without the offer. A leased task has no position (null).
	 */
	async insertWithPosition(
		t: NewTask,
		lease: LeaseAtInsert | null = null
	): Promise<{ row: TaskRow; position: number | null }> {
		const tierCap = lease ? tierConcurrencyCap(t.tier, lease.totalWorkers, this.tiers) : null;
		const [row] = await this.q<TaskRow & { queue_position: string | null }>(this.insertWithPositionSql, [
			...insertValues(t),
			lease?.nodeId ?? null,
			lease?.leaseId ?? null,
			lease?.leaseMs ?? null,
			lease ? this.tiers[t.tier].perUserConcurrency : null,
			tierCap !== null && Number.isFinite(tierCap) ? tierCap : null
		]);
		const { queue_position, ...task } = row;
		return { row: task as TaskRow, position: queue_position === null ? null : Number(queue_position) };
	}

	async byId(id: string, tx?: Transaction): Promise<TaskRow | null> {
		const [row] = await this.q<TaskRow>(`SELECT * FROM tasks WHERE id = $1`, [id], tx);
		return row ?? null;
	}

	async byIdempotencyKey(userId: string, key: string): Promise<TaskRow | null> {
		const [row] = await this.q<TaskRow>(`SELECT * FROM tasks WHERE user_id = $1 AND idempotency_key = $2`, [
			userId,
			key
		]);
		return row ?? null;
	}

	/** A user's tasks, newest first; the cursor is the last row's `created_at|id`. */
	async list(
		userId: string,
		limit: number,
		cursor: { createdAt: Date; id: string } | null,
		state?: TaskState,
		payerId?: string
	): Promise<TaskRow[]> {
		const bind: unknown[] = [userId, limit];
		let where = "user_id = $1";
		if (payerId) where += ` AND payer_id = $${bind.push(payerId)}`;
		if (cursor)
			where += ` AND (created_at, id) < ($${bind.push(cursor.createdAt)}, $${bind.push(cursor.id)}::uuid)`;
		if (state) where += ` AND state = $${bind.push(state)}`;
		return this.q<TaskRow>(`SELECT * FROM tasks WHERE ${where} ORDER BY created_at DESC, id DESC LIMIT $2`, bind);
	}

	/** Time-eligible queued task ids in queue order (caps not applied). */
	async queueOrder(now: number, limit: number, tx?: Transaction): Promise<Candidate[]> {
		return this.q<Candidate>(
			`SELECT h.id, h.user_id AS "userId", h.tier FROM tasks_queue_head($1::timestamptz, $2::integer, $3::text[], $4::integer[], $5::integer) WITH ORDINALITY h
			 ORDER BY h.ordinality`,
			[new Date(now), limit, ...this.order],
			tx
		);
	}

	/**
	 * Leases up to `slots` tasks for `nodeId` in one statement (tasks_lease): walks the first
	 * `slots × 8 + 64` tasks of the queue in order, skips those whose user or tier is at its cap
	 * (counting running tasks and earlier picks, as pickNext) and those another leaser holds
	 * (SKIP LOCKED), and moves the picks to `running` with a fresh lease, in pick order. None while
	 * the node is drained. Caps count running rows committed before this call, so two lease calls
	 * racing can each take a task a cap had room for only once; the overshoot is bounded by the
	 * number of concurrent lease calls.
	 */
	async lease(p: {
		nodeId: string;
		slots: number;
		now: number;
		leaseMs: number;
		totalWorkers: number;
		/** The lease id every task of this call gets (the worker's, so it can ask for them again: recoverLeases). */
		leaseId?: string | null;
	}): Promise<TaskRow[]> {
		if (p.slots <= 0) return [];
		const userCaps = TIER_ORDER.map(t => this.tiers[t].perUserConcurrency);
		// No tier cap is NULL to the function (Infinity has no integer form).
		const tierCaps = TIER_ORDER.map(t => {
			const cap = tierConcurrencyCap(t, p.totalWorkers, this.tiers);
			return Number.isFinite(cap) ? cap : null;
		});
		return this.prepared<TaskRow>(
			"tasks_lease",
			// A drained node leases nothing: its slots count as 0 (the function then returns at once), in
			// the same round trip instead of a query of its own before every lease.
			`SELECT * FROM tasks_lease($1::timestamptz, $2::integer,
			   CASE WHEN EXISTS (SELECT 1 FROM task_drained_nodes WHERE node_id = $4::text) THEN 0 ELSE $3::integer END,
			   $4::text, $5::timestamptz, $6::text[], $7::integer[], $8::integer, $9::integer[], $10::integer[], $11::uuid)`,
			[
				new Date(p.now),
				p.slots * 8 + 64,
				p.slots,
				p.nodeId,
				new Date(p.now + p.leaseMs),
				...this.order,
				userCaps,
				tierCaps,
				p.leaseId ?? null
			]
		);
	}

	/**
	 * The tasks leased to `nodeId` by calls whose answer it never got (their lease ids), still running
	 * under that lease: their lease is renewed and they go back to the worker (the same attempt). A task
	 * whose lease expired and was taken back is not among them. Reads the running tasks only (index
	 * tasks_running), and only when a worker has a lost answer to ask about.
	 */
	async recoverLeases(p: { nodeId: string; leaseIds: string[]; now: number; leaseMs: number }): Promise<TaskRow[]> {
		if (!p.leaseIds.length) return [];
		return this.q<TaskRow>(
			`UPDATE tasks SET lease_expires_at = $3 WHERE state = 'running' AND node_id = $1 AND lease_id = ANY($2::uuid[]) RETURNING *`,
			[p.nodeId, p.leaseIds, new Date(p.now + p.leaseMs)]
		);
	}

	async heartbeat(
		taskId: string,
		leaseId: string,
		now: number,
		leaseMs: number
	): Promise<{ cancelRequested: boolean } | null> {
		const [row] = await this.q<{ cancel_requested: boolean }>(
			`UPDATE tasks SET lease_expires_at = $3 WHERE id = $1 AND lease_id = $2 AND state = 'running' RETURNING cancel_requested`,
			[taskId, leaseId, new Date(now + leaseMs)]
		);
		return row ? { cancelRequested: row.cancel_requested } : null;
	}

	/**
	 * The task under this lease, locked: running, or queued again after the lease expired but not yet
	 * leased by another attempt (its outcome is still wanted); null when another attempt has it or it ended.
	 */
	async lockLeased(taskId: string, leaseId: string, tx: Transaction): Promise<TaskRow | null> {
		const [row] = await this.q<TaskRow>(
			`SELECT * FROM tasks WHERE id = $1 AND lease_id = $2 AND state IN ('running', 'queued') FOR UPDATE`,
			[taskId, leaseId],
			tx
		);
		return row ?? null;
	}

	/**
	 * A success report (issue #16): the lease check, the context, the final state and the
	 * `tasks.finished` outbox event in one statement (completeOne), null when the lease is gone.
	 * Reports that arrive while one is being written go together as the next statement
	 * (src/payments/group-commit.ts; a lone report goes at once): the same UPDATE over the batch's
	 * rows (completeBatch).
	 */
	completeLeased(p: CompleteInput): Promise<TaskRow | null> {
		return this.completions.submit(p);
	}

	/**
	 * A batch of success reports. Each task's first report in the batch goes in one statement, the
	 * rows' UPDATE joined with the reports (`unnest`), the contexts and the outbox events from its
	 * RETURNING, as completeOne does for one; a task's further reports in the same batch run alone
	 * after it, so they see it committed and match nothing (LEASE_LOST), as they would have waited on
	 * the row lock. A batch whose statement fails is run report by report, so one bad report fails only
	 * itself.
	 */
	private async completeBatch(ops: CompleteInput[]): Promise<Array<PromiseSettledResult<TaskRow | null>>> {
		const settle = (p: Promise<TaskRow | null>) =>
			p.then(
				value => ({ status: "fulfilled" as const, value }),
				(reason: unknown) => ({ status: "rejected" as const, reason })
			);
		const out: Array<PromiseSettledResult<TaskRow | null>> = new Array(ops.length);
		const seen = new Set<string>();
		const first: number[] = [];
		const repeats: number[] = [];
		ops.forEach((o, i) => {
			if (seen.has(o.taskId)) repeats.push(i);
			else {
				seen.add(o.taskId);
				first.push(i);
			}
		});
		if (first.length === 1) out[first[0]] = await settle(this.completeOne(ops[first[0]]));
		else {
			const batch = first.map(i => ops[i]);
			try {
				const rows = await this.q<
					TaskRow & { fold_context: unknown; fold_event_id: string; fold_occurred_at: Date }
				>(COMPLETE_BATCH_SQL, [
					batch.map(o => o.taskId),
					batch.map(o => o.leaseId),
					batch.map(o => new Date(o.now)),
					batch.map(o => JSON.stringify(o.result)),
					batch.map(o => JSON.stringify(o.usage)),
					batch.map(o => o.costCredits),
					batch.map(o => (o.context === undefined ? null : JSON.stringify(o.context))),
					batch.map(o => o.event.id),
					batch.map(o => o.event.occurredAt)
				]);
				const byId = new Map<string, TaskRow>();
				for (const { fold_context: _c, fold_event_id: _e, fold_occurred_at: _o, ...row } of rows)
					byId.set(row.id, row as TaskRow);
				for (const i of first) out[i] = { status: "fulfilled", value: byId.get(ops[i].taskId) ?? null };
			} catch {
				for (const i of first) out[i] = await settle(this.completeOne(ops[i]));
			}
		}
		for (const i of repeats) out[i] = await settle(this.completeOne(ops[i]));
		return out;
	}

	/**
	 * A success report as one statement (issue #16; it replaces lockLeased + saveContext + finish +
	 * the outbox insert inside BEGIN/COMMIT, five round trips). The UPDATE's WHERE is the lease check
	 * of `lockLeased` (running, or queued again after its lease expired but not yet leased by another
	 * attempt) and locks the row as FOR UPDATE did; a concurrent report waits and re-checks it on the
	 * committed row, so a replayed or stale report matches nothing and null comes back. The cost is
	 * what the task spent before plus this attempt's, capped by the hold, computed from the locked row.
	 * The context (when given) and the `tasks.finished` outbox event are written by data-modifying
	 * CTEs of the same statement: all of it commits or none.
	 */
	private async completeOne(p: CompleteInput): Promise<TaskRow | null> {
		const [row] = await this.q<TaskRow>(
			`WITH done AS (
				UPDATE tasks SET state = 'succeeded', finished_at = $3, updated_at = $3, result = $4::jsonb, usage = $5::jsonb,
					cost_credits = LEAST(spent_credits + $6::bigint, max_cost_credits), error = NULL, lease_id = NULL, lease_expires_at = NULL,
					settlement = 'pending', version = version + 1
				WHERE id = $1 AND lease_id = $2 AND state IN ('running', 'queued')
				RETURNING *
			), ctx AS (
				INSERT INTO task_contexts (task_id, attempt, context)
				SELECT id, attempts, $7::jsonb FROM done WHERE $7::jsonb IS NOT NULL
				ON CONFLICT (task_id) DO UPDATE SET attempt = EXCLUDED.attempt, context = EXCLUDED.context, updated_at = now()
			), ev AS (
				INSERT INTO outbox_events (event_id, topic, payload, headers, created_at)
				SELECT $8::uuid, 'tasks.finished', jsonb_build_object('taskId', id, 'userId', user_id, 'projectId', project_id,
					'state', state, 'kind', kind, 'costCredits', cost_credits, 'usage', usage), '{}'::jsonb, $9::timestamptz
				FROM done
			)
			SELECT * FROM done`,
			[
				p.taskId,
				p.leaseId,
				new Date(p.now),
				JSON.stringify(p.result),
				JSON.stringify(p.usage),
				p.costCredits,
				p.context === undefined ? null : JSON.stringify(p.context),
				p.event.id,
				p.event.occurredAt
			]
		);
		return row ?? null;
	}

	/** Records what the model was shown on the task's latest attempt (replaces an earlier attempt's). */
	async saveContext(taskId: string, attempt: number, context: unknown, tx: Transaction): Promise<void> {
		await this.sequelize.query(
			`INSERT INTO task_contexts (task_id, attempt, context) VALUES ($1, $2, $3::jsonb)
			 ON CONFLICT (task_id) DO UPDATE SET attempt = EXCLUDED.attempt, context = EXCLUDED.context, updated_at = now()`,
			{ bind: [taskId, attempt, JSON.stringify(context)], transaction: tx }
		);
	}

	/** The recorded contexts of these tasks, by task id (tasks without one are absent). */
	async contextsOf(taskIds: readonly string[]): Promise<Map<string, unknown>> {
		if (!taskIds.length) return new Map();
		const rows = await this.q<{ task_id: string; context: unknown }>(
			`SELECT task_id, context FROM task_contexts WHERE task_id = ANY($1::uuid[])`,
			[taskIds]
		);
		return new Map(rows.map(r => [r.task_id, r.context]));
	}

	async lockById(taskId: string, tx: Transaction): Promise<TaskRow | null> {
		const [row] = await this.q<TaskRow>(`SELECT * FROM tasks WHERE id = $1 FOR UPDATE`, [taskId], tx);
		return row ?? null;
	}

	async finish(
		taskId: string,
		p: {
			state: "succeeded" | "failed" | "cancelled";
			now: number;
			result?: unknown;
			usage?: unknown;
			costCredits?: number | null;
			spentCredits: number;
			error?: unknown;
		},
		tx: Transaction
	): Promise<TaskRow> {
		const [row] = await this.q<TaskRow>(
			`UPDATE tasks SET state = $2, finished_at = $3, updated_at = $3, result = $4::jsonb, usage = $5::jsonb, cost_credits = $6,
				spent_credits = $7, error = $8::jsonb, lease_id = NULL, lease_expires_at = NULL, settlement = 'pending', version = version + 1
			 WHERE id = $1 RETURNING *`,
			[
				taskId,
				p.state,
				new Date(p.now),
				p.result === undefined ? null : JSON.stringify(p.result),
				p.usage === undefined ? null : JSON.stringify(p.usage),
				p.costCredits ?? null,
				p.spentCredits,
				p.error === undefined ? null : JSON.stringify(p.error)
			],
			tx
		);
		return row;
	}

	/**
	 * Back to the queue (retry or requeue): the lease ends, enqueued_at stays (THE RULE, 3). With
	 * `keepLeaseId` (an expired lease) the old lease id stays on the queued row until another attempt
	 * leases it, so a late report of that attempt is still accepted (`lockLeased`).
	 */
	async requeue(
		taskId: string,
		p: { now: number; notBefore: number | null; spentCredits?: number; error?: unknown; keepLeaseId?: boolean },
		tx: Transaction
	): Promise<TaskRow> {
		const [row] = await this.q<TaskRow>(
			`UPDATE tasks SET state = 'queued', not_before = $2, lease_id = CASE WHEN $6 THEN lease_id END, lease_expires_at = NULL, updated_at = $3,
				spent_credits = COALESCE($4, spent_credits), error = COALESCE($5::jsonb, error), version = version + 1
			 WHERE id = $1 RETURNING *`,
			[
				taskId,
				p.notBefore === null ? null : new Date(p.notBefore),
				new Date(p.now),
				p.spentCredits ?? null,
				p.error === undefined ? null : JSON.stringify(p.error),
				p.keepLeaseId === true
			],
			tx
		);
		return row;
	}

	async requestCancel(taskId: string, now: number, tx: Transaction): Promise<TaskRow> {
		const [row] = await this.q<TaskRow>(
			`UPDATE tasks SET cancel_requested = true, updated_at = $2 WHERE id = $1 RETURNING *`,
			[taskId, new Date(now)],
			tx
		);
		return row;
	}

	/** Running tasks whose lease passed, locked (SKIP LOCKED: each sweeper on each node takes its own). */
	async lockExpired(now: number, limit: number, tx: Transaction): Promise<TaskRow[]> {
		return this.q<TaskRow>(
			`SELECT * FROM tasks WHERE state = 'running' AND lease_expires_at < $1 ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
			[new Date(now), limit],
			tx
		);
	}

	/** Finished tasks whose settlement has not gone through yet, older than `olderThan` (the finisher may still be on it). */
	async lockPendingSettlements(olderThan: number, limit: number, tx: Transaction): Promise<TaskRow[]> {
		return this.q<TaskRow>(
			`SELECT * FROM tasks WHERE settlement = 'pending' AND finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
			[new Date(olderThan), limit],
			tx
		);
	}

	/** Records that a hold is about to be taken on `payerId` for a task that is not inserted yet. */
	async addHoldIntent(taskId: string, payerId: string): Promise<void> {
		await this.q(`INSERT INTO task_hold_intents (task_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, [
			taskId,
			payerId
		]);
	}

	async dropHoldIntent(taskId: string, tx?: Transaction): Promise<void> {
		await this.q(`DELETE FROM task_hold_intents WHERE task_id = $1`, [taskId], tx);
	}

	/** Intents older than `olderThan` whose task never came to exist: their holds are orphans. */
	async lockStaleHoldIntents(
		olderThan: number,
		limit: number,
		tx: Transaction
	): Promise<Array<{ task_id: string; user_id: string }>> {
		return this.q(
			`SELECT i.task_id, i.user_id FROM task_hold_intents i
			 WHERE i.created_at < $1 AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = i.task_id)
			 ORDER BY i.created_at LIMIT $2 FOR UPDATE OF i SKIP LOCKED`,
			[new Date(olderThan), limit],
			tx
		);
	}

	/**
	 * Records that a finished task's hold went through (only while it is pending). Marks that arrive
	 * while one is being written go together as the next statement (src/payments/group-commit.ts: a
	 * lone mark goes at once), one UPDATE over the batch's ids. A failed statement fails every mark of
	 * its batch, each left pending for the sweeper, as one mark's failure did.
	 */
	markSettlement(taskId: string, settlement: "settled" | "released"): Promise<void> {
		return this.marks.submit({ taskId, settlement });
	}

	/** Every queued task, for the pure functions (positions, backlog waits) and the Redis snapshot. */
	async queued(): Promise<QueuedTask[]> {
		const rows = await this.q<{
			id: string;
			user_id: string;
			tier: TierName;
			enqueued_at: Date;
			boost_ms: number;
			attempts: number;
			not_before: Date | null;
		}>(
			// tasks_queued_rows (migration 20261205-4501): by a partial index of queued rows, never a scan of the table.
			`SELECT id, user_id, tier, enqueued_at, boost_ms, attempts, not_before FROM tasks_queued_rows()`
		);
		return rows.map(r => ({
			id: r.id,
			userId: r.user_id,
			tier: r.tier,
			enqueuedAt: r.enqueued_at.getTime(),
			boostMs: r.boost_ms,
			attempts: r.attempts,
			notBefore: r.not_before ? r.not_before.getTime() : null,
			estimatedRunMs: 0
		}));
	}

	/**
	 * Per tier, how many time-eligible queued tasks a newcomer of that tier (vst = now − maxBoostMs,
	 * nothing of its own queued) would queue behind, plus how many tasks run: one pass in SQL,
	 * the same count `tierBacklogWaitMs` makes in JS.
	 */
	async backlog(now: number): Promise<{ ahead: Record<TierName, number>; running: number }> {
		const filters = TIER_ORDER.map((tier, i) => `count(*) FILTER (WHERE v.vst <= $${i + 2}) AS "${tier}"`).join(
			", "
		);
		const bind: unknown[] = [new Date(now), ...TIER_ORDER.map(t => new Date(now - this.tiers[t].maxBoostMs))];
		const [row] = await this.q<Record<TierName | "running", string>>(
			`WITH ${RANKED_CTE()}, v AS (SELECT ${this.vst} AS vst FROM r)
			 SELECT ${filters}, tasks_running_count() AS running FROM v`,
			bind
		);
		const ahead = {} as Record<TierName, number>;
		for (const t of TIER_ORDER) ahead[t] = Number(row?.[t] ?? 0);
		return { ahead, running: Number(row?.running ?? 0) };
	}

	/**
	 * A submission's admission read, with its hold intent recorded in the same statement (issue #16:
	 * one round trip instead of two; the intent commits before the hold is taken, as the separate
	 * insert did). Counts the time-eligible queued tasks and the running ones (tasks_eligible_count,
	 * tasks_running_count); only when more than `rankAbove` are queued does it also rank the queue and
	 * count, per tier, what a newcomer would queue behind (`backlog`'s figures, `ahead`). Below that the
	 * caller knows the submission is accepted whatever the ranking (src/tasks/scheduling.ts
	 * surelyAcceptedBacklog), and the ranking, the costly part, is skipped: `ahead` is null.
	 */
	async admit(p: {
		now: number;
		rankAbove: number;
		intent: { taskId: string; payerId: string };
	}): Promise<{ queued: number; running: number; ahead: Record<TierName, number> | null }> {
		const counts = TIER_ORDER.map((_tier, i) => `count(*) FILTER (WHERE v.vst <= $${i + 2})`).join(", ");
		const bind: unknown[] = [
			new Date(p.now),
			...TIER_ORDER.map(t => new Date(p.now - this.tiers[t].maxBoostMs)),
			p.intent.taskId,
			p.intent.payerId,
			Number.isFinite(p.rankAbove) ? Math.floor(p.rankAbove) : Number.MAX_SAFE_INTEGER
		];
		const n = TIER_ORDER.length;
		const [row] = await this.q<{ queued: string; running: string; ahead: string[] | null }>(
			`WITH intent AS (INSERT INTO task_hold_intents (task_id, user_id) VALUES ($${n + 2}, $${n + 3}) ON CONFLICT DO NOTHING),
			 c AS (SELECT tasks_eligible_count($1::timestamptz) AS queued, tasks_running_count() AS running),
			 ${RANKED_CTE().trim()},
			 v AS (SELECT ${this.vst} AS vst FROM r)
			 SELECT c.queued, c.running, CASE WHEN c.queued > $${n + 4}::bigint THEN (SELECT ARRAY[${counts}] FROM v) END AS ahead
			 FROM c`,
			bind
		);
		const ahead = row.ahead ? ({} as Record<TierName, number>) : null;
		if (ahead && row.ahead) for (const [i, t] of TIER_ORDER.entries()) ahead[t] = Number(row.ahead[i]);
		return { queued: Number(row.queued), running: Number(row.running), ahead };
	}

	/** 1-based place of a queued task in queue order; null when it is not time-eligible or not queued. */
	async positionOf(taskId: string, now: number): Promise<number | null> {
		const [row] = await this.q<{ position: string }>(
			`WITH ${RANKED_CTE()}, v AS (SELECT r.id, r.enqueued_at, ${this.vst} AS vst FROM r)
			 SELECT (SELECT count(*) FROM v WHERE (v.vst, v.enqueued_at, v.id) <= (me.vst, me.enqueued_at, me.id)) AS position
			 FROM v me WHERE me.id = $2`,
			[new Date(now), taskId]
		);
		return row ? Number(row.position) : null;
	}

	/** Median run time (ms) of the last `limit` successful runs; null without any. */
	async medianRunMs(limit = 200): Promise<number | null> {
		const [row] = await this.q<{ p50: number | null }>(
			`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50 FROM (
				SELECT extract(epoch FROM finished_at - last_started_at) * 1000 AS ms FROM tasks
				WHERE state = 'succeeded' AND last_started_at IS NOT NULL ORDER BY finished_at DESC LIMIT $1) s`,
			[limit]
		);
		return row?.p50 == null ? null : Math.round(Number(row.p50));
	}

	/** Queue waits (first start − enqueued, ms) of the last `limit` tasks of a tier to start: rebuilds the Redis samples. */
	async recentWaits(tier: TierName, limit: number): Promise<number[]> {
		const rows = await this.q<{ ms: number }>(
			`SELECT greatest(0, extract(epoch FROM started_at - enqueued_at) * 1000) AS ms FROM tasks
			 WHERE tier = $1 AND last_started_at IS NOT NULL AND started_at IS NOT NULL ORDER BY last_started_at DESC LIMIT $2`,
			[tier, limit]
		);
		return rows.map(r => Math.round(Number(r.ms)));
	}

	async drain(nodeId: string, by: string | null): Promise<void> {
		await this.q(
			`INSERT INTO task_drained_nodes (node_id, drained_by) VALUES ($1, $2) ON CONFLICT (node_id) DO NOTHING`,
			[nodeId, by]
		);
	}

	async undrain(nodeId: string): Promise<boolean> {
		const rows = await this.q<{ node_id: string }>(
			`DELETE FROM task_drained_nodes WHERE node_id = $1 RETURNING node_id`,
			[nodeId]
		);
		return rows.length > 0;
	}

	async countByState(): Promise<Record<TaskState, number>> {
		const rows = await this.q<{ state: TaskState; n: string }>(
			`SELECT state, count(*) AS n FROM tasks GROUP BY state`
		);
		const out = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 } as Record<TaskState, number>;
		for (const r of rows) out[r.state] = Number(r.n);
		return out;
	}
}
