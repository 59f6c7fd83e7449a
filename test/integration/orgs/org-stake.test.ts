/**
 * An organisation's tier from its stake (issue 19; docs/orgs.md "Wallets and stake"): an owner or
 * admin links a wallet to the organisation with a SIWE proof, payments attributes the wallet's indexed
 * stake to the organisation's payer `org:<uuid>`, and the organisation's tier counts it. The wallet is
 * not a way to sign in, no account can link it while the organisation holds it, and an address is
 * claimed by one holder when an account and an organisation race for it. Real api, users, orgs and
 * payments services, the dev chain, PostgreSQL, Redis, RabbitMQ.
 */
import { ethers } from "ethers";
import { privateKeyToAccount } from "viem/accounts";
import type { UsersStore } from "../../../src/users/store";
import { startChainPlatform, type ChainPlatform } from "../../support/chain-platform";
import { stakeOnDevChain } from "../../support/devchain";
import { eventually } from "../../support/env";
import { orgPeople, type Person } from "../../support/org-people";
import { siweClient } from "../../support/siwe";
import { httpClient } from "../users/http";

jest.setTimeout(120_000);

// Hardhat's well-known development account #3 (funded with FORGE by deployForgeContracts).
const WALLET = privateKeyToAccount("0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6");
const CONFIRMATIONS = 2;

let p: ChainPlatform;
const call = httpClient(() => p.node.baseUrl);
const siwe = siweClient(call, { domain: "localhost:3000", uri: "http://localhost:3000", chainId: 31337 });
const people = orgPeople(call, { prefix: "orgstake", password: "a long enough passphrase" });

let owner: Person;
let member: Person;
let outsider: Person;
let orgId: string;

const orgTier = async () =>
	(await p.node.broker.call<{ tier: string }, { userId: string }>("payments.facts", { userId: `org:${orgId}` })).tier;

beforeAll(async () => {
	p = await startChainPlatform(["api", "users", "orgs", "payments"], deployment => ({
		AUTH_SESSION_CHECK: "true",
		CHAIN_CONFIRMATIONS: String(CONFIRMATIONS),
		CHAIN_POLL_MS: "0",
		CHAIN_START_BLOCK: String(deployment.deployedAtBlock),
		STAKE_MIN_HOLDING_S: "0",
		RATE_LIMIT_PER_MINUTE: "100000",
		RATE_LIMIT_ANON_PER_MINUTE: "100000",
		SIWE_DOMAIN: "localhost:3000",
		SIWE_URI: "http://localhost:3000"
	}));
	[owner, member, outsider] = await Promise.all([people.person(), people.person(), people.person()]);
	orgId = await people.newOrg(owner);
	await people.join(orgId, owner, member, "member");

	// 1,500 FORGE staked by the wallet while nobody holds it: indexed by address, nobody's tier.
	const amount = ethers.parseUnits("1500", 18);
	await stakeOnDevChain(p.provider, p.deployment, WALLET.address, amount, CONFIRMATIONS);
	await p.node.broker.call("payments.chainTick", {});
});

afterAll(() => p?.close());

const linkToOrg = async (p: Person) =>
	call("POST", `/api/v1/orgs/${orgId}/wallets`, { token: p.token, body: await siwe.proof(WALLET) });

test("only owners and admins link; a non-member gets 404; a bad proof changes nothing", async () => {
	expect(await orgTier()).toBe("free");
	const byMember = await linkToOrg(member);
	expect(byMember.status).toBe(403);
	expect(byMember.json.error.code).toBe("INSUFFICIENT_ROLE");
	const byOutsider = await linkToOrg(outsider);
	expect(byOutsider.status).toBe(404);
	const proof = await siwe.proof(WALLET);
	const forged = await call("POST", `/api/v1/orgs/${orgId}/wallets`, {
		token: owner.token,
		body: { ...proof, signature: `0x${"11".repeat(65)}` }
	});
	expect(forged.status).toBe(401);
	expect((await call("GET", `/api/v1/orgs/${orgId}/wallets`, { token: member.token })).json.items).toEqual([]);
	expect(await p.node.broker.call("users.walletOwner", { address: WALLET.address })).toBeNull();
});

