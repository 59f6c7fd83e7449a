/**
 * A helper process of embedded mode (nats-server, the Python context node): spawned in its own
 * process group so a terminal's Ctrl-C reaches only the platform, which then stops its helpers in
 * order (the context node says goodbye over NATS before NATS goes); output goes to the logger line by
 * line; `stop()` sends SIGTERM and SIGKILL after a grace period. A helper left behind by a platform
 * that was killed (SIGKILL) is found through the link file and stopped at the next start
 * (app/embedded.ts), since a child cannot be tied to its parent's death from Node.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";

export interface HelperLogger {
	info(...a: unknown[]): void;
	warn(...a: unknown[]): void;
	debug(...a: unknown[]): void;
}

export interface Helper {
	readonly child: ChildProcess;
	readonly pid: number;
	/** Resolves with the exit code (or the signal's name) when the process ends. */
	readonly exited: Promise<number | string>;
	/** The last lines it wrote (for the message when it fails to start). */
	tail(): string;
	stop(graceMs?: number): Promise<void>;
}

export function spawnHelper(
	name: string,
	cmd: string,
	args: string[],
	opts: {
		env?: NodeJS.ProcessEnv;
		cwd?: string;
		logger: HelperLogger;
		level?: (line: string) => "info" | "warn" | "debug";
	}
): Helper {
	const child = spawn(cmd, args, {
		env: opts.env ?? process.env,
		cwd: opts.cwd,
		detached: true,
		stdio: ["ignore", "pipe", "pipe"]
	});
	const last: string[] = [];
	const onData = (buf: Buffer) => {
		for (const line of buf.toString("utf8").split("\n")) {
			if (!line.trim()) continue;
			last.push(line);
			if (last.length > 20) last.shift();
			opts.logger[opts.level?.(line) ?? "debug"](`[${name}] ${line}`);
		}
	};
	child.stdout?.on("data", onData);
	child.stderr?.on("data", onData);
	const exited = new Promise<number | string>(resolve => {
		child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
		child.once("error", err => {
			last.push(err.message);
			resolve(`spawn failed: ${err.message}`);
		});
	});
	let stopping: Promise<void> | null = null;
	return {
		child,
		pid: child.pid ?? -1,
		exited,
		tail: () => last.join("\n"),
		stop(graceMs = 10_000) {
			stopping ??= (async () => {
				if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
				child.kill("SIGTERM");
				const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
				await exited;
				clearTimeout(t);
			})();
			return stopping;
		}
	};
}

/** Whether `pid` is a live process whose command line contains `marker` (a pid can be reused). */
export function isProcess(pid: number, marker: string): boolean {
	if (!Number.isInteger(pid) || pid <= 0) return false;
	try {
		process.kill(pid, 0);
	} catch {
		return false;
	}
	try {
		return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker);
	} catch {
		// No /proc (macOS): the signal check is all there is.
		return true;
	}
}
