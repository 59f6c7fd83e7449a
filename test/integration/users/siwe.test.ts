/**
 * Sign-In with Ethereum through the real gateway, against the in-process EVM dev chain: every
 * rejection the issue lists, plain keys, a deployed EIP-1271 wallet, an EIP-6492 counterfactual
 * account before and after deployment, wallet linking, and $FORGE holdings read from the chain.
 */
import { ethers } from "ethers";
import { encodeFunctionData, serializeErc6492Signature, type Hex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { loadArtifacts } from "../../../src/chain/compile";
import { connectForgeContract, type ForgeDeployment } from "../../../src/chain/deploy";
import type { ForgeNode } from "../../../app/node";
import { runtimeOf } from "../../../src/runtime/runtime";
import { startChainPlatform, type ChainPlatform } from "../../support/chain-platform";
import { uniqueId } from "../../support/env";
import { expectError, httpClient } from "./http";
import { signUp } from "../../support/sign-up";
import { siweClient } from "../../support/siwe";

jest.setTimeout(120_000);

const DOMAIN = "localhost:3000";
const URI = "http://localhost:3000";

let platform: ChainPlatform;
let deployment: ForgeDeployment;
let provider: ethers.JsonRpcProvider;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);

const { getNonce, message, proof, signIn } = siweClient(call, { domain: DOMAIN, uri: URI, chainId: 31337 });

const sendTx = async (contract: ethers.Contract, method: string, ...args: unknown[]) => {
	const tx = (await contract.getFunction(method)(...args)) as ethers.ContractTransactionResponse;
	await tx.wait();
};

beforeAll(async () => {
	platform = await startChainPlatform(["api", "users"], {
		AUTH_SESSION_CHECK: "true",
		RATE_LIMIT_ANON_PER_MINUTE: "100000",
		RATE_LIMIT_PER_MINUTE: "100000",
		// Chain 1 is accepted but has no RPC: plain keys still sign in there, smart accounts cannot.
		SIWE_CHAIN_IDS: "31337,1",
		SIWE_MAX_AGE_S: "600",
		// The node listens on an ephemeral port; the messages name the public origin.
		SIWE_DOMAIN: DOMAIN,
		SIWE_URI: URI
	});
	({ deployment, provider, node } = platform);
});

afterAll(() => platform?.close());

describe("nonces", () => {
	test("the nonce endpoint gives a fresh nonce, a binding token and the expected message fields", async () => {
		const r = await call("GET", "/api/v1/auth/siwe/nonce");
		expect(r.json).toEqual({
			nonce: expect.stringMatching(/^[A-Za-z0-9]{24}$/),
			nonceToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
			expiresAt: expect.any(String),
			domain: DOMAIN,
			uri: URI,
			chainIds: [31337, 1],
			version: "1",
			maxValiditySeconds: 86400
		});
		expect((await getNonce()).nonce).not.toBe(r.json.nonce);
	});
});

