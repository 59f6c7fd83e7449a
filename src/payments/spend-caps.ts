/**
 * Monthly spend caps (issue 19 part 2): which counters a hold moves and which cap refuses it.
 *
 * THE RULE. Every hold adds its amount (the discounted worst case plus the boost fee) to the
 * counters of the calendar month (UTC) it is taken in: always the payer's, the member's when the
 * payer is an organisation, the API key's when the work came with a key. A settlement gives back the
 * part it did not charge, a release the whole hold, both to the counters of the hold's own month, so
 * a counter is the month's held + settled spend. A hold is refused when it would take any counter
 * past its cap, with that cap's code (402): the member's first, then the key's, then the payer's.
 *
 * WHY counters are kept without a cap: a cap set in the middle of a month then counts what was
 * already spent that month. WHY in the hold's own statement (ledger_reserve_capped, migration
 * 20261205-3500): a check before the hold could be passed by concurrent holds together; the counter
 * rows are updated conditionally and row-locked in the same subtransaction as the hold, so concurrent
 * holds on any number of nodes never pass a cap together, and a refused hold changes no counter.
 */
import { isOrgPayer } from "./payer";

export type CapScope = "member" | "key" | "payer";

export const CAP_CODES: Readonly<Record<CapScope, string>> = Object.freeze({
	member: "MEMBER_CAP_REACHED",
	key: "KEY_CAP_REACHED",
	payer: "PAYER_CAP_REACHED"
});

export const CAP_MESSAGES: Readonly<Record<CapScope, string>> = Object.freeze({
	member: "This task would pass your monthly spend cap in this organisation",
	key: "This task would pass this API key's monthly spend cap",
	payer: "This task would pass the payer's monthly spend cap"
});

/** Caps in credits per calendar month (UTC); null or absent: none. */
export interface SpendCaps {
	member?: number | null;
	key?: number | null;
	payer?: number | null;
}

/** One counter a hold moves: the ledger function's `p_caps` element. */
export interface SpendCounter {
	counter: string;
	cap: string | null;
	code: string;
	message: string;
}

/** The counters a hold of `payerId` for `memberId` (with `keyId`) moves, in the order they are checked. */
export function spendCounters(p: {
	payerId: string;
	memberId?: string | null;
	keyId?: string | null;
	caps?: SpendCaps | null;
}): SpendCounter[] {
	const out: SpendCounter[] = [];
	const add = (scope: CapScope, counter: string) => {
		const cap = p.caps?.[scope];
		if (cap != null && (!Number.isSafeInteger(cap) || cap < 0)) throw new RangeError(`invalid ${scope} cap ${cap}`);
		out.push({
			counter,
			cap: cap == null ? null : String(cap),
			code: CAP_CODES[scope],
			message: CAP_MESSAGES[scope]
		});
	};
	// A member's cap is on an organisation's wallet; a user paying for itself has the payer cap.
	if (p.memberId && isOrgPayer(p.payerId) && p.memberId !== p.payerId)
		add("member", `member:${p.payerId}:${p.memberId}`);
	if (p.keyId) add("key", `key:${p.keyId}`);
	add("payer", `payer:${p.payerId}`);
	return out;
}

/** The first counter that `amount` more would take past its cap (the model of the SQL; unit tests). */
export function capRefusal(
	counters: readonly SpendCounter[],
	spent: ReadonlyMap<string, bigint>,
	amount: bigint
): SpendCounter | null {
	for (const c of counters) if (c.cap != null && (spent.get(c.counter) ?? 0n) + amount > BigInt(c.cap)) return c;
	return null;
}

/** The first day of the calendar month (UTC) of `at`, as the counters' `month` (YYYY-MM-01). */
export function capMonth(at: Date): string {
	return `${at.toISOString().slice(0, 7)}-01`;
}

/** What a settlement gives back to the hold's counters: the part of the hold it did not charge. */
export function settledGiveBack(held: bigint, charged: bigint): bigint {
	if (charged < 0n || charged > held) throw new RangeError(`charge ${charged} outside the hold ${held}`);
	return held - charged;
}
