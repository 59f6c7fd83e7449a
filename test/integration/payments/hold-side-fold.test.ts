/**
 * The statements folded beside the hold and the settlement (issue #16), against the rules they
 * replaced, on real PostgreSQL:
 *  - the usage attribution's insert and the payer's own cap read, one statement at the reserve
 *    (UsageStore.attributeReadingPayerCap), against `UsageStore.attribute` + `PayerCaps.capOf`;
 *  - the attribution's update at settlement, a CTE of the ledger's settle statement (Ledger.settle
 *    with `usage`), against the separate UPDATE it replaced (kept here as the reference);
 *  - the low-balance check's balance, read in the check's own statement (`balanceColumns`), against
 *    the two-account read Ledger.balance used to send.
 * Twin payers and tasks go through the same sequences, one by each path; outcomes and rows must match.
 * Then the cap's rules through payments.reserve: exactly reached, concurrent holds, replays.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { availableKey, heldKey, Ledger, type HoldView } from "../../../src/payments/ledger";
import { PayerCaps } from "../../../src/payments/payer-caps";
import { modelKey, UsageStore, type SettledUsage, type UsageAttribution } from "../../../src/payments/usage";
import { createSequelize } from "../../../src/db/sequelize";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";
import { countStatements } from "../../support/statement-counter";

jest.setTimeout(120_000);

let db: TestDatabase;
let node: Awaited<ReturnType<typeof startTestNode>>;
let usage: UsageStore;
let caps: PayerCaps;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["payments"],
		env: { LOG_LEVEL: "error", BILLING_LOW_BALANCE_CREDITS: "0" }
	});
	usage = new UsageStore(node.runtime.sequelize);
	caps = new PayerCaps(node.runtime.sequelize);
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });

const grant = (userId: string, credits: number, key = randomUUID()) =>
	node.broker.call("payments.grant", { userId, credits, operator: "test", reason: "test", key });

/** A task's attribution row without its own ids and clock. */
async function attribution(taskId: string) {
	const [row] = await sql<Record<string, unknown>>(
		`SELECT member_id, key_id, project_id, model, source, input_tokens, output_tokens FROM usage_attributions WHERE task_id = $1`,
		[taskId]
	);
	return row ?? null;
}

describe("the attribution insert with the payer's cap read, one statement", () => {
	type Step =
		| { do: "cap"; credits: number | null }
		| { do: "attribute"; task: string; a: UsageAttribution }
		| { do: "raw"; task: string }; // an attribution written by another path first (a retried reserve)

	/** The reference: the two statements the reserve sent side by side. */
	const reference = async (taskId: string, payerId: string, a: UsageAttribution) => {
		const [cap] = await Promise.all([caps.capOf(payerId), usage.attribute(taskId, payerId, a)]);
		return cap;
	};
	const folded = (taskId: string, payerId: string, a: UsageAttribution) =>
		usage.attributeReadingPayerCap(taskId, payerId, a);

	const steps: Step[] = [
		{ do: "attribute", task: "t1", a: { memberId: "m", projectId: "p1", model: "gpt", source: "task" } },
		{ do: "cap", credits: 500 },
		{ do: "attribute", task: "t2", a: { memberId: "m", keyId: "k1", projectId: "p1", model: null } },
		// A replayed reserve with another attribution: the first record stays, the cap is still read.
		{ do: "attribute", task: "t2", a: { memberId: "other", keyId: null, projectId: "p2", model: "x" } },
		{ do: "cap", credits: 0 },
		{ do: "attribute", task: "t3", a: { source: "chat" } },
		{ do: "raw", task: "t4" },
		{ do: "attribute", task: "t4", a: { memberId: "m", projectId: "p9" } },
		{ do: "cap", credits: Number.MAX_SAFE_INTEGER },
		{ do: "attribute", task: "t5", a: {} },
		{ do: "cap", credits: null },
		{ do: "attribute", task: "t6", a: { memberId: "m", model: "claude" } }
	];

	test("same caps read and same attribution rows on the same sequence", async () => {
		const run = async (
			path: (taskId: string, payerId: string, a: UsageAttribution) => Promise<number | null>,
			tag: string
		) => {
			const payer = `${tag}-${randomUUID()}`;
			const out: unknown[] = [];
			for (const s of steps) {
				const task = s.do === "cap" ? "" : `${payer}-${s.task}`;
				if (s.do === "cap") await caps.set(payer, s.credits);
				else if (s.do === "raw") await usage.attribute(task, payer, { memberId: "first", model: "m0" });
				else out.push({ cap: await path(task, payer, s.a), row: await attribution(task) });
			}
			return out;
		};
		const a = await run(reference, "ref");
		const b = await run(folded, "fold");
		expect(b).toEqual(a);
		// The sequence did reach each case.
		expect(a.map(x => (x as { cap: number | null }).cap)).toEqual([
			null,
			500,
			500,
			0,
			0,
			Number.MAX_SAFE_INTEGER,
			null
		]);
	});

	test("a payer of another id's cap is not read; the attribution names the payer it was given", async () => {
		const p1 = `p1-${randomUUID()}`;
		const p2 = `p2-${randomUUID()}`;
		await caps.set(p1, 77);
		const task = randomUUID();
		expect(await folded(task, p2, { memberId: "m" })).toBeNull();
		expect(await sql(`SELECT payer_id FROM usage_attributions WHERE task_id = $1`, [task])).toEqual([
			{ payer_id: p2 }
		]);
		expect(await folded(randomUUID(), p1, {})).toBe(77);
	});
});

