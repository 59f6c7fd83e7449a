/**
 * Credits given rather than bought: the welcome grant at sign-up and operators' grants. Each is a
 * lot from `sys:promo`, idempotent on its key (a repeated key grants once). Promotional credit
 * expires after PROMO_GRANT_TTL_S unless the grant names its own expiry.
 */
import type { Transaction } from "sequelize";
import type { Ledger, Posted } from "./ledger";

export interface Grant {
	userId: string;
	credits: bigint;
	source: "promo" | "paid";
	expiresAt: Date | null;
	/** The idempotency key. */
	key: string;
	operator: string;
	description: string;
}

/** Posts `g` in the caller's transaction. */
export function postGrant(ledger: Pick<Ledger, "credit">, tx: Transaction, g: Grant): Promise<Posted> {
	return ledger.credit(tx, {
		kind: "grant",
		userId: g.userId,
		credits: g.credits,
		from: "sys:promo",
		source: g.source,
		expiresAt: g.expiresAt,
		causeType: "grant",
		causeId: g.key,
		operator: g.operator,
		description: g.description
	});
}

/** payments.grant's params. */
export interface GrantRequest {
	userId: string;
	credits: number;
	operator: string;
	reason: string;
	source: "promo" | "paid";
	expiresAt?: Date;
	key?: string;
}

/** An operator's grant (payments.grant): without a key it is a new grant each time. */
export async function grantCredits(
	ledger: Pick<Ledger, "credit" | "run">,
	p: GrantRequest,
	opts: { promoTtlS: number; now: number }
) {
	const expiresAt =
		p.expiresAt ?? (p.source === "promo" && opts.promoTtlS > 0 ? new Date(opts.now + opts.promoTtlS * 1000) : null);
	const key = p.key ?? `${p.operator}:${opts.now}:${Math.random().toString(36).slice(2)}`;
	const grant = { ...p, credits: BigInt(p.credits), expiresAt, key, description: p.reason };
	const posted = await ledger.run(tx => postGrant(ledger, tx, grant));
	return {
		transactionId: posted.id,
		duplicate: posted.duplicate,
		credits: p.credits,
		expiresAt: expiresAt?.toISOString() ?? null
	};
}