describe("rejections", () => {
	const alice = privateKeyToAccount(generatePrivateKey());
	const cases: Array<[string, Partial<Record<string, unknown>>, number, string]> = [
		["wrong domain", { domain: "evil.example" }, 401, "SIWE_DOMAIN_MISMATCH"],
		["wrong port", { domain: "localhost:3001" }, 401, "SIWE_DOMAIN_MISMATCH"],
		["wrong URI", { uri: "https://evil.example/login" }, 401, "SIWE_URI_MISMATCH"],
		["wrong URI port", { uri: "http://localhost:8080" }, 401, "SIWE_URI_MISMATCH"],
		["wrong chain id", { chainId: 5 }, 401, "SIWE_CHAIN_NOT_ALLOWED"],
		[
			"expired",
			{
				issuedAt: new Date(Date.now() - 120_000).toISOString(),
				expirationTime: new Date(Date.now() - 60_000).toISOString()
			},
			401,
			"SIWE_EXPIRED"
		],
		[
			"not-before in the future",
			{ notBefore: new Date(Date.now() + 5 * 60_000).toISOString() },
			401,
			"SIWE_NOT_YET_VALID"
		],
		["stale issuedAt", { issuedAt: new Date(Date.now() - 30 * 60_000).toISOString() }, 401, "SIWE_STALE"],
		[
			"issuedAt in the future",
			{
				issuedAt: new Date(Date.now() + 10 * 60_000).toISOString(),
				expirationTime: new Date(Date.now() + 20 * 60_000).toISOString()
			},
			401,
			"SIWE_ISSUED_IN_FUTURE"
		],
		["no expirationTime", { expirationTime: undefined }, 401, "SIWE_EXPIRATION_REQUIRED"],
		[
			"validity too long",
			{ expirationTime: new Date(Date.now() + 3 * 86_400_000).toISOString() },
			401,
			"SIWE_VALIDITY_TOO_LONG"
		]
	];
	test.each(cases)("%s", async (_name, over, status, code) => {
		expectError(await signIn(alice, over), status, code);
	});

	test("a rejected message does not spend the nonce (the check runs before), but a used one is gone", async () => {
		const n = await getNonce();
		const bad = message(alice.address, n.nonce, { domain: "evil.example" });
		expectError(
			await call("POST", "/api/v1/auth/siwe/verify", {
				body: { message: bad, signature: await alice.signMessage({ message: bad }), nonceToken: n.nonceToken }
			}),
			401,
			"SIWE_DOMAIN_MISMATCH"
		);
		const good = message(alice.address, n.nonce);
		const body = { message: good, signature: await alice.signMessage({ message: good }), nonceToken: n.nonceToken };
		expect((await call("POST", "/api/v1/auth/siwe/verify", { body })).status).toBe(200);
		expectError(await call("POST", "/api/v1/auth/siwe/verify", { body }), 401, "SIWE_NONCE_INVALID"); // reused
	});

	test("unknown nonce: a nonce the server never issued", async () => {
		const n = await getNonce();
		const msg = message(alice.address, "NeverIssuedNonce12345678");
		const r = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg, signature: await alice.signMessage({ message: msg }), nonceToken: n.nonceToken }
		});
		expectError(r, 401, "SIWE_NONCE_MISMATCH");
		const unknownToken = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg, signature: await alice.signMessage({ message: msg }), nonceToken: "A".repeat(43) }
		});
		expectError(unknownToken, 401, "SIWE_NONCE_INVALID");
	});

	test("other-session nonce: a nonce issued to another client is refused", async () => {
		const mine = await getNonce();
		const theirs = await getNonce();
		const msg = message(alice.address, theirs.nonce);
		const r = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg, signature: await alice.signMessage({ message: msg }), nonceToken: mine.nonceToken }
		});
		expectError(r, 401, "SIWE_NONCE_MISMATCH");
		// Without its token, the other client's nonce cannot be burnt either: its owner still signs in.
		const own = message(alice.address, theirs.nonce);
		const ok = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: own, signature: await alice.signMessage({ message: own }), nonceToken: theirs.nonceToken }
		});
		expect(ok.status).toBe(200);
	});

	test("tampered message and wrong signer", async () => {
		const n = await getNonce();
		const msg = message(alice.address, n.nonce);
		const signature = await alice.signMessage({ message: msg });
		const tampered = msg.replace("Sign in to ForgeFluid", "Sign in to ForgeFluid and pay");
		expectError(
			await call("POST", "/api/v1/auth/siwe/verify", {
				body: { message: tampered, signature, nonceToken: n.nonceToken }
			}),
			401,
			"SIWE_SIGNATURE_INVALID"
		);

		const n2 = await getNonce();
		const msg2 = message(alice.address, n2.nonce);
		const mallory = privateKeyToAccount(generatePrivateKey());
		const r = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg2, signature: await mallory.signMessage({ message: msg2 }), nonceToken: n2.nonceToken }
		});
		expectError(r, 401, "SIWE_SIGNATURE_INVALID");
	});

	test("a message that is not canonical EIP-4361 text, or names a lower-case address, is malformed", async () => {
		const n = await getNonce();
		const msg = message(alice.address, n.nonce);
		for (const bad of [
			msg + "\n",
			msg.replace(alice.address, alice.address.toLowerCase()),
			msg.replace("Version: 1", "Version: 2")
		]) {
			const r = await call("POST", "/api/v1/auth/siwe/verify", {
				body: { message: bad, signature: await alice.signMessage({ message: bad }), nonceToken: n.nonceToken }
			});
			expectError(r, 422, "SIWE_INVALID_MESSAGE");
		}
	});

	test("two parallel logins with one nonce give exactly one success", async () => {
		const bob = privateKeyToAccount(generatePrivateKey());
		const n = await getNonce();
		const msg = message(bob.address, n.nonce);
		const body = { message: msg, signature: await bob.signMessage({ message: msg }), nonceToken: n.nonceToken };
		const results = await Promise.all(
			Array.from({ length: 8 }, () => call("POST", "/api/v1/auth/siwe/verify", { body }))
		);
		expect(results.map(r => r.status).sort()).toEqual([200, 401, 401, 401, 401, 401, 401, 401]);
		for (const r of results.filter(x => x.status === 401)) expectError(r, 401, "SIWE_NONCE_INVALID");
	});
});