describe("concurrent attributions with the cap read share statements", () => {
	test("each call answers its payer's cap and writes its row as one by one; a task twice keeps its first", async () => {
		// A store on a pool of its own, so only its statements are counted.
		const seq = createSequelize(db.url, { poolMax: 10 });
		const sent = countStatements(seq, t => (t.includes("INSERT INTO usage_attributions") ? "attribution" : null));
		try {
			const batched = new UsageStore(seq, true);
			const payers = Array.from({ length: 4 }, (_, i) => `batch${i}-${randomUUID()}`);
			await caps.set(payers[1], 0);
			await caps.set(payers[2], 1234);
			await caps.set(payers[3], Number.MAX_SAFE_INTEGER);
			const calls = Array.from({ length: 40 }, (_, i) => ({
				task: `${payers[0]}-t${i}`,
				payer: payers[i % 4],
				a: {
					memberId: `m${i}`,
					keyId: i % 3 ? `k${i}` : null,
					projectId: `p${i}`,
					model: `x${i}`,
					source: "chat" as const
				}
			}));
			// The last one repeats task t7 with another attribution: the first record stays.
			calls.push({ ...calls[7], a: { ...calls[7].a, memberId: "late" } });
			const out = await Promise.all(calls.map(c => batched.attributeReadingPayerCap(c.task, c.payer, c.a)));
			expect(out).toEqual(calls.map(c => [null, 0, 1234, Number.MAX_SAFE_INTEGER][payers.indexOf(c.payer)]));
			for (const c of calls.slice(0, 40))
				expect(await attribution(c.task)).toEqual({
					member_id: c.a.memberId,
					key_id: c.a.keyId,
					project_id: c.a.projectId,
					model: c.a.model,
					source: "chat",
					input_tokens: null,
					output_tokens: null
				});
			// 41 calls one by one would be 41 statements; a lone one goes at once, one batch at a time.
			expect(sent.counts.attribution).toBeGreaterThanOrEqual(1);
			expect(sent.counts.attribution).toBeLessThan(10);
		} finally {
			await seq.close();
		}
	});
});

