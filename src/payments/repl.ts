/**
 * Operator REPL commands for payments (moleculer-repl custom commands): a user's balance and
 * ledger, granting credits (recorded with the operator's name), replaying a Stripe event,
 * reconciling with Stripe, re-indexing the chain. They call the payments service's internal
 * actions over the transporter, so a REPL node needs no local services.
 */
import os from "node:os";
import type { ReplCommand } from "../repl/command";
import { resolveUser } from "../users/repl";
import { isOrgPayer } from "./payer";
import { USAGE_GROUPS, type UsageGroup } from "./usage";

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

export function operatorName(given: unknown): string {
	if (typeof given === "string" && given.trim()) return given.trim();
	// The REPL runs on an operator's shell: their login is the identity recorded on the grant.
	return `repl:${os.userInfo().username}@${os.hostname()}`;
}

export function positiveInt(raw: unknown, what: string): number {
	const s = String(raw ?? "");
	if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)) || Number(s) <= 0)
		throw new Error(`${what} must be a positive integer (got '${s}')`);
	return Number(s);
}

export const paymentsReplCommands: ReplCommand[] = [
	{
		command: "payments-balance <userId>",
		description: "A user's credits (available, held) and their latest ledger entries",
		options: [{ option: "-l, --limit <n>", description: "how many entries (default 20)" }],
		async action(broker, args) {
			const limit = args.options?.limit ? positiveInt(args.options.limit, "--limit") : 20;
			print(await broker.call("payments.userLedger", { userId: String(args.userId), limit }));
		}
	},
	{
		command: "payments-grant <userId> <credits> <reason...>",
		description:
			"Grant credits to a user (promotional, expiring, unless --paid); recorded with the operator's name",
		options: [
			{ option: "-o, --operator <name>", description: "who grants (default: the OS login of this REPL)" },
			{
				option: "-e, --expires <iso>",
				description: "expiry (ISO-8601); default PROMO_GRANT_TTL_S from now for promotional credit"
			},
			{ option: "-p, --paid", description: "grant non-expiring credit, spent after promotional credit" },
			{ option: "-k, --key <key>", description: "idempotency key: a repeated key grants once" }
		],
		async action(broker, args) {
			const reason = (Array.isArray(args.reason) ? args.reason.join(" ") : String(args.reason ?? "")).trim();
			if (!reason) throw new Error("a reason is required");
			const o = args.options ?? {};
			print(
				await broker.call("payments.grant", {
					userId: String(args.userId),
					credits: positiveInt(args.credits, "credits"),
					reason,
					operator: operatorName(o.operator),
					source: o.paid === true ? "paid" : "promo",
					...(o.expires ? { expiresAt: String(o.expires) } : {}),
					...(o.key ? { key: String(o.key) } : {})
				})
			);
		}
	},
	{
		command: "billing-usage <payer> [from] [to] [groupBy]",
		description:
			"The usage report of a payer (<payer>: a user id or e-mail, or org:<uuid>) from settled tasks and the ledger",
		async action(broker, args) {
			const groupBy = String(args.groupBy ?? "day") as UsageGroup;
			if (!USAGE_GROUPS.includes(groupBy))
				throw new Error(`groupBy must be one of ${USAGE_GROUPS.join(", ")} (got '${groupBy}')`);
			const ref = String(args.payer).trim();
			const payerId = isOrgPayer(ref) ? ref.toLowerCase() : await resolveUser(broker, ref);
			if (!payerId) return;
			print(
				await broker.call("payments.usageOf", {
					payerId,
					groupBy,
					...(args.from ? { from: String(args.from) } : {}),
					...(args.to ? { to: String(args.to) } : {})
				})
			);
		}
	},
	{
		command: "payments-stripe-replay <eventId>",
		description: "Process a Stripe event again (fetched from Stripe if it never arrived); idempotent",
		async action(broker, args) {
			print(await broker.call("payments.replayStripeEvent", { eventId: String(args.eventId) }));
		}
	},
	{
		command: "payments-stripe-reconcile",
		description: "List Stripe's recent events and apply those the webhook missed",
		options: [
			{ option: "-w, --window <seconds>", description: "how far back (default STRIPE_RECONCILE_WINDOW_S)" }
		],
		async action(broker, args) {
			const windowS = args.options?.window ? positiveInt(args.options.window, "--window") : undefined;
			print(await broker.call("payments.reconcileStripe", windowS ? { windowS } : {}));
		}
	},
	{
		command: "payments-chain-reindex <fromBlock>",
		description: "Forget the staking index from a block on and index the chain again from there",
		async action(broker, args) {
			const s = String(args.fromBlock);
			if (!/^\d+$/.test(s)) throw new Error(`fromBlock must be a block number (got '${s}')`);
			print(await broker.call("payments.reindexChain", { fromBlock: Number(s) }));
		}
	},
	{
		command: "payments-chain-tick",
		description: "Run one chain pass now (payment confirmations and reorg checks, staking index)",
		async action(broker) {
			print(await broker.call("payments.chainTick", {}));
		}
	}
];
