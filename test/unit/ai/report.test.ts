import { Errors } from "moleculer";
import { reportOutcome, reportRetryDelayMs } from "../../../src/ai/report";

const quiet = { warn: () => undefined };
const leaseLost = () => new Errors.MoleculerClientError("This lease is no longer valid", 409, "LEASE_LOST");
const down = () =>
	new Errors.MoleculerError("A dependency of this service is unavailable", 503, "DEPENDENCY_UNAVAILABLE");
const params = { taskId: "t1", leaseId: "l1", result: { text: "x" } };

function scripted(answers: Array<Error | "ok">) {
	const calls: Array<{ action: string; params: unknown }> = [];
	const sleeps: number[] = [];
	return {
		calls,
		sleeps,
		deps: {
			call: async (action: string, p: unknown) => {
				calls.push({ action, params: p });
				const a = answers.shift();
				if (a === undefined) throw new Error("no more answers scripted");
				if (a !== "ok") throw a;
				return { ok: true };
			},
			stopping: () => false,
			logger: quiet,
			sleep: async (ms: number) => void sleeps.push(ms)
		}
	};
}

test("an outcome the tasks service cannot take now is sent again, the same report each time, until accepted", async () => {
	const timeout = new Errors.RequestTimeoutError({ action: "tasks.complete", nodeID: "n" } as never);
	const s = scripted([
		down(),
		timeout,
		new Errors.ServiceNotAvailableError({ action: "tasks.complete" } as never),
		"ok"
	]);
	await expect(reportOutcome(s.deps, "tasks.complete", params)).resolves.toBe("accepted");
	expect(s.calls).toHaveLength(4);
	expect(s.calls.every(c => c.action === "tasks.complete" && c.params === params)).toBe(true);
	expect(s.sleeps).toHaveLength(3);
});

test("LEASE_LOST ends the loop: another attempt owns the task (or this report already landed)", async () => {
	const s = scripted([down(), leaseLost()]);
	await expect(reportOutcome(s.deps, "tasks.complete", params)).resolves.toBe("lost");
	expect(s.calls).toHaveLength(2);
});

test("a refusal of the report itself is thrown at once; 429 is retried", async () => {
	const bad = new Errors.ValidationError("bad", "VALIDATION_ERROR", []);
	const s = scripted([bad]);
	await expect(reportOutcome(s.deps, "tasks.fail", params)).rejects.toBe(bad);
	expect(s.calls).toHaveLength(1);
	const r = scripted([new Errors.MoleculerClientError("slow down", 429, "RATE_LIMITED"), "ok"]);
	await expect(reportOutcome(r.deps, "tasks.fail", params)).resolves.toBe("accepted");
});

test("a stopping worker abandons the report instead of blocking its stop", async () => {
	const s = scripted([down(), down(), down()]);
	let stopping = false;
	const p = reportOutcome(
		{ ...s.deps, stopping: () => stopping, sleep: async () => void (stopping = true) },
		"tasks.complete",
		params
	);
	await expect(p).resolves.toBe("abandoned");
	expect(s.calls).toHaveLength(2);
});

test("backoff grows and is capped", () => {
	const mid = () => 0.5;
	expect(reportRetryDelayMs(1, 100, 1000, mid)).toBe(75);
	expect(reportRetryDelayMs(3, 100, 1000, mid)).toBe(300);
	expect(reportRetryDelayMs(20, 100, 1000, mid)).toBe(750);
	expect(reportRetryDelayMs(20, 100, 1000, () => 1)).toBe(1000);
});
