import { Errors } from "moleculer";
import { UniqueConstraintError } from "sequelize";
import { TIERS, TIER_ORDER, type TierName } from "../../../src/domain/tiers";
import { DomainError } from "../../../src/errors";
import type { NewTask, TaskRow } from "../../../src/tasks/store";
import { submitTask, type SubmitDeps, type SubmitParams } from "../../../src/tasks/submit";

const T0 = 1_800_000_000_000;

function rowOf(t: NewTask): TaskRow {
	return {
		id: t.id,
		user_id: t.userId,
		payer_id: t.payerId ?? null,
		project_id: t.projectId,
		tier: t.tier,
		kind: t.kind,
		prompt: t.prompt,
		request: t.request,
		prepared: t.prepared,
		request_hash: t.requestHash,
		idempotency_key: t.idempotencyKey,
		max_cost_credits: String(t.maxCostCredits),
		boost_ms: t.boostMs,
		state: "queued",
		version: 1,
		attempts: 0,
		max_attempts: t.maxAttempts,
		enqueued_at: new Date(t.enqueuedAt),
		not_before: t.notBefore === null ? null : new Date(t.notBefore),
		lease_id: null,
		lease_expires_at: null,
		node_id: null,
		cancel_requested: false,
		started_at: null,
		last_started_at: null,
		finished_at: null,
		result: null,
		usage: null,
		cost_credits: null,
		spent_credits: "0",
		error: null,
		settlement: "none",
		created_at: new Date(T0),
		updated_at: new Date(T0)
	};
}

