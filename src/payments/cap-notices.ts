/**
 * The spend caps' notice (issue 19 part 5): when a hold is refused by a monthly cap, one durable
 * `billing.cap_reached` per payer, cap and month (src/payments/billing-notices.ts noticeOnce, the
 * crossing `<counter>:<month>`), which the users service mails to the payer (an organisation's
 * billing members). Refusals after the first in the same month publish nothing more.
 */
import type { Sequelize, Transaction } from "sequelize";
import { BILLING_CAP_REACHED, noticeOnce } from "./billing-notices";
import { CAP_CODES, type CapScope, type SpendCounter } from "./spend-caps";

const SCOPE_OF_CODE = new Map(Object.entries(CAP_CODES).map(([scope, code]) => [code, scope as CapScope]));

/** The cap scope of a refusal's code, or null for any other error. */
export function capScopeOf(err: unknown): CapScope | null {
	const code = (err as { code?: unknown })?.code;
	return typeof code === "string" ? (SCOPE_OF_CODE.get(code) ?? null) : null;
}

/** What `billing.cap_reached` carries. */
export interface CapReachedNotice {
	payerId: string;
	scope: CapScope;
	/** The member (scope member) or the key (scope key); null for the payer's own cap. */
	memberId: string | null;
	keyId: string | null;
	capCredits: string;
	month: string;
}

/** Publishes the notice of a cap refusal once per payer, counter and month; false when it went out already. */
export async function noticeCapReached(
	sequelize: Sequelize,
	publish: (tx: Transaction, topic: string, payload: unknown) => Promise<unknown>,
	refusal: { scope: CapScope; details: unknown },
	hold: { payerId: string; memberId: string | null; keyId: string | null; counters: SpendCounter[] }
): Promise<boolean> {
	const d = (refusal.details ?? {}) as { capCredits?: unknown; month?: unknown };
	const counter = hold.counters.find(c => c.code === CAP_CODES[refusal.scope]);
	if (!counter || typeof d.month !== "string") return false;
	const details: CapReachedNotice = {
		payerId: hold.payerId,
		scope: refusal.scope,
		memberId: refusal.scope === "member" ? hold.memberId : null,
		keyId: refusal.scope === "key" ? hold.keyId : null,
		capCredits: String(d.capCredits ?? counter.cap ?? "0"),
		month: d.month
	};
	return sequelize.transaction(tx =>
		noticeOnce(sequelize, tx, publish, {
			payerId: hold.payerId,
			kind: "cap_reached",
			crossing: `${counter.counter}:${d.month}`,
			topic: BILLING_CAP_REACHED,
			details: { ...details }
		})
	);
}
