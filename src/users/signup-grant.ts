/**
 * The welcome grant: SIGNUP_GRANT_CREDITS of promotional credit (with an expiry), once per proven
 * identity — a verified e-mail address (or, where configured, the address given at sign-up) or a
 * wallet whose signature was checked — and at most once per account.
 *
 * Farming: `signup_grants` has the identity as primary key and the user id as a unique key, so a
 * deleted and re-created account with the same address, or a second account proving the same wallet,
 * gets nothing. Addresses are stored as a SHA-256 (the row outlives the account). Grants are limited
 * per client IP per day by their own limiter (SIGNUP_GRANT_PER_IP_PER_DAY), apart from the sign-up limit.
 *
 * Delivery: the row and a durable `users.signup.granted` event commit together (transactional outbox),
 * payments credits it on the ledger cause `grant/grant/signup:<identity>` (idempotent). So that the
 * newcomer can spend it at once, the same grant is also asked of `payments.grant` right after commit;
 * whichever arrives second is a no-op on the same cause.
 */
import { createHash } from "node:crypto";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import type { RateLimiterAbstract } from "rate-limiter-flexible";
import type { SignupGrantConfig } from "./config";

export const SIGNUP_GRANTED = "users.signup.granted";

export type GrantIdentity = { kind: "email"; email: string } | { kind: "wallet"; address: string };

/** The moment an identity is proven: at sign-up (e-mail given), on verification, by a wallet signature. */
export type GrantMoment = "signup" | "verified" | "wallet";

export interface SignupGrantEvent {
	userId: string;
	credits: number;
	expiresAt: string;
	/** The ledger's idempotency key for this grant. */
	key: string;
}

export type GrantOutcome =
	| { granted: true; event: SignupGrantEvent }
	| { granted: false; reason: "off" | "not-now" | "already-granted" | "ip-limit" };

/** Stable key of an identity; e-mail addresses (already normalised) only as a hash. */
export function identityKey(id: GrantIdentity): string {
	if (id.kind === "wallet") return `wallet:${id.address.toLowerCase()}`;
	return `email:${createHash("sha256").update(id.email).digest("hex")}`;
}

/** Whether an identity proven at this moment earns the grant under this configuration. */
export function earnsGrant(cfg: SignupGrantConfig, id: GrantIdentity, moment: GrantMoment): boolean {
	if (cfg.credits <= 0) return false;
	if (id.kind === "wallet") return moment === "wallet";
	// A verification always qualifies (in `signup` mode the account usually has its grant by then).
	return moment === "verified" || (moment === "signup" && cfg.emailOn === "signup");
}

export class SignupGrants {
	constructor(
		private readonly d: {
			sequelize: Sequelize;
			cfg: SignupGrantConfig;
			ipLimiter: RateLimiterAbstract;
			publish: (tx: Transaction, topic: string, payload: SignupGrantEvent) => Promise<unknown>;
			now?: () => Date;
		}
	) {}

	/**
	 * Records the grant and its event if this identity and this account never had one and the IP is
	 * within its limit. Never throws for a refusal: the caller's request goes on either way.
	 */
	async offer(userId: string, id: GrantIdentity, moment: GrantMoment, ip: string | undefined): Promise<GrantOutcome> {
		const cfg = this.d.cfg;
		if (cfg.credits <= 0) return { granted: false, reason: "off" };
		if (!earnsGrant(cfg, id, moment)) return { granted: false, reason: "not-now" };
		const identity = identityKey(id);
		const [seen] = await this.d.sequelize.query<{ n: number }>(
			`SELECT 1 AS n FROM signup_grants WHERE identity = $1 OR user_id = $2 LIMIT 1`,
			{ bind: [identity, userId], type: QueryTypes.SELECT }
		);
		if (seen) return { granted: false, reason: "already-granted" };
		// Spent only by identities that would get a grant: retries of a granted one do not use the budget.
		try {
			await this.d.ipLimiter.consume(ip ?? "unknown");
		} catch (err) {
			if (err instanceof Error) throw err; // the store failed (not a refusal)
			return { granted: false, reason: "ip-limit" };
		}
		const now = this.d.now?.() ?? new Date();
		const event: SignupGrantEvent = {
			userId,
			credits: cfg.credits,
			expiresAt: new Date(now.getTime() + cfg.ttlS * 1000).toISOString(),
			key: `signup:${identity}`
		};
		const granted = await this.d.sequelize.transaction(async tx => {
			const rows = await this.d.sequelize.query<{ identity: string }>(
				`INSERT INTO signup_grants (identity, user_id, credits, expires_at, ip) VALUES ($1, $2, $3, $4, $5)
				 ON CONFLICT DO NOTHING RETURNING identity`,
				{
					bind: [identity, userId, cfg.credits, event.expiresAt, ip ?? null],
					type: QueryTypes.SELECT,
					transaction: tx
				}
			);
			if (!rows.length) return false; // a racing proof of the same identity or account won
			await this.d.publish(tx, SIGNUP_GRANTED, event);
			return true;
		});
		return granted ? { granted: true, event } : { granted: false, reason: "already-granted" };
	}
}

/** Checks a `users.signup.granted` payload (a consumer trusts no shape). */
export function parseSignupGranted(p: unknown): SignupGrantEvent {
	const e = p as Partial<SignupGrantEvent>;
	if (
		!e ||
		typeof e.userId !== "string" ||
		!Number.isSafeInteger(e.credits) ||
		(e.credits as number) <= 0 ||
		typeof e.expiresAt !== "string" ||
		Number.isNaN(Date.parse(e.expiresAt)) ||
		typeof e.key !== "string" ||
		!e.key.startsWith("signup:")
	)
		throw new Error(`malformed ${SIGNUP_GRANTED} payload`);
	return e as SignupGrantEvent;
}
