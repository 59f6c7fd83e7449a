/**
 * Who signed a SIWE message: a plain key (EOA, recovered locally, no RPC), a deployed contract
 * wallet (EIP-1271) or a not-yet-deployed smart account (EIP-6492 wrapper), the last two verified
 * with viem on the JSON-RPC of the message's own chain.
 */
import {
	BaseError,
	HttpRequestError,
	TimeoutError,
	createPublicClient,
	http,
	isErc6492Signature,
	recoverMessageAddress,
	type Hex,
	type PublicClient
} from "viem";

export type WalletKind = "eoa" | "contract" | "counterfactual";

export type SignatureCheck =
	| { valid: true; kind: WalletKind }
	| { valid: false; reason: "mismatch" | "no_rpc" | "rpc_unavailable"; detail: string };

/** The chain could not be asked (network, timeout, misconfiguration), as opposed to a call that answered "no". */
function isUnavailable(err: unknown): boolean {
	if (err instanceof BaseError) return !!err.walk(e => e instanceof HttpRequestError || e instanceof TimeoutError);
	return true;
}

/** A 65-byte r,s,v signature, the only form a plain key produces. */
const EOA_SIGNATURE_HEX_LENGTH = 2 + 65 * 2;

export class WalletSignatureVerifier {
	private readonly clients = new Map<number, { client: PublicClient; checked: Promise<void> | null }>();

	constructor(
		private readonly rpcUrls: Record<number, string>,
		private readonly timeoutMs: number,
		/** Retries per RPC call (CHAIN_RPC_RETRIES). */
		private readonly retries = 1
	) {}

	hasRpc(chainId: number): boolean {
		return this.rpcUrls[chainId] !== undefined;
	}

	private clientFor(chainId: number): { client: PublicClient; checked: Promise<void> | null } | null {
		const url = this.rpcUrls[chainId];
		if (!url) return null;
		let entry = this.clients.get(chainId);
		if (!entry) {
			const client = createPublicClient({
				transport: http(url, { timeout: this.timeoutMs, retryCount: this.retries })
			}) as PublicClient;
			entry = { client, checked: null };
			this.clients.set(chainId, entry);
		}
		return entry;
	}

	/** A misconfigured RPC (another chain than the message names) must not verify anything. */
	private async ensureChain(chainId: number, entry: { client: PublicClient; checked: Promise<void> | null }) {
		entry.checked ??= entry.client.getChainId().then(
			actual => {
				if (actual !== chainId)
					throw new Error(`the RPC configured for chain ${chainId} serves chain ${actual}`);
			},
			err => {
				entry.checked = null; // retry next time: the node may just be down
				throw err;
			}
		);
		await entry.checked;
	}

	async verify(input: { chainId: number; address: Hex; message: string; signature: Hex }): Promise<SignatureCheck> {
		const wrapped = isErc6492Signature(input.signature);
		if (!wrapped && input.signature.length === EOA_SIGNATURE_HEX_LENGTH) {
			try {
				const signer = await recoverMessageAddress({ message: input.message, signature: input.signature });
				if (signer.toLowerCase() === input.address.toLowerCase()) return { valid: true, kind: "eoa" };
			} catch {
				// Not a recoverable ECDSA signature: may still be a contract wallet's.
			}
		}
		const entry = this.clientFor(input.chainId);
		if (!entry)
			return {
				valid: false,
				reason: "no_rpc",
				detail: `Not signed by the address's key, and smart-contract wallets cannot be checked: no RPC is configured for chain ${input.chainId}`
			};
		const mismatch: SignatureCheck = {
			valid: false,
			reason: "mismatch",
			detail: "The signature does not match the address"
		};
		try {
			await this.ensureChain(input.chainId, entry);
		} catch (err) {
			return {
				valid: false,
				reason: "rpc_unavailable",
				detail: `Chain ${input.chainId} could not be asked: ${(err as Error).message.split("\n")[0]}`
			};
		}
		try {
			const ok = await entry.client.verifyMessage({
				address: input.address,
				message: input.message,
				signature: input.signature
			});
			return ok ? { valid: true, kind: wrapped ? "counterfactual" : "contract" } : mismatch;
		} catch (err) {
			// A call that reverted (e.g. a malformed wrapper or a factory that fails) is a bad signature, not an outage.
			if (!isUnavailable(err)) return mismatch;
			return {
				valid: false,
				reason: "rpc_unavailable",
				detail: `Chain ${input.chainId} could not be asked: ${(err as Error).message.split("\n")[0]}`
			};
		}
	}
}