describe("a user's own cap through payments.reserve (the folded read)", () => {
	const hold = (userId: string, taskId: string, maxCost: number) =>
		node.broker.call<{ held: number; duplicate: boolean }, object>("payments.reserve", {
			userId,
			taskId,
			maxCost,
			attribution: { memberId: userId, keyId: null, projectId: "p", model: "m", source: "task" }
		});
	const counter = async (payerId: string) => {
		const [r] = await sql<{ spent: string }>(`SELECT spent FROM spend_counters WHERE counter = $1`, [
			`payer:${payerId}`
		]);
		return Number(r?.spent ?? 0);
	};

	test("the cap exactly reached holds; one credit more is refused with PAYER_CAP_REACHED", async () => {
		const u = randomUUID();
		await grant(u, 10_000);
		await caps.set(u, 300);
		expect((await hold(u, randomUUID(), 100)).held).toBe(100);
		expect((await hold(u, randomUUID(), 200)).held).toBe(200);
		expect(await counter(u)).toBe(300);
		await expect(hold(u, randomUUID(), 1)).rejects.toMatchObject({ code: 402, type: "PAYER_CAP_REACHED" });
		// A zero hold passes at the cap (it takes no counter past it).
		expect((await hold(u, randomUUID(), 0)).held).toBe(0);
		expect(await counter(u)).toBe(300);
	});

	test("concurrent holds never pass the cap together; every one is attributed", async () => {
		const u = randomUUID();
		await grant(u, 10_000);
		await caps.set(u, 500);
		const tasks = Array.from({ length: 16 }, () => randomUUID());
		const out = await Promise.allSettled(tasks.map(t => hold(u, t, 100)));
		expect(out.filter(o => o.status === "fulfilled")).toHaveLength(5);
		for (const o of out.filter(o => o.status === "rejected") as PromiseRejectedResult[])
			expect(o.reason).toMatchObject({ type: "PAYER_CAP_REACHED" });
		expect(await counter(u)).toBe(500);
		// As before the fold: a refused hold leaves an attribution no settlement names.
		const [{ n }] = await sql<{ n: string }>(
			`SELECT count(*) AS n FROM usage_attributions WHERE task_id = ANY($1)`,
			[tasks]
		);
		expect(Number(n)).toBe(16);
	});

	test("a replayed reserve holds and counts once; the cap set in between does not refuse the replay", async () => {
		const u = randomUUID();
		await grant(u, 10_000);
		const t = randomUUID();
		expect((await hold(u, t, 250)).duplicate).toBe(false);
		await caps.set(u, 100);
		expect(await hold(u, t, 250)).toMatchObject({ duplicate: true, held: 250 });
		expect(await counter(u)).toBe(250);
		await expect(hold(u, randomUUID(), 1)).rejects.toMatchObject({ type: "PAYER_CAP_REACHED" });
	});

	test("a cap the call brings (an organisation's) is used without reading the user's own", async () => {
		const u = randomUUID();
		await grant(u, 10_000);
		await caps.set(u, 0);
		const r = await node.broker.call<{ held: number }, object>("payments.reserve", {
			userId: u,
			taskId: randomUUID(),
			maxCost: 40,
			caps: { payer: 50 },
			attribution: { memberId: u, source: "task" }
		});
		expect(r.held).toBe(40);
	});
});

