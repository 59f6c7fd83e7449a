import { ConfigError, loadConfig } from "../../../src/config";
import { cutoffOf, deleteRule } from "../../../src/db/retention";
import { eventPruneRules } from "../../../src/events/retention";
import { chargedCredits, isPrunable, tasksPruneRule, usageTokens } from "../../../src/tasks/retention";
import { usersPruneRules } from "../../../src/users/retention";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 11, 3, 12);

describe("retention rules", () => {
	test("the cutoff is the retention before now; 0 days keeps rows forever", () => {
		expect(cutoffOf(30, NOW)?.toISOString()).toBe(new Date(NOW - 30 * DAY).toISOString());
		expect(cutoffOf(0, NOW)).toBeNull();
		expect(cutoffOf(-1, NOW)).toBeNull();
		expect(cutoffOf(Number.NaN, NOW)).toBeNull();
	});

	test("only finished tasks whose hold is settled or released and whose finish is older than the cutoff are prunable", () => {
		const cutoff = cutoffOf(30, NOW);
		const old = new Date(NOW - 31 * DAY);
		const young = new Date(NOW - 29 * DAY);
		for (const state of ["succeeded", "failed", "cancelled"] as const) {
			expect(isPrunable({ state, settlement: "settled", finished_at: old }, cutoff)).toBe(true);
			expect(isPrunable({ state, settlement: "released", finished_at: old }, cutoff)).toBe(true);
			// Money in flight: the sweeper still needs the row.
			expect(isPrunable({ state, settlement: "pending", finished_at: old }, cutoff)).toBe(false);
			expect(isPrunable({ state, settlement: "settled", finished_at: young }, cutoff)).toBe(false);
			expect(isPrunable({ state, settlement: "settled", finished_at: null }, cutoff)).toBe(false);
			// Retention off.
			expect(isPrunable({ state, settlement: "settled", finished_at: old }, null)).toBe(false);
		}
		for (const state of ["queued", "running"] as const)
			expect(isPrunable({ state, settlement: "settled", finished_at: old }, cutoff)).toBe(false);
		// Exactly at the cutoff stays (older than, not as old as).
		expect(isPrunable({ state: "succeeded", settlement: "settled", finished_at: cutoff }, cutoff)).toBe(false);
	});

	test("the credits a summary counts are what the settlement charged", () => {
		const row = { spent_credits: "0", cost_credits: "40", max_cost_credits: "100" };
		expect(chargedCredits({ ...row, state: "succeeded", settlement: "settled" })).toBe(40);
		// Retried attempts' spending is part of the success's cost, capped by the hold.
		expect(
			chargedCredits({
				state: "succeeded",
				settlement: "settled",
				spent_credits: 30,
				cost_credits: 70,
				max_cost_credits: 60
			})
		).toBe(60);
		// A failure or cancellation is charged what it spent.
		expect(
			chargedCredits({
				state: "failed",
				settlement: "settled",
				spent_credits: 25,
				cost_credits: 25,
				max_cost_credits: 100
			})
		).toBe(25);
		// A released hold charged nothing.
		expect(chargedCredits({ ...row, state: "cancelled", settlement: "released" })).toBe(0);
		expect(chargedCredits({ ...row, state: "succeeded", settlement: "pending" })).toBe(0);
	});

	test("token counts come from the worker's usage report, 0 when absent or malformed", () => {
		expect(usageTokens({ promptTokens: 12, completionTokens: 7 }, "promptTokens")).toBe(12);
		expect(usageTokens({ promptTokens: 12, completionTokens: 7 }, "completionTokens")).toBe(7);
		expect(usageTokens(null, "promptTokens")).toBe(0);
		expect(usageTokens({ promptTokens: -1 }, "promptTokens")).toBe(0);
		expect(usageTokens({ promptTokens: "12" }, "promptTokens")).toBe(0);
		expect(usageTokens({ promptTokens: 1.5 }, "promptTokens")).toBe(0);
	});

	test("every rule deletes in bounded batches and never touches money or audit tables", () => {
		const days = loadConfig({}).retention.days;
		const rules = [tasksPruneRule(days.tasks), ...eventPruneRules(days), ...usersPruneRules(days)];
		expect(rules.map(r => r.table)).toEqual([
			"tasks",
			"outbox_events",
			"inbox_events",
			"event_dead_letters",
			"user_sessions",
			"refresh_tokens",
			"user_tokens",
			"mail_outbox"
		]);
		for (const r of rules) {
			expect(r.batchSql).toMatch(/LIMIT \$2/);
			expect(r.batchSql).toMatch(/SKIP LOCKED/);
			expect(r.batchSql).not.toMatch(
				/ledger_|credit_|usage_attributions\s+(?:WHERE|USING)|DELETE FROM usage|user_audit/
			);
		}
		// The outbox never loses an event the relay still owes.
		expect(eventPruneRules(days)[0].batchSql).toMatch(/published_at IS NOT NULL/);
		// The tasks rule keeps a summary of what it deletes in the same statement.
		expect(tasksPruneRule(30).batchSql).toMatch(/INSERT INTO task_daily_summaries/);
		expect(deleteRule({ table: "x", retentionDays: 1, key: "a, b", where: "t < $1" }).countSql).toBe(
			"SELECT count(*)::integer AS n FROM x WHERE t < $1"
		);
	});

	test("settings: defaults (embedded mode too), bounds, and an inbox that outlives the outbox", () => {
		const r = loadConfig({}).retention;
		expect(r).toEqual({
			everyMs: 600_000,
			batchRows: 5_000,
			maxBatches: 100,
			pauseMs: 50,
			days: { tasks: 30, outbox: 7, inbox: 30, deadLetters: 90, sessions: 7, userTokens: 7, mailOutbox: 30 }
		});
		expect(loadConfig({ TASKS_RETENTION_DAYS: "0" }).retention.days.tasks).toBe(0);
		const problems = (env: Record<string, string>) => {
			try {
				loadConfig(env);
				return [];
			} catch (err) {
				return (err as ConfigError).problems;
			}
		};
		expect(problems({ RETENTION_BATCH_ROWS: "0" }).join()).toMatch(/RETENTION_BATCH_ROWS/);
		expect(problems({ INBOX_RETENTION_DAYS: "3", OUTBOX_RETENTION_DAYS: "7" }).join()).toMatch(
			/INBOX_RETENTION_DAYS/
		);
		expect(problems({ INBOX_RETENTION_DAYS: "0", OUTBOX_RETENTION_DAYS: "7" })).toEqual([]);
	});
});
