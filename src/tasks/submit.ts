/**
 * Submitting an AI task, as one use case: check the request, replay an idempotent retry, ask the
 * project, the tier and the model plan, admit against the backlog, hold the credits, insert the task.
 *
 * THE COMPENSATIONS. Credits are held (payments.reserve) before the task row exists, so every way
 * out after the hold must give it back or leave a trace that will:
 *   - a hold intent is written before reserve (by the admission read's statement): if this process
 *     dies between reserve and insert, the sweeper finds the intent without its task and releases the
 *     hold (the insert deletes the intent in the same statement); a submission that stops before the
 *     reserve (the plan refused, the queue full, a read failed) drops it;
 *   - reserve refused (4xx): nothing was held, the intent is dropped;
 *   - reserve failed otherwise (timeout, 5xx): the hold may have committed with its answer lost, so it
 *     is released now (a 404 there just means there was none); the intent stays for the sweeper, as a
 *     reserve still in flight may commit after this release;
 *   - the insert failed: the hold is released; when it failed because an idempotent twin won the
 *     race, the twin's task is the answer.
 *
 * THE PAYER. Decided once, here: a task in an organisation's project is held on the organisation's
 * wallet (`org:<uuid>`), any other on the submitting user's. It is stored on the task (and on the
 * hold intent), and every settlement, release and sweep uses the stored payer, so a member who leaves
 * while the task runs changes nothing. The hold carries the member's, the API key's and the payer's
 * monthly caps (src/payments/spend-caps.ts), enforced in the hold's own statement.
 * Collaborators come in as parameters, so unit tests drive each branch with fakes.
 */
import { UniqueConstraintError } from "sequelize";
import { MAX_PURCHASED_BOOST_MS, tierInOrg, type AdmissionThresholds, type TierName } from "../domain/tiers";
import { NotFound, TooManyRequests, Unprocessable, type FieldProblem } from "../errors";
import { orgPayerId } from "../payments/payer";
import type { SpendCaps } from "../payments/spend-caps";
import { validateGlobs } from "../context/globs";
import type { CheckedAccess, PrepareInput } from "./contract";
import { requestHash } from "./rules";
import { admissionDecision, expectedWaitMs, surelyAcceptedBacklog } from "./scheduling";
import type { LeaseAtInsert, NewTask, PreparedTask, TaskRow } from "./store";

export interface SubmitParams extends Omit<PrepareInput, "userId" | "tier"> {
	priorityBoost: "none" | "paid";
	include?: string[];
	exclude?: string[];
}

/** The task store's part in a submission (src/tasks/store.ts). */
export interface SubmitStore {
	byIdempotencyKey(userId: string, key: string): Promise<TaskRow | null>;
	/**
	 * Records the hold intent and reads the backlog in one statement: the time-eligible queued and the
	 * running counts, and per tier what a newcomer would queue behind, ranked only when more than
	 * `rankAbove` are queued (else `ahead` is null).
	 */
	admit(p: {
		now: number;
		rankAbove: number;
		intent: { taskId: string; payerId: string };
	}): Promise<{ queued: number; running: number; ahead: Record<TierName, number> | null }>;
	dropHoldIntent(taskId: string): Promise<void>;
	/**
	 * Inserts the task and deletes its hold intent, atomically, with its queue position (null when
	 * deferred or leased). With `lease`, the task is inserted `running` under it when it would be the
	 * queue's head (TaskStore.insertWithPosition), else queued.
	 */
	insertWithPosition(t: NewTask, lease?: LeaseAtInsert | null): Promise<{ row: TaskRow; position: number | null }>;
}