describe("sign-in", () => {
	test("a plain key signs in; the first sign-in creates the account, the next finds it", async () => {
		const carol = privateKeyToAccount(generatePrivateKey());
		const first = await signIn(carol);
		expect(first.status).toBe(200);
		expect(first.json).toEqual(
			expect.objectContaining({
				created: true,
				accessToken: expect.any(String),
				refreshToken: expect.any(String)
			})
		);
		expect(first.json.user).toEqual(expect.objectContaining({ email: null, role: "user" }));
		const again = await signIn(carol);
		expect(again.json.created).toBe(false);
		expect(again.json.user.id).toBe(first.json.user.id);
		const me = await call("GET", "/api/v1/users/me", { token: again.json.accessToken });
		expect(me.json.wallets).toEqual([
			{ address: carol.address, chainId: 31337, kind: "eoa", linkedAt: expect.any(String) }
		]);
		expect(me.json.hasPassword).toBe(false);
		// Plain keys need no RPC: chain 1 has none configured.
		expect((await signIn(carol, { chainId: 1 })).json.user.id).toBe(first.json.user.id);
	});

	test("a deployed EIP-1271 wallet signs in with its owner's key; another key fails", async () => {
		const owner = privateKeyToAccount(generatePrivateKey());
		const stranger = privateKeyToAccount(generatePrivateKey());
		const salt = ethers.id(`wallet:${uniqueId("1271")}`);
		const deployer = new ethers.JsonRpcSigner(provider, deployment.deployer);
		const factory = await connectForgeContract("SmartWalletFactory", deployment.smartWalletFactory, deployer);
		const wallet = (await factory.getFunction("getAddress")(owner.address, salt)) as string;
		await sendTx(factory, "createAccount", owner.address, salt);

		const n = await getNonce();
		const msg = message(wallet, n.nonce);
		const bad = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg, signature: await stranger.signMessage({ message: msg }), nonceToken: n.nonceToken }
		});
		expectError(bad, 401, "SIWE_SIGNATURE_INVALID");

		const n2 = await getNonce();
		const msg2 = message(wallet, n2.nonce);
		const ok = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg2, signature: await owner.signMessage({ message: msg2 }), nonceToken: n2.nonceToken }
		});
		expect(ok.status).toBe(200);
		const me = await call("GET", "/api/v1/users/me", { token: ok.json.accessToken });
		expect(me.json.wallets).toEqual([expect.objectContaining({ address: wallet, kind: "contract" })]);
		// The owner's key is not the wallet: it does not sign in as the wallet's account.
		const ownerLogin = await signIn(owner);
		expect(ownerLogin.json.user.id).not.toBe(ok.json.user.id);

		// On a chain without an RPC a contract wallet cannot be checked: refused, with the reason.
		const n3 = await getNonce();
		const msg3 = message(wallet, n3.nonce, { chainId: 1 });
		const noRpc = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg3, signature: await owner.signMessage({ message: msg3 }), nonceToken: n3.nonceToken }
		});
		expectError(noRpc, 401, "SIWE_SIGNATURE_INVALID");
		expect(noRpc.json.error.message).toContain("no RPC is configured for chain 1");
	});

	test("an EIP-6492 signature of a not-yet-deployed account signs in, and the account signs in again once deployed", async () => {
		const artifacts = await loadArtifacts();
		const owner = privateKeyToAccount(generatePrivateKey());
		const salt = ethers.id(`wallet:${uniqueId("6492")}`) as Hex;
		const deployer = new ethers.JsonRpcSigner(provider, deployment.deployer);
		const factory = await connectForgeContract("SmartWalletFactory", deployment.smartWalletFactory, deployer);
		const account = (await factory.getFunction("getAddress")(owner.address, salt)) as string;
		expect(await provider.getCode(account)).toBe("0x");
		const factoryData = encodeFunctionData({
			abi: artifacts.SmartWalletFactory.abi,
			functionName: "createAccount",
			args: [owner.address, salt]
		});
		const wrap = (signature: Hex) =>
			serializeErc6492Signature({ address: deployment.smartWalletFactory as Hex, data: factoryData, signature });

		const n = await getNonce();
		const msg = message(account, n.nonce);
		const before = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg, signature: wrap(await owner.signMessage({ message: msg })), nonceToken: n.nonceToken }
		});
		expect(before.status).toBe(200);
		expect(before.json.created).toBe(true);
		expect(await provider.getCode(account)).toBe("0x"); // verification only simulated the deployment

		// A wrapped signature by another key fails.
		const stranger = privateKeyToAccount(generatePrivateKey());
		const ns = await getNonce();
		const msgS = message(account, ns.nonce);
		const bad = await call("POST", "/api/v1/auth/siwe/verify", {
			body: {
				message: msgS,
				signature: wrap(await stranger.signMessage({ message: msgS })),
				nonceToken: ns.nonceToken
			}
		});
		expectError(bad, 401, "SIWE_SIGNATURE_INVALID");

		await sendTx(factory, "createAccount", owner.address, salt);
		expect((await provider.getCode(account)).length).toBeGreaterThan(2);
		const n2 = await getNonce();
		const msg2 = message(account, n2.nonce);
		const after = await call("POST", "/api/v1/auth/siwe/verify", {
			body: { message: msg2, signature: await owner.signMessage({ message: msg2 }), nonceToken: n2.nonceToken }
		});
		expect(after.status).toBe(200);
		expect(after.json.created).toBe(false);
		expect(after.json.user.id).toBe(before.json.user.id);
		const me = await call("GET", "/api/v1/users/me", { token: after.json.accessToken });
		expect(me.json.wallets).toEqual([expect.objectContaining({ address: account, kind: "contract" })]);
	});

	test("a disabled account cannot sign in with its wallet", async () => {
		const dave = privateKeyToAccount(generatePrivateKey());
		const first = await signIn(dave);
		await runtimeOf(node.broker).sequelize.query(`UPDATE users SET disabled_at = now() WHERE id = $1`, {
			bind: [first.json.user.id]
		});
		expectError(await signIn(dave), 403, "ACCOUNT_DISABLED");
	});
});

