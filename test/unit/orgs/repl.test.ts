/**
 * The operator REPL commands orgs-show, orgs-grant (src/orgs/repl.ts) and billing-usage
 * (src/payments/repl.ts) over a fake broker: which actions they call with what, and what they print.
 */
import type { ServiceBroker } from "moleculer";
import { orgsReplCommands } from "../../../src/orgs/repl";
import { paymentsReplCommands } from "../../../src/payments/repl";
import type { ReplCommand } from "../../../src/repl/command";
import { allReplCommands } from "../../../src/repl/commands";

const ORG = "22222222-2222-4222-8222-222222222222";
const OTHER = "33333333-3333-4333-8333-333333333333";
const OWNER = "11111111-1111-4111-8111-111111111111";
const acme = (id = ORG) => ({
	id,
	name: "Acme",
	members: 2,
	monthlyCapCredits: 5000,
	createdBy: OWNER,
	memberList: [
		{ orgId: id, userId: OWNER, role: "owner", monthlyCapCredits: null, addedBy: null },
		{ orgId: id, userId: "u2", role: "billing", monthlyCapCredits: 300, addedBy: OWNER }
	]
});

/** A broker whose `call` answers from `answers` by action name and records every call. */
function fakeBroker(answers: Record<string, (params: Record<string, unknown>) => unknown>) {
	const calls: Array<[string, Record<string, unknown>]> = [];
	const broker = {
		call: async (action: string, params: Record<string, unknown>) => {
			calls.push([action, params]);
			const answer = answers[action];
			if (!answer) throw new Error(`unexpected call ${action}`);
			return answer(params);
		}
	} as unknown as ServiceBroker;
	return { broker, calls };
}

const byName = (list: ReplCommand[], name: string) => list.find(c => c.command.split(" ")[0] === name)!;

async function run(cmd: ReplCommand, broker: ServiceBroker, args: Record<string, unknown>, options = {}) {
	const out: string[] = [];
	const log = jest.spyOn(console, "log").mockImplementation((s: unknown) => void out.push(String(s)));
	try {
		await cmd.action(broker, { ...args, options });
	} finally {
		log.mockRestore();
	}
	const text = out.join("\n");
	try {
		return JSON.parse(text);
	} catch {
		return text;
	}
}

const ORG_ANSWERS = {
	"orgs.operatorFind": (p: Record<string, unknown>) => ({
		items: p.ref === ORG || p.ref === "Acme" ? [acme()] : p.ref === "Twins" ? [acme(ORG), acme(OTHER)] : []
	}),
	"payments.userLedger": () => ({ available: 1200, held: 50, entries: [{ kind: "grant" }] }),
	"payments.facts": () => ({ planTier: "team", tier: "team", stakeTier: "free" }),
	"payments.grant": (p: Record<string, unknown>) => ({ duplicate: false, credits: p.credits, payer: p.userId })
};

describe("orgs-show", () => {
	const show = byName(orgsReplCommands, "orgs-show");

	test("by id or name: members with roles and caps, the wallet's balance and plan (payer org:<uuid>)", async () => {
		for (const ref of [ORG, "Acme"]) {
			const f = fakeBroker(ORG_ANSWERS);
			const out = await run(show, f.broker, { org: ref });
			expect(out).toMatchObject({
				id: ORG,
				name: "Acme",
				payerId: `org:${ORG}`,
				monthlyCapCredits: 5000,
				members: [
					{ userId: OWNER, role: "owner", monthlyCapCredits: null },
					{ userId: "u2", role: "billing", monthlyCapCredits: 300 }
				],
				balance: { available: 1200, held: 50 },
				plan: { planTier: "team", tier: "team" }
			});
			expect(f.calls).toContainEqual(["payments.userLedger", { userId: `org:${ORG}`, limit: 5 }]);
			expect(f.calls).toContainEqual(["payments.facts", { userId: `org:${ORG}` }]);
		}
	});

	test("an unknown or ambiguous name says so and asks nothing of payments", async () => {
		for (const [ref, said] of [
			["Nobody", "no organisation is 'Nobody'"],
			["Twins", `'Twins' names 2 organisations (${ORG}, ${OTHER}); use the id`]
		]) {
			const f = fakeBroker(ORG_ANSWERS);
			expect(await run(show, f.broker, { org: ref })).toBe(said);
			expect(f.calls.map(c => c[0])).toEqual(["orgs.operatorFind"]);
		}
	});
});

