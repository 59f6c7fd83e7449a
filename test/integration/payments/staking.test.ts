/**
 * Staking on the dev chain: indexed positions, the holding period (measured on the chain's clock,
 * moved with evm_increaseTime), the unstake cooldown, tier and discount on ledger entries,
 * stake.changed events, lazy wallet owners, resuming after a restart, and reorgs.
 *
 * `walletOwners` below stands in for the users service's `users.walletOwner` with exactly the contract
 * payments relies on ({ address } → { userId } or null), so owners can be set freely here; the real
 * pair is exercised in test/integration/platform/stake-attribution.test.ts.
 */
import { ethers } from "ethers";
import type { ServiceSchema, Context } from "moleculer";
import { QueryTypes } from "sequelize";
import {
	connectForgeContract,
	createChainProvider,
	deployForgeContracts,
	forgeChainEnv,
	ForgeDeployment
} from "../../../src/chain/deploy";
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import { startDevChain, DevChain } from "../../support/devchain";
import type { ForgeNode } from "../../../app/node";

const CONFIRMATIONS = 2;
const COOLDOWN_S = 3600;
const DAY_S = 86_400;
const FORGE = (n: number) => ethers.parseUnits(String(n), 18);

const owners = new Map<string, string>();
const walletOwners: ServiceSchema = {
	name: "users",
	actions: {
		walletOwner: {
			params: { address: "string" },
			handler(ctx: Context<{ address: string }>) {
				const userId = owners.get(ctx.params.address.toLowerCase());
				return userId ? { userId } : null;
			}
		}
	}
};

let chain: DevChain;
let deployment: ForgeDeployment;
let provider: ethers.JsonRpcProvider;
let accounts: string[];
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };

const startNode = () =>
	startTestNode({
		db,
		services: ["api", "payments"],
		extraServices: [walletOwners],
		env: {
			...forgeChainEnv(deployment),
			CHAIN_CONFIRMATIONS: String(CONFIRMATIONS),
			CHAIN_POLL_MS: "0",
			CHAIN_START_BLOCK: String(deployment.deployedAtBlock),
			RATE_LIMIT_PER_MINUTE: "100000"
		}
	});

beforeAll(async () => {
	chain = await startDevChain();
	deployment = await deployForgeContracts(chain.url, { stakingCooldownSeconds: BigInt(COOLDOWN_S) });
	provider = createChainProvider(chain.url);
	accounts = ((await provider.send("eth_accounts", [])) as string[]).map(a => ethers.getAddress(a));
	db = await createTestDatabase();
	node = await startNode();
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
	provider?.destroy();
	await chain?.stop();
});

type Json = Record<string, any>; // response bodies are checked field by field
const sql = <T extends object>(q: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });
const staking = async (user: string) => {
	const res = await fetch(`${node.baseUrl}/api/v1/staking`, {
		headers: { authorization: `Bearer ${bearerFor(node.config, user)}` }
	});
	expect(res.status).toBe(200);
	return (await res.json()) as Json;
};
const mine = (n: number) => provider.send("hardhat_mine", [`0x${n.toString(16)}`]);
const advance = async (seconds: number) => {
	await provider.send("evm_increaseTime", [seconds]);
	await mine(CONFIRMATIONS);
};
const tick = () => node.broker.call("payments.chainTick", {}) as Promise<Json>;
const stakeEvents = (user: string) =>
	sql<{ payload: Json }>(
		`SELECT payload FROM outbox_events WHERE topic = 'payments.stake.changed' AND payload->>'userId' = $1 ORDER BY id`,
		[user]
	).then(r => r.map(x => x.payload));

async function send(contract: ethers.Contract, method: string, ...args: unknown[]) {
	const tx = (await contract.getFunction(method)(...args)) as ethers.ContractTransactionResponse;
	const receipt = await tx.wait();
	expect(receipt?.status).toBe(1);
	return receipt!;
}
async function stake(from: string, amount: bigint) {
	const s = new ethers.JsonRpcSigner(provider, from);
	await send(await connectForgeContract("ForgeToken", deployment.token, s), "approve", deployment.staking, amount);
	const receipt = await send(await connectForgeContract("ForgeStaking", deployment.staking, s), "stake", amount);
	return new Date((await provider.getBlock(receipt.blockNumber))!.timestamp * 1000).toISOString();
}
async function requestUnstake(from: string, amount: bigint) {
	await send(
		await connectForgeContract("ForgeStaking", deployment.staking, new ethers.JsonRpcSigner(provider, from)),
		"requestUnstake",
		amount
	);
}

