/**
 * A platform node in its own process (`bin/forgefluid.ts`, as an operator starts one), for the
 * cluster tests: resolves once the node printed that it is up, rejects with its output if it exits
 * or stays silent for `timeoutMs`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..");

/** `root`: the checkout whose node to start (a benchmark's baseline runs another one). */
export function startForgeNode(env: Record<string, string>, timeoutMs = 60_000, root = ROOT): Promise<ChildProcess> {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, ["-r", "@swc-node/register", "bin/forgefluid.ts"], {
			cwd: root,
			env: { PATH: process.env.PATH ?? "", ...env },
			stdio: ["ignore", "pipe", "pipe"]
		});
		let out = "";
		const name = env.NODE_ID ?? "node";
		const timer = setTimeout(() => reject(new Error(`${name} did not start:\n${out}`)), timeoutMs);
		proc.stdout!.on("data", b => {
			out += b;
			if (out.includes("Press Ctrl-C")) {
				clearTimeout(timer);
				resolve(proc);
			}
		});
		proc.stderr!.on("data", b => (out += b));
		proc.once("exit", code => {
			clearTimeout(timer);
			reject(new Error(`${name} exited ${code}:\n${out}`));
		});
	});
}

/** SIGTERM to every process still running; resolves when all exited. */
export function stopForgeNodes(procs: Iterable<ChildProcess>): Promise<void> {
	return Promise.all(
		[...procs].map(
			p =>
				new Promise<void>(r =>
					p.exitCode != null || p.signalCode != null ? r() : (p.once("exit", () => r()), p.kill("SIGTERM"))
				)
		)
	).then(() => undefined);
}
