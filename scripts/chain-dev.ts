/**
 * Local chain for development: starts the Hardhat dev chain, deploys the FORGE contracts,
 * prints what a backend needs to use them, and runs until Ctrl-C.
 *
 *   node -r @swc-node/register scripts/chain-dev.ts [--port 8545] [--cooldown <seconds>]
 */
import { parseArgs } from "node:util";
import { ethers } from "ethers";
import { deployForgeContracts, forgeChainEnv, FORGE_DECIMALS } from "../src/chain/deploy";
import { startDevChain } from "../test/support/devchain";

/** Hardhat's default, publicly known test mnemonic: these keys must never hold real funds. */
const HARDHAT_TEST_MNEMONIC = "test test test test test test test test test test test junk";

function devPrivateKey(index: number, expectedAddress: string): string | undefined {
	const wallet = ethers.HDNodeWallet.fromPhrase(HARDHAT_TEST_MNEMONIC, undefined, `m/44'/60'/0'/0/${index}`);
	return wallet.address === expectedAddress ? wallet.privateKey : undefined;
}

async function main(): Promise<void> {
	const { values } = parseArgs({
		options: {
			port: { type: "string", default: "8545" },
			cooldown: { type: "string", default: String(7 * 24 * 60 * 60) }
		}
	});
	const started = Date.now();
	const chain = await startDevChain({ port: Number(values.port) });
	const stop = (): void => {
		void chain.stop().finally(() => process.exit(0));
	};
	process.once("SIGINT", stop);
	process.once("SIGTERM", stop);

	const deployment = await deployForgeContracts(chain.url, { stakingCooldownSeconds: BigInt(values.cooldown) });
	const out: string[] = [
		`ForgeFluid dev chain at ${chain.url}, chain id ${chain.chainId} (ready in ${Date.now() - started} ms)`,
		"",
		"Contracts:",
		`  ForgeToken          ${deployment.token}`,
		`  ForgeStaking        ${deployment.staking}  (cooldown ${deployment.stakingCooldownSeconds} s)`,
		`  PaymentRouter       ${deployment.paymentRouter}`,
		`  SmartWalletFactory  ${deployment.smartWalletFactory}`,
		`  treasury            ${deployment.treasury}`,
		`  deployer / owner    ${deployment.deployer}`,
		`  deployed at block   ${deployment.deployedAtBlock}`,
		"",
		"Funded accounts (Hardhat's public test keys, never use them on a real network):"
	];
	deployment.fundedAccounts.forEach(({ address, balance }, index) => {
		const key = devPrivateKey(index, address) ?? "(key not from the default mnemonic)";
		out.push(`  ${address}  ${ethers.formatUnits(balance, FORGE_DECIMALS)} FORGE  ${key}`);
	});
	out.push("", "Environment:");
	for (const [name, value] of Object.entries(forgeChainEnv(deployment))) out.push(`export ${name}=${value}`);
	out.push("", "Ctrl-C to stop.");
	console.log(out.join("\n"));
}

main().catch((err: unknown) => {
	console.error(err);
	process.exit(1);
});