describe("linking wallets", () => {
	async function passwordUser() {
		const u = await signUp(call, `${uniqueId("w")}@example.com`, "correct horse battery staple");
		return { userId: u.userId, access: u.accessToken };
	}

	test("linking needs a SIWE proof; an address belongs to one account; the wallet then signs in to that account", async () => {
		const a = await passwordUser();
		const b = await passwordUser();
		const w = privateKeyToAccount(generatePrivateKey());
		const linked = await call("POST", "/api/v1/users/me/wallets", { token: a.access, body: await proof(w) });
		expect(linked.status).toBe(201);
		expect(linked.json).toEqual({
			address: w.address,
			chainId: 31337,
			kind: "eoa",
			linkedAt: expect.any(String),
			alreadyLinked: false
		});
		const again = await call("POST", "/api/v1/users/me/wallets", { token: a.access, body: await proof(w) });
		expect(again.json.alreadyLinked).toBe(true);

		expectError(
			await call("POST", "/api/v1/users/me/wallets", { token: b.access, body: await proof(w) }),
			409,
			"WALLET_TAKEN"
		);
		// A proof signed by someone else's key links nothing.
		const mallory = privateKeyToAccount(generatePrivateKey());
		const forged = await proof(mallory);
		const swapped = { ...forged, message: forged.message.replace(mallory.address, w.address) };
		expectError(
			await call("POST", "/api/v1/users/me/wallets", { token: b.access, body: swapped }),
			401,
			"SIWE_SIGNATURE_INVALID"
		);

		expect((await signIn(w)).json.user.id).toBe(a.userId);
		const [{ n }] = await runtimeOf(node.broker).sequelize.query<{ n: string }>(
			`SELECT count(*) AS n FROM user_wallets WHERE address = $1`,
			{
				bind: [w.address.toLowerCase()],
				type: "SELECT" as never
			}
		);
		expect(n).toBe("1");

		// Payments attributes on-chain stakes through this lookup (any address case).
		expect(await node.broker.call("users.walletOwner", { address: w.address.toLowerCase() })).toEqual({
			userId: a.userId
		});
		expect(await node.broker.call("users.walletOwner", { address: mallory.address })).toBeNull();
	});

	test("unlinking: only one's own wallet, never the last way to sign in", async () => {
		const a = await passwordUser();
		const b = await passwordUser();
		const w = privateKeyToAccount(generatePrivateKey());
		await call("POST", "/api/v1/users/me/wallets", { token: a.access, body: await proof(w) });
		expectError(
			await call("DELETE", `/api/v1/users/me/wallets/${w.address}`, { token: b.access }),
			404,
			"NOT_FOUND"
		);
		const me = await call("GET", "/api/v1/users/me", { token: a.access });
		expect(me.json.wallets.map((x: { address: string }) => x.address)).toEqual([w.address]);
		expect(
			(await call("DELETE", `/api/v1/users/me/wallets/${w.address.toLowerCase()}`, { token: a.access })).json
		).toEqual({ address: w.address, unlinked: true });
		expect((await call("GET", "/api/v1/users/me", { token: a.access })).json.wallets).toEqual([]);

		const walletOnly = privateKeyToAccount(generatePrivateKey());
		const s = await signIn(walletOnly);
		expectError(
			await call("DELETE", `/api/v1/users/me/wallets/${walletOnly.address}`, { token: s.json.accessToken }),
			409,
			"LAST_SIGN_IN_METHOD"
		);
	});
});

