/**
 * Sign-In with Ethereum for integration tests over the gateway: a nonce, an EIP-4361 message for an
 * address (fields can be overridden to build each rejection), a signed proof, and a sign-in with it.
 * `call` is a client that takes full paths (`/api/v1/...`), as test/integration/users/http.ts makes.
 */
import { ethers } from "ethers";
import { SiweMessage } from "siwe";
import type { PrivateKeyAccount } from "viem/accounts";

type Call<R extends { status: number; json: any }> = (
	method: string,
	path: string,
	init?: { body?: unknown; token?: string; headers?: Record<string, string> }
) => Promise<R>;

export interface SiweNonce {
	nonce: string;
	nonceToken: string;
}

export function siweClient<R extends { status: number; json: any }>(
	call: Call<R>,
	opts: { domain: string; uri: string; chainId: number }
) {
	async function getNonce(): Promise<SiweNonce> {
		const r = await call("GET", "/api/v1/auth/siwe/nonce");
		expect(r.status).toBe(200);
		return r.json;
	}

	/** A well-formed message for `address`; fields can be overridden to build each rejection. */
	function message(address: string, nonce: string, over: Partial<Record<string, unknown>> = {}): string {
		const now = Date.now();
		return new SiweMessage({
			domain: opts.domain,
			address: ethers.getAddress(address),
			statement: "Sign in to ForgeFluid",
			uri: opts.uri,
			version: "1",
			chainId: opts.chainId,
			nonce,
			issuedAt: new Date(now - 5_000).toISOString(),
			expirationTime: new Date(now + 10 * 60_000).toISOString(),
			...over
		}).prepareMessage();
	}

	/** A fresh nonce's message signed by `account`: the body of a sign-in or of a wallet link. */
	async function proof(account: PrivateKeyAccount, over: Partial<Record<string, unknown>> = {}) {
		const n = await getNonce();
		const msg = message(account.address, n.nonce, over);
		return { message: msg, signature: await account.signMessage({ message: msg }), nonceToken: n.nonceToken };
	}

	async function signIn(
		account: PrivateKeyAccount,
		over: Partial<Record<string, unknown>> = {},
		headers: Record<string, string> = {}
	): Promise<R> {
		return call("POST", "/api/v1/auth/siwe/verify", { body: await proof(account, over), headers });
	}

	return { getNonce, message, proof, signIn };
}
