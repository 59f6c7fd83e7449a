/**
 * The ledger's rules as plain functions: which credit lots a charge spends, how a settlement
 * splits a hold, how much a refund claws back. The store (ledger.ts) does the I/O and calls these.
 *
 * Spend order: promotional grants first (soonest expiry first), then bought credits (card and
 * FORGE alike, oldest first). Promotional credit expires and bought credit does not, so spending
 * promotional credit first loses the user the least to expiry, and bought credit stays unspent the
 * longest, which is what a refund or chargeback can still claw back.
 */
import { applyDiscount } from "../domain/tiers";

export type LotSource = "promo" | "paid" | "crypto";

/** Lower spends first. */
export const LOT_PRIORITY: Readonly<Record<LotSource, number>> = Object.freeze({ promo: 0, paid: 1, crypto: 1 });

export interface SpendableLot {
	id: string;
	remaining: bigint;
	priority: number;
	expiresAt: Date | null;
}

export interface Allocation {
	lotId: string;
	amount: bigint;
}

/** Sorts lots into spend order: priority, then soonest expiry (never-expiring last), then age (id). */
export function spendOrder<T extends SpendableLot>(lots: readonly T[]): T[] {
	return [...lots].sort((a, b) => {
		if (a.priority !== b.priority) return a.priority - b.priority;
		const ea = a.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
		const eb = b.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
		if (ea !== eb) return ea < eb ? -1 : 1;
		const ia = BigInt(a.id);
		const ib = BigInt(b.id);
		return ia < ib ? -1 : ia > ib ? 1 : 0;
	});
}

/**
 * Takes `amount` from lots in the order given. Returns the allocations and what could not be
 * covered (0n when the lots sufficed).
 */
export function allocate(
	lots: readonly SpendableLot[],
	amount: bigint
): { allocations: Allocation[]; shortfall: bigint } {
	if (amount < 0n) throw new RangeError(`amount must be >= 0, got ${amount}`);
	const allocations: Allocation[] = [];
	let left = amount;
	for (const lot of lots) {
		if (left === 0n) break;
		if (lot.remaining <= 0n) continue;
		const take = lot.remaining < left ? lot.remaining : left;
		allocations.push({ lotId: lot.id, amount: take });
		left -= take;
	}
	return { allocations, shortfall: left };
}

/**
 * Splits a hold's allocations into the part consumed by a charge and the part returned. The charge
 * consumes allocations in the order they were taken (spend order), so what is returned is the
 * tail: bought credit goes back before promotional credit.
 */
export function splitAllocations(
	allocations: readonly Allocation[],
	charge: bigint
): { consumed: Allocation[]; returned: Allocation[] } {
	const total = allocations.reduce((s, a) => s + a.amount, 0n);
	if (charge < 0n || charge > total) throw new RangeError(`charge ${charge} outside [0, ${total}]`);
	const consumed: Allocation[] = [];
	const returned: Allocation[] = [];
	let left = charge;
	for (const a of allocations) {
		const use = a.amount < left ? a.amount : left;
		left -= use;
		if (use > 0n) consumed.push({ lotId: a.lotId, amount: use });
		if (a.amount - use > 0n) returned.push({ lotId: a.lotId, amount: a.amount - use });
	}
	return { consumed, returned };
}

export interface HoldQuote {
	/** What is held: the discounted worst case plus any purchased boost fee. */
	amount: bigint;
	boostFee: bigint;
}

/** The amount to hold for a task: discounted worst-case cost plus the discounted boost fee. */
export function holdAmount(listMaxCost: bigint, discountBps: number, listBoostFee: bigint): HoldQuote {
	const boostFee = applyDiscount(listBoostFee, discountBps);
	return { amount: applyDiscount(listMaxCost, discountBps) + boostFee, boostFee };
}

/**
 * What a settlement charges: the discounted actual cost plus the boost fee, never more than the
 * hold (the hold is the user's consent to spend at most that much).
 */
export function settlementCharge(held: bigint, listActualCost: bigint, discountBps: number, boostFee: bigint): bigint {
	if (listActualCost < 0n) throw new RangeError(`actual cost must be >= 0, got ${listActualCost}`);
	const charge = applyDiscount(listActualCost, discountBps) + boostFee;
	return charge > held ? held : charge;
}

/**
 * Credits to claw back after a card refund: the share of the purchase refunded so far, rounded
 * down (the user keeps a partial credit), minus what was already clawed back. Refund events
 * carry the cumulative refunded amount, so replays and reordering converge on the same total.
 */
export function refundClawback(
	purchasedCredits: bigint,
	amountCents: bigint,
	refundedCents: bigint,
	alreadyClawed: bigint
): bigint {
	if (amountCents <= 0n) throw new RangeError("amountCents must be > 0");
	const refunded = refundedCents > amountCents ? amountCents : refundedCents < 0n ? 0n : refundedCents;
	const target = (purchasedCredits * refunded) / amountCents;
	return target > alreadyClawed ? target - alreadyClawed : 0n;
}
