/**
 * Spawns `scripts/devchain.mjs` (Hardhat 3's in-process chain behind HTTP JSON-RPC) on a
 * random port. A child process because hardhat 3 is ESM-only and Jest runs CommonJS.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";
import { ethers } from "ethers";
import { connectForgeContract, type ForgeDeployment } from "../../src/chain/deploy";

export interface DevChain {
	url: string;
	chainId: number;
	stop(): Promise<void>;
}

const DEVCHAIN_SCRIPT = path.resolve(__dirname, "../../scripts/devchain.mjs");
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

export interface StartDevChainOptions {
	/** 0 (default) picks a free port, which parallel Jest workers need. */
	port?: number;
}

export function startDevChain(opts: StartDevChainOptions = {}): Promise<DevChain> {
	// process.execPath: the pinned Node 24 that runs Jest, never whatever `node` is on PATH.
	// stdin is a pipe the child watches, so a crashed test run does not leak chains.
	const child = spawn(
		process.execPath,
		[DEVCHAIN_SCRIPT, "--port", String(opts.port ?? 0), "--exit-on-stdin-close"],
		{
			stdio: ["pipe", "pipe", "pipe"]
		}
	);
	let stderr = "";
	child.stderr.setEncoding("utf8");
	child.stderr.on("data", (chunk: string) => {
		stderr = (stderr + chunk).slice(-4000);
	});

	const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
	let stopping = false;
	const stop = async (): Promise<void> => {
		stopping = true;
		if (child.exitCode !== null || child.signalCode !== null) return;
		child.kill("SIGTERM");
		const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
		await exited;
		clearTimeout(timer);
		child.stdin.destroy();
	};

	return new Promise<DevChain>((resolve, reject) => {
		let settled = false;
		const fail = (reason: string): void => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			void stop();
			reject(new Error(`devchain did not start: ${reason}${stderr ? `\n${stderr}` : ""}`));
		};
		const timer = setTimeout(() => fail(`no DEVCHAIN_READY within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
		child.once("error", err => fail(err.message));
		const onEarlyExit = (code: number | null, signal: NodeJS.Signals | null): void =>
			fail(`exited with ${signal ?? code}`);
		child.once("exit", onEarlyExit);

		const lines = createInterface({ input: child.stdout });
		lines.on("line", line => {
			const match = /^DEVCHAIN_READY (\S+) (\d+)$/.exec(line);
			if (!match || settled) return;
			settled = true;
			clearTimeout(timer);
			child.off("exit", onEarlyExit);
			// A chain that dies under a running suite shows up as "socket hang up" in every test after;
			// say so, with its last output.
			child.once("exit", (code, signal) => {
				if (!stopping) console.error(`devchain exited unexpectedly (${signal ?? code})\n${stderr}`);
			});
			resolve({ url: match[1]!, chainId: Number(match[2]), stop });
		});
	});
}

/**
 * Stakes `amount` wei of FORGE from `address` (a funded development account the dev chain unlocks)
 * on the deployment's staking contract, then mines `confirmations` blocks so the stake indexer
 * sees it.
 */
export async function stakeOnDevChain(
	provider: ethers.JsonRpcProvider,
	deployment: ForgeDeployment,
	address: string,
	amount: bigint,
	confirmations: number
): Promise<void> {
	const signer = new ethers.JsonRpcSigner(provider, address);
	await (
		await (await connectForgeContract("ForgeToken", deployment.token, signer)).getFunction("approve")(
			deployment.staking,
			amount
		)
	).wait();
	await (
		await (await connectForgeContract("ForgeStaking", deployment.staking, signer)).getFunction("stake")(amount)
	).wait();
	await provider.send("hardhat_mine", [`0x${confirmations.toString(16)}`]);
}