/** An in-memory world: the store, the other services, and a record of what was called in order. */
function world(
	opts: {
		ahead?: number;
		/** Time-eligible queued tasks (default: `ahead`). */
		queued?: number;
		running?: number;
		capacity?: number;
		p50?: number;
		tier?: TierName;
		/** The organisation's own tier (its plan). */
		orgTier?: TierName;
		/** The project's organisation, and the member's caps there (null: no longer a member). */
		org?: { id: string; spending: { memberCapCredits: number | null; orgCapCredits: number | null } | null };
		/** A worker slot on the node is offered (claimWorkerSlot); `leases`: the insert takes it. */
		slot?: { leases: boolean };
	} = {}
) {
	const calls: string[] = [];
	const reserves: unknown[] = [];
	const tasks = new Map<string, TaskRow>();
	const intents = new Set<string>();
	const intentPayers: string[] = [];
	const held = new Set<string>();
	const fail: {
		reserve?: unknown;
		insert?: unknown;
		release?: unknown;
		access?: unknown;
	} = {};
	const warnings: string[] = [];
	let ids = 0;
	const ahead = Object.fromEntries(TIER_ORDER.map(t => [t, 0])) as Record<TierName, number>;
	ahead[opts.tier ?? "free"] = opts.ahead ?? 0;
	const deps: SubmitDeps = {
		store: {
			async byIdempotencyKey(userId, key) {
				calls.push("byIdempotencyKey");
				return [...tasks.values()].find(r => r.user_id === userId && r.idempotency_key === key) ?? null;
			},
			// Ranks (answers `ahead`) only when more than `rankAbove` are queued, as TaskStore.admit.
			async admit({ rankAbove, intent }) {
				calls.push("admit (writes the intent)");
				intents.add(intent.taskId);
				intentPayers.push(intent.payerId);
				const queued = opts.queued ?? ahead[opts.tier ?? "free"];
				return { queued, running: opts.running ?? 0, ahead: queued > rankAbove ? ahead : null };
			},
			async dropHoldIntent(taskId) {
				calls.push("dropHoldIntent");
				intents.delete(taskId);
			},
			async insertWithPosition(t, lease) {
				calls.push(lease ? `insert with lease ${lease.leaseId}` : "insert (drops the intent)");
				if (fail.insert) {
					const err = fail.insert;
					if (err instanceof UniqueConstraintError) {
						// The idempotent twin that won the race.
						const twin = rowOf({ ...t, id: "twin" });
						tasks.set(twin.id, twin);
					}
					throw err;
				}
				const row = rowOf(t);
				tasks.set(row.id, row);
				intents.delete(t.id);
				if (lease && opts.slot?.leases) {
					Object.assign(row, {
						state: "running",
						lease_id: lease.leaseId,
						node_id: lease.nodeId,
						attempts: 1
					});
					return { row, position: null };
				}
				return { row, position: t.notBefore === null ? ahead[opts.tier ?? "free"] + 1 : null };
			}
		},
		services: {
			async checkProjectAccess() {
				calls.push("access");
				if (fail.access) throw fail.access;
				return { orgId: opts.org?.id ?? null, headVersion: 5 };
			},
			async orgSpending() {
				calls.push("orgSpending");
				return opts.org?.spending ?? null;
			},
			async tierOf() {
				return opts.tier ?? "free";
			},
			async orgTierOf(orgId) {
				calls.push("orgTierOf");
				expect(orgId).toBe(opts.org?.id);
				return opts.orgTier ?? "free";
			},
			async prepare() {
				calls.push("prepare");
				return {
					models: [{ model: "m", group: "small", provider: "dev" }],
					promptTokens: 10,
					contextTokensBudget: 0,
					maxOutputTokens: 100,
					maxCostCredits: 7.2
				};
			},
			async priorityBoost() {
				return { boostMs: 0 };
			},
			async reserve(input) {
				const { taskId, maxCost } = input;
				reserves.push(input);
				calls.push(`reserve(${maxCost})`);
				if (fail.reserve) {
					// A timeout may come after the hold committed: the hold exists, the answer is lost.
					if (!(fail.reserve instanceof Errors.MoleculerClientError)) held.add(taskId);
					throw fail.reserve;
				}
				held.add(taskId);
			},
			async release({ taskId }) {
				calls.push("release");
				if (fail.release) throw fail.release;
				held.delete(taskId);
			}
		},
		capacity: () => opts.capacity ?? 4,
		p50RunMs: async () => opts.p50 ?? 60_000,
		queuedPosition: async () => 3,
		...(opts.slot
			? {
					claimWorkerSlot: () => {
						calls.push("claim slot");
						return {
							lease: { nodeId: "w1", leaseId: "lease-1", leaseMs: 60_000, totalWorkers: 4 },
							start: (row, access) =>
								void calls.push(`start ${row.id} (${row.state}, head ${access?.headVersion})`),
							release: () => void calls.push("release slot")
						};
					}
				}
			: {}),
		config: {
			promptMaxChars: 1000,
			maxAttempts: 3,
			admission: Object.fromEntries(
				TIER_ORDER.map(t => [t, TIERS[t].admission])
			) as SubmitDeps["config"]["admission"]
		},
		now: () => T0,
		newId: () => `task-${++ids}`,
		warn: m => warnings.push(m)
	};
	return { deps, calls, tasks, intents, intentPayers, held, fail, warnings, reserves };
}

const params = (p: Partial<SubmitParams> = {}): SubmitParams => ({
	projectId: "p1",
	kind: "chat",
	prompt: "hello",
	priorityBoost: "none",
	...p
});

/** What an accepted submission calls, in order. */
const ACCEPTED_CALLS = ["access", "prepare", "admit (writes the intent)", "reserve(8)", "insert (drops the intent)"];

