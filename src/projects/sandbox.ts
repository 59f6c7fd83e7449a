/**
 * A project's sandbox state machine. Pure: the service reads the current status, asks
 * `transitionSandbox` for the next one, and writes it with a conditional UPDATE on the state it
 * read (so two nodes cannot both apply a transition from the same state).
 *
 *   none ──user──► provisioning ──runner──► running ──user|runner──► stopped ──user──► provisioning
 *                       │  ╲                   │                                          ▲
 *                       │   ╲──user|runner──► stopped                                     │
 *                       └──runner|sweep──► failed ◄──runner|sweep──┘        failed ──user─┘
 *
 * Who may cause a transition matters as much as the states: users start and stop; only the
 * sandbox runner says a sandbox is running (it is the one that knows); a sweep turns silent
 * sandboxes into failed ones. Requesting the state a sandbox is already in (with the same version)
 * is a no-op, so retried requests are harmless.
 */

export const SANDBOX_STATES = ["none", "provisioning", "running", "stopped", "failed"] as const;
export type SandboxState = (typeof SANDBOX_STATES)[number];

/** user: through the API; runner: the sandbox runner's reports; sweep: the heartbeat/provisioning timeout. */
export type SandboxActor = "user" | "runner" | "sweep";

export const SANDBOX_TRANSITIONS: Readonly<
	Record<SandboxState, Readonly<Partial<Record<SandboxState, readonly SandboxActor[]>>>>
> = {
	none: { provisioning: ["user"] },
	provisioning: { running: ["runner"], stopped: ["user", "runner"], failed: ["runner", "sweep"] },
	running: { stopped: ["user", "runner"], failed: ["runner", "sweep"] },
	stopped: { provisioning: ["user"] },
	failed: { provisioning: ["user"] }
};

export interface SandboxStatus {
	state: SandboxState;
	/** The project version the sandbox runs (or is being provisioned with); null in `none`. */
	version: number | null;
	stateChangedAt: Date;
	/** When it last became running. */
	startedAt: Date | null;
	/** When it last stopped or failed. */
	stoppedAt: Date | null;
	lastHeartbeatAt: Date | null;
	failureReason: string | null;
}

export interface SandboxTransitionRequest {
	to: SandboxState;
	actor: SandboxActor;
	now: Date;
	/** Required when entering provisioning; optional when the runner reports running. */
	version?: number;
	/** Why it failed (failed only). */
	reason?: string;
}

export type SandboxTransitionResult =
	| { ok: true; changed: true; next: SandboxStatus }
	| { ok: true; changed: false; next: SandboxStatus }
	| {
			ok: false;
			code: "ILLEGAL_SANDBOX_TRANSITION" | "SANDBOX_TRANSITION_NOT_ALLOWED" | "SANDBOX_VERSION_REQUIRED";
			reason: string;
	  };

export function initialSandboxStatus(now: Date): SandboxStatus {
	return {
		state: "none",
		version: null,
		stateChangedAt: now,
		startedAt: null,
		stoppedAt: null,
		lastHeartbeatAt: null,
		failureReason: null
	};
}

/** Whether the table has the edge at all (for anyone). */
export function canTransition(from: SandboxState, to: SandboxState): boolean {
	return SANDBOX_TRANSITIONS[from][to] !== undefined;
}

/** The status after the request, or why it is refused. */
export function transitionSandbox(current: SandboxStatus, request: SandboxTransitionRequest): SandboxTransitionResult {
	const { to, actor, now } = request;
	if (to === current.state && (request.version === undefined || request.version === current.version)) {
		return { ok: true, changed: false, next: current };
	}
	const actors = SANDBOX_TRANSITIONS[current.state][to];
	if (actors === undefined) {
		return {
			ok: false,
			code: "ILLEGAL_SANDBOX_TRANSITION",
			reason: `a sandbox cannot go from ${current.state} to ${to}`
		};
	}
	if (!actors.includes(actor)) {
		return {
			ok: false,
			code: "SANDBOX_TRANSITION_NOT_ALLOWED",
			reason: `${current.state} → ${to} is reported by the ${actors.join(" or ")}, not the ${actor}`
		};
	}
	const base = { ...current, state: to, stateChangedAt: now };
	switch (to) {
		case "provisioning":
			if (request.version === undefined)
				return { ok: false, code: "SANDBOX_VERSION_REQUIRED", reason: "provisioning needs a version" };
			return {
				ok: true,
				changed: true,
				next: {
					...base,
					version: request.version,
					startedAt: null,
					stoppedAt: null,
					lastHeartbeatAt: null,
					failureReason: null
				}
			};
		case "running":
			return {
				ok: true,
				changed: true,
				next: { ...base, version: request.version ?? current.version, startedAt: now, lastHeartbeatAt: now }
			};
		case "stopped":
			return { ok: true, changed: true, next: { ...base, stoppedAt: now } };
		case "failed":
			return {
				ok: true,
				changed: true,
				next: { ...base, stoppedAt: now, failureReason: request.reason?.slice(0, 500) || "unknown failure" }
			};
		case "none":
			return { ok: false, code: "ILLEGAL_SANDBOX_TRANSITION", reason: "a sandbox never returns to none" };
	}
}

export interface SandboxTimeouts {
	heartbeatTimeoutMs: number;
	provisionTimeoutMs: number;
}

/**
 * Why the sweep should fail this sandbox now, or null: running without a heartbeat for longer
 * than the heartbeat timeout (counting from when it became running if it never beat), or
 * provisioning for longer than the provisioning timeout. The sweep's SQL encodes the same rule.
 */
export function sandboxTimeoutReason(status: SandboxStatus, now: Date, timeouts: SandboxTimeouts): string | null {
	const age = (since: Date) => now.getTime() - since.getTime();
	if (status.state === "running") {
		const last = status.lastHeartbeatAt ?? status.stateChangedAt;
		return age(last) > timeouts.heartbeatTimeoutMs ? "heartbeat timeout" : null;
	}
	if (status.state === "provisioning") {
		return age(status.stateChangedAt) > timeouts.provisionTimeoutMs ? "provisioning timeout" : null;
	}
	return null;
}
