/** Spawns cluster nodes as separate processes over the real NATS, each with the same isolated namespace. */
import { ChildProcess, spawn } from "node:child_process";
import path from "node:path";

export interface SpawnedNode {
	nodeID: string;
	port: number;
	proc: ChildProcess;
	output: string[];
	kill(signal?: NodeJS.Signals): Promise<void>;
}

const ROOT = path.resolve(__dirname, "..", "..");

export function spawnNode(script: string, env: Record<string, string>, timeoutMs = 30_000): Promise<SpawnedNode> {
	return new Promise((resolve, reject) => {
		const proc = spawn(process.execPath, ["-r", "@swc-node/register", path.join(ROOT, script)], {
			cwd: ROOT,
			env: { ...process.env, ...env },
			stdio: ["ignore", "pipe", "pipe"]
		});
		const output: string[] = [];
		const timer = setTimeout(() => {
			proc.kill("SIGKILL");
			reject(new Error(`node did not start in ${timeoutMs} ms:\n${output.join("")}`));
		}, timeoutMs);
		const onData = (buf: Buffer) => {
			const s = buf.toString();
			output.push(s);
			const m = /NODE_READY (\S+) (\d+)/.exec(s);
			if (m) {
				clearTimeout(timer);
				resolve({
					nodeID: m[1],
					port: Number(m[2]),
					proc,
					output,
					kill: (signal = "SIGTERM") =>
						new Promise<void>(res => {
							if (proc.exitCode != null || proc.signalCode != null) return res();
							proc.once("exit", () => res());
							proc.kill(signal);
						})
				});
			}
		};
		proc.stdout!.on("data", onData);
		proc.stderr!.on("data", (b: Buffer) => output.push(b.toString()));
		proc.once("exit", code => {
			clearTimeout(timer);
			reject(new Error(`node exited with ${code}:\n${output.join("")}`));
		});
	});
}
