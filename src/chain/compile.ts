/**
 * Compiles the Solidity contracts in `contracts/` with the solc npm package (no Hardhat
 * build pipeline: tests and services only need ABI + creation bytecode).
 *
 * The output is cached in `contracts/build/<sha256>.json`, keyed on the sources, the solc
 * version, the OpenZeppelin version and the compiler settings, so only the first run after a
 * change pays for the compile (solc-js is several seconds).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Abi, Hex } from "viem";

export const CONTRACT_NAMES = [
	"ForgeToken",
	"ForgeStaking",
	"PaymentRouter",
	"SmartWallet",
	"SmartWalletFactory"
] as const;

export type ContractName = (typeof CONTRACT_NAMES)[number];

export interface ContractArtifact {
	abi: Abi;
	/** Creation bytecode, 0x-prefixed; append ABI-encoded constructor args to deploy. */
	bytecode: Hex;
}

export type ForgeArtifacts = Record<ContractName, ContractArtifact>;

/** cancun: supported by every chain we target and by the Hardhat/EDR dev chain. */
const COMPILER_SETTINGS = {
	optimizer: { enabled: true, runs: 200 },
	evmVersion: "cancun",
	outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } }
} as const;

/** The part of the solc npm API we use (its own typings are all `any`). */
interface SolcModule {
	version(): string;
	compile(input: string, callbacks: { import(path: string): { contents: string } | { error: string } }): string;
}

/** The subset of solc's standard JSON output we read. */
interface SolcOutput {
	errors?: { severity: "error" | "warning" | "info"; formattedMessage: string }[];
	contracts?: Record<string, Record<string, { abi: Abi; evm: { bytecode: { object: string } } }>>;
}

interface CacheFile {
	solcVersion: string;
	artifacts: ForgeArtifacts;
}

export class ContractCompileError extends Error {
	constructor(
		message: string,
		readonly diagnostics: string[] = []
	) {
		super(diagnostics.length ? `${message}\n${diagnostics.join("\n")}` : message);
		this.name = "ContractCompileError";
	}
}

/** Walks up from this file to the repo root (works from src/ under swc and from dist/). */
function findProjectRoot(): string {
	let dir = __dirname;
	for (;;) {
		if (existsSync(path.join(dir, "package.json")) && existsSync(path.join(dir, "contracts"))) return dir;
		const parent = path.dirname(dir);
		if (parent === dir) throw new ContractCompileError(`no contracts/ directory above ${__dirname}`);
		dir = parent;
	}
}

function readSources(contractsDir: string): Record<string, { content: string }> {
	const sources: Record<string, { content: string }> = {};
	for (const file of readdirSync(contractsDir)
		.filter(f => f.endsWith(".sol"))
		.sort()) {
		sources[`contracts/${file}`] = { content: readFileSync(path.join(contractsDir, file), "utf8") };
	}
	return sources;
}

function packageVersion(root: string, name: string): string {
	const pkg = JSON.parse(readFileSync(require.resolve(`${name}/package.json`, { paths: [root] }), "utf8"));
	return String(pkg.version);
}

function cacheKey(sources: Record<string, { content: string }>, solcVersion: string, ozVersion: string): string {
	const hash = createHash("sha256");
	hash.update(JSON.stringify({ solcVersion, ozVersion, settings: COMPILER_SETTINGS }));
	for (const [name, { content }] of Object.entries(sources)) hash.update(`\0${name}\0${content}`);
	return hash.digest("hex");
}

function runSolc(root: string, sources: Record<string, { content: string }>): ForgeArtifacts {
	const input = { language: "Solidity", sources, settings: COMPILER_SETTINGS };
	const findImports = (importPath: string): { contents: string } | { error: string } => {
		// Only package imports reach the callback; relative imports within contracts/ are
		// resolved by solc against the sources it already has.
		try {
			return { contents: readFileSync(require.resolve(importPath, { paths: [root] }), "utf8") };
		} catch (err) {
			return { error: `cannot resolve ${importPath}: ${(err as Error).message}` };
		}
	};
	// Loaded lazily: requiring solc-js costs ~300 ms, which a cache hit should not pay.
	// eslint-disable-next-line @typescript-eslint/no-require-imports -- a lazy require keeps the cost off cache hits
	const solc = require("solc") as SolcModule;
	const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports })) as SolcOutput;
	const errors = (output.errors ?? []).filter(e => e.severity === "error");
	if (errors.length)
		throw new ContractCompileError(
			"solc failed",
			errors.map(e => e.formattedMessage)
		);

	const artifacts: Partial<ForgeArtifacts> = {};
	for (const name of CONTRACT_NAMES) {
		const compiled = output.contracts?.[`contracts/${name}.sol`]?.[name];
		if (!compiled) throw new ContractCompileError(`contract ${name} missing from solc output`);
		artifacts[name] = { abi: compiled.abi, bytecode: `0x${compiled.evm.bytecode.object}` };
	}
	return artifacts as ForgeArtifacts;
}

let memoised: Promise<ForgeArtifacts> | undefined;

/**
 * ABI and creation bytecode of every ForgeFluid contract. Compiles on the first call after a
 * source change; later calls (and processes) read the disk cache.
 */
export function loadArtifacts(): Promise<ForgeArtifacts> {
	memoised ??= Promise.resolve()
		.then(loadOrCompile)
		.catch((err: unknown) => {
			memoised = undefined; // let a fixed source be retried in the same process
			throw err;
		});
	return memoised;
}

function loadOrCompile(): ForgeArtifacts {
	const root = findProjectRoot();
	const contractsDir = path.join(root, "contracts");
	const sources = readSources(contractsDir);
	// The npm version pins the bundled soljson build, so it identifies the compiler.
	const solcVersion = packageVersion(root, "solc");
	const key = cacheKey(sources, solcVersion, packageVersion(root, "@openzeppelin/contracts"));
	const buildDir = path.join(contractsDir, "build");
	const cachePath = path.join(buildDir, `${key}.json`);

	if (existsSync(cachePath)) {
		try {
			return (JSON.parse(readFileSync(cachePath, "utf8")) as CacheFile).artifacts;
		} catch {
			// A torn or hand-edited cache file: fall through and rebuild it.
		}
	}

	const artifacts = runSolc(root, sources);
	mkdirSync(buildDir, { recursive: true });
	// Write then rename: parallel Jest workers may compile at the same time and must never
	// read a half-written file.
	const tmpPath = `${cachePath}.${process.pid}.tmp`;
	writeFileSync(tmpPath, JSON.stringify({ solcVersion, artifacts } satisfies CacheFile));
	renameSync(tmpPath, cachePath);
	return artifacts;
}

if (require.main === module) {
	const started = Date.now();
	loadArtifacts().then(
		artifacts => {
			for (const [name, { bytecode }] of Object.entries(artifacts)) {
				console.log(`${name.padEnd(20)} ${(bytecode.length - 2) / 2} bytes`);
			}
			console.log(`compiled or loaded from contracts/build in ${Date.now() - started} ms`);
		},
		(err: unknown) => {
			console.error(err);
			process.exitCode = 1;
		}
	);
}
