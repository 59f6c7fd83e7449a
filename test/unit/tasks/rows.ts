/** Task rows for unit tests of src/tasks: a queued row with every column, changed by `over`. */
import type { TaskRow } from "../../../src/tasks/store";

export const T0 = 1_800_000_000_000;

export function taskRow(over: Partial<TaskRow> = {}): TaskRow {
	return {
		id: "t1",
		user_id: "u1",
		payer_id: null,
		project_id: "p1",
		tier: "free",
		kind: "chat",
		prompt: "hello",
		request: {},
		prepared: {
			models: [{ model: "m", group: "small", provider: "dev" }],
			promptTokens: 10,
			contextTokensBudget: 0,
			maxOutputTokens: 100,
			maxCostCredits: 100
		},
		request_hash: "h",
		idempotency_key: null,
		max_cost_credits: "100",
		boost_ms: 0,
		state: "queued",
		version: 1,
		attempts: 0,
		max_attempts: 3,
		enqueued_at: new Date(T0),
		not_before: null,
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
		updated_at: new Date(T0),
		...over
	};
}
