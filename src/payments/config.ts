/** The payments service's settings, read from the environment (documented in docs/payments.md). */
import type { EnvReader } from "../env-reader";
import { STAKE_MIN_HOLDING_MS } from "../domain/tiers";

export interface StripeSettings {
	/** null: Stripe is not configured and the Stripe routes answer 503 STRIPE_NOT_CONFIGURED. */
	secretKey: string | null;
	webhookSecret: string | null;
	/** Where the SDK sends requests (host/port/protocol options); null = api.stripe.com. */
	apiBase: { protocol: "http" | "https"; host: string; port: number } | null;
	maxNetworkRetries: number;
	webhookToleranceS: number;
	successUrl: string;
	cancelUrl: string;
	currency: string;
	/** How often each node asks Stripe for recent events it may have missed; 0 turns it off. */
	reconcileIntervalMs: number;
	/** How far back the reconciliation looks. */
	reconcileWindowS: number;
	/** How often each node processes pending inbox events (the webhook also kicks it). */
	inboxPollMs: number;
	/** Where the Customer Portal sends the payer back to. */
	portalReturnUrl: string;
	/** How long a `past_due` subscription keeps its tier (src/payments/subscription-rules.ts). */
	pastDueGraceS: number;
	/** At most one auto top-up purchase per payer within this many seconds (src/payments/auto-topup.ts). */
	autoTopUpWindowS: number;
}

export interface ChainSettings {
	/** null: no chain; the crypto routes answer 503 CHAIN_NOT_CONFIGURED and staking is empty. */
	rpcUrl: string | null;
	chainId: number | null;
	token: string | null;
	staking: string | null;
	router: string | null;
	treasury: string | null;
	/** A payment or stake event counts once its block has this many confirmations (1 = mined). */
	confirmations: number;
	/** Credited payments this many blocks deep are still re-checked for reorgs. */
	reorgWindowBlocks: number;
	/** Where the staking indexer starts when it has no cursor yet. */
	startBlock: number;
	/** Most blocks per eth_getLogs request. */
	logBatchBlocks: number;
	/** How often each node polls the chain (indexer, confirmations, reorg checks); 0 turns it off. */
	pollMs: number;
	/** Credits bought by one whole FORGE paid through the router. */
	creditsPerForge: number;
	invoiceTtlS: number;
}

export interface PaymentsConfig {
	stripe: StripeSettings;
	chain: ChainSettings;
	/** A stake counts for tier and discount only after being held this long. */
	stakeMinHoldingMs: number;
	/** Default expiry of promotional grants; 0 = they never expire. */
	promoGrantTtlS: number;
	/** Longest range of one usage report (GET /billing/usage). */
	usageMaxSpanDays: number;
	/** Default low-balance notice threshold in credits (a payer may set its own); 0 = none. */
	lowBalanceCredits: number;
	/** How often expired credit is swept into the expired account (then the balance checks run); 0 = never. */
	expirySweepMs: number;
	/** How far back the sweep looks for expiries (older ones are swept by the user's next reserve). */
	expirySweepLookbackS: number;
}

const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;

function address(r: EnvReader, name: string): string | null {
	const raw = r.optStr(name);
	if (raw == null) return null;
	if (!ADDRESS_RE.test(raw)) {
		r.problems.push(`${name} must be a 0x-prefixed 20-byte hex address (got '${raw}')`);
		return null;
	}
	return raw.toLowerCase();
}

