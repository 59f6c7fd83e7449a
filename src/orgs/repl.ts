/**
 * Operator REPL commands for organisations (moleculer-repl custom commands): show an organisation
 * (members, roles, caps, its wallet's balance and plan) and grant promotional credits to its wallet
 * through the ledger, as `payments-grant` does for a user. They call the orgs and payments services
 * over the transporter, so a REPL node needs no local services.
 */
import type { ServiceBroker } from "moleculer";
import { orgPayerId } from "../payments/payer";
import { operatorName, positiveInt } from "../payments/repl";
import type { ReplCommand } from "../repl/command";

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

interface FoundOrg {
	id: string;
	name: string;
	members: number;
	monthlyCapCredits: number | null;
	memberList: Array<{ userId: string; role: string; monthlyCapCredits: number | null }>;
	[k: string]: unknown;
}

/** An organisation id or name → the one organisation it names (or a printed explanation). */
export async function resolveOrg(broker: ServiceBroker, ref: string): Promise<FoundOrg | null> {
	const { items } = (await broker.call("orgs.operatorFind", { ref })) as { items: FoundOrg[] };
	if (items.length === 1) return items[0];
	console.log(
		items.length
			? `'${ref}' names ${items.length} organisations (${items.map(o => o.id).join(", ")}); use the id`
			: `no organisation is '${ref}'`
	);
	return null;
}

const DAY_MS = 86_400_000;

export const orgsReplCommands: ReplCommand[] = [
	{
		command: "orgs-show <org>",
		description:
			"An organisation (<org> is its id or name): members, roles and caps, its wallet's balance and plan",
		async action(broker, args) {
			const org = await resolveOrg(broker, String(args.org));
			if (!org) return;
			const payerId = orgPayerId(org.id);
			const [wallet, facts] = (await Promise.all([
				broker.call("payments.userLedger", { userId: payerId, limit: 5 }),
				broker.call("payments.facts", { userId: payerId })
			])) as [{ available: number; held: number; entries: unknown[] }, { planTier: string | null; tier: string }];
			const { memberList, ...summary } = org;
			print({
				...summary,
				payerId,
				members: memberList.map(m => ({
					userId: m.userId,
					role: m.role,
					monthlyCapCredits: m.monthlyCapCredits
				})),
				balance: { available: wallet.available, held: wallet.held },
				plan: { planTier: facts.planTier, tier: facts.tier },
				latestEntries: wallet.entries
			});
		}
	},
	{
		command: "orgs-grant <orgId> <credits> [reason...]",
		description:
			"Grant promotional credits to an organisation's wallet (expiring); recorded with the operator's name",
		options: [
			{ option: "-d, --expires-days <n>", description: "expiry in days (default PROMO_GRANT_TTL_S from now)" },
			{ option: "-o, --operator <name>", description: "who grants (default: the OS login of this REPL)" },
			{ option: "-k, --key <key>", description: "idempotency key: a repeated key grants once" }
		],
		async action(broker, args) {
			const credits = positiveInt(args.credits, "credits");
			const o = args.options ?? {};
			const days = o.expiresDays === undefined ? undefined : positiveInt(o.expiresDays, "--expires-days");
			const org = await resolveOrg(broker, String(args.orgId));
			if (!org) return;
			const reason = (Array.isArray(args.reason) ? args.reason.join(" ") : String(args.reason ?? "")).trim();
			print(
				await broker.call("payments.grant", {
					userId: orgPayerId(org.id),
					credits,
					reason: reason || `Grant to ${org.name}`,
					operator: operatorName(o.operator),
					source: "promo",
					...(days ? { expiresAt: new Date(Date.now() + days * DAY_MS).toISOString() } : {}),
					...(o.key ? { key: String(o.key) } : {})
				})
			);
		}
	}
];
