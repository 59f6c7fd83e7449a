/**
 * Organisations in PostgreSQL. Every change of membership locks the organisation's row first
 * (`SELECT … FOR UPDATE`), then applies src/orgs/rules.ts to what it read: concurrent leaves,
 * demotions and removals of owners run one after the other, so the last owner is never lost.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { Conflict, DomainError, Forbidden, NotFound } from "../errors";
import { memberChangeRefusal, orgCan, type OrgAction, type OrgRole } from "./rules";
import { UUID_PATTERN } from "../kit/uuid";

export interface OrgRow {
	id: string;
	name: string;
	/** The organisation's own monthly spend cap on its wallet (credits); null: none. */
	monthly_cap_credits: string | null;
	created_by: string;
	created_at: Date;
	updated_at: Date;
}

export interface MemberRow {
	org_id: string;
	user_id: string;
	role: OrgRole;
	monthly_cap_credits: string | null;
	added_by: string | null;
	created_at: Date;
	updated_at: Date;
}

export interface InvitationRow {
	id: string;
	org_id: string;
	email: string;
	role: OrgRole;
	invited_by: string;
	expires_at: Date;
	accepted_at: Date | null;
	created_at: Date;
}

/** Runs inside the transaction that changed an organisation's member count (the seats event). */
export type MembersChanged = (tx: Transaction, orgId: string) => Promise<void>;

export const INVITATION_TOKEN_PATTERN = /^ffi_[A-Za-z0-9_-]{43}$/;
const hashToken = (token: string) => createHash("sha256").update(token).digest();

const REFUSALS = {
	INSUFFICIENT_ROLE: "Your role in this organisation does not allow this",
	OWNER_REQUIRED: "Only an owner may make, change or remove an owner",
	LAST_OWNER: "An organisation keeps at least one owner: make another member owner first"
} as const;

export class OrgStore {
	constructor(private readonly db: Sequelize) {}

