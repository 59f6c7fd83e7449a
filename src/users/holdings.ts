/**
 * $FORGE balances of linked wallets, read over JSON-RPC with ethers and cached briefly in the
 * key-value store (Redis in cluster mode), so a profile view does not cost one RPC call per wallet.
 */
import { ethers } from "ethers";
import type { KeyValueStore } from "../runtime/kv";

export interface WalletBalance {
	address: string;
	/** Decimal string of wei; null when the chain could not be asked. */
	balanceWei: string | null;
	fetchedAt: string | null;
	error?: string;
}

const ERC20_BALANCE_ABI = ["function balanceOf(address owner) view returns (uint256)"];

export class ForgeBalanceReader {
	private readonly provider: ethers.JsonRpcProvider;
	private readonly token: ethers.Contract;

	constructor(
		private readonly opts: {
			rpcUrl: string;
			chainId: number;
			tokenAddress: string;
			timeoutMs: number;
			ttlS: number;
			kv: KeyValueStore;
		}
	) {
		const request = new ethers.FetchRequest(opts.rpcUrl);
		request.timeout = opts.timeoutMs;
		const network = ethers.Network.from(opts.chainId);
		// A static network: no chain-id probe that retries forever while the node is down.
		this.provider = new ethers.JsonRpcProvider(request, network, { staticNetwork: network, cacheTimeout: -1 });
		this.token = new ethers.Contract(opts.tokenAddress, ERC20_BALANCE_ABI, this.provider);
	}

	private key(address: string) {
		return `users:forge-balance:${this.opts.chainId}:${this.opts.tokenAddress.toLowerCase()}:${address.toLowerCase()}`;
	}

	/** Balances in the order given; `refresh` skips the cache. One wallet's failure does not hide the others. */
	async balances(addresses: string[], refresh = false): Promise<WalletBalance[]> {
		return Promise.all(
			addresses.map(async address => {
				if (!refresh) {
					const cached = await this.opts.kv.get(this.key(address));
					if (cached)
						return { address, ...(JSON.parse(cached) as { balanceWei: string; fetchedAt: string }) };
				}
				try {
					const wei = (await this.token.getFunction("balanceOf")(address)) as bigint;
					const entry = { balanceWei: wei.toString(), fetchedAt: new Date().toISOString() };
					await this.opts.kv.set(this.key(address), JSON.stringify(entry), this.opts.ttlS * 1000);
					return { address, ...entry };
				} catch (err) {
					const e = err as { shortMessage?: string; message?: string };
					return {
						address,
						balanceWei: null,
						fetchedAt: null,
						error: `chain not reachable: ${(e.shortMessage ?? e.message ?? "error").split("\n")[0]}`
					};
				}
			})
		);
	}

	destroy() {
		this.provider.destroy();
	}
}
