/**
 * Starts the Python context service (context/, `python -m forgefluid_context`) as a child process for
 * a test: the venv that ./forge creates (FORGE_PYTHON, else .tools/venv/bin/python), the test's NATS
 * namespace and database. Resolves once the node says it is ready.
 */
import { spawn, ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

export const ROOT = path.resolve(__dirname, "../..");
export const PYTHON = process.env.FORGE_PYTHON ?? path.join(ROOT, ".tools/venv/bin/python");

export interface ContextNode {
	nodeId: string;
	proc: ChildProcess;
	output(): string;
	/** SIGTERM and wait for the exit (the node says DISCONNECT first). */
	stop(): Promise<number | null>;
	/** SIGKILL: no goodbye; the others notice through heartbeats. */
	kill(): Promise<void>;
}

export async function startContextNode(env: Record<string, string>, readyTimeoutMs = 30_000): Promise<ContextNode> {
	if (!existsSync(PYTHON))
		throw new Error(`no Python environment at ${PYTHON}: run ./forge once (it creates .tools/venv)`);
	const nodeId = env.NODE_ID;
	const proc = spawn(PYTHON, ["-m", "forgefluid_context"], {
		cwd: ROOT,
		env: {
			PATH: process.env.PATH ?? "",
			PYTHONPATH: path.join(ROOT, "context/src"),
			PYTHONUNBUFFERED: "1",
			...env
		},
		stdio: ["ignore", "pipe", "pipe"]
	});
	let out = "";
	const exited = new Promise<number | null>(resolve => proc.once("exit", code => resolve(code)));
	await new Promise<void>((resolve, reject) => {
		const timer = setTimeout(() => {
			proc.kill("SIGKILL"); // a node that never said ready is not left behind
			reject(new Error(`context node ${nodeId} not ready:\n${out}`));
		}, readyTimeoutMs);
		const onData = (b: Buffer) => {
			out += b.toString();
			if (out.includes(`node ${nodeId} ready`)) {
				clearTimeout(timer);
				resolve();
			}
		};
		proc.stdout!.on("data", onData);
		proc.stderr!.on("data", onData);
		proc.once("exit", code => {
			clearTimeout(timer);
			reject(new Error(`context node ${nodeId} exited with ${code}:\n${out}`));
		});
	});
	return {
		nodeId,
		proc,
		output: () => out,
		async stop() {
			if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
			proc.kill("SIGTERM");
			return exited;
		},
		async kill() {
			if (proc.exitCode !== null || proc.signalCode !== null) return;
			proc.kill("SIGKILL");
			await exited;
		}
	};
}
