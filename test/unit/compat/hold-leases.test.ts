/** Hold leases of /v1 requests: the sweep of a dead node's leases, the node's renewals, admission unwinding. */
import type { AiConfig } from "../../../src/ai/config";
import { SlotGate } from "../../../src/compat/admission";
import { LeaseKeeper, LeaseRow, SweepLeaseDeps, sweepExpiredLeases } from "../../../src/compat/hold-leases";
import { readOpenAIRequest } from "../../../src/compat/openai-in";
import { ChatDeps, admitChat } from "../../../src/compat/run";

const notFound = () => Object.assign(new Error("Hold not found"), { type: "NOT_FOUND" });

function sweepWorld(rows: LeaseRow[]) {
	const calls: string[] = [];
	const dropped: string[] = [];
	const fail = new Set<string>();
	const deps: SweepLeaseDeps = {
		store: {
			lockExpired: async () => rows,
			dropLocked: async id => void dropped.push(id),
			transaction: fn => fn({} as never)
		},
		settleCredits: async (u, id, cost) => {
			calls.push(`settle ${id} ${cost}`);
			if (fail.has(id)) throw new Error("payments down");
		},
		releaseCredits: async (u, id) => {
			calls.push(`release ${id}`);
			if (fail.has(id)) throw new Error("payments down");
			if (id === "chat:never") throw notFound();
		},
		settleKey: async (id, credits) => void calls.push(`key ${id} ${credits}`),
		warn: () => undefined
	};
	return { deps, calls, dropped, fail };
}

test("a lease without a cost is released, one with its recorded cost is settled at it, both with their key hold", async () => {
	const w = sweepWorld([
		{ hold_id: "chat:a", user_id: "u", key_id: "k", cost: null },
		{ hold_id: "chat:b", user_id: "u", key_id: "k", cost: "7" },
		{ hold_id: "chat:c", user_id: "u", key_id: null, cost: null }
	]);
	expect(await sweepExpiredLeases(w.deps)).toBe(3);
	expect(w.calls).toEqual(["release chat:a", "key chat:a 0", "settle chat:b 7", "key chat:b 7", "release chat:c"]);
	expect(w.dropped).toEqual(["chat:a", "chat:b", "chat:c"]);
});

test("a hold that never committed (NOT_FOUND) only drops the lease; a failing payments call keeps it for the next sweep", async () => {
	const w = sweepWorld([
		{ hold_id: "chat:never", user_id: "u", key_id: "k", cost: null },
		{ hold_id: "chat:down", user_id: "u", key_id: "k", cost: null }
	]);
	w.fail.add("chat:down");
	expect(await sweepExpiredLeases(w.deps)).toBe(1);
	expect(w.dropped).toEqual(["chat:never"]);
	// The key hold of the failed one is left too: it is finished with the credit hold, never before.
	expect(w.calls).toEqual(["release chat:never", "key chat:never 0", "release chat:down"]);
});

test("the keeper renews every open lease in one call and stops the ones that were swept", async () => {
	jest.useFakeTimers();
	try {
		const renewed: string[][] = [];
		const lost: string[] = [];
		const keeper = new LeaseKeeper({
			ttlMs: 300,
			renew: async ids => (renewed.push(ids), ids.filter(i => i === "chat:b")),
			onLost: id => lost.push(id),
			warn: () => undefined
		});
		keeper.add("chat:a");
		keeper.add("chat:b");
		await jest.advanceTimersByTimeAsync(100);
		expect(renewed).toEqual([["chat:a", "chat:b"]]);
		expect(lost).toEqual(["chat:b"]);
		await jest.advanceTimersByTimeAsync(100);
		expect(renewed[1]).toEqual(["chat:a"]);
		keeper.delete("chat:a");
		await jest.advanceTimersByTimeAsync(500);
		expect(renewed).toHaveLength(2);
	} finally {
		jest.useRealTimers();
	}
});

function admitWorld(over: Partial<ChatDeps> = {}) {
	const log: string[] = [];
	const deps: ChatDeps = {
		cfg: { devProvider: false, deployments: [{ model: "gpt-4o-mini" }] } as unknown as AiConfig,
		router: {} as never,
		gate: new SlotGate({ slots: () => 1, otherBusy: () => 0, maxWaitMs: 10 }),
		admitTokens: async () => ({ windowEndMs: null }),
		settleTokens: async () => void log.push("tokens back"),
		admitKey: async () => undefined,
		reserveKeyBudget: async () => void log.push("key held"),
		settleKeyBudget: async (k, h, c) => void log.push(`key settled ${c}`),
		reserve: async () => void log.push("held"),
		settle: async () => undefined,
		release: async () => void log.push("released"),
		openLease: async id => void log.push(`lease ${id}`),
		recordCost: async () => undefined,
		dropLease: async id => void log.push(`lease dropped ${id}`),
		leases: { add: id => void log.push(`renewing ${id}`), delete: id => void log.push(`not renewing ${id}`) },
		logger: { warn: () => undefined },
		...over
	};
	return { deps, log };
}

