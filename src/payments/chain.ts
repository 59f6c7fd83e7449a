/**
 * The payments service's view of the FORGE contracts over JSON-RPC (ethers). Only the events it
 * reads are declared here, so the service needs no compiler at run time.
 */
import { ethers } from "ethers";
import type { ChainSettings } from "./config";
import type { PaymentLog } from "./chain-rules";

const FORGE_EVENTS_ABI = [
	"event PaymentReceived(bytes32 indexed invoiceId, address indexed payer, address indexed token, uint256 amount, address treasury)",
	"event Staked(address indexed user, uint256 amount, uint256 totalStaked)",
	"event UnstakeRequested(address indexed user, uint256 amount, uint256 availableAt, uint256 totalStaked)",
	"event Withdrawn(address indexed user, uint256 amount)"
];

export interface ReceiptFacts {
	txHash: string;
	status: number;
	blockNumber: number;
	blockHash: string;
	payments: PaymentLog[];
}

export interface RawStakeLog {
	txHash: string;
	logIndex: number;
	blockNumber: number;
	blockHash: string;
	address: string;
	kind: "staked" | "unstake_requested" | "withdrawn";
	amountWei: bigint;
	totalWei: bigint | null;
	availableAt: Date | null;
}

export class ForgeChain {
	readonly provider: ethers.JsonRpcProvider;
	readonly iface = new ethers.Interface(FORGE_EVENTS_ABI);
	private readonly paymentTopic = this.iface.getEvent("PaymentReceived")!.topicHash;
	private readonly stakeTopics = ["Staked", "UnstakeRequested", "Withdrawn"].map(
		n => this.iface.getEvent(n)!.topicHash
	);

	constructor(
		readonly settings: ChainSettings & {
			rpcUrl: string;
			chainId: number;
			token: string;
			staking: string;
			router: string;
			treasury: string;
			/** Per-call timeout (CHAIN_RPC_TIMEOUT_MS; ethers' own default is 5 minutes). */
			rpcTimeoutMs?: number;
		}
	) {
		const request = new ethers.FetchRequest(settings.rpcUrl);
		request.timeout = settings.rpcTimeoutMs ?? 5000;
		// No response cache (cacheTimeout -1): confirmations and reorg checks must see the chain as it is now.
		this.provider = new ethers.JsonRpcProvider(request, settings.chainId, {
			cacheTimeout: -1,
			staticNetwork: true
		});
	}

	async head(): Promise<number> {
		return this.provider.getBlockNumber();
	}

	/** The canonical block at a height: its hash and time, or null above the head. */
	async block(n: number): Promise<{ hash: string; time: Date } | null> {
		const b = await this.provider.getBlock(n);
		return b?.hash ? { hash: b.hash, time: new Date(b.timestamp * 1000) } : null;
	}

	/** The mined receipt of a transaction with its router payment logs, or null if unknown / not mined. */
	async receipt(txHash: string): Promise<ReceiptFacts | null> {
		const r = await this.provider.getTransactionReceipt(txHash);
		if (!r || r.blockHash == null) return null;
		const payments: PaymentLog[] = [];
		for (const log of r.logs) {
			if (log.topics[0] !== this.paymentTopic) continue;
			let parsed: ethers.LogDescription | null;
			try {
				parsed = this.iface.parseLog(log);
			} catch {
				continue; // same topic, different layout: not a router log
			}
			if (!parsed) continue;
			payments.push({
				address: log.address.toLowerCase(),
				logIndex: log.index,
				invoiceId: String(parsed.args.invoiceId).toLowerCase(),
				payer: String(parsed.args.payer).toLowerCase(),
				token: String(parsed.args.token).toLowerCase(),
				amountWei: parsed.args.amount as bigint,
				treasury: String(parsed.args.treasury).toLowerCase()
			});
		}
		return {
			txHash: r.hash.toLowerCase(),
			status: r.status ?? 0,
			blockNumber: r.blockNumber,
			blockHash: r.blockHash,
			payments
		};
	}

	async stakeLogs(fromBlock: number, toBlock: number): Promise<RawStakeLog[]> {
		const logs = await this.provider.getLogs({
			address: this.settings.staking,
			fromBlock,
			toBlock,
			topics: [this.stakeTopics]
		});
		const out: RawStakeLog[] = [];
		for (const log of logs) {
			const parsed = this.iface.parseLog(log);
			if (!parsed) continue;
			const base = {
				txHash: log.transactionHash.toLowerCase(),
				logIndex: log.index,
				blockNumber: log.blockNumber,
				blockHash: log.blockHash,
				address: String(parsed.args.user).toLowerCase(),
				amountWei: parsed.args.amount as bigint
			};
			if (parsed.name === "Staked")
				out.push({ ...base, kind: "staked", totalWei: parsed.args.totalStaked as bigint, availableAt: null });
			else if (parsed.name === "UnstakeRequested")
				out.push({
					...base,
					kind: "unstake_requested",
					totalWei: parsed.args.totalStaked as bigint,
					availableAt: new Date(Number(parsed.args.availableAt as bigint) * 1000)
				});
			else out.push({ ...base, kind: "withdrawn", totalWei: null, availableAt: null });
		}
		return out.sort((a, b) => a.blockNumber - b.blockNumber || a.logIndex - b.logIndex);
	}

	close() {
		this.provider.destroy();
	}
}
