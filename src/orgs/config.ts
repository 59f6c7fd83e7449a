/** The orgs service's settings (documented in docs/orgs.md). */
import type { EnvReader } from "../env-reader";

export interface OrgsConfig {
	/** Lifetime of an invitation link. */
	invitationTtlS: number;
	/** Invitations pending at once per organisation. */
	maxPendingInvitations: number;
	/** Organisations one user may own. */
	maxOwnedPerUser: number;
	/** Members per organisation. */
	maxMembers: number;
}

export function loadOrgsConfig(r: EnvReader): OrgsConfig {
	return {
		invitationTtlS: r.int("ORG_INVITATION_TTL_S", 7 * 86_400, 300, 90 * 86_400),
		maxPendingInvitations: r.int("ORG_MAX_PENDING_INVITATIONS", 100, 1, 10_000),
		maxOwnedPerUser: r.int("ORGS_MAX_OWNED_PER_USER", 10, 1, 1000),
		maxMembers: r.int("ORG_MAX_MEMBERS", 500, 1, 10_000)
	};
}
