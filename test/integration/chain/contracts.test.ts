/**
 * The FORGE contracts on a real dev chain (Hardhat 3 / EDR behind scripts/devchain.mjs):
 * staking with cooldown, invoice payments, and smart-wallet signatures (EIP-1271, EIP-6492).
 */
import { ethers } from "ethers";
import {
	createPublicClient,
	defineChain,
	encodeFunctionData,
	http,
	serializeErc6492Signature,
	type Hex,
	type PublicClient
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { CONTRACT_NAMES, loadArtifacts, type ForgeArtifacts } from "../../../src/chain/compile";
import {
	connectForgeContract,
	createChainProvider,
	DEFAULT_DEV_FUND_AMOUNT,
	deployForgeContracts,
	type ForgeDeployment
} from "../../../src/chain/deploy";
import { startDevChain, type DevChain } from "../../support/devchain";

const COOLDOWN = 3600n;
const FORGE = (n: string): bigint => ethers.parseUnits(n, 18);
const ERC1271_MAGIC = "0x1626ba7e";

/** Sends a contract call and returns the mined receipt, failing on a reverted transaction. */
async function send(contract: ethers.Contract, method: string, ...args: unknown[]): Promise<ethers.TransactionReceipt> {
	const tx = (await contract.getFunction(method)(...args)) as ethers.ContractTransactionResponse;
	const receipt = await tx.wait();
	if (!receipt || receipt.status !== 1) throw new Error(`${method} reverted`);
	return receipt;
}

/** The decoded events `contract` emitted in `receipt`, by name. */
function eventsOf(
	contract: ethers.Contract,
	receipt: ethers.TransactionReceipt,
	name: string
): ethers.LogDescription[] {
	const address = (contract.target as string).toLowerCase();
	return receipt.logs
		.filter(log => log.address.toLowerCase() === address)
		.map(log => contract.interface.parseLog(log))
		.filter((parsed): parsed is ethers.LogDescription => parsed?.name === name);
}

/**
 * The custom error a call reverted with. Decoded here because ethers leaves `revert` empty
 * when the revert surfaces in the signer's gas estimate; errors from every FORGE ABI are
 * known, so a token error bubbling up through the router decodes too.
 */
async function revertOf(promise: Promise<unknown>): Promise<{ name: string; args: unknown[] }> {
	try {
		await promise;
	} catch (err) {
		const data = ethers.isError(err, "CALL_EXCEPTION") ? err.data : undefined;
		const decoded = data ? (await allErrors()).parseError(data) : null;
		if (decoded) return { name: decoded.name, args: [...decoded.args] };
		throw err;
	}
	throw new Error("expected a revert, the call succeeded");
}

async function allErrors(): Promise<ethers.Interface> {
	const artifacts = await loadArtifacts();
	const errors = new Map<string, ethers.JsonFragment>();
	for (const { abi } of Object.values(artifacts)) {
		for (const fragment of abi)
			if (fragment.type === "error") errors.set(fragment.name, fragment as ethers.JsonFragment);
	}
	return new ethers.Interface([...errors.values()]);
}

describe("FORGE contracts on the dev chain", () => {
	let chain: DevChain;
	let deployment: ForgeDeployment;
	let provider: ethers.JsonRpcProvider;
	let accounts: string[];
	let artifacts: ForgeArtifacts;

	const signer = (address: string): ethers.JsonRpcSigner => new ethers.JsonRpcSigner(provider, address);
	const contractAs = (name: Parameters<typeof connectForgeContract>[0], address: string, from: string) =>
		connectForgeContract(name, address, signer(from));
	const latestTimestamp = async (): Promise<bigint> => BigInt((await provider.getBlock("latest"))!.timestamp);

	beforeAll(async () => {
		chain = await startDevChain();
		deployment = await deployForgeContracts(chain.url, { stakingCooldownSeconds: COOLDOWN });
		provider = createChainProvider(chain.url);
		accounts = ((await provider.send("eth_accounts", [])) as string[]).map(a => ethers.getAddress(a));
		artifacts = await loadArtifacts();
	});

	afterAll(async () => {
		provider?.destroy();
		await chain?.stop();
	});

	describe("compile and deploy", () => {
		it("compiles every contract to ABI and creation bytecode", () => {
			expect(Object.keys(artifacts).sort()).toEqual([...CONTRACT_NAMES].sort());
			for (const name of CONTRACT_NAMES) {
				expect(artifacts[name].bytecode).toMatch(/^0x[0-9a-f]{200,}$/);
				expect(artifacts[name].abi.length).toBeGreaterThan(0);
			}
		});

		it("returns the same artifacts object on a second call (memoised)", async () => {
			expect(await loadArtifacts()).toBe(artifacts);
		});

		it("deploys code at every returned address and reports the chain", async () => {
			expect(deployment.chainId).toBe(chain.chainId);
			expect(deployment.chainId).toBe(31337);
			for (const address of [
				deployment.token,
				deployment.staking,
				deployment.paymentRouter,
				deployment.smartWalletFactory
			]) {
				expect(ethers.isAddress(address)).toBe(true);
				expect((await provider.getCode(address)).length).toBeGreaterThan(2);
			}
			expect(deployment.deployer).toBe(accounts[0]);
			expect(deployment.treasury).toBe(accounts[accounts.length - 1]);
		});

		it("deploys the token with its metadata, the owner and dev balances", async () => {
			const token = await connectForgeContract("ForgeToken", deployment.token, provider);
			expect(await token.getFunction("name")()).toBe("ForgeFluid");
			expect(await token.getFunction("symbol")()).toBe("FORGE");
			expect(await token.getFunction("decimals")()).toBe(18n);
			expect(await token.getFunction("owner")()).toBe(deployment.deployer);
			expect(deployment.fundedAccounts.map(f => f.address)).toEqual(accounts.slice(0, 10));
			for (const { address, balance } of deployment.fundedAccounts) {
				expect(balance).toBe(DEFAULT_DEV_FUND_AMOUNT);
				expect(await token.getFunction("balanceOf")(address)).toBe(DEFAULT_DEV_FUND_AMOUNT);
			}
			expect(await token.getFunction("balanceOf")(deployment.treasury)).toBe(0n);
			expect(await token.getFunction("totalSupply")()).toBe(DEFAULT_DEV_FUND_AMOUNT * 10n);
		});

		it("wires staking and the router to the token, cooldown and treasury", async () => {
			const staking = await connectForgeContract("ForgeStaking", deployment.staking, provider);
			const router = await connectForgeContract("PaymentRouter", deployment.paymentRouter, provider);
			expect(await staking.getFunction("token")()).toBe(deployment.token);
			expect(await staking.getFunction("cooldown")()).toBe(COOLDOWN);
			expect(await router.getFunction("token")()).toBe(deployment.token);
			expect(await router.getFunction("treasury")()).toBe(deployment.treasury);
		});

		it("only lets the owner mint", async () => {
			const token = await contractAs("ForgeToken", deployment.token, accounts[5]!);
			const revert = await revertOf(token.getFunction("mint")(accounts[5], 1n));
			expect(revert).toEqual({ name: "OwnableUnauthorizedAccount", args: [accounts[5]] });
		});
	});

	describe("dev chain JSON-RPC", () => {
		const rpc = async (body: unknown): Promise<unknown> => {
			const res = await fetch(chain.url, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify(body)
			});
			return res.json();
		};

		it("answers batches in order with per-request JSON-RPC errors", async () => {
			const replies = await rpc([
				{ jsonrpc: "2.0", id: 1, method: "eth_chainId" },
				{ jsonrpc: "2.0", id: 2, method: "no_such_method" },
				{ jsonrpc: "2.0", id: 3, method: "net_version" }
			]);
			expect(replies).toEqual([
				{ jsonrpc: "2.0", id: 1, result: "0x7a69" },
				{
					jsonrpc: "2.0",
					id: 2,
					error: { code: expect.any(Number), message: expect.stringContaining("no_such_method") }
				},
				{ jsonrpc: "2.0", id: 3, result: "31337" }
			]);
		});

		it("rejects malformed bodies with standard error codes", async () => {
			const parse = await fetch(chain.url, { method: "POST", body: "{not json" }).then(r => r.json());
			expect(parse).toEqual({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } });
			expect(await rpc({ id: 7, method: 42 })).toEqual({
				jsonrpc: "2.0",
				id: 7,
				error: { code: -32600, message: "Invalid Request" }
			});
			expect((await fetch(chain.url)).status).toBe(405);
		});
	});

	describe("staking", () => {
		it("stakes, requests an unstake, refuses to withdraw before the cooldown and pays out after it", async () => {
			const user = accounts[2]!;
			const token = await contractAs("ForgeToken", deployment.token, user);
			const staking = await contractAs("ForgeStaking", deployment.staking, user);
			const startBalance = (await token.getFunction("balanceOf")(user)) as bigint;

			await send(token, "approve", deployment.staking, FORGE("100"));
			const stakeReceipt = await send(staking, "stake", FORGE("100"));
			const [staked] = eventsOf(staking, stakeReceipt, "Staked");
			expect(staked?.args.toObject()).toEqual({ user, amount: FORGE("100"), totalStaked: FORGE("100") });
			expect(await staking.getFunction("stakedOf")(user)).toBe(FORGE("100"));
			expect(await staking.getFunction("totalStaked")()).toBe(FORGE("100"));
			expect(await token.getFunction("balanceOf")(deployment.staking)).toBe(FORGE("100"));

			const requestReceipt = await send(staking, "requestUnstake", FORGE("40"));
			const requestedAt = BigInt((await provider.getBlock(requestReceipt.blockNumber))!.timestamp);
			const availableAt = requestedAt + COOLDOWN;
			const [requested] = eventsOf(staking, requestReceipt, "UnstakeRequested");
			expect(requested?.args.toObject()).toEqual({
				user,
				amount: FORGE("40"),
				availableAt,
				totalStaked: FORGE("60")
			});
			expect(await staking.getFunction("stakedOf")(user)).toBe(FORGE("60"));
			expect([...((await staking.getFunction("pendingOf")(user)) as ethers.Result)]).toEqual([
				FORGE("40"),
				availableAt
			]);

			expect(await revertOf(staking.getFunction("withdraw")())).toEqual({
				name: "CooldownNotOver",
				args: [availableAt]
			});

			// Ten minutes short of the cooldown is still too early. (Not one second short: the next block's
			// time also advances with the wall clock, so a slow machine would cross the line by itself.)
			await provider.send("evm_increaseTime", [Number(COOLDOWN) - 600]);
			await provider.send("evm_mine", []);
			expect(await latestTimestamp()).toBeLessThan(availableAt);
			expect(await revertOf(staking.getFunction("withdraw")())).toEqual({
				name: "CooldownNotOver",
				args: [availableAt]
			});

			await provider.send("evm_increaseTime", [600]);
			const withdrawReceipt = await send(staking, "withdraw");
			const [withdrawn] = eventsOf(staking, withdrawReceipt, "Withdrawn");
			expect(withdrawn?.args.toObject()).toEqual({ user, amount: FORGE("40") });
			expect(await token.getFunction("balanceOf")(user)).toBe(startBalance - FORGE("60"));
			expect([...((await staking.getFunction("pendingOf")(user)) as ethers.Result)]).toEqual([0n, 0n]);
			expect(await staking.getFunction("stakedOf")(user)).toBe(FORGE("60"));
			expect(await revertOf(staking.getFunction("withdraw")())).toEqual({ name: "NothingToWithdraw", args: [] });
		});

		it("rejects zero amounts and unstaking more than is staked", async () => {
			const user = accounts[4]!;
			const token = await contractAs("ForgeToken", deployment.token, user);
			const staking = await contractAs("ForgeStaking", deployment.staking, user);
			expect(await revertOf(staking.getFunction("stake")(0n))).toEqual({ name: "ZeroAmount", args: [] });
			expect(await revertOf(staking.getFunction("requestUnstake")(0n))).toEqual({ name: "ZeroAmount", args: [] });
			await send(token, "approve", deployment.staking, FORGE("5"));
			await send(staking, "stake", FORGE("5"));
			expect(await revertOf(staking.getFunction("requestUnstake")(FORGE("6")))).toEqual({
				name: "InsufficientStake",
				args: [FORGE("6"), FORGE("5")]
			});
		});
	});

	describe("payments", () => {
		it("moves FORGE to the treasury and logs the invoice id", async () => {
			const payer = accounts[3]!;
			const token = await contractAs("ForgeToken", deployment.token, payer);
			const router = await contractAs("PaymentRouter", deployment.paymentRouter, payer);
			const invoiceId = ethers.id("invoice:2f6c1e0a");
			const amount = FORGE("12.5");
			const payerBefore = (await token.getFunction("balanceOf")(payer)) as bigint;
			const treasuryBefore = (await token.getFunction("balanceOf")(deployment.treasury)) as bigint;

			await send(token, "approve", deployment.paymentRouter, amount);
			const receipt = await send(router, "pay", invoiceId, amount);

			expect(await token.getFunction("balanceOf")(payer)).toBe(payerBefore - amount);
			expect(await token.getFunction("balanceOf")(deployment.treasury)).toBe(treasuryBefore + amount);
			const [paid] = eventsOf(router, receipt, "PaymentReceived");
			expect(paid?.args.toObject()).toEqual({
				invoiceId,
				payer,
				token: deployment.token,
				amount,
				treasury: deployment.treasury
			});

			// What the payments service does: find the payment by its indexed invoice id.
			const logs = await provider.getLogs({
				address: deployment.paymentRouter,
				topics: [router.interface.getEvent("PaymentReceived")!.topicHash, invoiceId],
				fromBlock: deployment.deployedAtBlock
			});
			expect(logs).toHaveLength(1);
			expect(logs[0]!.transactionHash).toBe(receipt.hash);
		});

		it("reverts without an allowance and on a zero amount", async () => {
			const payer = accounts[6]!;
			const router = await contractAs("PaymentRouter", deployment.paymentRouter, payer);
			const invoiceId = ethers.id("invoice:no-allowance");
			expect(await revertOf(router.getFunction("pay")(invoiceId, FORGE("1")))).toEqual({
				name: "ERC20InsufficientAllowance",
				args: [deployment.paymentRouter, 0n, FORGE("1")]
			});
			expect(await revertOf(router.getFunction("pay")(invoiceId, 0n))).toEqual({ name: "ZeroAmount", args: [] });
		});
	});

	describe("smart wallets", () => {
		const message = "forgefluid.dev wants you to sign in with your Ethereum account";

		it("validates the owner's signature with EIP-1271 and rejects any other", async () => {
			const owner = ethers.Wallet.createRandom();
			const stranger = ethers.Wallet.createRandom();
			const salt = ethers.id("wallet:1271");
			const factory = await contractAs("SmartWalletFactory", deployment.smartWalletFactory, accounts[0]!);
			const predicted = (await factory.getFunction("getAddress")(owner.address, salt)) as string;
			expect(await provider.getCode(predicted)).toBe("0x");

			const receipt = await send(factory, "createAccount", owner.address, salt);
			expect(eventsOf(factory, receipt, "AccountCreated")[0]?.args.toObject()).toEqual({
				account: predicted,
				owner: owner.address,
				salt
			});
			expect((await provider.getCode(predicted)).length).toBeGreaterThan(2);
			// Idempotent: a second createAccount returns the same wallet and deploys nothing.
			expect(await factory.getFunction("createAccount").staticCall(owner.address, salt)).toBe(predicted);
			expect(
				eventsOf(factory, await send(factory, "createAccount", owner.address, salt), "AccountCreated")
			).toEqual([]);

			const wallet = await connectForgeContract("SmartWallet", predicted, provider);
			expect(await wallet.getFunction("owner")()).toBe(owner.address);
			const hash = ethers.hashMessage(message);
			expect(await wallet.getFunction("isValidSignature")(hash, await owner.signMessage(message))).toBe(
				ERC1271_MAGIC
			);
			expect(await wallet.getFunction("isValidSignature")(hash, await stranger.signMessage(message))).toBe(
				"0xffffffff"
			);
			// Signed a different message: recovers some other address.
			expect(await wallet.getFunction("isValidSignature")(hash, await owner.signMessage(`${message}!`))).toBe(
				"0xffffffff"
			);
			// Garbage must answer "invalid", not revert the verifier.
			expect(await wallet.getFunction("isValidSignature")(hash, "0x1234")).toBe("0xffffffff");
		});

		describe("with viem verifyMessage (EIP-6492)", () => {
			let client: PublicClient;
			beforeAll(() => {
				const devChain = defineChain({
					id: chain.chainId,
					name: "ForgeFluid dev chain",
					nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
					rpcUrls: { default: { http: [chain.url] } }
				});
				client = createPublicClient({ chain: devChain, transport: http(chain.url) });
			});

			it("accepts a wrapped signature from an undeployed wallet, then the plain one once deployed", async () => {
				const owner = privateKeyToAccount(generatePrivateKey());
				const stranger = privateKeyToAccount(generatePrivateKey());
				const salt = ethers.id("wallet:6492") as Hex;
				const factoryAbi = artifacts.SmartWalletFactory.abi;
				const factoryAddress = deployment.smartWalletFactory as Hex;
				const account = (await client.readContract({
					address: factoryAddress,
					abi: factoryAbi,
					functionName: "getAddress",
					args: [owner.address, salt]
				})) as Hex;
				expect(await client.getCode({ address: account })).toBeUndefined();

				const factoryData = encodeFunctionData({
					abi: factoryAbi,
					functionName: "createAccount",
					args: [owner.address, salt]
				});
				const wrap = (signature: Hex): Hex =>
					serializeErc6492Signature({ address: factoryAddress, data: factoryData, signature });
				const ownerSignature = await owner.signMessage({ message });
				const strangerSignature = await stranger.signMessage({ message });

				expect(await client.verifyMessage({ address: account, message, signature: wrap(ownerSignature) })).toBe(
					true
				);
				expect(
					await client.verifyMessage({ address: account, message, signature: wrap(strangerSignature) })
				).toBe(false);
				// Unwrapped, an undeployed wallet has nothing to ask.
				expect(await client.verifyMessage({ address: account, message, signature: ownerSignature })).toBe(
					false
				);
				// Verification only simulated the deployment.
				expect(await client.getCode({ address: account })).toBeUndefined();

				const factory = await contractAs("SmartWalletFactory", deployment.smartWalletFactory, accounts[0]!);
				await send(factory, "createAccount", owner.address, salt);
				expect(await client.getCode({ address: account })).toMatch(/^0x[0-9a-f]+$/);

				expect(await client.verifyMessage({ address: account, message, signature: ownerSignature })).toBe(true);
				expect(await client.verifyMessage({ address: account, message, signature: strangerSignature })).toBe(
					false
				);
				expect(await client.verifyMessage({ address: account, message, signature: wrap(ownerSignature) })).toBe(
					true
				);
			});
		});
	});
});
