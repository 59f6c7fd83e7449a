/**
 * Deploys the ForgeFluid contracts (FORGE token, staking, payment router, smart-wallet
 * factory) to a JSON-RPC node and funds dev accounts. Used by `scripts/chain-dev.ts` and by
 * integration tests against `scripts/devchain.mjs`.
 */
import { ethers } from "ethers";
import { loadArtifacts, type ContractName } from "./compile";

export const FORGE_DECIMALS = 18;
export const DEFAULT_STAKING_COOLDOWN_SECONDS = 7n * 24n * 60n * 60n;
export const DEFAULT_DEV_FUND_AMOUNT = ethers.parseUnits("1000000", FORGE_DECIMALS);
/** Hardhat's dev chain has 20 unlocked accounts; the first 10 get FORGE by default. */
const DEFAULT_FUNDED_ACCOUNT_COUNT = 10;

export interface DeployForgeOptions {
	/** Address of an account unlocked on the node (dev chain), or a signer; default: first node account. */
	deployer?: string | ethers.Signer;
	/** Receives payments; default: the node's last unlocked account, which is not funded, so its balance is payments only. */
	treasury?: string;
	stakingCooldownSeconds?: bigint | number;
	/** Accounts that get `fundAmount` FORGE minted; default: the node's first 10 unlocked accounts. */
	fundAccounts?: readonly string[];
	fundAmount?: bigint;
}

export interface ForgeDeployment {
	rpcUrl: string;
	chainId: number;
	/** Block of the first deployment transaction: where log scanners can start. */
	deployedAtBlock: number;
	deployer: string;
	treasury: string;
	token: string;
	staking: string;
	paymentRouter: string;
	smartWalletFactory: string;
	stakingCooldownSeconds: bigint;
	fundedAccounts: { address: string; balance: bigint }[];
}

/** JSON-RPC provider for a node we deploy to; the caller must `destroy()` it. */
export function createChainProvider(rpcUrl: string): ethers.JsonRpcProvider {
	// No response cache: tests move time and mine blocks between calls and must see it.
	return new ethers.JsonRpcProvider(rpcUrl, undefined, { cacheTimeout: -1 });
}

/** An ethers Contract for a deployed ForgeFluid contract, typed loosely (ABI from solc). */
export async function connectForgeContract(
	name: ContractName,
	address: string,
	runner: ethers.ContractRunner
): Promise<ethers.Contract> {
	const { abi } = (await loadArtifacts())[name];
	return new ethers.Contract(address, abi as ethers.InterfaceAbi, runner);
}

async function deployContract(
	name: ContractName,
	signer: ethers.Signer,
	args: unknown[]
): Promise<{ address: string; blockNumber: number }> {
	const { abi, bytecode } = (await loadArtifacts())[name];
	const factory = new ethers.ContractFactory(abi as ethers.InterfaceAbi, bytecode, signer);
	const contract = await factory.deploy(...args);
	const receipt = await contract.deploymentTransaction()?.wait();
	if (!receipt || receipt.status !== 1) throw new Error(`deploying ${name} failed`);
	return { address: await contract.getAddress(), blockNumber: receipt.blockNumber };
}

export async function deployForgeContracts(rpcUrl: string, opts: DeployForgeOptions = {}): Promise<ForgeDeployment> {
	const provider = createChainProvider(rpcUrl);
	try {
		const chainId = Number((await provider.getNetwork()).chainId);
		const needsNodeAccounts =
			opts.deployer === undefined || opts.treasury === undefined || opts.fundAccounts === undefined;
		const nodeAccounts: string[] = needsNodeAccounts ? await provider.send("eth_accounts", []) : [];
		const nodeAccount = (index: number, what: string): string => {
			const address = nodeAccounts[index];
			if (!address) throw new Error(`node at ${rpcUrl} has no unlocked account for the ${what}; pass it in opts`);
			return ethers.getAddress(address);
		};

		const deployerSigner =
			opts.deployer === undefined || typeof opts.deployer === "string"
				? new ethers.JsonRpcSigner(provider, ethers.getAddress(opts.deployer ?? nodeAccount(0, "deployer")))
				: opts.deployer.connect(provider);
		const deployer = await deployerSigner.getAddress();
		const treasury = ethers.getAddress(opts.treasury ?? nodeAccount(nodeAccounts.length - 1, "treasury"));
		const stakingCooldownSeconds = BigInt(opts.stakingCooldownSeconds ?? DEFAULT_STAKING_COOLDOWN_SECONDS);
		const fundAccounts = (opts.fundAccounts ?? nodeAccounts.slice(0, DEFAULT_FUNDED_ACCOUNT_COUNT)).map(a =>
			ethers.getAddress(a)
		);
		const fundAmount = opts.fundAmount ?? DEFAULT_DEV_FUND_AMOUNT;

		// Sequential: one nonce stream from one deployer, and each step depends on the token.
		const token = await deployContract("ForgeToken", deployerSigner, [deployer]);
		const staking = await deployContract("ForgeStaking", deployerSigner, [token.address, stakingCooldownSeconds]);
		const paymentRouter = await deployContract("PaymentRouter", deployerSigner, [token.address, treasury]);
		const smartWalletFactory = await deployContract("SmartWalletFactory", deployerSigner, []);

		const tokenContract = await connectForgeContract("ForgeToken", token.address, deployerSigner);
		const fundedAccounts: ForgeDeployment["fundedAccounts"] = [];
		if (fundAmount > 0n) {
			for (const address of fundAccounts) {
				const tx = (await tokenContract.getFunction("mint")(
					address,
					fundAmount
				)) as ethers.ContractTransactionResponse;
				await tx.wait();
			}
		}
		for (const address of fundAccounts) {
			fundedAccounts.push({
				address,
				balance: (await tokenContract.getFunction("balanceOf")(address)) as bigint
			});
		}

		return {
			rpcUrl,
			chainId,
			deployedAtBlock: token.blockNumber,
			deployer,
			treasury,
			token: token.address,
			staking: staking.address,
			paymentRouter: paymentRouter.address,
			smartWalletFactory: smartWalletFactory.address,
			stakingCooldownSeconds,
			fundedAccounts
		};
	} finally {
		provider.destroy();
	}
}

/** The environment a backend process needs to talk to a deployment. */
export function forgeChainEnv(deployment: ForgeDeployment): Record<string, string> {
	return {
		CHAIN_RPC_URL: deployment.rpcUrl,
		CHAIN_ID: String(deployment.chainId),
		FORGE_TOKEN_ADDRESS: deployment.token,
		FORGE_STAKING_ADDRESS: deployment.staking,
		FORGE_PAYMENT_ROUTER_ADDRESS: deployment.paymentRouter,
		FORGE_TREASURY_ADDRESS: deployment.treasury,
		FORGE_SMART_WALLET_FACTORY_ADDRESS: deployment.smartWalletFactory
	};
}