describe("submitTask", () => {
	test("accepted: intent, hold, insert that drops the intent in the same statement, nothing released", async () => {
		const w = world();
		const out = await submitTask(w.deps, "u1", params(), null);
		expect(out).toMatchObject({ replayed: false, position: 1, admission: { action: "accepted" } });
		expect(w.calls).toEqual(ACCEPTED_CALLS);
		expect([...w.held]).toEqual(["task-1"]);
		expect(w.intents.size).toBe(0);
	});

	test("bad fields: 422 naming each, before anything is asked", async () => {
		const w = world();
		const err = await submitTask(
			w.deps,
			"u1",
			params({ prompt: "x".repeat(1001), models: ["a", "b"] }),
			null
		).catch(e => e);
		expect(err).toBeInstanceOf(DomainError);
		expect(err).toMatchObject({ status: 422, code: "VALIDATION_ERROR" });
		expect((err.details as Array<{ field: string }>).map(d => d.field)).toEqual(["prompt", "models"]);
		expect(w.calls).toEqual([]);
	});

	test("a full queue rejects with 429 before any hold", async () => {
		const w = world({ ahead: 10_000, capacity: 1 });
		const err = await submitTask(w.deps, "u1", params(), null).catch(e => e);
		expect(err).toMatchObject({ status: 429, code: "QUEUE_FULL" });
		expect(w.calls).not.toContain("reserve(8)");
		// The admission statement wrote the intent; the refusal drops it.
		expect(w.calls.slice(-2)).toEqual(["admit (writes the intent)", "dropHoldIntent"]);
		expect(w.intents.size).toBe(0);
		expect(w.held.size).toBe(0);
	});

	test("a long queue defers: the task waits with not_before set and no position", async () => {
		const free = TIERS.free.admission;
		// Enough ahead to exceed the defer threshold but not the reject one, with one worker of p50 = 1 min.
		const ahead = Math.floor((free.deferAboveMs + free.rejectAboveMs) / 2 / 60_000);
		const w = world({ ahead, capacity: 1, p50: 60_000 });
		const out = await submitTask(w.deps, "u1", params(), null);
		if (out.replayed) throw new Error("not a replay");
		expect(out.admission.action).toBe("deferred");
		expect(out.position).toBeNull();
		expect(out.row.not_before).not.toBeNull();
	});

	test("admission ranks only a queue long enough to matter: the exact count ahead decides then, the count alone below", async () => {
		// One worker, p50 1 min: the free tier's 5 min defer threshold is sure for up to 4 queued.
		const short = world({ queued: 4, ahead: 4, capacity: 1, p50: 60_000 });
		const a = await submitTask(short.deps, "u1", params(), null);
		expect(a).toMatchObject({ replayed: false, admission: { action: "accepted" } });
		// 50 queued but only 2 of them ahead of a free newcomer (boosted work behind it): ranked, accepted.
		const ranked = world({ queued: 50, ahead: 2, capacity: 1, p50: 60_000 });
		const b = await submitTask(ranked.deps, "u1", params(), null);
		expect(b).toMatchObject({ replayed: false, admission: { action: "accepted" } });
		// 50 queued, 10 ahead: deferred (10 min expected wait).
		const deferred = world({ queued: 50, ahead: 10, capacity: 1, p50: 60_000 });
		const d = await submitTask(deferred.deps, "u1", params(), null);
		expect(d).toMatchObject({ replayed: false, admission: { action: "deferred" } });
	});

	test("the boost call failed: nothing was held, the intent the admission wrote is dropped", async () => {
		const w = world();
		w.deps.services.priorityBoost = async () => {
			throw new Error("payments down");
		};
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toThrow("payments down");
		expect(w.calls.slice(-2)).toEqual(["admit (writes the intent)", "dropHoldIntent"]);
		expect(w.intents.size).toBe(0);
		expect(w.held.size).toBe(0);
	});

	test("reserve refused (4xx): nothing was held, the intent is dropped, nothing released", async () => {
		const w = world();
		w.fail.reserve = new Errors.MoleculerClientError("Not enough credits", 402, "INSUFFICIENT_CREDITS");
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({ code: 402 });
		expect(w.calls).toContain("dropHoldIntent");
		expect(w.calls).not.toContain("release");
		expect(w.intents.size).toBe(0);
		expect(w.tasks.size).toBe(0);
	});

	test("reserve failed otherwise (timeout): the possibly committed hold is released, the intent stays for the sweeper", async () => {
		const w = world();
		w.fail.reserve = new Errors.RequestTimeoutError({ action: "payments.reserve", nodeID: "n1" });
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toBeInstanceOf(Errors.RequestTimeoutError);
		expect(w.calls).toContain("release");
		expect(w.held.size).toBe(0);
		expect([...w.intents]).toEqual(["task-1"]);
	});

	test("the insert failed: the hold is released and the error surfaces", async () => {
		const w = world();
		w.fail.insert = new Error("connection terminated");
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toThrow("connection terminated");
		expect(w.calls.slice(-2)).toEqual(["insert (drops the intent)", "release"]);
		expect(w.held.size).toBe(0);
	});

	test("a release that fails itself is logged, and the first error still surfaces", async () => {
		const w = world();
		w.fail.insert = new Error("connection terminated");
		w.fail.release = new Error("payments down");
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toThrow("connection terminated");
		expect(w.warnings).toEqual(["release after failed insert: payments down"]);
	});

	test("an idempotent twin won the insert race: our hold is released and the twin's task is the answer", async () => {
		const w = world();
		w.fail.insert = new UniqueConstraintError({});
		const out = await submitTask(w.deps, "u1", params(), "key-1");
		expect(out).toMatchObject({ replayed: true, row: { id: "twin" }, position: 3 });
		expect(w.calls).toContain("release");
		expect(w.held.size).toBe(0);
	});

	test("a retry with the same key and body replays after the access check alone; another body is refused", async () => {
		const w = world();
		const first = await submitTask(w.deps, "u1", params(), "key-1");
		w.calls.length = 0;
		const again = await submitTask(w.deps, "u1", params(), "key-1");
		expect(again).toMatchObject({ replayed: true, row: { id: first.row.id } });
		expect(w.calls).toEqual(["byIdempotencyKey", "access"]);
		await expect(submitTask(w.deps, "u1", params({ prompt: "other" }), "key-1")).rejects.toMatchObject({
			status: 422,
			code: "IDEMPOTENCY_KEY_REUSED"
		});
	});

	test("a replay after the project's access was lost is refused like a first submission", async () => {
		const w = world();
		await submitTask(w.deps, "u1", params(), "key-1");
		w.fail.access = new Errors.MoleculerClientError("Project not found", 404, "NOT_FOUND");
		w.calls.length = 0;
		await expect(submitTask(w.deps, "u1", params(), "key-1")).rejects.toMatchObject({ code: 404 });
		expect(w.calls).toEqual(["byIdempotencyKey", "access"]);
	});

	test("no access to the project: refused before the plan, nothing held", async () => {
		const w = world();
		w.fail.access = new Errors.MoleculerClientError("Project not found", 404, "NOT_FOUND");
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({ code: 404 });
		expect(w.calls).toEqual(["access"]);
	});
});

