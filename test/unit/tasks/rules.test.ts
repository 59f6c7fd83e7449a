import {
	afterFailure,
	afterLeaseExpiry,
	leaseIsLost,
	needsStateEvent,
	parseLastEventId,
	percentile,
	requestHash,
	settlementFor,
	sseFrame,
	stateEventName
} from "../../../src/tasks/rules";

describe("state rules", () => {
	test("an expired lease re-queues, unless cancel was asked or attempts are used up", () => {
		expect(afterLeaseExpiry({ cancelRequested: false, attempts: 1, maxAttempts: 3 })).toBe("queued");
		expect(afterLeaseExpiry({ cancelRequested: true, attempts: 1, maxAttempts: 3 })).toBe("cancelled");
		expect(afterLeaseExpiry({ cancelRequested: false, attempts: 3, maxAttempts: 3 })).toBe("failed");
	});

	test("failure reports: retry while attempts are left, cancel wins, non-retryable is terminal", () => {
		const t = { cancelRequested: false, attempts: 1, maxAttempts: 3 };
		expect(afterFailure(t, { code: "PROVIDER_TIMEOUT", retryable: true })).toBe("queued");
		expect(afterFailure({ ...t, attempts: 3 }, { code: "PROVIDER_TIMEOUT", retryable: true })).toBe("failed");
		expect(afterFailure(t, { code: "BAD_OUTPUT", retryable: false })).toBe("failed");
		expect(afterFailure(t, { code: "CANCELLED", retryable: false })).toBe("cancelled");
		expect(afterFailure({ ...t, cancelRequested: true }, { code: "PROVIDER_TIMEOUT", retryable: true })).toBe(
			"cancelled"
		);
	});

	test("settlement charges what the attempts used, capped at the hold; nothing used releases", () => {
		expect(settlementFor(0, 120, 500)).toEqual({ action: "settle", actualCost: 120 });
		expect(settlementFor(30, 120, 500)).toEqual({ action: "settle", actualCost: 150 });
		expect(settlementFor(400, 400, 500)).toEqual({ action: "settle", actualCost: 500 });
		expect(settlementFor(0, 0, 500)).toEqual({ action: "release" });
	});
});

describe("percentile", () => {
	test("nearest rank", () => {
		const xs = Array.from({ length: 100 }, (_, i) => 100 - i);
		expect(percentile(xs, 50)).toBe(50);
		expect(percentile(xs, 99)).toBe(99);
		expect(percentile(xs, 100)).toBe(100);
		expect(percentile([7], 99)).toBe(7);
		expect(percentile([], 50)).toBeNull();
	});
});

describe("SSE format", () => {
	test("frames carry id, event and one-line JSON data", () => {
		expect(sseFrame("delta", { text: "a\nb" }, { version: 3, seq: 2 })).toBe(
			'id: 3:2\nevent: delta\ndata: {"text":"a\\nb"}\n\n'
		);
		expect(sseFrame("position", { position: 4 })).toBe('event: position\ndata: {"position":4}\n\n');
	});

	test("Last-Event-ID parses only our own ids", () => {
		expect(parseLastEventId("7:12")).toEqual({ version: 7, seq: 12 });
		expect(parseLastEventId(" 7:0 ")).toEqual({ version: 7, seq: 0 });
		expect(parseLastEventId("abc")).toBeNull();
		expect(parseLastEventId("7")).toBeNull();
		expect(parseLastEventId(undefined)).toBeNull();
	});

	test("a state event is resent only when the client saw an older version", () => {
		expect(needsStateEvent(null, 1)).toBe(true);
		expect(needsStateEvent({ version: 2, seq: 5 }, 3)).toBe(true);
		expect(needsStateEvent({ version: 3, seq: 0 }, 3)).toBe(false);
	});

	test("event names", () => {
		expect(["queued", "running", "succeeded", "failed", "cancelled"].map(s => stateEventName(s as never))).toEqual([
			"queued",
			"started",
			"completed",
			"failed",
			"cancelled"
		]);
	});
});

test("the request hash ignores key order and absent fields", () => {
	expect(requestHash({ a: 1, b: [1, { c: 2, d: undefined }] })).toBe(requestHash({ b: [1, { c: 2 }], a: 1 }));
	expect(requestHash({ a: 1 })).not.toBe(requestHash({ a: 2 }));
});

describe("leaseIsLost: the sweeper's rule for expired leases", () => {
	test("a holder that left the cluster loses the lease as soon as it expires", () => {
		expect(leaseIsLost({ expiresAt: 1000, now: 1000, holderAlive: false, graceMs: 30_000 })).toBe(false);
		expect(leaseIsLost({ expiresAt: 1000, now: 1001, holderAlive: false, graceMs: 30_000 })).toBe(true);
	});
	test("a holder still in the cluster keeps it for the grace period", () => {
		expect(leaseIsLost({ expiresAt: 1000, now: 31_000, holderAlive: true, graceMs: 30_000 })).toBe(false);
		expect(leaseIsLost({ expiresAt: 1000, now: 31_001, holderAlive: true, graceMs: 30_000 })).toBe(true);
		expect(leaseIsLost({ expiresAt: 1000, now: 1001, holderAlive: true, graceMs: 0 })).toBe(true);
	});
});
