/** Param schemas of the tasks service's actions (fastest-validator), the long ones kept apart from the handlers. */
import { MAX_GLOBS, MAX_GLOB_LENGTH } from "../context/globs";
import { PAGE_PARAMS } from "../http/list-params";
import { TASK_STATES } from "./rules";

export const UUID = { type: "uuid" } as const;

/** Path globs of the context (src/context/globs.ts); the patterns themselves are checked by validateGlobs. */
const GLOBS = {
	type: "array",
	items: { type: "string", min: 1, max: MAX_GLOB_LENGTH },
	max: MAX_GLOBS,
	optional: true
} as const;

/** POST /tasks (src/tasks/submit.ts SubmitParams; the rules beyond the schema are submitProblems). */
export const SUBMIT_PARAMS = {
	$$strict: "remove",
	projectId: UUID,
	kind: { type: "enum", values: ["chat", "code", "compare"] },
	prompt: { type: "string", min: 1, max: 10_000_000 },
	model: { type: "string", min: 1, max: 200, optional: true },
	models: {
		type: "array",
		items: { type: "string", min: 1, max: 200 },
		min: 2,
		max: 3,
		unique: true,
		optional: true
	},
	maxOutputTokens: { type: "number", integer: true, min: 1, max: 1_000_000, optional: true },
	priorityBoost: { type: "enum", values: ["none", "paid"], default: "none" },
	include: { ...GLOBS, description: "Path globs the context shows first (e.g. src/**/*.ts)" },
	exclude: { ...GLOBS, description: "Path globs the context leaves out (wins over include)" }
} as const;

/** GET /tasks: a page of the caller's tasks, newest first (src/http/cursor.ts checks the cursor). */
export const LIST_PARAMS = {
	$$strict: "remove",
	...PAGE_PARAMS,
	state: { type: "enum", values: [...TASK_STATES], optional: true }
} as const;

/** What the worker reports the model was shown (src/ai/context-frames.ts ContextRecord). */
const CONTEXT_RECORD = {
	type: "object",
	optional: true,
	props: {
		state: { type: "enum", values: ["selected", "degraded"] },
		reason: { type: "string", max: 100, optional: true },
		tokenizer: { type: "string", max: 100 },
		version: { type: "number", integer: true, min: 0 },
		frames: {
			type: "array",
			max: 10_000,
			items: {
				type: "object",
				props: {
					kind: { type: "enum", values: ["file", "definitions", "map"] },
					path: { type: "string", max: 4096, optional: true },
					lines: {
						type: "array",
						items: { type: "number", integer: true, min: 0 },
						length: 2,
						optional: true
					},
					tokens: { type: "number", integer: true, min: 0 }
				}
			}
		}
	}
} as const;

const COST = { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER, convert: true } as const;

/** tasks.complete (src/tasks/reports.ts CompleteReport). */
export const COMPLETE_PARAMS = {
	taskId: UUID,
	leaseId: UUID,
	result: { type: "object" },
	usage: { type: "object" },
	costCredits: COST,
	context: CONTEXT_RECORD
} as const;

/** tasks.fail (src/tasks/reports.ts FailReport). */
export const FAIL_PARAMS = {
	taskId: UUID,
	leaseId: UUID,
	error: {
		type: "object",
		props: { code: { type: "string", min: 1, max: 100 }, message: { type: "string", max: 2000 } }
	},
	retryable: { type: "boolean" },
	usage: { type: "object", optional: true },
	costCredits: { ...COST, optional: true },
	context: CONTEXT_RECORD
} as const;