test("a linked wallet's stake counts for the organisation's tier; the wallet is no sign-in and no account can take it", async () => {
	const linked = await linkToOrg(owner);
	expect(linked.status).toBe(201);
	expect(linked.json).toMatchObject({
		address: WALLET.address,
		payerId: `org:${orgId}`,
		linkedBy: owner.id,
		alreadyLinked: false
	});
	expect(await p.node.broker.call("users.walletOwner", { address: WALLET.address })).toEqual({
		userId: `org:${orgId}`
	});
	// 1,500 FORGE of effective stake: pro (docs/tiers.md), on the organisation's payer.
	await eventually(async () => (await orgTier()) === "pro", 15_000);
	const facts = await p.node.broker.call<{ positions: Array<{ amountWei: string }> }, { userId: string }>(
		"payments.facts",
		{ userId: `org:${orgId}` }
	);
	expect(facts.positions.map(p => p.amountWei)).toEqual([ethers.parseUnits("1500", 18).toString()]);
	// Members see it.
	const list = await call("GET", `/api/v1/orgs/${orgId}/wallets`, { token: member.token });
	expect(list.status).toBe(200);
	expect(list.json.items.map((w: { address: string }) => w.address)).toEqual([WALLET.address]);
	// Linking it again is a no-op.
	expect((await linkToOrg(owner)).json.alreadyLinked).toBe(true);

	// No way to sign in, and no account made for it.
	const users0 = await p.node.runtime.sequelize.query(`SELECT count(*)::int AS n FROM users`, { plain: true });
	const signIn = await siwe.signIn(WALLET);
	expect(signIn.status).toBe(403);
	expect(signIn.json.error.code).toBe("ORG_WALLET");
	expect(await p.node.runtime.sequelize.query(`SELECT count(*)::int AS n FROM users`, { plain: true })).toEqual(
		users0
	);
	// No account can link it.
	const taken = await call("POST", "/api/v1/users/me/wallets", {
		token: outsider.token,
		body: await siwe.proof(WALLET)
	});
	expect(taken.status).toBe(409);
	expect(taken.json.error.code).toBe("WALLET_TAKEN");

	// A member cannot unlink it; the owner can, and the stake stops counting.
	const byMember = await call("DELETE", `/api/v1/orgs/${orgId}/wallets/${WALLET.address}`, { token: member.token });
	expect(byMember.status).toBe(403);
	const unlinked = await call("DELETE", `/api/v1/orgs/${orgId}/wallets/${WALLET.address}`, { token: owner.token });
	expect(unlinked.status).toBe(200);
	expect(unlinked.json).toEqual({ address: WALLET.address, unlinked: true });
	await eventually(async () => (await orgTier()) === "free", 15_000);
	const again = await call("DELETE", `/api/v1/orgs/${orgId}/wallets/${WALLET.address}`, { token: owner.token });
	expect(again.status).toBe(404);
});

test("an account and an organisation racing for one address: exactly one holds it", async () => {
	const [toOrg, toAccount] = await Promise.all([
		linkToOrg(owner),
		siwe.proof(WALLET).then(body => call("POST", "/api/v1/users/me/wallets", { token: outsider.token, body }))
	]);
	expect([toOrg.status, toAccount.status].sort()).toEqual([201, 409]);
	const owned = await p.node.broker.call<{ userId: string }, { address: string }>("users.walletOwner", {
		address: WALLET.address
	});
	expect(owned.userId).toBe(toOrg.status === 201 ? `org:${orgId}` : outsider.id);
	const [{ n }] = (await p.node.runtime.sequelize.query(
		`SELECT (SELECT count(*) FROM user_wallets WHERE address = $1) + (SELECT count(*) FROM org_wallets WHERE address = $1) AS n`,
		{ bind: [WALLET.address.toLowerCase()], type: "SELECT" }
	)) as Array<{ n: string }>;
	expect(Number(n)).toBe(1);
});

test("the claim is serialised per address: 40 addresses claimed by an account and an organisation at once, each held once", async () => {
	const store = (p.node.broker.getLocalService("users") as unknown as { store: UsersStore }).store;
	const addresses = Array.from({ length: 40 }, () => ethers.Wallet.createRandom().address.toLowerCase());
	const results = await Promise.all(
		addresses.map(a =>
			Promise.all([
				store.linkOrgWallet(orgId, owner.id, a, 31337, "eoa", 1_000),
				store.linkWallet(outsider.id, a, 31337, "eoa", 1_000)
			])
		)
	);
	for (const [toOrg, toAccount] of results)
		expect([toOrg.result, toAccount.result].sort()).toEqual(["linked", "taken"]);
	const [{ n }] = (await p.node.runtime.sequelize.query(
		`SELECT count(*) AS n FROM (SELECT address FROM user_wallets UNION ALL SELECT address FROM org_wallets) w WHERE address = ANY($1)`,
		{ bind: [addresses], type: "SELECT" }
	)) as Array<{ n: string }>;
	expect(Number(n)).toBe(40);
});