describe("the lease at insert", () => {
	test("a slot is claimed just before the insert, which leases the task: it starts in the slot, with no position", async () => {
		const w = world({ slot: { leases: true } });
		const out = await submitTask(w.deps, "u1", params(), null);
		expect(out).toMatchObject({ replayed: false, position: null, row: { state: "running", lease_id: "lease-1" } });
		expect(w.calls).toEqual([
			"access",
			"prepare",
			"admit (writes the intent)",
			"reserve(8)",
			"claim slot",
			"insert with lease lease-1",
			// The worker is given the head version this submission's access check read.
			"start task-1 (running, head 5)"
		]);
	});

	test("the insert queued the task instead: the slot is given back", async () => {
		const w = world({ slot: { leases: false }, ahead: 2 });
		const out = await submitTask(w.deps, "u1", params(), null);
		expect(out).toMatchObject({ position: 3, row: { state: "queued" } });
		expect(w.calls.slice(-3)).toEqual(["claim slot", "insert with lease lease-1", "release slot"]);
	});

	test("the insert failed: the slot is given back and the hold released", async () => {
		const w = world({ slot: { leases: true } });
		w.fail.insert = new Error("connection terminated");
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toThrow("connection terminated");
		expect(w.calls.slice(-4)).toEqual(["claim slot", "insert with lease lease-1", "release slot", "release"]);
		expect(w.held.size).toBe(0);
	});

	test("a deferred task is offered no slot", async () => {
		// Past the free tier's defer threshold, below its reject threshold.
		const w = world({ slot: { leases: true }, ahead: 12, capacity: 1, p50: 60_000 });
		const out = await submitTask(w.deps, "u1", params(), null);
		expect(out).toMatchObject({ admission: { action: "deferred" }, row: { state: "queued" } });
		expect(w.calls).not.toContain("claim slot");
		expect(w.calls).toContain("insert (drops the intent)");
	});
});

