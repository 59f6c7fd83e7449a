/**
 * FORGE payments on the in-process EVM dev chain: invoices, claims, confirmations, every rejection
 * class, concurrent claims, reorgs (evm_snapshot / evm_revert, then different blocks), a payment
 * reversed then re-mined, and an RPC node that stops answering.
 *
 * The service talks to the chain through a JSON-RPC proxy (below) that the RPC tests switch to
 * null answers, errors or a lagging head; otherwise it forwards every call unchanged.
 */
import { createServer, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { ethers } from "ethers";
import { QueryTypes } from "sequelize";
import { loadArtifacts } from "../../../src/chain/compile";
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

const CONFIRMATIONS = 3;
let chain: DevChain;
let deployment: ForgeDeployment;
let provider: ethers.JsonRpcProvider;
let accounts: string[];
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let rpc: RpcProxy;

/** How the proxy misbehaves: "ok" forwards; "null" answers null for blocks and receipts; "error" fails them; "lag" reports a head of `lagHead`. */
type RpcMode = "ok" | "null" | "error" | "lag";
interface RpcProxy {
	url: string;
	mode: RpcMode;
	lagHead: number;
	/** Block and receipt requests that got a null or an error. */
	tampered: number;
	server: Server;
}

const BLOCK_OR_RECEIPT = new Set(["eth_getBlockByNumber", "eth_getBlockByHash", "eth_getTransactionReceipt"]);

async function startRpcProxy(target: string): Promise<RpcProxy> {
	const proxy = { url: "", mode: "ok" as RpcMode, lagHead: 0, tampered: 0, server: null as unknown as Server };
	type Req = { id: unknown; method: string; params?: unknown[] };
	type Res = { jsonrpc: "2.0"; id: unknown; result?: unknown; error?: { code: number; message: string } };
	const answer = async (req: Req, forward: () => Promise<Res>): Promise<Res> => {
		const mode = proxy.mode;
		if (mode === "ok") return forward();
		if (mode === "lag") {
			if (req.method === "eth_blockNumber")
				return { jsonrpc: "2.0", id: req.id, result: `0x${proxy.lagHead.toString(16)}` };
			const height =
				req.method === "eth_getBlockByNumber" &&
				typeof req.params?.[0] === "string" &&
				req.params[0].startsWith("0x")
					? Number(req.params[0])
					: null;
			if (height != null && height > proxy.lagHead) {
				proxy.tampered++;
				return { jsonrpc: "2.0", id: req.id, result: null };
			}
			if (req.method === "eth_getTransactionReceipt") {
				// A lagging node has not seen recent transactions.
				const res = await forward();
				const r = res.result as { blockNumber?: string } | null;
				if (r?.blockNumber && Number(r.blockNumber) > proxy.lagHead) {
					proxy.tampered++;
					return { ...res, result: null };
				}
				return res;
			}
			return forward();
		}
		if (!BLOCK_OR_RECEIPT.has(req.method)) return forward();
		proxy.tampered++;
		if (mode === "null") return { jsonrpc: "2.0", id: req.id, result: null };
		return { jsonrpc: "2.0", id: req.id, error: { code: -32000, message: "upstream unavailable" } };
	};
	const forwardOne = async (req: Req): Promise<Res> => {
		const res = await fetch(target, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify(req)
		});
		return (await res.json()) as Res;
	};
	proxy.server = createServer((httpReq, httpRes) => {
		let body = "";
		httpReq.setEncoding("utf8");
		httpReq.on("data", (c: string) => (body += c));
		httpReq.on("end", async () => {
			try {
				const parsed = JSON.parse(body) as Req | Req[];
				const out = Array.isArray(parsed)
					? await Promise.all(parsed.map(r => answer(r, () => forwardOne(r))))
					: await answer(parsed, () => forwardOne(parsed));
				httpRes.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out));
			} catch (err) {
				httpRes.writeHead(502).end(String(err));
			}
		});
	});
	await new Promise<void>(resolve => proxy.server.listen(0, "127.0.0.1", resolve));
	proxy.url = `http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}`;
	return proxy;
}