const input = {
	id: "a".repeat(32),
	userId: "u",
	payerId: "u",
	caps: {},
	tier: "free" as const,
	keyId: "k",
	key: { models: null, monthlyBudgetCredits: 100, rpm: null, tpm: null },
	request: readOpenAIRequest({ model: "gpt-4o-mini", max_tokens: 10, messages: [{ role: "user", content: "hi" }] })
};
const H = `chat:${"a".repeat(32)}`;

test("the lease comes before any hold, and a refusal gives everything back and drops the lease", async () => {
	const w = admitWorld({
		reserve: async () => {
			throw Object.assign(new Error("no credits"), { type: "INSUFFICIENT_CREDITS" });
		}
	});
	await expect(admitChat(w.deps, input, new AbortController().signal)).rejects.toThrow("no credits");
	expect(w.log).toEqual([
		`lease ${H}`,
		`renewing ${H}`,
		"key held",
		"key settled 0",
		"tokens back",
		`not renewing ${H}`,
		`lease dropped ${H}`
	]);
});

test("a hold that could not be given back keeps its lease (the sweeper finishes it)", async () => {
	const w = admitWorld({
		reserve: async () => {
			throw new Error("timeout");
		},
		settleKeyBudget: async () => {
			throw new Error("users down");
		}
	});
	await expect(admitChat(w.deps, input, new AbortController().signal)).rejects.toThrow("timeout");
	expect(w.log).not.toContain(`lease dropped ${H}`);
	expect(w.log).toContain(`not renewing ${H}`);
});

test("no lease, no hold: a failed lease refuses before anything is held", async () => {
	const w = admitWorld({
		openLease: async () => {
			throw new Error("users down");
		}
	});
	await expect(admitChat(w.deps, input, new AbortController().signal)).rejects.toThrow("users down");
	expect(w.log).not.toContain("held");
	expect(w.log).not.toContain("key held");
});

test("a release answered HOLD_ALREADY_SETTLED (the node settled without recording its cost) leaves the key hold to the node", async () => {
	const w = sweepWorld([{ hold_id: "chat:s", user_id: "u", key_id: "k", cost: null }]);
	w.deps.releaseCredits = async () => {
		throw Object.assign(new Error("settled"), { type: "HOLD_ALREADY_SETTLED" });
	};
	expect(await sweepExpiredLeases(w.deps)).toBe(1);
	expect(w.calls).toEqual([]);
	expect(w.dropped).toEqual(["chat:s"]);
});

test("the key budget and the credit hold are placed together: a key refusal gives the credit hold back", async () => {
	let heldKey = false;
	const w = admitWorld({
		reserveKeyBudget: async () => {
			heldKey = true;
			throw Object.assign(new Error("key budget"), { type: "KEY_BUDGET" });
		},
		reserve: async () => {
			// Both are out at once: the credit hold does not wait for the key's answer.
			expect(heldKey).toBe(true);
			w.log.push("held");
		}
	});
	await expect(admitChat(w.deps, input, new AbortController().signal)).rejects.toThrow("key budget");
	expect(w.log).toEqual([
		`lease ${H}`,
		`renewing ${H}`,
		"held",
		"released",
		"tokens back",
		`not renewing ${H}`,
		`lease dropped ${H}`
	]);
});

test("the key's rates and the tier's are counted together: a key refusal gives the tier's tokens back", async () => {
	const w = admitWorld({
		admitKey: async () => {
			throw Object.assign(new Error("key rpm"), { name: "Refused" });
		},
		admitTokens: async () => {
			w.log.push("tokens counted");
			return { windowEndMs: null };
		}
	});
	const limited = { ...input, key: { ...input.key, rpm: 1 } };
	await expect(admitChat(w.deps, limited, new AbortController().signal)).rejects.toThrow("key rpm");
	expect(w.log.slice(0, 3)).toEqual([`lease ${H}`, "tokens counted", "tokens back"]);
	expect(w.log).not.toContain("held");
});

test("an organisation key's request holds on the organisation's wallet with the member's and the organisation's caps", async () => {
	const seen: unknown[] = [];
	const w = admitWorld({
		reserve: async (...a) => void seen.push(a),
		openLease: async (id, payer) => void seen.push(["lease", id, payer])
	});
	const org = { ...input, key: null, payerId: "org:o1", caps: { member: 50, payer: 500 } };
	const a = await admitChat(w.deps, org, new AbortController().signal);
	a.releaseSlot();
	expect(seen[0]).toEqual(["lease", H, "org:o1"]);
	expect(seen[1]).toEqual([
		"org:o1",
		H,
		expect.any(Number),
		"free",
		{ memberId: "u", keyId: "k", model: "gpt-4o-mini", source: "chat" },
		{ member: 50, payer: 500, key: null }
	]);
});
