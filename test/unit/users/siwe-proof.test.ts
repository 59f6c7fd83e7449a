/**
 * src/users/siwe-proof.ts with an in-memory key-value store and a fake signature check: the nonce is
 * single use and bound to the client that asked for it; the signature's verdict maps to 401 or 503.
 */
import { SiweMessage } from "siwe";
import { DomainError } from "../../../src/errors";
import { MemoryKeyValueStore } from "../../../src/runtime/kv";
import type { UsersConfig } from "../../../src/users/config";
import type { SignatureCheck } from "../../../src/users/signatures";
import { SiweProofs } from "../../../src/users/siwe-proof";

const NOW = Date.parse("2026-11-26T12:00:00.000Z");
const ADDRESS = "0xdAE181724fB312Bf39eC202fb5BA54E6F015caD4";
const cfg: UsersConfig["siwe"] = {
	domain: "app.forgefluid.dev",
	uri: "https://app.forgefluid.dev",
	chainIds: [1, 8453],
	maxAgeS: 600,
	maxValidityS: 3600,
	nonceTtlS: 600,
	clockSkewS: 60
};

function message(nonce: string, over: Record<string, unknown> = {}) {
	return new SiweMessage({
		domain: cfg.domain,
		address: ADDRESS,
		statement: "Sign in",
		uri: "https://app.forgefluid.dev/login",
		version: "1",
		chainId: 8453,
		nonce,
		issuedAt: new Date(NOW - 10_000).toISOString(),
		expirationTime: new Date(NOW + 600_000).toISOString(),
		...over
	}).prepareMessage();
}

function setup(verdict: SignatureCheck = { valid: true, kind: "eoa" }) {
	const checked: unknown[] = [];
	const proofs = new SiweProofs({
		cfg,
		kv: new MemoryKeyValueStore(),
		signatures: {
			verify: async input => {
				checked.push(input);
				return verdict;
			}
		},
		now: () => NOW
	});
	return { proofs, checked };
}

const refusal = (p: Promise<unknown>) =>
	p.then(
		() => null,
		(e: DomainError) => ({ status: e.status, code: e.code })
	);

describe("SIWE proofs", () => {
	test("a signed message with the nonce given to this client proves its address (stored lower-case)", async () => {
		const { proofs, checked } = setup({ valid: true, kind: "contract" });
		const n = await proofs.nonce();
		expect(n).toMatchObject({ domain: cfg.domain, chainIds: [1, 8453], version: "1" });
		expect(n.expiresAt).toBe(new Date(NOW + 600_000).toISOString());
		const proof = await proofs.verify({ message: message(n.nonce), signature: "0x01", nonceToken: n.nonceToken });
		expect(proof).toEqual({ address: ADDRESS.toLowerCase(), chainId: 8453, kind: "contract" });
		expect(checked).toEqual([{ chainId: 8453, address: ADDRESS, message: message(n.nonce), signature: "0x01" }]);
	});

	test("a nonce is spent by its first use, even a failed one", async () => {
		const { proofs } = setup({ valid: false, reason: "mismatch", detail: "wrong signer" });
		const n = await proofs.nonce();
		const input = { message: message(n.nonce), signature: "0x01", nonceToken: n.nonceToken };
		expect(await refusal(proofs.verify(input))).toEqual({ status: 401, code: "SIWE_SIGNATURE_INVALID" });
		expect(await refusal(proofs.verify(input))).toEqual({ status: 401, code: "SIWE_NONCE_INVALID" });
	});

	test("another client's nonce in the message does not match this client's token", async () => {
		const { proofs, checked } = setup();
		const mine = await proofs.nonce();
		const theirs = await proofs.nonce();
		expect(
			await refusal(
				proofs.verify({ message: message(theirs.nonce), signature: "0x01", nonceToken: mine.nonceToken })
			)
		).toEqual({ status: 401, code: "SIWE_NONCE_MISMATCH" });
		expect(checked).toEqual([]);
	});

	test("a message for another site is refused before the nonce is spent; a malformed one is a 422", async () => {
		const { proofs } = setup();
		const n = await proofs.nonce();
		expect(
			await refusal(
				proofs.verify({
					message: message(n.nonce, { domain: "evil.example" }),
					signature: "0x01",
					nonceToken: n.nonceToken
				})
			)
		).toEqual({ status: 401, code: "SIWE_DOMAIN_MISMATCH" });
		expect(await refusal(proofs.verify({ message: "hello", signature: "0x01", nonceToken: n.nonceToken }))).toEqual(
			{ status: 422, code: "SIWE_INVALID_MESSAGE" }
		);
		await expect(
			proofs.verify({ message: message(n.nonce), signature: "0x01", nonceToken: n.nonceToken })
		).resolves.toMatchObject({ kind: "eoa" });
	});

	test("a chain that cannot be asked is a 503 CHAIN_UNAVAILABLE, not a bad signature", async () => {
		const { proofs } = setup({ valid: false, reason: "rpc_unavailable", detail: "timeout" });
		const n = await proofs.nonce();
		expect(
			await refusal(proofs.verify({ message: message(n.nonce), signature: "0x01", nonceToken: n.nonceToken }))
		).toEqual({ status: 503, code: "CHAIN_UNAVAILABLE" });
	});
});