beforeAll(async () => {
	chain = await startDevChain();
	rpc = await startRpcProxy(chain.url);
	deployment = await deployForgeContracts(chain.url, { stakingCooldownSeconds: 3600n });
	provider = createChainProvider(chain.url);
	accounts = ((await provider.send("eth_accounts", [])) as string[]).map(a => ethers.getAddress(a));
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "payments"],
		env: {
			...forgeChainEnv(deployment),
			CHAIN_RPC_URL: rpc.url,
			CHAIN_CONFIRMATIONS: String(CONFIRMATIONS),
			CHAIN_POLL_MS: "0",
			CHAIN_START_BLOCK: String(deployment.deployedAtBlock),
			RATE_LIMIT_PER_MINUTE: "100000"
		}
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
	provider?.destroy();
	rpc?.server.closeAllConnections();
	await new Promise(resolve => rpc?.server.close(resolve));
	await chain?.stop();
});

type Json = Record<string, any>; // response bodies are checked field by field
async function http(method: string, path: string, user: string, body?: unknown) {
	const headers: Record<string, string> = { authorization: `Bearer ${bearerFor(node.config, user)}` };
	if (body !== undefined) headers["content-type"] = "application/json";
	const res = await fetch(node.baseUrl + "/api/v1" + path, {
		method,
		headers,
		body: body === undefined ? undefined : JSON.stringify(body)
	});
	return { status: res.status, json: (await res.json()) as Json, headers: res.headers };
}

const signer = (a: string) => new ethers.JsonRpcSigner(provider, a);
const mine = (n: number) => provider.send("hardhat_mine", [`0x${n.toString(16)}`]);
const tick = () => node.broker.call("payments.chainTick", {}) as Promise<Json>;
const available = async (user: string) => (await http("GET", "/billing/balance", user)).json.available as number;

async function invoice(user: string, credits: number) {
	const r = await http("POST", "/billing/crypto/invoices", user, { credits });
	expect(r.status).toBe(201);
	return r.json as {
		invoiceId: string;
		amountWei: string;
		router: string;
		token: string;
		chainId: number;
		credits: number;
	};
}

/** Approves and pays through a router; returns the payment transaction's hash. */
async function pay(from: string, invoiceId: string, amount: bigint, opts: { router?: string; token?: string } = {}) {
	const token = await connectForgeContract("ForgeToken", opts.token ?? deployment.token, signer(from));
	const router = await connectForgeContract("PaymentRouter", opts.router ?? deployment.paymentRouter, signer(from));
	await (
		(await token.getFunction("approve")(await router.getAddress(), amount)) as ethers.ContractTransactionResponse
	).wait();
	const tx = (await router.getFunction("pay")(invoiceId, amount)) as ethers.ContractTransactionResponse;
	const receipt = await tx.wait();
	expect(receipt?.status).toBe(1);
	return tx.hash;
}

const claim = (user: string, txHash: string, chainId = deployment.chainId) =>
	http("POST", "/billing/crypto/payments", user, { chainId, txHash });

function expectError(r: { status: number; json: Json }, status: number, code: string) {
	expect(r.status).toBe(status);
	expect(r.json).toEqual({
		error: expect.objectContaining({ code, message: expect.any(String) }),
		requestId: expect.any(String)
	});
}

