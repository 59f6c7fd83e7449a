/**
 * Organisation API keys (docs/orgs.md "API keys"): a key made for an organisation acts as its
 * creator within that organisation only. The permissions middleware refuses such a key on every
 * action that does not declare `orgKey: true` (403 ORG_KEY_NOT_ALLOWED); an action that does keeps
 * it inside the organisation with these rules. Anything outside answers 404, as it does for someone
 * who may not see it: the creator's personal projects, tasks and wallet, and other organisations.
 */
import { Forbidden, NotFound, Unprocessable } from "../errors";
import { isUuid } from "../kit/uuid";
import type { AuthUser } from "./user";

/** The organisation the caller's key is bound to; null for sessions and personal keys. */
export function orgOfKey(user: AuthUser | null | undefined): string | null {
	return user?.orgId ?? null;
}

/** 404 unless `orgId` (of a resource, or null for a personal one) is the key's organisation. */
export function requireInKeyOrg(user: AuthUser | null | undefined, orgId: string | null, what: string): void {
	const keyOrg = orgOfKey(user);
	if (keyOrg && orgId !== keyOrg) throw NotFound(what);
}

/**
 * The organisation a request names (`?orgId=` / `orgId`), defaulting to the key's own for an
 * organisation key; another organisation is 404. This runs in hooks, before the action's params are
 * validated, so a malformed id is refused here as validation would (422), not taken for another
 * organisation.
 */
export function orgOfRequest(user: AuthUser | null | undefined, orgId: string | undefined): string | undefined {
	const keyOrg = orgOfKey(user);
	if (!keyOrg) return orgId;
	if (orgId !== undefined && !isUuid(orgId))
		throw Unprocessable("Some fields are invalid", [
			{ field: "orgId", message: "The 'orgId' field must be a valid UUID.", type: "uuid" }
		]);
	if (orgId !== undefined && orgId !== keyOrg) throw NotFound("Organisation");
	return keyOrg;
}

/** A refusal for what an organisation key can never do (personal resources with no organisation). */
export const OrgKeyNotAllowed = (what: string) =>
	Forbidden(`An organisation API key cannot ${what}; it acts only within its organisation`, "ORG_KEY_NOT_ALLOWED");
