/**
 * The staking index against a chain node that stops answering (lagging or failing RPC): a missing
 * block is not a reorg. Nothing is rewound or deleted, no stake gets a made-up time (which would
 * restart its holding period), and indexing resumes when the node answers again. Real PostgreSQL;
 * the chain is a stand-in object with the same interface as ForgeChain, so the node's answers can
 * be switched off precisely.
 */
import { QueryTypes } from "sequelize";
import type { ForgeChain, RawStakeLog } from "../../../src/payments/chain";
import { StakeIndexer } from "../../../src/payments/stake-indexer";
import type { ForgeNode } from "../../../app/node";
import { createTestDatabase, startTestNode, type TestDatabase } from "../../support/env";

let db: TestDatabase;
let node: ForgeNode;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({ db, services: ["payments"] }); // migrations only; no chain configured
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

const hash = (n: number) => `0x${n.toString(16).padStart(64, "0")}`;
const STAKER = "0x00000000000000000000000000000000000000aa";
const T0 = Date.parse("2026-01-01T00:00:00Z");

function standInChain() {
	const state = { head: 12, answering: true };
	const logs: RawStakeLog[] = [
		{
			txHash: hash(1001),
			logIndex: 0,
			blockNumber: 5,
			blockHash: hash(5),
			address: STAKER,
			kind: "staked",
			amountWei: 10n ** 21n,
			totalWei: 10n ** 21n,
			availableAt: null
		}
	];
	const chain = {
		settings: { chainId: 31337, confirmations: 2, logBatchBlocks: 100, reorgWindowBlocks: 8, startBlock: 0 },
		head: async () => state.head,
		block: async (n: number) =>
			state.answering && n <= state.head ? { hash: hash(n), time: new Date(T0 + n * 12_000) } : null,
		stakeLogs: async (from: number, to: number) => logs.filter(l => l.blockNumber >= from && l.blockNumber <= to)
	};
	return { state, chain: chain as unknown as ForgeChain };
}

test("a node that stops answering rewinds nothing and invents no times; indexing resumes after", async () => {
	const { state, chain } = standInChain();
	const published: unknown[] = [];
	const warn = jest.fn();
	const indexer = new StakeIndexer(
		node.runtime.sequelize,
		chain,
		async () => null,
		async (_tx, _t, p) => void published.push(p),
		{ warn, info: () => undefined }
	);
	const events = () =>
		node.runtime.sequelize.query<{ block_number: string; block_time: Date }>(
			`SELECT block_number, block_time FROM stake_events ORDER BY block_number`,
			{ type: QueryTypes.SELECT }
		);

	expect(await indexer.index()).toEqual({ cursor: 11, events: 1 }); // head 12, 2 confirmations
	const before = await events();
	expect(before).toEqual([{ block_number: "5", block_time: new Date(T0 + 5 * 12_000) }]);

	// The node goes quiet: the pass fails loudly and changes nothing.
	state.answering = false;
	state.head = 20;
	await expect(indexer.index()).rejects.toThrow(/did not return block 11/);
	expect(await events()).toEqual(before);
	expect(warn).not.toHaveBeenCalledWith(expect.stringMatching(/no longer canonical/));

	// It answers again: no reorg, the index moves on from where it was.
	state.answering = true;
	expect(await indexer.index()).toEqual({ cursor: 19, events: 0 });
	expect(await events()).toEqual(before);
});