/** The other services a submission asks (over the broker in the service). */
export interface SubmitServices {
	/** Throws (404/403) unless the user may use the project; `orgId`: the organisation owning it. */
	checkProjectAccess(
		projectId: string,
		userId: string
	): Promise<{ orgId: string | null; /** The project's head version; null: not told. */ headVersion: number | null }>;
	/** The user's and the organisation's monthly caps on its wallet; null when not a member (any more). */
	orgSpending(
		orgId: string,
		userId: string
	): Promise<{ memberCapCredits: number | null; orgCapCredits: number | null } | null>;
	tierOf(userId: string): Promise<TierName>;
	/** The organisation's tier: the plan its payer (`org:<uuid>`) pays for. */
	orgTierOf(orgId: string): Promise<TierName>;
	prepare(input: PrepareInput): Promise<PreparedTask>;
	priorityBoost(input: { userId: string; purchaseMs: number; tier: TierName }): Promise<{ boostMs: number }>;
	reserve(input: {
		userId: string;
		taskId: string;
		maxCost: number;
		boostMs: number;
		tier: TierName;
		/** Who holds the task and with what, for the usage report (src/payments/usage.ts). */
		attribution?: {
			memberId: string;
			keyId: string | null;
			projectId: string;
			model: string | null;
			source: "task";
		};
		caps?: SpendCaps;
	}): Promise<unknown>;
	release(input: { userId: string; taskId: string }): Promise<unknown>;
}

export interface SubmitDeps {
	store: SubmitStore;
	services: SubmitServices;
	/** Worker slots across the cluster and the median run time, for the admission estimate. */
	capacity(): number;
	p50RunMs(): Promise<number>;
	/** The cached queue position of a queued task (for a replay). */
	queuedPosition(taskId: string): Promise<number | null>;
	/**
	 * A free worker slot on this node for the insert to lease the task to, or null (none free, no
	 * worker here). Exactly one of `start` (the insert leased the task) or `release` follows.
	 */
	claimWorkerSlot?(): {
		lease: LeaseAtInsert;
		/** `access`: this submission's access check, which the worker then does not repeat. */
		start(row: TaskRow, access: CheckedAccess | null): void;
		release(): void;
	} | null;
	config: { promptMaxChars: number; maxAttempts: number; admission: Record<TierName, AdmissionThresholds> };
	now(): number;
	newId(): string;
	warn(message: string): void;
}

export type SubmitOutcome =
	| { replayed: true; row: TaskRow; position: number | null }
	| {
			replayed: false;
			row: TaskRow;
			position: number | null;
			expectedStartAt: string;
			admission: { action: "accepted" } | { action: "deferred"; retryAfterS: number };
	  };

/** What a request may not be, beyond its param schema. */
export function submitProblems(p: SubmitParams, promptMaxChars: number): FieldProblem[] {
	const problems: FieldProblem[] = [];
	if (p.prompt.length > promptMaxChars)
		problems.push({ field: "prompt", message: `is longer than ${promptMaxChars} characters`, type: "stringMax" });
	if (p.kind === "compare" && !p.models)
		problems.push({ field: "models", message: "a compare task names 2 or 3 models", type: "required" });
	if (p.kind !== "compare" && p.models)
		problems.push({ field: "models", message: "only compare tasks take several models", type: "forbidden" });
	for (const field of ["include", "exclude"] as const)
		for (const g of validateGlobs(p[field] ?? []))
			problems.push({ field: `${field}[${g.index}]`, message: g.message, type: "glob" });
	return problems;
}

/** The value of a settled promise, or its reason thrown. */
function settled<T>(r: PromiseSettledResult<T>): T {
	if (r.status === "rejected") throw r.reason;
	return r.value;
}

const isClientError = (err: unknown) => {
	const code = (err as { code?: unknown })?.code;
	return typeof code === "number" && code >= 400 && code < 500;
};

/** The API key a request came with: its id and its monthly spend cap. */
export interface SubmitKey {
	id: string;
	monthlyCapCredits: number | null;
}

/** Whose wallet holds the task, and the caps that bound the hold (see THE PAYER above). */
export async function taskPayer(
	services: Pick<SubmitServices, "orgSpending">,
	userId: string,
	orgId: string | null,
	key: SubmitKey | null
): Promise<{ payerId: string; caps: SpendCaps }> {
	const keyCap = { key: key?.monthlyCapCredits ?? null };
	if (!orgId) return { payerId: userId, caps: keyCap };
	const spending = await services.orgSpending(orgId, userId);
	// Removed between the access check and now: the project is no longer theirs to use.
	if (!spending) throw NotFound("Project");
	return {
		payerId: orgPayerId(orgId),
		caps: { ...keyCap, member: spending.memberCapCredits, payer: spending.orgCapCredits }
	};
}

