/**
 * Proof of control of a wallet (Sign-In with Ethereum): a single-use nonce bound to the client that
 * asked for it, and the check of a signed EIP-4361 message against it. The message checks that need no
 * I/O are src/users/siwe.ts; the signature (EOA, EIP-1271 contract wallets, EIP-6492 counterfactual
 * ones) is src/users/signatures.ts.
 */
import { createHash } from "node:crypto";
import type { Hex } from "viem";
import { Unauthorized, Unavailable, Unprocessable } from "../errors";
import type { KeyValueStore } from "../runtime/kv";
import type { UsersConfig } from "./config";
import { checkSiweMessage } from "./siwe";
import type { WalletKind, WalletSignatureVerifier } from "./signatures";
import { newNonceToken, newSiweNonce } from "./tokens";

export interface SiweProof {
	/** Lower-case, as stored. */
	address: string;
	chainId: number;
	kind: WalletKind;
}

export interface SiweInput {
	message: string;
	signature: string;
	nonceToken: string;
}

export interface SiweProofDeps {
	cfg: UsersConfig["siwe"];
	kv: Pick<KeyValueStore, "set" | "getDel">;
	signatures: Pick<WalletSignatureVerifier, "verify">;
	now(): number;
}

const nonceKey = (nonceToken: string) => `users:siwe-nonce:${createHash("sha256").update(nonceToken).digest("hex")}`;

export class SiweProofs {
	constructor(private readonly d: SiweProofDeps) {}

	/** A fresh nonce, the nonceToken that binds it to this client, and what the message must say. */
	async nonce() {
		const cfg = this.d.cfg;
		const nonce = newSiweNonce();
		const nonceToken = newNonceToken();
		const ttlMs = cfg.nonceTtlS * 1000;
		await this.d.kv.set(nonceKey(nonceToken), nonce, ttlMs);
		return {
			nonce,
			nonceToken,
			expiresAt: new Date(this.d.now() + ttlMs).toISOString(),
			domain: cfg.domain,
			uri: cfg.uri,
			chainIds: cfg.chainIds,
			version: "1",
			maxValiditySeconds: cfg.maxValidityS
		};
	}

	/**
	 * A SIWE message proves control of its address only if: it is for us (domain, URI, chain), it is
	 * fresh (issued, not before, expiry), its nonce is the one we gave *this* client and has not been
	 * spent (consumed atomically, so of two parallel uses one wins), and the address signed it.
	 */
	async verify(input: SiweInput): Promise<SiweProof> {
		const check = checkSiweMessage(input.message, this.d.cfg, this.d.now());
		if (!check.ok) {
			if (check.code === "SIWE_INVALID_MESSAGE")
				throw Unprocessable(
					check.message,
					[{ field: "message", message: check.message, type: "siwe" }],
					check.code
				);
			throw Unauthorized(check.message, check.code);
		}
		const { fields } = check;
		const issued = await this.d.kv.getDel(nonceKey(input.nonceToken));
		if (!issued)
			throw Unauthorized("Unknown, expired or already used nonce; ask for a new one", "SIWE_NONCE_INVALID");
		if (issued !== fields.nonce)
			throw Unauthorized("The message's nonce was not issued to this client", "SIWE_NONCE_MISMATCH");
		const verdict = await this.d.signatures.verify({
			chainId: fields.chainId,
			address: fields.address as Hex,
			message: input.message,
			signature: input.signature as Hex
		});
		if (!verdict.valid) {
			if (verdict.reason === "rpc_unavailable") throw Unavailable(verdict.detail, "CHAIN_UNAVAILABLE");
			throw Unauthorized(verdict.detail, "SIWE_SIGNATURE_INVALID");
		}
		return { address: fields.address.toLowerCase(), chainId: fields.chainId, kind: verdict.kind };
	}
}