describe("$FORGE holdings", () => {
	test("balances are read from the chain, cached briefly, refreshed on demand; stake comes from payments' facts", async () => {
		const holder = privateKeyToAccount(generatePrivateKey());
		const funder = new ethers.JsonRpcSigner(provider, deployment.fundedAccounts[1]!.address);
		const token = await connectForgeContract("ForgeToken", deployment.token, funder);
		await sendTx(token, "transfer", holder.address, ethers.parseUnits("1500", 18));

		const s = await signIn(holder);
		const me = await call("GET", "/api/v1/users/me", { token: s.json.accessToken });
		expect(me.json.forge).toEqual({
			chainId: 31337,
			tokenAddress: deployment.token,
			holdings: {
				totalWei: ethers.parseUnits("1500", 18).toString(),
				refreshed: false,
				wallets: [
					{
						address: holder.address,
						balanceWei: ethers.parseUnits("1500", 18).toString(),
						fetchedAt: expect.any(String)
					}
				]
			},
			holdingsUnavailableReason: null,
			stake: { stakedWei: "0", effectiveStakeWei: "0", nextMaturityAt: null }
		});

		await sendTx(token, "transfer", holder.address, ethers.parseUnits("500", 18));
		const cached = await call("GET", "/api/v1/users/me", { token: s.json.accessToken });
		expect(cached.json.forge.holdings.totalWei).toBe(ethers.parseUnits("1500", 18).toString());
		const fresh = await call("GET", "/api/v1/users/me?refresh=true", { token: s.json.accessToken });
		expect(fresh.json.forge.holdings).toEqual(
			expect.objectContaining({ totalWei: ethers.parseUnits("2000", 18).toString(), refreshed: true })
		);
		// A second forced refresh right away is served from the cache (RPC calls are rationed per user).
		const again = await call("GET", "/api/v1/users/me?refresh=true", { token: s.json.accessToken });
		expect(again.json.forge.holdings.refreshed).toBe(false);
	});
});
