import {
	canTransition,
	initialSandboxStatus,
	SANDBOX_STATES,
	SANDBOX_TRANSITIONS,
	sandboxTimeoutReason,
	transitionSandbox
} from "../../../src/projects/sandbox";
import type { SandboxActor, SandboxState, SandboxStatus } from "../../../src/projects/sandbox";

const t0 = new Date("2026-11-26T10:00:00.000Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);

function status(state: SandboxState, extra: Partial<SandboxStatus> = {}): SandboxStatus {
	return { ...initialSandboxStatus(t0), state, version: state === "none" ? null : 3, ...extra };
}

describe("sandbox transition table", () => {
	const legal: Array<[SandboxState, SandboxState, SandboxActor]> = [
		["none", "provisioning", "user"],
		["provisioning", "running", "runner"],
		["provisioning", "stopped", "user"],
		["provisioning", "stopped", "runner"],
		["provisioning", "failed", "runner"],
		["provisioning", "failed", "sweep"],
		["running", "stopped", "user"],
		["running", "stopped", "runner"],
		["running", "failed", "runner"],
		["running", "failed", "sweep"],
		["stopped", "provisioning", "user"],
		["failed", "provisioning", "user"]
	];

	test("exactly these edges exist", () => {
		const edges = SANDBOX_STATES.flatMap(from =>
			SANDBOX_STATES.filter(to => canTransition(from, to)).map(to => `${from}->${to}`)
		);
		expect(edges.sort()).toEqual([...new Set(legal.map(([f, t]) => `${f}->${t}`))].sort());
	});

	test.each(legal)("%s → %s by the %s is legal", (from, to, actor) => {
		const r = transitionSandbox(status(from), { to, actor, now: at(5), version: 4, reason: "boom" });
		expect(r.ok && r.changed).toBe(true);
		if (r.ok) {
			expect(r.next.state).toBe(to);
			expect(r.next.stateChangedAt).toEqual(at(5));
		}
	});

	const illegal: Array<[SandboxState, SandboxState]> = [
		["none", "running"],
		["none", "stopped"],
		["none", "failed"],
		["stopped", "running"],
		["failed", "running"],
		["stopped", "failed"],
		["running", "provisioning"],
		["running", "none"],
		["failed", "stopped"]
	];
	test.each(illegal)("%s → %s is illegal for everyone", (from, to) => {
		for (const actor of ["user", "runner", "sweep"] as const) {
			const r = transitionSandbox(status(from), { to, actor, now: at(1), version: 1 });
			expect(r).toEqual({
				ok: false,
				code: "ILLEGAL_SANDBOX_TRANSITION",
				reason: expect.stringContaining(`from ${from} to ${to}`)
			});
		}
	});

	test("only the runner says a sandbox is running; users cannot fail one; the sweep cannot start one", () => {
		expect(transitionSandbox(status("provisioning"), { to: "running", actor: "user", now: at(1) })).toMatchObject({
			ok: false,
			code: "SANDBOX_TRANSITION_NOT_ALLOWED"
		});
		expect(transitionSandbox(status("running"), { to: "failed", actor: "user", now: at(1) })).toMatchObject({
			ok: false,
			code: "SANDBOX_TRANSITION_NOT_ALLOWED"
		});
		expect(
			transitionSandbox(status("stopped"), { to: "provisioning", actor: "sweep", now: at(1), version: 1 })
		).toMatchObject({ ok: false, code: "SANDBOX_TRANSITION_NOT_ALLOWED" });
		expect(SANDBOX_TRANSITIONS.none.provisioning).toEqual(["user"]);
	});

	test("provisioning needs a version and clears the previous run", () => {
		const failed = status("failed", {
			startedAt: at(1),
			stoppedAt: at(2),
			lastHeartbeatAt: at(1),
			failureReason: "heartbeat timeout"
		});
		expect(transitionSandbox(failed, { to: "provisioning", actor: "user", now: at(3) })).toMatchObject({
			ok: false,
			code: "SANDBOX_VERSION_REQUIRED"
		});
		const r = transitionSandbox(failed, { to: "provisioning", actor: "user", now: at(3), version: 7 });
		expect(r).toEqual({
			ok: true,
			changed: true,
			next: {
				state: "provisioning",
				version: 7,
				stateChangedAt: at(3),
				startedAt: null,
				stoppedAt: null,
				lastHeartbeatAt: null,
				failureReason: null
			}
		});
	});

	test("running records start and first heartbeat; failed records when and why; stopped when", () => {
		const running = transitionSandbox(status("provisioning", { version: 2 }), {
			to: "running",
			actor: "runner",
			now: at(10)
		});
		expect(running).toMatchObject({
			ok: true,
			next: { state: "running", version: 2, startedAt: at(10), lastHeartbeatAt: at(10) }
		});
		const failed = transitionSandbox(status("running"), {
			to: "failed",
			actor: "sweep",
			now: at(20),
			reason: "heartbeat timeout"
		});
		expect(failed).toMatchObject({
			ok: true,
			next: { state: "failed", stoppedAt: at(20), failureReason: "heartbeat timeout" }
		});
		const noReason = transitionSandbox(status("running"), { to: "failed", actor: "runner", now: at(20) });
		expect(noReason).toMatchObject({ ok: true, next: { failureReason: "unknown failure" } });
		const stopped = transitionSandbox(status("running", { startedAt: at(1) }), {
			to: "stopped",
			actor: "user",
			now: at(30)
		});
		expect(stopped).toMatchObject({ ok: true, next: { state: "stopped", stoppedAt: at(30), startedAt: at(1) } });
	});

	test("asking for the current state again is a no-op, not a conflict", () => {
		const s = status("stopped");
		expect(transitionSandbox(s, { to: "stopped", actor: "user", now: at(9) })).toEqual({
			ok: true,
			changed: false,
			next: s
		});
		const p = status("provisioning", { version: 3 });
		expect(transitionSandbox(p, { to: "provisioning", actor: "user", now: at(9), version: 3 })).toEqual({
			ok: true,
			changed: false,
			next: p
		});
		// Another version while provisioning is not the same request, and provisioning → provisioning is no edge.
		expect(transitionSandbox(p, { to: "provisioning", actor: "user", now: at(9), version: 4 })).toMatchObject({
			ok: false,
			code: "ILLEGAL_SANDBOX_TRANSITION"
		});
	});
});

describe("sandbox timeouts", () => {
	const timeouts = { heartbeatTimeoutMs: 60_000, provisionTimeoutMs: 600_000 };

	test("running fails once its last heartbeat is older than the timeout", () => {
		const s = status("running", { stateChangedAt: at(0), lastHeartbeatAt: at(30) });
		expect(sandboxTimeoutReason(s, at(90), timeouts)).toBeNull();
		expect(sandboxTimeoutReason(s, at(90.001), timeouts)).toBe("heartbeat timeout");
	});

	test("a running sandbox that never beat counts from when it started running", () => {
		const s = status("running", { stateChangedAt: at(0), lastHeartbeatAt: null });
		expect(sandboxTimeoutReason(s, at(60), timeouts)).toBeNull();
		expect(sandboxTimeoutReason(s, at(61), timeouts)).toBe("heartbeat timeout");
	});

	test("provisioning has its own, longer timeout; other states never time out", () => {
		expect(sandboxTimeoutReason(status("provisioning", { stateChangedAt: at(0) }), at(599), timeouts)).toBeNull();
		expect(sandboxTimeoutReason(status("provisioning", { stateChangedAt: at(0) }), at(601), timeouts)).toBe(
			"provisioning timeout"
		);
		for (const state of ["none", "stopped", "failed"] as const)
			expect(sandboxTimeoutReason(status(state), at(100_000), timeouts)).toBeNull();
	});
});
