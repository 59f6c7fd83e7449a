/**
 * The mail of a billing notice (payments' durable `billing.past_due`, `billing.auto_topup.failed`,
 * `billing.low_balance` and `billing.cap_reached`):
 * who gets it and what it says. A user payer is mailed at its address; an organisation payer at the addresses of its
 * members with a billing role (owner, admin, billing). Accounts without an address are skipped.
 */
import { InvalidEventPayload } from "./tier-facts";
import { isUuid } from "../kit/uuid";
import type { AccountMail } from "./mail-templates";

export interface PastDueNotice {
	payerId: string;
	planTier: string;
	graceEndsAt: string;
}

const ORG_PAYER = /^org:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

export function parsePastDueNotice(payload: unknown): PastDueNotice {
	const p = (payload ?? {}) as Record<string, unknown>;
	if (typeof p.payerId !== "string" || !(isUuid(p.payerId) || ORG_PAYER.test(p.payerId)))
		throw new InvalidEventPayload("payerId must be a user id or org:<uuid>");
	if (typeof p.planTier !== "string" || p.planTier.length > 32)
		throw new InvalidEventPayload("planTier must be a tier name");
	if (typeof p.graceEndsAt !== "string" || Number.isNaN(Date.parse(p.graceEndsAt)))
		throw new InvalidEventPayload("graceEndsAt must be an ISO date");
	return { payerId: p.payerId, planTier: p.planTier, graceEndsAt: new Date(p.graceEndsAt).toISOString() };
}

export interface NoticeSources {
	/** An organisation's name and the members with a billing role, or null when it is gone. */
	billingContactsOf(orgId: string): Promise<{ name: string; userIds: string[] } | null>;
	emailOf(userId: string): Promise<string | null>;
	appUrl: string;
}

/** A payer's auto top-up failed and was turned off (`billing.auto_topup.failed`). */
export interface AutoTopUpFailedNotice {
	payerId: string;
	packId: string;
	reason: string;
}

export function parseAutoTopUpFailed(payload: unknown): AutoTopUpFailedNotice {
	const p = (payload ?? {}) as Record<string, unknown>;
	if (typeof p.payerId !== "string" || !(isUuid(p.payerId) || ORG_PAYER.test(p.payerId)))
		throw new InvalidEventPayload("payerId must be a user id or org:<uuid>");
	if (typeof p.packId !== "string" || p.packId.length > 64) throw new InvalidEventPayload("packId must be a pack id");
	if (typeof p.reason !== "string" || !/^[a-z_]{1,64}$/.test(p.reason))
		throw new InvalidEventPayload("reason must be a Stripe error code");
	return { payerId: p.payerId, packId: p.packId, reason: p.reason };
}

/** A payer's available credit crossed under its threshold (`billing.low_balance`). */
export interface LowBalanceNotice {
	payerId: string;
	thresholdCredits: string;
	availableCredits: string;
}

export function parseLowBalance(payload: unknown): LowBalanceNotice {
	const p = (payload ?? {}) as Record<string, unknown>;
	if (typeof p.payerId !== "string" || !(isUuid(p.payerId) || ORG_PAYER.test(p.payerId)))
		throw new InvalidEventPayload("payerId must be a user id or org:<uuid>");
	for (const k of ["thresholdCredits", "availableCredits"] as const)
		if (typeof p[k] !== "string" || !/^-?[0-9]{1,20}$/.test(p[k] as string))
			throw new InvalidEventPayload(`${k} must be a decimal string`);
	return {
		payerId: p.payerId,
		thresholdCredits: p.thresholdCredits as string,
		availableCredits: p.availableCredits as string
	};
}

export function lowBalanceMails(n: LowBalanceNotice, src: NoticeSources): Promise<Array<[string, AccountMail]>> {
	return noticeMails(n.payerId, src, (orgName, link) => ({
		kind: "billingLowBalance",
		thresholdCredits: n.thresholdCredits,
		availableCredits: n.availableCredits,
		orgName,
		link
	}));
}

/** A hold was refused by a monthly spend cap (`billing.cap_reached`, once per payer, cap and month). */
export interface CapReachedNotice {
	payerId: string;
	scope: "member" | "key" | "payer";
	memberId: string | null;
	keyId: string | null;
	capCredits: string;
	month: string;
}

export function parseCapReached(payload: unknown): CapReachedNotice {
	const p = (payload ?? {}) as Record<string, unknown>;
	if (typeof p.payerId !== "string" || !(isUuid(p.payerId) || ORG_PAYER.test(p.payerId)))
		throw new InvalidEventPayload("payerId must be a user id or org:<uuid>");
	if (p.scope !== "member" && p.scope !== "key" && p.scope !== "payer")
		throw new InvalidEventPayload("scope must be member, key or payer");
	const optionalId = (k: "memberId" | "keyId") => {
		const v = p[k];
		if (v == null) return null;
		if (typeof v !== "string" || !/^[A-Za-z0-9._:@-]{1,128}$/.test(v))
			throw new InvalidEventPayload(`${k} must be an id`);
		return v;
	};
	if (typeof p.capCredits !== "string" || !/^[0-9]{1,20}$/.test(p.capCredits))
		throw new InvalidEventPayload("capCredits must be a decimal string");
	if (typeof p.month !== "string" || !/^[0-9]{4}-[0-9]{2}-01$/.test(p.month))
		throw new InvalidEventPayload("month must be YYYY-MM-01");
	return {
		payerId: p.payerId,
		scope: p.scope,
		memberId: optionalId("memberId"),
		keyId: optionalId("keyId"),
		capCredits: p.capCredits,
		month: p.month
	};
}

export function capReachedMails(n: CapReachedNotice, src: NoticeSources): Promise<Array<[string, AccountMail]>> {
	return noticeMails(n.payerId, src, (orgName, link) => ({
		kind: "billingCapReached",
		scope: n.scope,
		capCredits: n.capCredits,
		month: n.month.slice(0, 7),
		orgName,
		link
	}));
}

/** One mail per distinct address of the payer (or its organisation's billing members), built by `make`. */
async function noticeMails(
	payerId: string,
	src: NoticeSources,
	make: (orgName: string | null, link: string) => AccountMail
): Promise<Array<[string, AccountMail]>> {
	const org = ORG_PAYER.exec(payerId)?.[1] ?? null;
	let userIds = [payerId];
	let orgName: string | null = null;
	if (org) {
		const contacts = await src.billingContactsOf(org);
		if (!contacts) return [];
		userIds = contacts.userIds;
		orgName = contacts.name;
	}
	const mail = make(orgName, `${src.appUrl}/billing${org ? `?orgId=${org}` : ""}`);
	const out = new Map<string, AccountMail>();
	for (const id of userIds) {
		const email = await src.emailOf(id);
		if (email && !out.has(email)) out.set(email, mail);
	}
	return [...out];
}

/** The messages to send for one notice: `[address, mail]` pairs, one per distinct address. */
export function pastDueMails(n: PastDueNotice, src: NoticeSources): Promise<Array<[string, AccountMail]>> {
	return noticeMails(n.payerId, src, (orgName, link) => ({
		kind: "billingPastDue",
		planTier: n.planTier,
		graceEndsAt: n.graceEndsAt,
		orgName,
		link
	}));
}

export function autoTopUpFailedMails(
	n: AutoTopUpFailedNotice,
	src: NoticeSources
): Promise<Array<[string, AccountMail]>> {
	return noticeMails(n.payerId, src, (orgName, link) => ({
		kind: "billingAutoTopUpFailed",
		packId: n.packId,
		reason: n.reason,
		orgName,
		link
	}));
}