describe("whose wallet pays", () => {
	const ORG = "0b6f7d2e-1111-4111-8111-111111111111";

	test("a task in an organisation's project is held on the organisation with the member's, key's and payer's caps", async () => {
		const w = world({ org: { id: ORG, spending: { memberCapCredits: 500, orgCapCredits: 9000 } } });
		const out = await submitTask(w.deps, "u1", params(), null, { id: "key-a", monthlyCapCredits: 70 });
		expect(w.reserves).toEqual([
			expect.objectContaining({
				userId: `org:${ORG}`,
				attribution: expect.objectContaining({ memberId: "u1", keyId: "key-a" }),
				caps: { key: 70, member: 500, payer: 9000 }
			})
		]);
		// The intent and the task name the payer: the sweeper and the settlement use it.
		expect(w.intentPayers).toEqual([`org:${ORG}`]);
		expect(out.row).toMatchObject({ user_id: "u1", payer_id: `org:${ORG}` });
	});

	test("a task in the user's own project is held on the user, with the key's cap only", async () => {
		const w = world();
		const out = await submitTask(w.deps, "u1", params(), null, { id: "key-a", monthlyCapCredits: null });
		expect(w.reserves).toEqual([expect.objectContaining({ userId: "u1", caps: { key: null } })]);
		expect(w.calls).not.toContain("orgSpending");
		expect(out.row.payer_id).toBe("u1");
	});

	test("in an organisation's project the task gets the better of the member's and the organisation's tier", async () => {
		const spending = { memberCapCredits: null, orgCapCredits: null };
		for (const [member, org, expected] of [
			["free", "team", "team"],
			["enterprise", "pro", "enterprise"],
			["pro", "pro", "pro"]
		] as const) {
			const w = world({ tier: member, orgTier: org, org: { id: ORG, spending } });
			const out = await submitTask(w.deps, "u1", params(), null, null);
			expect(out.row.tier).toBe(expected);
			expect(w.reserves).toEqual([expect.objectContaining({ tier: expected })]);
		}
	});

	test("in the user's own project the organisation's tier is not asked", async () => {
		const w = world({ tier: "pro", orgTier: "enterprise" });
		const out = await submitTask(w.deps, "u1", params(), null, null);
		expect(out.row.tier).toBe("pro");
		expect(w.calls).not.toContain("orgTierOf");
	});

	test("a member removed between the access check and the hold: 404, nothing held", async () => {
		const w = world({ org: { id: ORG, spending: null } });
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({
			status: 404,
			code: "NOT_FOUND"
		});
		expect(w.reserves).toEqual([]);
		expect(w.intents.size).toBe(0);
	});

	test("a refused cap (402 from the hold) leaves no intent and releases nothing", async () => {
		const w = world({ org: { id: ORG, spending: { memberCapCredits: 1, orgCapCredits: null } } });
		// As it arrives over the broker from payments.reserve.
		w.fail.reserve = new Errors.MoleculerClientError("cap", 402, "MEMBER_CAP_REACHED");
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({
			code: 402,
			type: "MEMBER_CAP_REACHED"
		});
		expect(w.intents.size).toBe(0);
		expect(w.calls).not.toContain("release");
	});
});

