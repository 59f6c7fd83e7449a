/**
 * Payers (issue 19): whose wallet a ledger operation uses. A payer is a user (its id) or an
 * organisation (`org:<orgUuid>`); the ledger's `user_id` columns hold the payer id.
 */
import { Forbidden, NotFound } from "../errors";

const ORG_PREFIX = "org:";

export const orgPayerId = (orgId: string) => `${ORG_PREFIX}${orgId}`;
export const isOrgPayer = (payerId: string) => payerId.startsWith(ORG_PREFIX);
export const orgIdOfPayer = (payerId: string) => (isOrgPayer(payerId) ? payerId.slice(ORG_PREFIX.length) : null);

/** Organisation roles that may act for the organisation's payer on billing routes. */
export const BILLING_ROLES: ReadonlySet<string> = new Set(["owner", "admin", "billing"]);

/**
 * The payer a billing request acts for: the caller, or the organisation named by `?orgId=` when the
 * caller's role there may see its billing (404 for a non-member, 403 `INSUFFICIENT_ROLE` for a member).
 */
export async function payerOfRequest(
	roleOf: (orgId: string, userId: string) => Promise<{ role: string } | null>,
	userId: string,
	orgId: string | undefined
): Promise<string> {
	if (!orgId) return userId;
	const m = await roleOf(orgId, userId);
	if (!m) throw NotFound("Organisation");
	if (!BILLING_ROLES.has(m.role))
		throw Forbidden(
			"Only the organisation's owners, admins and billing members see its billing",
			"INSUFFICIENT_ROLE"
		);
	return orgPayerId(orgId);
}
