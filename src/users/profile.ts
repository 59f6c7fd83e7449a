/**
 * The signed-in user's own view: the profile (account, tier, wallets; cached per user by the service)
 * and, around it, what the credential may do and the $FORGE section (token, holdings per wallet read
 * from the chain, stake).
 */
import { effectiveScopes } from "../auth/scopes";
import type { AuthUser } from "../auth/user";
import { NotFound } from "../errors";
import type { KeyValueStore } from "../runtime/kv";
import type { UsersConfig } from "./config";
import type { ForgeBalanceReader, WalletBalance } from "./holdings";
import type { UsersStore } from "./store";
import { summarizeTier } from "./tier-facts";
import { publicUser, walletView, type ProfileView } from "./views";

/** A user may force a fresh balance read at most this often; in between, `refresh` serves the cache. */
const BALANCE_REFRESH_MIN_INTERVAL_MS = 5_000;

export interface ForgeSection {
	chainId: number;
	tokenAddress: string | null;
	holdings: { totalWei: string | null; wallets: WalletBalance[]; refreshed: boolean } | null;
	holdingsUnavailableReason: string | null;
	stake: { stakedWei: string; effectiveStakeWei: string; nextMaturityAt: string | null };
}

export async function profileOf(
	store: Pick<UsersStore, "userById" | "tierFacts" | "walletsOf">,
	userId: string,
	nowMs: number
): Promise<ProfileView> {
	const user = await store.userById(userId);
	if (!user) throw NotFound("User");
	const [facts, wallets] = await Promise.all([store.tierFacts(user.id), store.walletsOf(user.id)]);
	return {
		...publicUser(user),
		hasPassword: user.password_hash !== null,
		tier: summarizeTier(facts, nowMs),
		wallets: wallets.map(walletView)
	};
}

export interface HoldingsDeps {
	chain: UsersConfig["chain"];
	/** Null when no chain is configured (no RPC URL or token address). */
	balances: Pick<ForgeBalanceReader, "balances"> | null;
	kv: Pick<KeyValueStore, "setIfAbsent">;
}

/** `GET /users/me`: the cached profile, the credential's permissions and the $FORGE section. */
export async function ownView(d: HoldingsDeps, caller: AuthUser, profile: ProfileView, refresh: boolean) {
	const forge: ForgeSection = {
		chainId: d.chain.forgeChainId,
		tokenAddress: d.chain.forgeTokenAddress,
		holdings: null,
		holdingsUnavailableReason: null,
		stake: {
			stakedWei: profile.tier.stakedWei,
			effectiveStakeWei: profile.tier.effectiveStakeWei,
			nextMaturityAt: profile.tier.nextStakeMaturityAt
		}
	};
	if (d.balances) forge.holdings = await holdingsOf(d.balances, d.kv, caller.id, profile, refresh);
	else
		forge.holdingsUnavailableReason =
			"CHAIN_NOT_CONFIGURED: set CHAIN_RPC_URL and FORGE_TOKEN_ADDRESS to show $FORGE balances";
	return {
		...profile,
		permissions: effectiveScopes(caller),
		credential: caller.keyId
			? { type: "apiKey", keyId: caller.keyId }
			: { type: "session", sessionId: caller.sid ?? null },
		forge
	};
}

async function holdingsOf(
	balances: Pick<ForgeBalanceReader, "balances">,
	kv: Pick<KeyValueStore, "setIfAbsent">,
	userId: string,
	profile: ProfileView,
	refresh: boolean
) {
	// A forced refresh costs RPC calls: at most one per user per interval, else the cache answers.
	const refreshed =
		refresh && (await kv.setIfAbsent(`users:balance-refresh:${userId}`, "1", BALANCE_REFRESH_MIN_INTERVAL_MS));
	const read = await balances.balances(
		profile.wallets.map(w => w.address),
		refreshed
	);
	const known = read.filter(b => b.balanceWei !== null);
	return {
		totalWei:
			known.length === read.length ? read.reduce((sum, b) => sum + BigInt(b.balanceWei!), 0n).toString() : null,
		wallets: read,
		refreshed
	};
}