export async function submitTask(
	deps: SubmitDeps,
	userId: string,
	p: SubmitParams,
	idempotencyKey: string | null,
	/** The API key the request came with (null for a session). */
	key: SubmitKey | null = null
): Promise<SubmitOutcome> {
	const keyId = key?.id ?? null;
	const { store, services } = deps;
	const problems = submitProblems(p, deps.config.promptMaxChars);
	if (problems.length) throw Unprocessable("Some fields are invalid", problems);

	const request = {
		model: p.model,
		models: p.models,
		maxOutputTokens: p.maxOutputTokens,
		priorityBoost: p.priorityBoost,
		...(p.include?.length ? { include: p.include } : {}),
		...(p.exclude?.length ? { exclude: p.exclude } : {})
	};
	const hash = requestHash({ projectId: p.projectId, kind: p.kind, prompt: p.prompt, ...request });
	const replay = async (row: TaskRow): Promise<SubmitOutcome> => {
		if (row.request_hash !== hash)
			throw Unprocessable(
				"This Idempotency-Key was used for a different task",
				[{ field: "Idempotency-Key", message: "already used with another body", type: "idempotency" }],
				"IDEMPOTENCY_KEY_REUSED"
			);
		const position = row.state === "queued" ? await deps.queuedPosition(row.id) : null;
		return { replayed: true, row, position };
	};
	if (idempotencyKey) {
		const existing = await store.byIdempotencyKey(userId, idempotencyKey);
		// A replay answers only who may still see the project now (access lost since, or an
		// organisation key replaying its creator's personal request: 404 like a first submission).
		if (existing) {
			if (existing.request_hash === hash) await services.checkProjectAccess(p.projectId, userId);
			return replay(existing);
		}
	}

	// The reads that do not depend on each other go out together (each is a hop to another service
	// or a query); a failure surfaces in the order the steps had when they ran one after another.
	const [accessR, memberTierR] = await Promise.allSettled([
		services.checkProjectAccess(p.projectId, userId),
		services.tierOf(userId)
	]);
	const access = settled(accessR);
	const [payerR, orgTierR] = await Promise.allSettled([
		taskPayer(services, userId, access.orgId, key),
		access.orgId ? services.orgTierOf(access.orgId) : null
	]);
	const { payerId, caps } = settled(payerR);
	// In an organisation's project: the better of the member's and the organisation's tier (tierInOrg).
	const memberTier = settled(memberTierR);
	const orgTier = settled(orgTierR);
	const tier = orgTier ? tierInOrg(memberTier, orgTier) : memberTier;
	// The plan (which counts the rate limits, so only once access is known), the admission inputs and
	// the boost quote (a read) need only the tier. The admission read also writes the hold intent (it
	// names the payer: an orphaned hold is released on the wallet it was taken on), before any hold; a
	// submission that goes no further drops it (else the sweeper would).
	const now = deps.now();
	const capacity = deps.capacity();
	const thresholds = deps.config.admission[tier];
	const taskId = deps.newId();
	const purchaseMs = p.priorityBoost === "paid" ? MAX_PURCHASED_BOOST_MS : 0;
	const p50 = deps.p50RunMs();
	const [preparedR, p50R, backlogR, boostR] = await Promise.allSettled([
		services.prepare({
			userId,
			tier,
			projectId: p.projectId,
			kind: p.kind,
			prompt: p.prompt,
			...(p.model !== undefined ? { model: p.model } : {}),
			...(p.models !== undefined ? { models: p.models } : {}),
			...(p.maxOutputTokens !== undefined ? { maxOutputTokens: p.maxOutputTokens } : {})
		}),
		p50,
		p50.then(p50RunMs =>
			store.admit({
				now,
				rankAbove: surelyAcceptedBacklog({ capacity, p50RunMs, thresholds }),
				intent: { taskId, payerId }
			})
		),
		services.priorityBoost({ userId, purchaseMs, tier })
	]);
	const dropIntent = () =>
		backlogR.status === "fulfilled" ? store.dropHoldIntent(taskId).catch(() => undefined) : undefined;
	const beforeHold = async <T>(step: () => T): Promise<T> => {
		try {
			return step();
		} catch (err) {
			await dropIntent();
			throw err;
		}
	};
	const prepared = await beforeHold(() => settled(preparedR));
	const maxCost = Math.max(0, Math.ceil(Number(prepared.maxCostCredits)));

	// Admission: the backlog a newcomer of this tier would queue behind, in time.
	const p50RunMs = await beforeHold(() => settled(p50R));
	const backlog = settled(backlogR);
	const idleWorkers = Math.max(0, capacity - backlog.running);
	const waitAt = (position: number) => expectedWaitMs({ position, capacity, p50RunMs, idleWorkers });
	// Not ranked: no more are queued than can make this tier wait past its defer threshold, so the count
	// bounds the tasks ahead and the decision is what the exact count gives (accept).
	const ahead = backlog.ahead ? backlog.ahead[tier] : backlog.queued;
	const decision = admissionDecision({ tier, expectedWaitMs: waitAt(ahead + 1), thresholds });
	if (decision.action === "reject") {
		await dropIntent();
		throw TooManyRequests(
			`The queue is too long for the ${tier} tier right now; retry later`,
			decision.retryAfterS,
			"QUEUE_FULL"
		);
	}

	const boost = await beforeHold(() => settled(boostR));
	const release = (after: string) =>
		services
			.release({ userId: payerId, taskId })
			.catch(e => deps.warn(`release after ${after}: ${(e as Error).message}`));

	try {
		const planned = [...new Set((prepared.models ?? []).map(m => m.model))].sort();
		const model = planned.length ? planned.join("+") : (p.model ?? null);
		const attribution = { memberId: userId, keyId, projectId: p.projectId, model, source: "task" as const };
		await services.reserve({ userId: payerId, taskId, maxCost, boostMs: purchaseMs, tier, attribution, caps });
	} catch (err) {
		if (isClientError(err)) await dropIntent();
		else await release("failed reserve");
		throw err;
	}

	const deferredUntil = decision.action === "defer" ? now + decision.retryAfterS * 1000 : null;
	let row: TaskRow;
	let position: number | null;
	// Taken just before the insert, so a slot is held for one statement only; no slot for a deferred task.
	const slot = deferredUntil === null ? (deps.claimWorkerSlot?.() ?? null) : null;
	try {
		// The insert deletes the hold intent and counts the task's place in the same statement, and takes
		// the slot when the task would be the head of the queue.
		({ row, position } = await store.insertWithPosition(
			{
				id: taskId,
				userId,
				payerId,
				projectId: p.projectId,
				tier,
				kind: p.kind,
				prompt: p.prompt,
				request,
				prepared,
				requestHash: hash,
				idempotencyKey,
				maxCostCredits: maxCost,
				boostMs: Math.max(0, Math.floor(Number(boost?.boostMs ?? 0))),
				maxAttempts: deps.config.maxAttempts,
				enqueuedAt: deferredUntil ?? now,
				notBefore: deferredUntil
			},
			slot?.lease ?? null
		));
	} catch (err) {
		slot?.release();
		await release("failed insert");
		if (err instanceof UniqueConstraintError && idempotencyKey) {
			const existing = await store.byIdempotencyKey(userId, idempotencyKey);
			if (existing) return replay(existing);
		}
		throw err;
	}

	if (slot) {
		// The access check above was this request's, moments ago: the worker starts from its head version.
		if (row.state === "running")
			slot.start(row, access.headVersion === null ? null : { headVersion: access.headVersion });
		else slot.release();
	}

	const expectedStartAt = new Date(
		deferredUntil !== null ? deferredUntil + waitAt(ahead + 1) : now + waitAt(position ?? 1)
	).toISOString();
	return {
		replayed: false,
		row,
		position,
		expectedStartAt,
		admission:
			decision.action === "defer"
				? { action: "deferred", retryAfterS: decision.retryAfterS }
				: { action: "accepted" }
	};
}