describe("holding period, tier and discount", () => {
	test("a stake counts only after 7 days on chain, then sets the tier and the discount recorded on holds", async () => {
		owners.set(accounts[2].toLowerCase(), "stan");
		const since = await stake(accounts[2], FORGE(1000));
		await mine(CONFIRMATIONS);
		await tick();
		const fresh = await staking("stan");
		expect(fresh).toMatchObject({
			chainConfigured: true,
			holdingPeriodMs: 7 * DAY_S * 1000,
			totalStakeWei: FORGE(1000).toString(),
			effectiveStakeWei: "0",
			tier: "free",
			feeDiscountBps: 0,
			boostMs: 0,
			nextSeasonedAt: new Date(Date.parse(since) + 7 * DAY_S * 1000).toISOString()
		});
		expect(fresh.wallets).toEqual([
			{
				address: accounts[2].toLowerCase(),
				activeWei: FORGE(1000).toString(),
				unbondingWei: "0",
				unbondingAvailableAt: null,
				positions: [
					{
						amountWei: FORGE(1000).toString(),
						since,
						countsFrom: new Date(Date.parse(since) + 7 * DAY_S * 1000).toISOString()
					}
				]
			}
		]);
		expect(await stakeEvents("stan")).toEqual([
			{ userId: "stan", positions: [{ amountWei: FORGE(1000).toString(), since }] }
		]);

		await node.broker.call("payments.grant", {
			userId: "stan",
			credits: 10_000,
			operator: "test",
			reason: "test",
			source: "paid"
		});
		expect(
			await node.broker.call("payments.reserve", { userId: "stan", taskId: "stan-1", maxCost: 1000 })
		).toMatchObject({ tier: "free", discountBps: 0, held: 1000 });

		await advance(7 * DAY_S - 120);
		await tick();
		expect(await staking("stan")).toMatchObject({ effectiveStakeWei: "0", tier: "free" });

		await advance(240);
		await tick();
		expect(await staking("stan")).toMatchObject({
			effectiveStakeWei: FORGE(1000).toString(),
			stakeTier: "pro",
			tier: "pro",
			feeDiscountBps: 500,
			boostMs: 30_000
		});
		expect(await node.broker.call("payments.facts", { userId: "stan" })).toMatchObject({
			userId: "stan",
			planTier: "free",
			tier: "pro",
			effectiveStakeWei: FORGE(1000).toString(),
			positions: [{ amountWei: FORGE(1000).toString(), since }]
		});
		expect(await node.broker.call("payments.priorityBoost", { userId: "stan" })).toMatchObject({
			tier: "pro",
			tierBoostMs: 30_000,
			boostMs: 30_000
		});
		const hold = await node.broker.call("payments.reserve", { userId: "stan", taskId: "stan-2", maxCost: 1000 });
		expect(hold).toMatchObject({ tier: "pro", discountBps: 500, held: 950 });
		const [entry] = await sql<{ tier: string; discount_bps: number }>(
			`SELECT tier, discount_bps FROM ledger_transactions WHERE kind = 'reserve' AND cause_id = 'stan-2'`
		);
		expect(entry).toEqual({ tier: "pro", discount_bps: 500 });
	});

	test("a top-up seasons on its own clock; an unstake removes the newest stake first and stops counting at once", async () => {
		await stake(accounts[2], FORGE(9000));
		await mine(CONFIRMATIONS);
		await tick();
		expect(await staking("stan")).toMatchObject({
			totalStakeWei: FORGE(10_000).toString(),
			effectiveStakeWei: FORGE(1000).toString(),
			tier: "pro"
		});
		await advance(7 * DAY_S + 60);
		await tick();
		expect(await staking("stan")).toMatchObject({
			effectiveStakeWei: FORGE(10_000).toString(),
			tier: "team",
			feeDiscountBps: 1000
		});
		await requestUnstake(accounts[2], FORGE(9500));
		await mine(CONFIRMATIONS);
		await tick();
		const after = await staking("stan");
		expect(after).toMatchObject({
			totalStakeWei: FORGE(500).toString(),
			effectiveStakeWei: FORGE(500).toString(),
			tier: "free",
			feeDiscountBps: 0
		});
		expect(after.wallets[0]).toMatchObject({
			unbondingWei: FORGE(9500).toString(),
			unbondingAvailableAt: expect.any(String)
		});
		const events = await stakeEvents("stan");
		expect(events[events.length - 1].positions).toEqual([
			{ amountWei: FORGE(500).toString(), since: expect.any(String) }
		]);
	});
});

