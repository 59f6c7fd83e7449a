/**
 * What a user's plan and stake are worth now (src/payments/staking.ts stakeFacts), from the billing
 * plan, the stake index and the users service's admin override; and the users service's answers the
 * payments service depends on (override, wallet owner), with what each failure means.
 */
import type { TierName } from "../domain/tiers";
import type { StakeIndexer } from "./stake-indexer";
import { stakeFacts, type StakeFacts } from "./staking";

export interface FactsSources {
	planOf(userId: string): Promise<TierName>;
	/** null: no chain configured (no stake counts). */
	stakes: Pick<StakeIndexer, "positionsOf" | "now"> | null;
	adminOverrideOf(userId: string): Promise<TierName | null>;
	minHoldingMs: number;
}

/**
 * A user's tier facts. `tierOverride` given: the caller resolved the tier already (tasks passes the
 * users service's answer). Not given: the admin override is read from the users service (cached),
 * so /billing/balance names the same tier as /users/me.
 *
 * With a tier given, the plan is not read (the tier and the fee discount do not depend on it; a
 * reserve saves its SQL round trip): `planTier` then repeats the given tier.
 */
export async function tierFactsOf(
	src: FactsSources,
	userId: string,
	tierOverride?: TierName | null
): Promise<StakeFacts> {
	const [plan, positions, now, override] = await Promise.all([
		tierOverride ? tierOverride : src.planOf(userId),
		src.stakes ? src.stakes.positionsOf(userId) : Promise.resolve([]),
		src.stakes ? src.stakes.now() : Promise.resolve(Date.now()),
		tierOverride !== undefined ? tierOverride : src.adminOverrideOf(userId)
	]);
	const held = positions.map(p => ({ amountWei: BigInt(p.amountWei), since: new Date(p.since) }));
	return stakeFacts(held, plan, now, src.minHoldingMs, override);
}

type Call = (action: string, params: Record<string, unknown>) => Promise<unknown>;

/** users.getTier's admin override; none for a user the users service does not know (another deployment's, not a UUID). */
export async function adminOverrideVia(call: Call, userId: string): Promise<TierName | null> {
	try {
		const t = (await call("users.getTier", { userId })) as { adminOverride?: TierName | null } | null;
		return t?.adminOverride ?? null;
	} catch (err) {
		const e = err as { code?: unknown; name?: string };
		if (e.code === 404 || e.code === 422 || e.name === "ServiceNotFoundError") return null;
		throw err;
	}
}

/**
 * users.walletOwner: the owner's id, null for a wallet nobody linked, undefined when users cannot
 * answer (down): the owner stays as it was and is asked again later.
 */
export async function walletOwnerVia(
	call: Call,
	address: string,
	warn: (message: string, detail: string) => void
): Promise<string | null | undefined> {
	try {
		const r = (await call("users.walletOwner", { address })) as
			string | { userId?: string | null; id?: string | null } | null;
		if (r == null) return null;
		if (typeof r === "string") return r;
		return r.userId ?? r.id ?? null;
	} catch (err) {
		const name = (err as Error).name;
		if (name !== "ServiceNotFoundError" && name !== "ServiceNotAvailableError")
			warn("users.walletOwner failed", (err as Error).message);
		return undefined;
	}
}