describe("the independent reads go out together", () => {
	/** Wraps each named step so the test sees which ones were in flight at the same moment. */
	function overlapping(w: ReturnType<typeof world>) {
		const inFlight = new Set<string>();
		const seenTogether: string[][] = [];
		const wrap =
			<A extends unknown[], R>(name: string, fn: (...a: A) => Promise<R>) =>
			async (...a: A): Promise<R> => {
				inFlight.add(name);
				seenTogether.push([...inFlight].sort());
				try {
					// Let every step started in the same turn begin before this one ends.
					await new Promise(r => setImmediate(r));
					return await fn(...a);
				} finally {
					inFlight.delete(name);
				}
			};
		const s = w.deps.services;
		s.checkProjectAccess = wrap("access", s.checkProjectAccess.bind(s));
		s.tierOf = wrap("tierOf", s.tierOf.bind(s));
		s.prepare = wrap("prepare", s.prepare.bind(s));
		s.priorityBoost = wrap("boost", s.priorityBoost.bind(s));
		w.deps.p50RunMs = wrap("p50", w.deps.p50RunMs);
		w.deps.store.admit = wrap("backlog", w.deps.store.admit.bind(w.deps.store));
		const together = (...names: string[]) => seenTogether.some(set => names.every(n => set.includes(n)));
		return { together, seenTogether };
	}

	test("access with the member's tier; then the plan, the admission inputs and the boost quote", async () => {
		const w = world();
		const o = overlapping(w);
		await submitTask(w.deps, "u1", params(), null);
		expect(o.together("access", "tierOf")).toBe(true);
		// The admission read's gate needs the median run time (cached): it follows it, beside the plan and the quote.
		expect(o.together("prepare", "p50", "boost")).toBe(true);
		expect(o.together("prepare", "backlog", "boost")).toBe(true);
		// The plan counts the user's rate limits: never before the access check answered.
		expect(o.together("access", "prepare")).toBe(false);
		expect(w.calls).toEqual(ACCEPTED_CALLS);
	});

	test("no access and a failing tier read: the 404 surfaces, nothing planned or held", async () => {
		const w = world();
		w.fail.access = new Errors.MoleculerClientError("Project not found", 404, "NOT_FOUND");
		w.deps.services.tierOf = async () => {
			throw new Error("users down");
		};
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({ code: 404 });
		expect(w.calls).toEqual(["access"]);
	});

	test("a refused plan and a failing backlog read: the plan's 422 surfaces, nothing held", async () => {
		const w = world();
		w.deps.services.prepare = async () => {
			throw new Errors.MoleculerClientError("Prompt too long", 422, "PROMPT_TOO_LONG");
		};
		w.deps.store.admit = async () => {
			throw new Error("database down");
		};
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({
			code: 422,
			type: "PROMPT_TOO_LONG"
		});
		expect(w.calls).not.toContain("dropHoldIntent");
		expect(w.held.size).toBe(0);
	});

	test("a refused plan beside an admission read that wrote the intent: the 422 surfaces, the intent is dropped", async () => {
		const w = world();
		w.deps.services.prepare = async () => {
			throw new Errors.MoleculerClientError("Prompt too long", 422, "PROMPT_TOO_LONG");
		};
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({ code: 422 });
		expect(w.calls).toEqual(["access", "admit (writes the intent)", "dropHoldIntent"]);
		expect(w.intents.size).toBe(0);
		expect(w.held.size).toBe(0);
	});

	test("a full queue and a failing boost quote: the 429 surfaces, nothing held", async () => {
		const w = world({ ahead: 10_000, capacity: 1 });
		w.deps.services.priorityBoost = async () => {
			throw new Error("payments down");
		};
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toMatchObject({ status: 429 });
		expect(w.intents.size).toBe(0);
		expect(w.held.size).toBe(0);
	});

	test("a failing boost quote on an admitted task: no intent, no hold", async () => {
		const w = world();
		w.deps.services.priorityBoost = async () => {
			throw new Error("payments down");
		};
		await expect(submitTask(w.deps, "u1", params(), null)).rejects.toThrow("payments down");
		expect(w.intents.size).toBe(0);
		expect(w.held.size).toBe(0);
	});
});
