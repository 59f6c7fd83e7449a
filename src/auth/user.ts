/** The small, picked user object that travels in ctx.meta.user — never a database row. */
export type Role = "user" | "admin" | "operator";

export interface AuthUser {
	id: string;
	role: Role;
	/** Session id (refresh-token family) for bearer tokens; absent for API keys. */
	sid?: string;
	/** API key id when authenticated with X-API-Key. */
	keyId?: string;
	/** API keys with an expiry only: when it ends (epoch ms); a remembered key is refused from then on. */
	keyExpiresAt?: number;
	/**
	 * Organisation API keys only: the organisation the key is bound to. Such a key acts as its creator
	 * within that organisation alone (docs/orgs.md "API keys"; src/auth/org-key.ts).
	 */
	orgId?: string;
	/**
	 * API keys only: the key's model allow-list, /v1 monthly budget and rates (src/compat/prepare.ts),
	 * and its monthly spend cap at every hold (src/payments/spend-caps.ts).
	 */
	keyLimits?: {
		models: string[] | null;
		monthlyBudgetCredits: number | null;
		monthlyCapCredits?: number | null;
		rpm: number | null;
		tpm: number | null;
	};
	/** Scopes granted (API keys may be narrower than the user's role). */
	scopes: string[];
}