describe("a valid payment", () => {
	test("is pending until it has its confirmations, then credited once", async () => {
		const inv = await invoice("alice", 5_000);
		expect(inv).toMatchObject({
			chainId: deployment.chainId,
			router: deployment.paymentRouter.toLowerCase(),
			token: deployment.token.toLowerCase(),
			credits: 5_000
		});
		expect(inv.amountWei).toBe(ethers.parseUnits("5", 18).toString());
		const hash = await pay(accounts[1], inv.invoiceId, BigInt(inv.amountWei));
		const first = await claim("alice", hash);
		expect(first.status).toBe(202);
		expect(first.json).toMatchObject({
			status: "pending",
			confirmations: 1,
			requiredConfirmations: CONFIRMATIONS,
			credits: 5_000,
			payer: accounts[1].toLowerCase()
		});
		expect(await available("alice")).toBe(0);
		await mine(1);
		await tick();
		expect(await available("alice")).toBe(0);
		await mine(1);
		expect((await tick()).payments).toEqual({ credited: 1, reversed: 0, rejected: 0 });
		expect(await available("alice")).toBe(5_000);
		const state = await http("GET", `/billing/crypto/payments/${first.json.id}`, "alice");
		expect(state.json).toMatchObject({ status: "credited", confirmations: 3 });
		expect((await http("GET", `/billing/crypto/invoices/${inv.invoiceId}`, "alice")).json).toMatchObject({
			payment: "credited"
		});

		const again = await claim("alice", hash);
		expect(again.status).toBe(200);
		expect(again.json).toMatchObject({ id: first.json.id, status: "credited" });
		await tick();
		expect(await available("alice")).toBe(5_000);
	});

	test("claimed concurrently, credits once", async () => {
		const inv = await invoice("bob", 2_000);
		const hash = await pay(accounts[2], inv.invoiceId, BigInt(inv.amountWei));
		await mine(CONFIRMATIONS);
		const results = await Promise.all(Array.from({ length: 8 }, () => claim("bob", hash)));
		expect(results.map(r => r.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 201]);
		expect(new Set(results.map(r => r.json.id)).size).toBe(1);
		expect(results.find(r => r.status === 201)!.headers.get("location")).toBe(
			`/api/v1/billing/crypto/payments/${results[0].json.id}`
		);
		expect(results.every(r => r.json.status === "credited")).toBe(true);
		expect(await available("bob")).toBe(2_000);
		const rows = await node.runtime.sequelize.query(
			`SELECT id FROM ledger_transactions WHERE user_id = 'bob' AND kind = 'crypto_payment'`,
			{
				type: QueryTypes.SELECT
			}
		);
		expect(rows).toHaveLength(1);
	});
});