	private rows<T extends object>(sql: string, bind: unknown[], tx?: Transaction): Promise<T[]> {
		return this.db.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx });
	}

	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
		return this.db.transaction(fn);
	}

	async create(userId: string, name: string, maxPerUser: number): Promise<{ org: OrgRow; member: MemberRow }> {
		return this.transaction(async tx => {
			// One creator at a time per user, so the limit holds under parallel requests.
			await this.db.query(`SELECT pg_advisory_xact_lock(hashtext('orgs:create:' || $1))`, {
				bind: [userId],
				transaction: tx
			});
			const [{ n }] = await this.rows<{ n: string }>(
				`SELECT count(*) AS n FROM org_members WHERE user_id = $1 AND role = 'owner'`,
				[userId],
				tx
			);
			if (Number(n) >= maxPerUser)
				throw Conflict(`A user may own at most ${maxPerUser} organisations`, "ORG_LIMIT");
			const [org] = await this.rows<OrgRow>(
				`INSERT INTO orgs (id, name, created_by) VALUES ($1, $2, $3) RETURNING *`,
				[randomUUID(), name, userId],
				tx
			);
			const [member] = await this.rows<MemberRow>(
				`INSERT INTO org_members (org_id, user_id, role, added_by) VALUES ($1, $2, 'owner', $2) RETURNING *`,
				[org.id, userId],
				tx
			);
			return { org, member };
		});
	}

	async listFor(userId: string): Promise<Array<OrgRow & { role: OrgRole; members: string }>> {
		return this.rows(
			`SELECT o.*, m.role, (SELECT count(*) FROM org_members x WHERE x.org_id = o.id) AS members
			 FROM org_members m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY o.created_at, o.id`,
			[userId]
		);
	}

	async membership(orgId: string, userId: string, tx?: Transaction): Promise<MemberRow | null> {
		const [m] = await this.rows<MemberRow>(
			`SELECT * FROM org_members WHERE org_id = $1 AND user_id = $2`,
			[orgId, userId],
			tx
		);
		return m ?? null;
	}

	/**
	 * The organisation if `userId` is a member whose role allows `action`. A non-member gets 404 (the
	 * organisation is not revealed), a member without the role 403 INSUFFICIENT_ROLE.
	 */
	async authorize(
		orgId: string,
		userId: string,
		action: OrgAction,
		tx?: Transaction,
		lock = false
	): Promise<{ org: OrgRow; role: OrgRole }> {
		const [row] = await this.rows<OrgRow & { role: OrgRole }>(
			`SELECT o.*, m.role FROM orgs o JOIN org_members m ON m.org_id = o.id AND m.user_id = $2
			 WHERE o.id = $1 ${lock ? "FOR UPDATE OF o" : ""}`,
			[orgId, userId],
			tx
		);
		if (!row) throw NotFound("Organisation");
		if (!orgCan(row.role, action)) throw Forbidden(REFUSALS.INSUFFICIENT_ROLE, "INSUFFICIENT_ROLE");
		const { role, ...org } = row;
		return { org, role };
	}

	async memberCount(orgId: string, tx?: Transaction): Promise<number> {
		const [{ n }] = await this.rows<{ n: string }>(
			`SELECT count(*) AS n FROM org_members WHERE org_id = $1`,
			[orgId],
			tx
		);
		return Number(n);
	}

	/** Renames and/or sets the monthly cap (`null` clears it; absent fields stay as they are). */
	async update(
		orgId: string,
		userId: string,
		next: { name?: string; monthlyCapCredits?: number | null }
	): Promise<OrgRow> {
		return this.transaction(async tx => {
			await this.authorize(orgId, userId, "update", tx, true);
			const [org] = await this.rows<OrgRow>(
				`UPDATE orgs SET name = coalesce($2, name),
					monthly_cap_credits = CASE WHEN $3::boolean THEN $4::bigint ELSE monthly_cap_credits END,
					updated_at = now()
				 WHERE id = $1 RETURNING *`,
				[orgId, next.name ?? null, next.monthlyCapCredits !== undefined, next.monthlyCapCredits ?? null],
				tx
			);
			return org;
		});
	}

	/**
	 * A member's role with the caps that bound their spending on the organisation's wallet (their own
	 * and the organisation's), or null for a non-member.
	 */
	async memberWithCaps(
		orgId: string,
		userId: string
	): Promise<(MemberRow & { org_monthly_cap_credits: string | null }) | null> {
		const [m] = await this.rows<MemberRow & { org_monthly_cap_credits: string | null }>(
			`SELECT m.*, o.monthly_cap_credits AS org_monthly_cap_credits
			 FROM org_members m JOIN orgs o ON o.id = m.org_id WHERE m.org_id = $1 AND m.user_id = $2`,
			[orgId, userId]
		);
		return m ?? null;
	}

	/** Organisations an operator names: by id, else by name (case-insensitive; names are not unique). */
	async find(ref: string): Promise<OrgRow[]> {
		if (UUID_PATTERN.test(ref)) return this.rows<OrgRow>(`SELECT * FROM orgs WHERE id = $1`, [ref]);
		return this.rows<OrgRow>(`SELECT * FROM orgs WHERE lower(name) = lower($1) ORDER BY created_at LIMIT 20`, [
			ref
		]);
	}

	async members(orgId: string): Promise<MemberRow[]> {
		return this.rows<MemberRow>(
			`SELECT * FROM org_members WHERE org_id = $1 ORDER BY created_at, user_id LIMIT 1000`,
			[orgId]
		);
	}

	/**
	 * Sets a member's role and/or monthly cap (`next.role` null: remove the member). Under the
	 * organisation's lock; refusals per src/orgs/rules.ts. `membersChanged` runs in the same
	 * transaction when a member was removed (the durable seats event commits with the change).
	 */
	async changeMember(
		orgId: string,
		actorId: string,
		targetId: string,
		next: { remove: true } | { role?: OrgRole; monthlyCapCredits?: number | null },
		membersChanged?: MembersChanged
	): Promise<{ member: MemberRow | null; previous: MemberRow }> {
		return this.transaction(async tx => {
			const { role: actorRole } = await this.authorize(orgId, actorId, "view", tx, true);
			const target = await this.membership(orgId, targetId, tx);
			if (!target) throw NotFound("Member");
			const [{ n }] = await this.rows<{ n: string }>(
				`SELECT count(*) AS n FROM org_members WHERE org_id = $1 AND role = 'owner'`,
				[orgId],
				tx
			);
			const nextRole = "remove" in next ? null : (next.role ?? target.role);
			const refusal = memberChangeRefusal({
				actorId,
				actorRole,
				targetId,
				targetRole: target.role,
				next: nextRole,
				owners: Number(n)
			});
			// A cap is set by those who manage members, also on themselves.
			const capChange = !("remove" in next) && next.monthlyCapCredits !== undefined;
			if (capChange && !orgCan(actorRole, "manageMembers"))
				throw Forbidden(REFUSALS.INSUFFICIENT_ROLE, "INSUFFICIENT_ROLE");
			if (refusal === "LAST_OWNER") throw Conflict(REFUSALS.LAST_OWNER, "LAST_OWNER");
			if (refusal) throw Forbidden(REFUSALS[refusal], refusal);
			if (nextRole === null) {
				await this.rows(
					`DELETE FROM org_members WHERE org_id = $1 AND user_id = $2 RETURNING user_id`,
					[orgId, targetId],
					tx
				);
				await membersChanged?.(tx, orgId);
				return { member: null, previous: target };
			}
			const cap = "remove" in next ? undefined : next.monthlyCapCredits;
			const [member] = await this.rows<MemberRow>(
				`UPDATE org_members SET role = $3,
				        monthly_cap_credits = CASE WHEN $4::boolean THEN $5::bigint ELSE monthly_cap_credits END,
				        updated_at = now()
				 WHERE org_id = $1 AND user_id = $2 RETURNING *`,
				[orgId, targetId, nextRole, cap !== undefined, cap ?? null],
				tx
			);
			return { member, previous: target };
		});
	}

	/** A new invitation; the token is returned once (only its hash is kept). */
	async invite(
		orgId: string,
		actorId: string,
		email: string,
		role: OrgRole,
		ttlS: number,
		maxPending: number
	): Promise<{ invitation: InvitationRow; token: string; org: OrgRow }> {
		return this.transaction(async tx => {
			const { org } = await this.authorize(orgId, actorId, "invite", tx, true);
			const [{ n }] = await this.rows<{ n: string }>(
				`SELECT count(*) AS n FROM org_invitations WHERE org_id = $1 AND accepted_at IS NULL AND expires_at > now()`,
				[orgId],
				tx
			);
			if (Number(n) >= maxPending)
				throw Conflict(`At most ${maxPending} invitations may be pending`, "INVITATION_LIMIT");
			const token = `ffi_${randomBytes(32).toString("base64url")}`;
			const [invitation] = await this.rows<InvitationRow>(
				`INSERT INTO org_invitations (id, org_id, email, role, token_hash, invited_by, expires_at)
				 VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING *`,
				[randomUUID(), orgId, email, role, hashToken(token), actorId, ttlS],
				tx
			);
			return { invitation, token, org };
		});
	}

	/**
	 * Spends an invitation for `userId`, whose proven e-mail must be the invited one. One conditional
	 * UPDATE spends the token, so it works once; the membership is added in the same transaction.
	 * An unknown, spent or expired token and another address's token answer alike (401 INVALID_TOKEN),
	 * so a token found elsewhere reveals nothing.
	 */
	async accept(
		token: string,
		userId: string,
		verifiedEmail: string | null,
		maxMembers: number,
		membersChanged?: MembersChanged
	): Promise<{ org: OrgRow; member: MemberRow; alreadyMember: boolean }> {
		return this.transaction(async tx => {
			const [inv] = await this.rows<InvitationRow>(
				`SELECT * FROM org_invitations WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now() FOR UPDATE`,
				[hashToken(token)],
				tx
			);
			if (!inv || verifiedEmail === null || inv.email !== verifiedEmail)
				throw new DomainError(
					"INVALID_TOKEN",
					401,
					"This invitation is unknown, used, expired or for another address"
				);
			const [org] = await this.rows<OrgRow>(`SELECT * FROM orgs WHERE id = $1 FOR UPDATE`, [inv.org_id], tx);
			await this.rows(
				`UPDATE org_invitations SET accepted_at = now(), accepted_by = $2 WHERE id = $1 RETURNING id`,
				[inv.id, userId],
				tx
			);
			const existing = await this.membership(inv.org_id, userId, tx);
			if (existing) return { org, member: existing, alreadyMember: true };
			if ((await this.memberCount(inv.org_id, tx)) >= maxMembers)
				throw Conflict(`An organisation has at most ${maxMembers} members`, "MEMBER_LIMIT");
			const [member] = await this.rows<MemberRow>(
				`INSERT INTO org_members (org_id, user_id, role, added_by) VALUES ($1, $2, $3, $4) RETURNING *`,
				[inv.org_id, userId, inv.role, inv.invited_by],
				tx
			);
			await membersChanged?.(tx, inv.org_id);
			return { org, member, alreadyMember: false };
		});
	}
}