describe("orgs-grant", () => {
	const grant = byName(orgsReplCommands, "orgs-grant");

	test("a promotional grant to the organisation's wallet through payments.grant, with the operator and expiry", async () => {
		const f = fakeBroker(ORG_ANSWERS);
		const before = Date.now();
		const out = await run(
			grant,
			f.broker,
			{ orgId: ORG, credits: "2500", reason: ["launch", "credit"] },
			{ expiresDays: "30", operator: "ops-anna", key: "launch-1" }
		);
		expect(out).toEqual({ duplicate: false, credits: 2500, payer: `org:${ORG}` });
		const [, params] = f.calls.find(c => c[0] === "payments.grant")!;
		expect(params).toMatchObject({
			userId: `org:${ORG}`,
			credits: 2500,
			reason: "launch credit",
			operator: "ops-anna",
			source: "promo",
			key: "launch-1"
		});
		const expires = Date.parse(String(params.expiresAt));
		expect(expires).toBeGreaterThanOrEqual(before + 30 * 86_400_000);
		expect(expires).toBeLessThanOrEqual(Date.now() + 30 * 86_400_000);
	});

	test("without a reason or expiry: a named reason, the default promotional expiry, the REPL login as operator", async () => {
		const f = fakeBroker(ORG_ANSWERS);
		await run(grant, f.broker, { orgId: "Acme", credits: "10" });
		const [, params] = f.calls.find(c => c[0] === "payments.grant")!;
		expect(params).toMatchObject({ userId: `org:${ORG}`, reason: "Grant to Acme", source: "promo" });
		expect(params).not.toHaveProperty("expiresAt");
		expect(String(params.operator)).toMatch(/^repl:/);
	});

	test("bad credits or days are refused before anything is called; an unknown organisation grants nothing", async () => {
		const f = fakeBroker(ORG_ANSWERS);
		await expect(run(grant, f.broker, { orgId: ORG, credits: "-5" })).rejects.toThrow(/credits/);
		await expect(run(grant, f.broker, { orgId: ORG, credits: "5" }, { expiresDays: "0" })).rejects.toThrow(
			/--expires-days/
		);
		expect(f.calls).toEqual([]);
		expect(await run(grant, f.broker, { orgId: OTHER, credits: "5" })).toBe(`no organisation is '${OTHER}'`);
		expect(f.calls.map(c => c[0])).toEqual(["orgs.operatorFind"]);
	});
});

describe("billing-usage", () => {
	const usage = byName(paymentsReplCommands, "billing-usage");
	const answers = {
		"payments.usageOf": (p: Record<string, unknown>) => ({ payerId: p.payerId, groupBy: p.groupBy, rows: [] }),
		"users.adminListUsers": (p: Record<string, unknown>) => ({
			items: p.q === "ann@example.com" ? [{ id: OWNER, email: "ann@example.com" }] : []
		})
	};

	test("an organisation payer, with a range and a grouping", async () => {
		const f = fakeBroker(answers);
		const out = await run(usage, f.broker, {
			payer: `org:${ORG}`,
			from: "2026-11-01",
			to: "2026-12-01",
			groupBy: "member"
		});
		expect(out).toEqual({ payerId: `org:${ORG}`, groupBy: "member", rows: [] });
		expect(f.calls).toEqual([
			["payments.usageOf", { payerId: `org:${ORG}`, groupBy: "member", from: "2026-11-01", to: "2026-12-01" }]
		]);
	});

	test("a user by id or e-mail, grouped by day by default", async () => {
		for (const payer of [OWNER, "ann@example.com"]) {
			const f = fakeBroker(answers);
			await run(usage, f.broker, { payer });
			expect(f.calls.at(-1)).toEqual(["payments.usageOf", { payerId: OWNER, groupBy: "day" }]);
		}
	});

	test("an unknown grouping is refused; an unknown e-mail says so", async () => {
		const f = fakeBroker(answers);
		await expect(run(usage, f.broker, { payer: OWNER, groupBy: "week" })).rejects.toThrow(/groupBy/);
		expect(await run(usage, f.broker, { payer: "nobody@example.com" })).toBe("no user is 'nobody@example.com'");
		expect(f.calls.map(c => c[0])).toEqual(["users.adminListUsers"]);
	});
});

test("the REPL offers the three commands", () => {
	const names = allReplCommands().map(c => c.command.split(" ")[0]);
	for (const n of ["orgs-show", "orgs-grant", "billing-usage"]) expect(names).toContain(n);
});