describe("the attribution's update in the settlement's statement", () => {
	/** The update the settle action sent beside the ledger's statement before the fold. */
	const referenceUpdate = (taskId: string, u: SettledUsage) =>
		node.runtime.sequelize.query(
			`UPDATE usage_attributions SET input_tokens = coalesce($2, input_tokens),
				output_tokens = coalesce($3, output_tokens), model = coalesce($4, model) WHERE task_id = $1`,
			{
				bind: [
					taskId,
					u.inputTokens ?? null,
					u.outputTokens ?? null,
					u.models?.length ? modelKey(u.models, null) : null
				]
			}
		);

	type Outcome = { ok: Omit<HoldView, "taskId" | "userId"> } | { err: string };
	const outcome = (p: Promise<HoldView>): Promise<Outcome> =>
		p.then(
			({ taskId: _t, userId: _u, ...h }) => ({ ok: h }),
			(e: { type?: string; code?: unknown; message: string }) => ({ err: e.type ?? String(e.code ?? e.message) })
		);

	type Step =
		| { do: "reserve"; task: string; max: number }
		| { do: "attribute"; task: string }
		| { do: "settle"; task: string; cost: number; usage?: SettledUsage }
		| { do: "release"; task: string };

	const steps: Step[] = [
		{ do: "attribute", task: "a" },
		{ do: "reserve", task: "a", max: 100 },
		{ do: "settle", task: "a", cost: 30, usage: { inputTokens: 10, outputTokens: 20, models: ["m2", "m1"] } },
		// A replay with other usage: the ledger answers the duplicate, the usage is written again.
		{ do: "settle", task: "a", cost: 30, usage: { outputTokens: 25 } },
		// A replay with another cost: refused, the usage still written (as the side-by-side update did).
		{ do: "settle", task: "a", cost: 31, usage: { inputTokens: 11 } },
		{ do: "attribute", task: "b" },
		{ do: "reserve", task: "b", max: 50 },
		{ do: "settle", task: "b", cost: 0 },
		{ do: "attribute", task: "c" },
		{ do: "reserve", task: "c", max: 50 },
		{ do: "release", task: "c" },
		{ do: "settle", task: "c", cost: 5, usage: { inputTokens: 1 } },
		// No hold and no attribution; no hold with an attribution.
		{ do: "settle", task: "d", cost: 5, usage: { inputTokens: 1 } },
		{ do: "attribute", task: "e" },
		{ do: "settle", task: "e", cost: 5, usage: { inputTokens: 2, models: [] } },
		// No attribution, a hold: settled, nothing to update.
		{ do: "reserve", task: "f", max: 10 },
		{ do: "settle", task: "f", cost: 10, usage: { outputTokens: 3 } }
	];

	test("same outcomes and same attribution rows on the same sequence", async () => {
		const run = async (folded: boolean) => {
			const payer = randomUUID();
			await grant(payer, 100_000);
			const ledger = new Ledger(node.runtime.sequelize);
			const out: unknown[] = [];
			for (const s of steps) {
				const task = `${payer}-${s.task}`;
				if (s.do === "attribute") await usage.attribute(task, payer, { memberId: "m", model: "asked" });
				else if (s.do === "reserve")
					out.push(
						await outcome(
							ledger.reserve({
								userId: payer,
								taskId: task,
								listMaxCost: BigInt(s.max),
								boostMs: 0,
								listBoostFee: 0n,
								tier: "pro",
								discountBps: 0
							})
						)
					);
				else if (s.do === "release") out.push(await outcome(ledger.release({ userId: payer, taskId: task })));
				else {
					const settle = { userId: payer, taskId: task, listActualCost: BigInt(s.cost) };
					const o = folded
						? await outcome(ledger.settle({ ...settle, ...(s.usage ? { usage: s.usage } : {}) }))
						: (
								await Promise.all([
									outcome(ledger.settle(settle)),
									s.usage ? referenceUpdate(task, s.usage) : null
								])
							)[0];
					out.push(o);
				}
				out.push(await attribution(task));
			}
			return out;
		};
		const a = await run(false);
		const b = await run(true);
		expect(b).toEqual(a);
		expect(a.filter(o => (o as { err?: string })?.err).map(o => (o as { err: string }).err)).toEqual([
			"HOLD_ALREADY_SETTLED",
			"HOLD_RELEASED",
			"NOT_FOUND",
			"NOT_FOUND"
		]);
	});

	test("settlements batched into one statement each write their own task's usage", async () => {
		const ledger = new Ledger(node.runtime.sequelize, { batchInFlight: 1, batchMax: 64 });
		const payer = randomUUID();
		await grant(payer, 100_000);
		const tasks = Array.from({ length: 30 }, (_, i) => ({ id: randomUUID(), i }));
		for (const t of tasks) {
			await usage.attribute(t.id, payer, { memberId: "m" });
			await ledger.reserve({
				userId: payer,
				taskId: t.id,
				listMaxCost: 100n,
				boostMs: 0,
				listBoostFee: 0n,
				tier: "pro",
				discountBps: 0
			});
		}
		const statements: string[] = [];
		const seq = node.runtime.sequelize;
		const query = seq.query.bind(seq);
		const spy = jest.spyOn(seq, "query").mockImplementation(((q: string, o: object) => {
			if (String(q).includes("ledger_apply")) statements.push(String(q));
			return query(q, o);
		}) as typeof seq.query);
		try {
			// Every third one without usage: a batch mixes both.
			await Promise.all(
				tasks.map(t =>
					ledger.settle({
						userId: payer,
						taskId: t.id,
						listActualCost: BigInt(t.i),
						...(t.i % 3 ? { usage: { inputTokens: t.i, outputTokens: 2 * t.i, models: [`m${t.i}`] } } : {})
					})
				)
			);
		} finally {
			spy.mockRestore();
		}
		// The first alone, the other 29 together, with their usage.
		expect(statements).toHaveLength(2);
		expect(statements[1]).toMatch(/^WITH usage AS \(UPDATE usage_attributions/);
		for (const t of tasks)
			expect(await attribution(t.id)).toMatchObject(
				t.i % 3
					? { input_tokens: String(t.i), output_tokens: String(2 * t.i), model: `m${t.i}` }
					: { input_tokens: null, output_tokens: null, model: null }
			);
		const [{ charged }] = await sql<{ charged: string }>(
			`SELECT sum(charged) AS charged FROM credit_holds WHERE task_id = ANY($1)`,
			[tasks.map(t => t.id)]
		);
		expect(Number(charged)).toBe((29 * 30) / 2);
	});

	test("a batch whose usage update fails is retried one operation at a time: the others settle, the bad one stays held", async () => {
		const ledger = new Ledger(node.runtime.sequelize, { batchInFlight: 1, batchMax: 64 });
		const payer = randomUUID();
		await grant(payer, 100_000);
		const tasks = Array.from({ length: 6 }, () => randomUUID());
		for (const t of tasks) {
			await usage.attribute(t, payer, {});
			await ledger.reserve({
				userId: payer,
				taskId: t,
				listMaxCost: 10n,
				boostMs: 0,
				listBoostFee: 0n,
				tier: "pro",
				discountBps: 0
			});
		}
		// Negative tokens break the table's CHECK (the settle action's params never let them through).
		const out = await Promise.allSettled(
			tasks.map((t, i) =>
				ledger.settle({
					userId: payer,
					taskId: t,
					listActualCost: 5n,
					usage: { inputTokens: i === 3 ? -1 : 7 }
				})
			)
		);
		expect(out.map(o => o.status)).toEqual([
			"fulfilled",
			"fulfilled",
			"fulfilled",
			"rejected",
			"fulfilled",
			"fulfilled"
		]);
		const holds = await sql<{ task_id: string; state: string }>(
			`SELECT task_id, state FROM credit_holds WHERE task_id = ANY($1)`,
			[tasks]
		);
		expect(new Map(holds.map(h => [h.task_id, h.state]))).toEqual(
			new Map(tasks.map((t, i) => [t, i === 3 ? "held" : "settled"]))
		);
		expect((await attribution(tasks[3]))?.input_tokens).toBeNull();
		expect((await attribution(tasks[4]))?.input_tokens).toBe("7");
	});
});

describe("the balance read inside the low-balance check's statement", () => {
	/** The read Ledger.balance sent before (the account keys spelled in TypeScript). */
	const referenceBalance = async (userId: string) => {
		const [row] = await sql<{ available: string | null; held: string | null; expired: string | null }>(
			`SELECT (SELECT balance FROM ledger_accounts WHERE key = $1) AS available,
			        (SELECT balance FROM ledger_accounts WHERE key = $2) AS held,
			        (SELECT SUM(remaining) FROM credit_lots WHERE user_id = $3 AND remaining > 0 AND expires_at <= now()) AS expired`,
			[availableKey(userId), heldKey(userId), userId]
		);
		const expiredPending = BigInt(row?.expired ?? 0);
		return {
			available: BigInt(row?.available ?? 0) - expiredPending,
			held: BigInt(row?.held ?? 0),
			expiredPending
		};
	};

	test("the same balance for a user, an organisation, an unknown payer, held and expired credit", async () => {
		const ledger = new Ledger(node.runtime.sequelize);
		const user = randomUUID();
		const org = `org:${randomUUID()}`;
		const odd = "odd.user@x:y_z-1";
		await grant(user, 1_000);
		await grant(org, 700);
		await grant(odd, 5);
		await ledger.reserve({
			userId: org,
			taskId: randomUUID(),
			listMaxCost: 300n,
			boostMs: 0,
			listBoostFee: 0n,
			tier: "team",
			discountBps: 0
		});
		// A promotional lot already expired, not yet swept.
		await ledger.run(tx =>
			ledger.credit(tx, {
				kind: "grant",
				userId: user,
				credits: 40n,
				from: "sys:promo",
				source: "promo",
				expiresAt: new Date(Date.now() - 60_000),
				causeType: "test",
				causeId: randomUUID(),
				description: "expired"
			})
		);
		for (const payer of [user, org, odd, `never-${randomUUID()}`]) {
			const expected = await referenceBalance(payer);
			expect(await ledger.balance(payer)).toEqual(expected);
		}
		expect(await ledger.balance(user)).toEqual({ available: 1_000n, held: 0n, expiredPending: 40n });
		expect(await ledger.balance(org)).toEqual({ available: 400n, held: 300n, expiredPending: 0n });
	});
});