describe("cooldown", () => {
	test("a quick stake-then-unstake buys no tier, and the stake stays locked for the cooldown", async () => {
		owners.set(accounts[3].toLowerCase(), "quinn");
		await stake(accounts[3], FORGE(100_000));
		await requestUnstake(accounts[3], FORGE(100_000));
		await mine(CONFIRMATIONS);
		await tick();
		const s = await staking("quinn");
		expect(s).toMatchObject({ totalStakeWei: "0", effectiveStakeWei: "0", tier: "free" });
		const availableAt = Date.parse(s.wallets[0].unbondingAvailableAt);
		const head = (await provider.getBlock("latest"))!.timestamp * 1000;
		expect(availableAt - head).toBeGreaterThan((COOLDOWN_S - 60) * 1000);
		expect(availableAt - head).toBeLessThanOrEqual(COOLDOWN_S * 1000);

		const stakingAsQuinn = await connectForgeContract(
			"ForgeStaking",
			deployment.staking,
			new ethers.JsonRpcSigner(provider, accounts[3])
		);
		await expect(stakingAsQuinn.getFunction("withdraw")()).rejects.toThrow();
		await advance(7 * DAY_S);
		await tick();
		expect(await staking("quinn")).toMatchObject({ effectiveStakeWei: "0", tier: "free" });
		await send(stakingAsQuinn, "withdraw");
		await mine(CONFIRMATIONS);
		await tick();
		expect((await staking("quinn")).wallets[0]).toMatchObject({
			activeWei: "0",
			unbondingWei: "0",
			unbondingAvailableAt: null
		});
	});
});

describe("wallet owners, restarts and reorgs", () => {
	test("a wallet nobody claims yet is indexed by address and attributed once its owner is known", async () => {
		await stake(accounts[5], FORGE(50));
		await stake(accounts[6], FORGE(60));
		await mine(CONFIRMATIONS);
		await tick();
		const rows = await sql<{ address: string; user_id: string | null }>(
			`SELECT address, user_id FROM stake_wallets WHERE address = ANY($1::text[]) ORDER BY address`,
			[[accounts[5].toLowerCase(), accounts[6].toLowerCase()]]
		);
		expect(rows.map(r => r.user_id)).toEqual([null, null]);
		expect((await staking("ursula")).wallets).toEqual([]);

		owners.set(accounts[5].toLowerCase(), "ursula");
		await node.broker.call("payments.refreshWalletOwner", { address: accounts[5] });
		expect((await staking("ursula")).totalStakeWei).toBe(FORGE(50).toString());
		expect(await stakeEvents("ursula")).toHaveLength(1);

		// The periodic pass asks again for wallets whose owner was unknown a while ago.
		owners.set(accounts[6].toLowerCase(), "vera");
		await sql(
			`UPDATE stake_wallets SET owner_checked_at = now() - interval '1 hour' WHERE address = $1 RETURNING address`,
			[accounts[6].toLowerCase()]
		);
		await tick();
		expect((await staking("vera")).totalStakeWei).toBe(FORGE(60).toString());
		expect(await stakeEvents("vera")).toHaveLength(1);
	});

	test("a restarted node resumes from its cursor without indexing anything twice", async () => {
		const [{ block_number: before }] = await sql<{ block_number: string }>(
			`SELECT block_number FROM chain_cursors WHERE name = 'staking'`
		);
		await node.stop();
		owners.set(accounts[4].toLowerCase(), "rita");
		await stake(accounts[4], FORGE(70));
		await mine(CONFIRMATIONS);
		node = await startNode();
		await tick();
		expect((await staking("rita")).totalStakeWei).toBe(FORGE(70).toString());
		const [{ block_number: after }] = await sql<{ block_number: string }>(
			`SELECT block_number FROM chain_cursors WHERE name = 'staking'`
		);
		expect(Number(after)).toBeGreaterThan(Number(before));
		const [{ n, distinct }] = await sql<{ n: string; distinct: string }>(
			`SELECT COUNT(*) AS n, COUNT(DISTINCT (tx_hash, log_index)) AS distinct FROM stake_events`
		);
		expect(n).toBe(distinct);
		expect((await staking("stan")).totalStakeWei).toBe(FORGE(500).toString());
	});

	test("a stake whose block leaves the chain is removed again", async () => {
		owners.set(accounts[7].toLowerCase(), "walt");
		const snapshot = (await provider.send("evm_snapshot", [])) as string;
		await stake(accounts[7], FORGE(2000));
		await mine(CONFIRMATIONS);
		await tick();
		expect((await staking("walt")).totalStakeWei).toBe(FORGE(2000).toString());
		await provider.send("evm_revert", [snapshot]);
		await mine(CONFIRMATIONS + 4);
		await tick();
		expect((await staking("walt")).totalStakeWei).toBe("0");
		const events = await stakeEvents("walt");
		expect(events[events.length - 1]).toEqual({ userId: "walt", positions: [] });
		// Stake that was not reorged out is still there.
		expect((await staking("stan")).totalStakeWei).toBe(FORGE(500).toString());
		expect((await staking("rita")).totalStakeWei).toBe(FORGE(70).toString());
	});

	test("re-indexing from a block rebuilds the same positions", async () => {
		const before = await staking("stan");
		const r = (await node.broker.call("payments.reindexChain", { fromBlock: deployment.deployedAtBlock })) as {
			events: number;
		};
		expect(r.events).toBeGreaterThan(0);
		const after = await staking("stan");
		expect(after.wallets).toEqual(before.wallets);
	});
});
