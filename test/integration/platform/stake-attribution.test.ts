/**
 * A wallet linked with a SIWE proof in `users` owns the stake that `payments` indexes from the chain:
 * payments asks users.walletOwner, publishes payments.stake.changed durably, and users shows the
 * stake on /users/me. Real users and payments services, the dev chain, PostgreSQL, Redis, RabbitMQ.
 */
import { ethers } from "ethers";
import { privateKeyToAccount } from "viem/accounts";
import { startChainPlatform, type ChainPlatform } from "../../support/chain-platform";
import { stakeOnDevChain } from "../../support/devchain";
import { signUp } from "../../support/sign-up";
import { siweClient } from "../../support/siwe";
import { httpClient } from "../users/http";

jest.setTimeout(90_000);

// Hardhat's well-known development account #3 (funded with FORGE by deployForgeContracts).
const WALLET = privateKeyToAccount("0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6");
const CONFIRMATIONS = 2;

let p: ChainPlatform;
const siwe = siweClient(
	httpClient(() => p.node.baseUrl),
	{ domain: "localhost:3000", uri: "http://localhost:3000", chainId: 31337 }
);

async function api(method: string, path: string, token?: string, body?: unknown) {
	const res = await fetch(p.node.baseUrl + "/api/v1" + path, {
		method,
		headers: {
			...(token ? { authorization: `Bearer ${token}` } : {}),
			...(body ? { "content-type": "application/json" } : {})
		},
		body: body ? JSON.stringify(body) : undefined
	});
	const text = await res.text();
	return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

beforeAll(async () => {
	p = await startChainPlatform(["api", "users", "payments"], deployment => ({
		AUTH_SESSION_CHECK: "true",
		CHAIN_CONFIRMATIONS: String(CONFIRMATIONS),
		CHAIN_POLL_MS: "0",
		CHAIN_START_BLOCK: String(deployment.deployedAtBlock),
		RATE_LIMIT_ANON_PER_MINUTE: "100000",
		// The node listens on an ephemeral port; the messages name the public origin.
		SIWE_DOMAIN: "localhost:3000",
		SIWE_URI: "http://localhost:3000"
	}));
});
afterAll(() => p?.close());

test("a linked wallet's stake is attributed to its owner across users and payments", async () => {
	expect((await p.provider.send("eth_accounts", [])).map((a: string) => a.toLowerCase())).toContain(
		WALLET.address.toLowerCase()
	);
	const reg = await signUp(p.node, "staker@example.com", "a long enough passphrase");
	const token: string = reg.accessToken;
	const userId: string = reg.userId;

	// Stake first, while nobody owns the wallet: payments indexes it by address.
	const amount = ethers.parseUnits("1500", 18);
	await stakeOnDevChain(p.provider, p.deployment, WALLET.address, amount, CONFIRMATIONS);
	await p.node.broker.call("payments.chainTick", {});
	expect((await api("GET", "/staking", token)).json.totalStakeWei).toBe("0");

	// Link the wallet with a SIWE proof; users announces the new owner to payments.
	const linked = await api(
		"POST",
		"/users/me/wallets",
		token,
		await siwe.proof(WALLET, { statement: "Link my wallet" })
	);
	expect(linked.status).toBe(201);
	expect(await p.node.broker.call("users.walletOwner", { address: WALLET.address })).toEqual({ userId });

	// Payments now attributes the position to the user, and users receives the durable stake event.
	let staking: { totalStakeWei: string } | undefined;
	let me: { forge: unknown } | undefined;
	for (let i = 0; i < 50; i++) {
		staking = (await api("GET", "/staking", token)).json;
		me = (await api("GET", "/users/me", token)).json;
		if (staking!.totalStakeWei === amount.toString() && JSON.stringify(me!.forge).includes(amount.toString()))
			break;
		await new Promise(r => setTimeout(r, 200));
	}
	expect(staking!.totalStakeWei).toBe(amount.toString());
	expect(JSON.stringify(me!.forge)).toContain(amount.toString());
});