export function loadPaymentsConfig(r: EnvReader): PaymentsConfig {
	const apiBaseRaw = r.optUrl("STRIPE_API_BASE", ["http", "https"]);
	let apiBase: StripeSettings["apiBase"] = null;
	if (apiBaseRaw) {
		const u = new URL(apiBaseRaw);
		const protocol = u.protocol === "http:" ? "http" : "https";
		apiBase = { protocol, host: u.hostname, port: u.port ? Number(u.port) : protocol === "http" ? 80 : 443 };
	}
	const publicUrl = r.str("PUBLIC_URL", "http://localhost:3000");
	const rpcUrl = r.optUrl("CHAIN_RPC_URL", ["http", "https"]);
	const chain: ChainSettings = {
		rpcUrl,
		chainId: r.int("CHAIN_ID", 0, 0, 2 ** 31 - 1) || null,
		token: address(r, "FORGE_TOKEN_ADDRESS"),
		staking: address(r, "FORGE_STAKING_ADDRESS"),
		router: address(r, "FORGE_PAYMENT_ROUTER_ADDRESS"),
		treasury: address(r, "FORGE_TREASURY_ADDRESS"),
		confirmations: r.int("CHAIN_CONFIRMATIONS", 3, 1, 1000),
		reorgWindowBlocks: r.int("CHAIN_REORG_WINDOW_BLOCKS", 64, 1, 100_000),
		startBlock: r.int("CHAIN_START_BLOCK", 0, 0, Number.MAX_SAFE_INTEGER),
		logBatchBlocks: r.int("CHAIN_LOG_BATCH_BLOCKS", 2000, 1, 100_000),
		pollMs: r.int("CHAIN_POLL_MS", 5000, 0, 3_600_000),
		creditsPerForge: r.int("FORGE_CREDITS_PER_FORGE", 1000, 1, 1_000_000_000),
		invoiceTtlS: r.int("CHAIN_INVOICE_TTL_S", 3600, 60, 30 * 86_400)
	};
	if (rpcUrl) {
		const missing = (
			[
				["CHAIN_ID", chain.chainId],
				["FORGE_TOKEN_ADDRESS", chain.token],
				["FORGE_STAKING_ADDRESS", chain.staking],
				["FORGE_PAYMENT_ROUTER_ADDRESS", chain.router],
				["FORGE_TREASURY_ADDRESS", chain.treasury]
			] as const
		).filter(([, v]) => v == null);
		for (const [name] of missing) r.problems.push(`${name} is required when CHAIN_RPC_URL is set`);
	}
	const secretKey = r.optStr("STRIPE_SECRET_KEY");
	const webhookSecret = r.optStr("STRIPE_WEBHOOK_SECRET");
	if (secretKey && !webhookSecret) r.problems.push("STRIPE_WEBHOOK_SECRET is required when STRIPE_SECRET_KEY is set");
	const currency = r.str("STRIPE_CURRENCY", "usd").toLowerCase();
	if (!/^[a-z]{3}$/.test(currency))
		r.problems.push(`STRIPE_CURRENCY must be a 3-letter ISO currency code (got '${currency}')`);
	return {
		stripe: {
			secretKey,
			webhookSecret,
			apiBase,
			maxNetworkRetries: r.int("STRIPE_MAX_NETWORK_RETRIES", 2, 0, 10),
			webhookToleranceS: r.int("STRIPE_WEBHOOK_TOLERANCE_S", 300, 1, 86_400),
			successUrl: r.str("STRIPE_SUCCESS_URL", `${publicUrl}/billing/success?checkout={CHECKOUT_ID}`),
			cancelUrl: r.str("STRIPE_CANCEL_URL", `${publicUrl}/billing/cancel?checkout={CHECKOUT_ID}`),
			currency,
			reconcileIntervalMs: r.int("STRIPE_RECONCILE_INTERVAL_MS", 300_000, 0, 86_400_000),
			reconcileWindowS: r.int("STRIPE_RECONCILE_WINDOW_S", 3 * 86_400, 60, 30 * 86_400),
			inboxPollMs: r.int("STRIPE_INBOX_POLL_MS", 2000, 10, 600_000),
			portalReturnUrl: r.str("STRIPE_PORTAL_RETURN_URL", `${publicUrl}/billing`),
			pastDueGraceS: r.int("BILLING_PAST_DUE_GRACE_S", 7 * 86_400, 0, 90 * 86_400),
			autoTopUpWindowS: r.int("BILLING_AUTO_TOPUP_WINDOW_S", 3600, 60, 30 * 86_400)
		},
		chain,
		stakeMinHoldingMs: r.int("STAKE_MIN_HOLDING_S", STAKE_MIN_HOLDING_MS / 1000, 0, 365 * 86_400) * 1000,
		promoGrantTtlS: r.int("PROMO_GRANT_TTL_S", 90 * 86_400, 0, 10 * 365 * 86_400),
		usageMaxSpanDays: r.int("USAGE_MAX_SPAN_DAYS", 366, 1, 3660),
		lowBalanceCredits: r.int("BILLING_LOW_BALANCE_CREDITS", 1000, 0, Number.MAX_SAFE_INTEGER),
		expirySweepMs: r.int("CREDIT_EXPIRY_SWEEP_MS", 60_000, 0, 86_400_000),
		expirySweepLookbackS: r.int("CREDIT_EXPIRY_SWEEP_LOOKBACK_S", 7 * 86_400, 60, 366 * 86_400)
	};
}