describe("rejections", () => {
	test("an unknown hash, a wrong chain id and malformed input", async () => {
		expectError(await claim("carol", `0x${"ab".repeat(32)}`), 422, "TX_NOT_FOUND");
		expectError(await claim("carol", `0x${"ab".repeat(32)}`, 1), 422, "UNSUPPORTED_CHAIN");
		expectError(await claim("carol", "0x1234"), 422, "VALIDATION_ERROR");
		expectError(
			await http("POST", "/billing/crypto/payments", "carol", { chainId: "x", txHash: 5 }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(await http("POST", "/billing/crypto/invoices", "carol", { credits: 0 }), 422, "VALIDATION_ERROR");
		expectError(await http("POST", "/billing/crypto/invoices", "carol", { credits: 1.5 }), 422, "VALIDATION_ERROR");
		expectError(await http("GET", "/billing/crypto/payments/not-a-uuid", "carol"), 422, "VALIDATION_ERROR");
		expectError(
			await http("GET", "/billing/crypto/payments/00000000-0000-4000-8000-000000000000", "carol"),
			404,
			"NOT_FOUND"
		);
	});

	test("a reverted transaction", async () => {
		const inv = await invoice("carol", 1_000);
		const router = await connectForgeContract("PaymentRouter", deployment.paymentRouter, provider);
		const data = router.interface.encodeFunctionData("pay", [inv.invoiceId, BigInt(inv.amountWei)]);
		// No allowance: the call reverts. Sent with a fixed gas limit and mined explicitly, so it lands on chain.
		await provider.send("evm_setAutomine", [false]);
		const hash = (await provider.send("eth_sendTransaction", [
			{ from: accounts[3], to: deployment.paymentRouter, data, gas: "0x30d40" }
		])) as string;
		await mine(1);
		await provider.send("evm_setAutomine", [true]);
		expect((await provider.getTransactionReceipt(hash))?.status).toBe(0);
		await mine(CONFIRMATIONS);
		expectError(await claim("carol", hash), 422, "TX_REVERTED");
	});

	test("a plain transfer to the treasury is not a payment", async () => {
		const token = await connectForgeContract("ForgeToken", deployment.token, signer(accounts[3]));
		const tx = (await token.getFunction("transfer")(deployment.treasury, 1n)) as ethers.ContractTransactionResponse;
		await tx.wait();
		expectError(await claim("carol", tx.hash), 422, "NO_PAYMENT_IN_TX");
	});

	test("the wrong token, the wrong recipient, the wrong amount", async () => {
		const inv = await invoice("dan", 1_000);
		const amount = BigInt(inv.amountWei);
		// Another FORGE-like token with its own router that even pays our treasury.
		const other = await deployForgeContracts(chain.url, { treasury: deployment.treasury });
		const wrongToken = await pay(accounts[4], inv.invoiceId, amount, {
			router: other.paymentRouter,
			token: other.token
		});
		expectError(await claim("dan", wrongToken), 422, "WRONG_TOKEN");

		// Our token, but a router that sends it elsewhere.
		const { abi, bytecode } = (await loadArtifacts()).PaymentRouter;
		const factory = new ethers.ContractFactory(abi as ethers.InterfaceAbi, bytecode, signer(accounts[0]));
		const rogue = await factory.deploy(deployment.token, accounts[9]);
		await rogue.waitForDeployment();
		const wrongRecipient = await pay(accounts[4], inv.invoiceId, amount, { router: await rogue.getAddress() });
		expectError(await claim("dan", wrongRecipient), 422, "WRONG_RECIPIENT");

		const short = await pay(accounts[4], inv.invoiceId, amount - 1n);
		expectError(await claim("dan", short), 422, "AMOUNT_MISMATCH");
		await mine(CONFIRMATIONS);
		await tick();
		expect(await available("dan")).toBe(0);
	});

	test("another user's payment is not found, before and after its owner claims it", async () => {
		const inv = await invoice("erin", 1_000);
		const hash = await pay(accounts[5], inv.invoiceId, BigInt(inv.amountWei));
		await mine(CONFIRMATIONS);
		expectError(await claim("mallory", hash), 404, "NOT_FOUND");
		const mine_ = await claim("erin", hash);
		expect(mine_.status).toBe(201);
		expectError(await claim("mallory", hash), 404, "NOT_FOUND");
		expectError(await http("GET", `/billing/crypto/payments/${mine_.json.id}`, "mallory"), 404, "NOT_FOUND");
		expectError(await http("GET", `/billing/crypto/invoices/${inv.invoiceId}`, "mallory"), 404, "NOT_FOUND");
		expect(await available("mallory")).toBe(0);
		expect(await available("erin")).toBe(1_000);
	});

	test("an invoice is paid once: a second payment of it is refused", async () => {
		const inv = await invoice("fay", 1_000);
		const a = await pay(accounts[6], inv.invoiceId, BigInt(inv.amountWei));
		const b = await pay(accounts[6], inv.invoiceId, BigInt(inv.amountWei));
		await mine(CONFIRMATIONS);
		expect((await claim("fay", a)).status).toBe(201);
		expectError(await claim("fay", b), 409, "INVOICE_ALREADY_PAID");
		expect(await available("fay")).toBe(1_000);
	});
});

describe("reorgs", () => {
	test("a credited payment whose block leaves the chain is reversed", async () => {
		const inv = await invoice("gus", 3_000);
		const snapshot = (await provider.send("evm_snapshot", [])) as string;
		const hash = await pay(accounts[7], inv.invoiceId, BigInt(inv.amountWei));
		await mine(CONFIRMATIONS);
		const claimed = await claim("gus", hash);
		expect(claimed.json.status).toBe("credited");
		expect(await available("gus")).toBe(3_000);

		expect(await provider.send("evm_revert", [snapshot])).toBe(true);
		// A different history: other blocks at the same heights, and longer.
		const token = await connectForgeContract("ForgeToken", deployment.token, signer(accounts[8]));
		await ((await token.getFunction("transfer")(accounts[9], 1n)) as ethers.ContractTransactionResponse).wait();
		await mine(CONFIRMATIONS + 3);
		expect(await provider.getTransactionReceipt(hash)).toBeNull();

		expect((await tick()).payments).toMatchObject({ reversed: 1 });
		expect(await available("gus")).toBe(0);
		const state = await http("GET", `/billing/crypto/payments/${claimed.json.id}`, "gus");
		expect(state.json).toMatchObject({ status: "reversed", reason: "REORGED_OUT" });
		const [reversal] = await node.runtime.sequelize.query<{ available_delta: string }>(
			`SELECT available_delta FROM ledger_transactions WHERE user_id = 'gus' AND kind = 'crypto_reversal'`,
			{ type: QueryTypes.SELECT }
		);
		expect(Number(reversal.available_delta)).toBe(-3_000);
		expectError(await claim("gus", hash), 422, "TX_NOT_FOUND");
	});

	test("a pending payment whose block leaves the chain is rejected, never credited", async () => {
		const inv = await invoice("hal", 1_000);
		const snapshot = (await provider.send("evm_snapshot", [])) as string;
		const hash = await pay(accounts[7], inv.invoiceId, BigInt(inv.amountWei));
		const claimed = await claim("hal", hash);
		expect(claimed.json.status).toBe("pending");
		await provider.send("evm_revert", [snapshot]);
		await mine(CONFIRMATIONS + 2);
		expect((await tick()).payments).toMatchObject({ rejected: 1, credited: 0 });
		expect((await http("GET", `/billing/crypto/payments/${claimed.json.id}`, "hal")).json).toMatchObject({
			status: "rejected",
			reason: "REORGED_OUT"
		});
		expect(await available("hal")).toBe(0);
	});
});

const sql = <T extends object>(query: string, bind: unknown[] = []) =>
	node.runtime.sequelize.query<T>(query, { bind, type: QueryTypes.SELECT });

/** Double entry, stored balances equal to their entries and to the lots, nothing below zero. */
async function expectLedgerInvariants() {
	const [{ total }] = await sql<{ total: string | null }>(`SELECT SUM(amount) AS total FROM ledger_entries`);
	expect(Number(total ?? 0)).toBe(0);
	const unbalanced = await sql(
		`SELECT transaction_id FROM ledger_entries GROUP BY transaction_id HAVING SUM(amount) <> 0`
	);
	expect(unbalanced).toEqual([]);
	const drift = await sql(
		`SELECT a.key FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_key = a.key
		 WHERE a.user_id IS NOT NULL GROUP BY a.key, a.balance HAVING a.balance <> COALESCE(SUM(e.amount), 0)`
	);
	expect(drift).toEqual([]);
	const lotDrift = await sql(
		`SELECT a.user_id FROM ledger_accounts a WHERE a.kind = 'available'
		 AND a.balance <> (SELECT COALESCE(SUM(remaining), 0) FROM credit_lots l WHERE l.user_id = a.user_id)`
	);
	expect(lotDrift).toEqual([]);
	expect(await sql(`SELECT key FROM ledger_accounts WHERE user_id IS NOT NULL AND balance < 0`)).toEqual([]);
}

/** What the user's FORGE payments put in their available balance, net of reversals and recoveries. */
async function creditedByPayments(user: string) {
	const [{ net }] = await sql<{ net: string | null }>(
		`SELECT SUM(available_delta) AS net FROM ledger_transactions
		 WHERE user_id = $1 AND kind IN ('crypto_payment', 'crypto_reversal', 'crypto_shortfall_recovery')`,
		[user]
	);
	return Number(net ?? 0);
}

/** Spends `credits` the way a task does: a hold, then its settlement at the full amount. */
async function spend(user: string, taskId: string, credits: number) {
	const hold = (await node.broker.call("payments.reserve", { userId: user, taskId, maxCost: credits })) as Json;
	expect(hold.held).toBe(credits);
	const settled = (await node.broker.call("payments.settle", { userId: user, taskId, actualCost: credits })) as Json;
	expect(settled.charged).toBe(credits);
}

/** Leaves the snapshot's branch for good: a different transaction and more blocks at the same heights. */
async function anotherHistory() {
	const token = await connectForgeContract("ForgeToken", deployment.token, signer(accounts[8]));
	await ((await token.getFunction("transfer")(accounts[9], 1n)) as ethers.ContractTransactionResponse).wait();
	await mine(CONFIRMATIONS + 3);
}

describe("a payment reversed by a reorg, then mined again", () => {
	test("the same signed transaction re-mined is credited once in total, though the first credit was spent", async () => {
		const user = "ivy";
		const inv = await invoice(user, 3_000);
		const amount = BigInt(inv.amountWei);
		// A key of our own, so the exact signed transactions can be sent again after the revert.
		const wallet = ethers.Wallet.createRandom();
		await provider.send("hardhat_setBalance", [wallet.address, "0x56bc75e2d63100000"]);
		const funder = await connectForgeContract("ForgeToken", deployment.token, signer(accounts[1]));
		await (
			(await funder.getFunction("transfer")(wallet.address, amount)) as ethers.ContractTransactionResponse
		).wait();
		const token = await connectForgeContract("ForgeToken", deployment.token, provider);
		const router = await connectForgeContract("PaymentRouter", deployment.paymentRouter, provider);
		const nonce = await provider.getTransactionCount(wallet.address);
		const fees = {
			chainId: deployment.chainId,
			type: 2,
			gasLimit: 300_000n,
			maxFeePerGas: ethers.parseUnits("100", "gwei"),
			maxPriorityFeePerGas: 1n
		};
		const signedApprove = await wallet.signTransaction({
			...fees,
			nonce,
			to: deployment.token,
			data: token.interface.encodeFunctionData("approve", [deployment.paymentRouter, amount])
		});
		const signedPay = await wallet.signTransaction({
			...fees,
			nonce: nonce + 1,
			to: deployment.paymentRouter,
			data: router.interface.encodeFunctionData("pay", [inv.invoiceId, amount])
		});
		const send = async (raw: string) => {
			const hash = (await provider.send("eth_sendRawTransaction", [raw])) as string;
			expect((await provider.getTransactionReceipt(hash))?.status).toBe(1);
			return hash;
		};

		const snapshot = (await provider.send("evm_snapshot", [])) as string;
		await send(signedApprove);
		const hash = await send(signedPay);
		await mine(CONFIRMATIONS);
		const first = await claim(user, hash);
		expect(first.status).toBe(201);
		expect(first.json).toMatchObject({ status: "credited", credits: 3_000 });
		await spend(user, "ivy-task-1", 3_000);
		expect(await available(user)).toBe(0);

		expect(await provider.send("evm_revert", [snapshot])).toBe(true);
		await anotherHistory();
		expect(await provider.getTransactionReceipt(hash)).toBeNull();
		expect((await tick()).payments).toMatchObject({ reversed: 1 });
		expect((await http("GET", `/billing/crypto/payments/${first.json.id}`, user)).json).toMatchObject({
			status: "reversed",
			reason: "REORGED_OUT (shortfall 3000)"
		});
		expect(await available(user)).toBe(0);
		expect(await creditedByPayments(user)).toBe(3_000); // credited 3,000, nothing could be taken back

		// The very same signed transactions, mined on the new chain: the same hash, the same log.
		await send(signedApprove);
		expect(await send(signedPay)).toBe(hash);
		await mine(CONFIRMATIONS);
		const again = await claim(user, hash);
		expect(again.status).toBe(201);
		expect(again.json).toMatchObject({
			status: "credited",
			credits: 3_000,
			txHash: hash,
			logIndex: first.json.logIndex
		});
		expect(again.json.id).not.toBe(first.json.id);
		expect(await available(user)).toBe(0);
		expect(await creditedByPayments(user)).toBe(3_000);

		const recovery = await sql<{ cause_id: string; available_delta: string }>(
			`SELECT cause_id, available_delta FROM ledger_transactions WHERE user_id = $1 AND kind = 'crypto_shortfall_recovery'`,
			[user]
		);
		expect(recovery.map(r => ({ cause: r.cause_id, delta: Number(r.available_delta) }))).toEqual([
			{ cause: again.json.id, delta: -3_000 }
		]);
		const rows = await sql<{ id: string; status: string; shortfall: string; shortfall_recovered: string }>(
			`SELECT id, status, shortfall, shortfall_recovered FROM crypto_payments WHERE invoice_id = $1 ORDER BY created_at`,
			[inv.invoiceId]
		);
		expect(rows.map(r => [r.id, r.status, Number(r.shortfall), Number(r.shortfall_recovered)])).toEqual([
			[first.json.id, "reversed", 3_000, 3_000],
			[again.json.id, "credited", 0, 0]
		]);

		// Replays change nothing: the claim again, more passes.
		expect((await claim(user, hash)).status).toBe(200);
		await mine(2);
		await tick();
		expect(await available(user)).toBe(0);
		expect(await creditedByPayments(user)).toBe(3_000);
		await expectLedgerInvariants();
	});

	test("another transaction paying the same invoice settles the part of the shortfall still open, and credits the rest", async () => {
		const user = "jay";
		const inv = await invoice(user, 2_000);
		const snapshot = (await provider.send("evm_snapshot", [])) as string;
		const hash = await pay(accounts[1], inv.invoiceId, BigInt(inv.amountWei));
		await mine(CONFIRMATIONS);
		const first = await claim(user, hash);
		expect(first.json.status).toBe("credited");
		await spend(user, "jay-task-1", 500);
		expect(await available(user)).toBe(1_500);

		await provider.send("evm_revert", [snapshot]);
		await anotherHistory();
		expect((await tick()).payments).toMatchObject({ reversed: 1 });
		expect(await available(user)).toBe(0); // 1,500 taken back, 500 short
		expect(await creditedByPayments(user)).toBe(500);

		const other = await pay(accounts[2], inv.invoiceId, BigInt(inv.amountWei));
		expect(other).not.toBe(hash);
		const again = await claim(user, other);
		expect(again.json.status).toBe("pending");
		await mine(CONFIRMATIONS);
		expect((await tick()).payments).toMatchObject({ credited: 1 });
		expect(await available(user)).toBe(1_500);
		expect(await creditedByPayments(user)).toBe(2_000);
		const [reversed] = await sql<{ shortfall: string; shortfall_recovered: string }>(
			`SELECT shortfall, shortfall_recovered FROM crypto_payments WHERE id = $1`,
			[first.json.id]
		);
		expect([Number(reversed.shortfall), Number(reversed.shortfall_recovered)]).toEqual([500, 500]);
		await expectLedgerInvariants();
	});
});

describe("an RPC node that cannot answer", () => {
	afterEach(() => {
		rpc.mode = "ok";
	});

	test("null blocks and receipts, errors and a lagging head reverse and reject nothing; once it answers, payments go on", async () => {
		const user = "kim";
		const inv = await invoice(user, 2_000);
		const hash = await pay(accounts[3], inv.invoiceId, BigInt(inv.amountWei));
		await mine(CONFIRMATIONS);
		const credited = await claim(user, hash);
		expect(credited.json.status).toBe("credited");
		const inv2 = await invoice(user, 1_000);
		const pending = await claim(user, await pay(accounts[3], inv2.invoiceId, BigInt(inv2.amountWei)));
		expect(pending.json.status).toBe("pending");
		const state = async () =>
			Promise.all(
				[credited.json.id, pending.json.id].map(
					async id => (await http("GET", `/billing/crypto/payments/${id}`, user)).json.status
				)
			);

		rpc.mode = "null";
		rpc.tampered = 0;
		for (let i = 0; i < 3; i++) {
			const r = await tick().catch(() => null); // the staking index may fail on the same answers
			if (r) expect(r.payments).toEqual({ credited: 0, reversed: 0, rejected: 0 });
		}
		expect(rpc.tampered).toBeGreaterThan(0);
		expect(await state()).toEqual(["credited", "pending"]);

		rpc.mode = "error";
		rpc.tampered = 0;
		await tick().catch(() => null);
		expect(rpc.tampered).toBeGreaterThan(0);
		expect(await state()).toEqual(["credited", "pending"]);

		// A node that is behind: its head is below both payments' blocks.
		rpc.mode = "lag";
		rpc.lagHead = credited.json.blockNumber - 1;
		await tick().catch(() => null);
		expect(await state()).toEqual(["credited", "pending"]);
		expect(await available(user)).toBe(2_000);

		rpc.mode = "ok";
		await mine(CONFIRMATIONS);
		expect((await tick()).payments).toEqual({ credited: 1, reversed: 0, rejected: 0 });
		expect(await state()).toEqual(["credited", "credited"]);
		expect(await available(user)).toBe(3_000);
		await expectLedgerInvariants();
	});
});
