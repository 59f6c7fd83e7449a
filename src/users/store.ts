/**
 * The users service's SQL. Statements that decide something under concurrency (a refresh-token
 * rotation, a wallet claim, a first wallet sign-in) are single atomic statements or run in one
 * transaction, so two racing requests can never both win.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import type { Role } from "../auth/user";
import type { StakePosition, TierName } from "../domain/tiers";
import type { WalletKind } from "./signatures";
import type { TierFacts } from "./tier-facts";
import { UUID_PATTERN } from "../kit/uuid";

export interface UserRow {
	id: string;
	email: string | null;
	email_verified_at: Date | null;
	password_hash: string | null;
	display_name: string | null;
	role: Role;
	tier_override: TierName | null;
	disabled_at: Date | null;
	last_login_at: Date | null;
	created_at: Date;
}

export interface WalletRow {
	address: string;
	user_id: string;
	chain_id: string;
	kind: WalletKind;
	linked_at: Date;
	last_sign_in_at: Date | null;
}

/** A wallet an organisation's owner or admin linked (org_wallets): its stake counts for the organisation. */
export interface OrgWalletRow {
	address: string;
	org_id: string;
	chain_id: string;
	kind: WalletKind;
	linked_by: string;
	linked_at: Date;
}

export interface SessionRow {
	id: string;
	user_id: string;
	method: "password" | "siwe" | "passkey" | "sso";
	ip: string | null;
	user_agent: string | null;
	created_at: Date;
	last_refreshed_at: Date;
	expires_at: Date;
	revoked_at: Date | null;
	revoked_reason: string | null;
}

export interface ApiKeyRow {
	id: string;
	user_id: string;
	name: string;
	scopes: string[];
	created_at: Date;
	expires_at: Date | null;
	last_used_at: Date | null;
	revoked_at: Date | null;
	allowed_models: string[] | null;
	monthly_budget_credits: string | null;
	/** The key's monthly spend cap at every hold (migration 20261205-1500); null: none. */
	monthly_cap_credits: string | null;
	rpm: number | null;
	tpm: number | null;
	/** An organisation key's organisation (migration 1540); null for a personal key. */
	org_id: string | null;
}

/** What an API key may do beyond its scopes (null: no limit); see migrations 1700 and 20261205-1500. */
export interface ApiKeyLimitsInput {
	models: string[] | null;
	monthlyBudgetCredits: number | null;
	monthlyCapCredits?: number | null;
	rpm: number | null;
	tpm: number | null;
}

const API_KEY_COLUMNS =
	"id, user_id, name, scopes, created_at, expires_at, last_used_at, revoked_at, allowed_models, monthly_budget_credits, monthly_cap_credits, rpm, tpm, org_id";

const USER_COLUMNS =
	"id, email, email_verified_at, password_hash, display_name, role, tier_override, disabled_at, last_login_at, created_at";

/** What verifying an API key reads: the key, its owner's role, and whether it may be used now. */
export type ApiKeyForVerification = Pick<
	ApiKeyRow,
	| "id"
	| "user_id"
	| "scopes"
	| "last_used_at"
	| "allowed_models"
	| "monthly_budget_credits"
	| "monthly_cap_credits"
	| "rpm"
	| "tpm"
	| "org_id"
> & { secret_hash: Buffer; role: Role; usable: boolean; expires_at?: Date | null };

export type RotateResult =
	| {
			kind: "rotated";
			sessionId: string;
			userId: string;
			role: Role;
			refreshToken: { expiresAt: Date };
			graced?: boolean;
	  }
	| { kind: "reused"; sessionId: string; userId: string }
	| { kind: "invalid" };

export class UsersStore {
	constructor(private readonly db: Sequelize) {}

	private rows<T extends object>(sql: string, bind: unknown[] = [], transaction?: Transaction): Promise<T[]> {
		return this.db.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction });
	}

	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
		return this.db.transaction(fn);
	}

	// ── users ────────────────────────────────────────────────────────────────────────────────

	/** Null when the e-mail is taken. */
	async createPasswordUser(email: string, passwordHash: string, displayName: string | null): Promise<UserRow | null> {
		const [row] = await this.rows<UserRow>(
			`INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)
			 ON CONFLICT (email) DO NOTHING RETURNING ${USER_COLUMNS}`,
			[randomUUID(), email, passwordHash, displayName]
		);
		return row ?? null;
	}

	async userById(id: string, tx?: Transaction): Promise<UserRow | null> {
		const [row] = await this.rows<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE id = $1`, [id], tx);
		return row ?? null;
	}

	async userByEmail(email: string): Promise<UserRow | null> {
		const [row] = await this.rows<UserRow>(`SELECT ${USER_COLUMNS} FROM users WHERE email = $1`, [email]);
		return row ?? null;
	}

	async setPasswordHash(userId: string, hash: string): Promise<void> {
		await this.db.query(`UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1`, {
			bind: [userId, hash]
		});
	}

	async touchLogin(userId: string): Promise<void> {
		await this.db.query(`UPDATE users SET last_login_at = now() WHERE id = $1`, { bind: [userId] });
	}

	async setDisplayName(userId: string, displayName: string | null): Promise<void> {
		await this.db.query(`UPDATE users SET display_name = $2, updated_at = now() WHERE id = $1`, {
			bind: [userId, displayName]
		});
	}

	/** Applies an admin's changes; returns the row before and after, or null for an unknown user. */
	async adminUpdate(
		userId: string,
		patch: { role?: Role; tierOverride?: TierName | null; disabled?: boolean },
		audit: { actorId: string }
	): Promise<{ before: UserRow; after: UserRow } | null> {
		return this.transaction(async tx => {
			const [before] = await this.rows<UserRow>(
				`SELECT ${USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE`,
				[userId],
				tx
			);
			if (!before) return null;
			const sets: string[] = [];
			const bind: unknown[] = [userId];
			if (patch.role !== undefined) sets.push(`role = $${bind.push(patch.role)}`);
			if (patch.tierOverride !== undefined) sets.push(`tier_override = $${bind.push(patch.tierOverride)}`);
			if (patch.disabled !== undefined)
				sets.push(patch.disabled ? "disabled_at = COALESCE(disabled_at, now())" : "disabled_at = NULL");
			if (!sets.length) return { before, after: before };
			const [after] = await this.rows<UserRow>(
				`UPDATE users SET ${sets.join(", ")}, updated_at = now() WHERE id = $1 RETURNING ${USER_COLUMNS}`,
				bind,
				tx
			);
			if (patch.disabled) await this.revokeAllSessionsTx(tx, userId, "user_disabled");
			await this.audit(tx, userId, audit.actorId, "admin.update", patch);
			return { before, after };
		});
	}

	async audit(
		tx: Transaction | undefined,
		userId: string,
		actorId: string,
		action: string,
		details: unknown
	): Promise<void> {
		await this.db.query(
			`INSERT INTO user_audit_events (user_id, actor_id, action, details) VALUES ($1, $2, $3, $4::jsonb)`,
			{
				bind: [userId, actorId, action, JSON.stringify(details)],
				transaction: tx
			}
		);
	}

	/**
	 * Newest first, keyset-paginated on (created_at, id). `q` is an e-mail prefix, a full user id or a
	 * wallet address (prefix).
	 */
	async listUsers(opts: {
		limit: number;
		/** The (created_at, id) of the last row of the previous page: an ISO instant to the microsecond. */
		after: { createdAt: string; id: string } | null;
		q: string | null;
		role: Role | null;
		disabled: boolean | null;
	}): Promise<Array<UserRow & { wallets: string[]; cursor_at: string }>> {
		const where: string[] = [];
		const bind: unknown[] = [];
		if (opts.after)
			where.push(
				`(u.created_at, u.id) < ($${bind.push(opts.after.createdAt)}::timestamptz, $${bind.push(opts.after.id)}::uuid)`
			);
		if (opts.role) where.push(`u.role = $${bind.push(opts.role)}`);
		if (opts.disabled !== null) where.push(opts.disabled ? "u.disabled_at IS NOT NULL" : "u.disabled_at IS NULL");
		if (opts.q) {
			const q = opts.q.toLowerCase();
			const like = q.replace(/[\\%_]/g, m => `\\${m}`) + "%";
			if (UUID_PATTERN.test(q)) where.push(`u.id = $${bind.push(q)}::uuid`);
			else if (/^0x[0-9a-f]{0,40}$/.test(q))
				where.push(
					`EXISTS (SELECT 1 FROM user_wallets w WHERE w.user_id = u.id AND w.address LIKE $${bind.push(like)})`
				);
			else where.push(`u.email LIKE $${bind.push(like)}`);
		}
		bind.push(opts.limit);
		return this.rows(
			// cursor_at: the exact (microsecond) instant in ISO form, since a JS Date would drop precision.
			`SELECT ${USER_COLUMNS.split(", ")
				.map(c => `u.${c}`)
				.join(", ")}, to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS cursor_at,
			        COALESCE((SELECT array_agg(w.address ORDER BY w.linked_at) FROM user_wallets w WHERE w.user_id = u.id), '{}') AS wallets
			 FROM users u ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
			 ORDER BY u.created_at DESC, u.id DESC LIMIT $${bind.length}`,
			bind
		);
	}

	// ── wallets ──────────────────────────────────────────────────────────────────────────────

	async walletByAddress(address: string): Promise<WalletRow | null> {
		const [row] = await this.rows<WalletRow>(`SELECT * FROM user_wallets WHERE address = $1`, [address]);
		return row ?? null;
	}

	async walletsOf(userId: string): Promise<WalletRow[]> {
		return this.rows(`SELECT * FROM user_wallets WHERE user_id = $1 ORDER BY linked_at, address`, [userId]);
	}

	async touchWalletSignIn(address: string, kind: WalletKind): Promise<void> {
		await this.db.query(`UPDATE user_wallets SET last_sign_in_at = now(), kind = $2 WHERE address = $1`, {
			bind: [address, kind]
		});
	}

	/**
	 * The account a wallet signs in to, creating one on its first sign-in. Two first sign-ins racing
	 * for one address end in one account: the loser's new user is rolled back with its wallet claim.
	 * "org_wallet": an organisation holds the address (org_wallets), which is no way to sign in.
	 */
	async userForWalletSignIn(
		address: string,
		chainId: number,
		kind: WalletKind
	): Promise<{ userId: string; created: boolean } | "org_wallet"> {
		const existing = await this.walletByAddress(address);
		if (existing) return { userId: existing.user_id, created: false };
		const created = await this.transaction(async tx => {
			await this.lockAddress(tx, address);
			if (await this.orgHolds(tx, address)) throw new OrgWallet();
			const userId = randomUUID();
			await this.db.query(`INSERT INTO users (id) VALUES ($1)`, { bind: [userId], transaction: tx });
			const [claimed] = await this.rows<{ address: string }>(
				`INSERT INTO user_wallets (address, user_id, chain_id, kind) VALUES ($1, $2, $3, $4)
				 ON CONFLICT (address) DO NOTHING RETURNING address`,
				[address, userId, chainId, kind],
				tx
			);
			if (!claimed) throw new WalletRace();
			return userId;
		}).catch(err => {
			if (err instanceof WalletRace) return null;
			if (err instanceof OrgWallet) return "org_wallet" as const;
			throw err;
		});
		if (created === "org_wallet") return created;
		if (created) return { userId: created, created: true };
		const winner = await this.walletByAddress(address);
		if (!winner) throw new Error(`wallet ${address} vanished while signing in`);
		return { userId: winner.user_id, created: false };
	}

	/**
	 * Links a wallet to a user, at most `maxWallets` per user. "taken" when another account holds it;
	 * linking one's own wallet again is a no-op.
	 */
	async linkWallet(
		userId: string,
		address: string,
		chainId: number,
		kind: WalletKind,
		maxWallets: number
	): Promise<{ result: "linked" | "already" | "taken" | "limit"; wallet?: WalletRow }> {
		return this.transaction(async tx => {
			// Serialises one user's concurrent links so the per-user limit holds.
			await this.db.query(`SELECT id FROM users WHERE id = $1 FOR UPDATE`, { bind: [userId], transaction: tx });
			await this.lockAddress(tx, address);
			const [current] = await this.rows<WalletRow>(
				`SELECT * FROM user_wallets WHERE address = $1`,
				[address],
				tx
			);
			if (current) return { result: current.user_id === userId ? "already" : "taken", wallet: current };
			if (await this.orgHolds(tx, address)) return { result: "taken" };
			const [{ n }] = await this.rows<{ n: string }>(
				`SELECT count(*) AS n FROM user_wallets WHERE user_id = $1`,
				[userId],
				tx
			);
			if (Number(n) >= maxWallets) return { result: "limit" };
			const [wallet] = await this.rows<WalletRow>(
				`INSERT INTO user_wallets (address, user_id, chain_id, kind) VALUES ($1, $2, $3, $4)
				 ON CONFLICT (address) DO NOTHING RETURNING *`,
				[address, userId, chainId, kind],
				tx
			);
			if (!wallet) return { result: "taken" };
			await this.audit(tx, userId, userId, "wallet.link", { address, chainId, kind });
			return { result: "linked", wallet };
		});
	}

	/**
	 * Every claim of an address (a first wallet sign-in, a link to an account, a link to an
	 * organisation) takes this lock first, so an address is held by one account or one organisation.
	 */
	private async lockAddress(tx: Transaction, address: string): Promise<void> {
		await this.rows(`SELECT pg_advisory_xact_lock(hashtext('forgefluid wallet'), hashtext($1))`, [address], tx);
	}

	private async orgHolds(tx: Transaction, address: string): Promise<boolean> {
		const rows = await this.rows(`SELECT 1 FROM org_wallets WHERE address = $1`, [address], tx);
		return rows.length > 0;
	}

	async orgWalletByAddress(address: string): Promise<OrgWalletRow | null> {
		const [row] = await this.rows<OrgWalletRow>(`SELECT * FROM org_wallets WHERE address = $1`, [address]);
		return row ?? null;
	}

	async orgWallets(orgId: string): Promise<OrgWalletRow[]> {
		return this.rows(`SELECT * FROM org_wallets WHERE org_id = $1 ORDER BY linked_at, address`, [orgId]);
	}

	/**
	 * Links a wallet to an organisation, at most `maxWallets` per organisation (audited on the linker).
	 * "taken": an account or another organisation holds it; linking it to the same organisation again
	 * is a no-op.
	 */
	async linkOrgWallet(
		orgId: string,
		linkedBy: string,
		address: string,
		chainId: number,
		kind: WalletKind,
		maxWallets: number
	): Promise<{ result: "linked" | "already" | "taken" | "limit"; wallet?: OrgWalletRow }> {
		return this.transaction(async tx => {
			await this.lockAddress(tx, address);
			// One organisation's concurrent links, so its limit holds.
			await this.rows(
				`SELECT pg_advisory_xact_lock(hashtext('forgefluid org wallets'), hashtext($1))`,
				[orgId],
				tx
			);
			const [current] = await this.rows<OrgWalletRow>(
				`SELECT * FROM org_wallets WHERE address = $1`,
				[address],
				tx
			);
			if (current) return { result: current.org_id === orgId ? "already" : "taken", wallet: current };
			if ((await this.rows(`SELECT 1 FROM user_wallets WHERE address = $1`, [address], tx)).length)
				return { result: "taken" };
			const [{ n }] = await this.rows<{ n: string }>(
				`SELECT count(*) AS n FROM org_wallets WHERE org_id = $1`,
				[orgId],
				tx
			);
			if (Number(n) >= maxWallets) return { result: "limit" };
			const [wallet] = await this.rows<OrgWalletRow>(
				`INSERT INTO org_wallets (address, org_id, chain_id, kind, linked_by) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
				[address, orgId, chainId, kind, linkedBy],
				tx
			);
			await this.audit(tx, linkedBy, linkedBy, "org.wallet.link", { orgId, address, chainId, kind });
			return { result: "linked", wallet };
		});
	}

	/** Removes an organisation's wallet (audited on who removed it); false when it holds no such wallet. */
	async unlinkOrgWallet(orgId: string, address: string, by: string): Promise<boolean> {
		return this.transaction(async tx => {
			const rows = await this.rows(
				`DELETE FROM org_wallets WHERE address = $1 AND org_id = $2 RETURNING address`,
				[address, orgId],
				tx
			);
			if (!rows.length) return false;
			await this.audit(tx, by, by, "org.wallet.unlink", { orgId, address });
			return true;
		});
	}

	/** Removes the user's wallet in `tx` (audited); false when the user holds no such wallet. */
	async deleteWallet(tx: Transaction, userId: string, address: string): Promise<boolean> {
		const rows = await this.rows<{ address: string }>(
			`DELETE FROM user_wallets WHERE address = $1 AND user_id = $2 RETURNING address`,
			[address, userId],
			tx
		);
		if (!rows.length) return false;
		await this.audit(tx, userId, userId, "wallet.unlink", { address });
		return true;
	}

	// ── sessions and refresh tokens ──────────────────────────────────────────────────────────

	async createSession(opts: {
		userId: string;
		method: SessionRow["method"];
		ip: string | null;
		userAgent: string | null;
		maxAgeS: number;
		refreshTokenHash: Buffer;
		refreshTtlS: number;
	}): Promise<{ sessionId: string; refreshExpiresAt: Date }> {
		return this.transaction(async tx => {
			const sessionId = randomUUID();
			await this.db.query(
				`INSERT INTO user_sessions (id, user_id, method, ip, user_agent, expires_at)
				 VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))`,
				{ bind: [sessionId, opts.userId, opts.method, opts.ip, opts.userAgent, opts.maxAgeS], transaction: tx }
			);
			const refreshExpiresAt = await this.insertRefreshToken(
				tx,
				sessionId,
				opts.refreshTokenHash,
				opts.refreshTtlS
			);
			return { sessionId, refreshExpiresAt };
		});
	}

	/** A refresh token never outlives its family. */
	private async insertRefreshToken(tx: Transaction, sessionId: string, hash: Buffer, ttlS: number): Promise<Date> {
		const [row] = await this.rows<{ expires_at: Date }>(
			`INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
			 SELECT $1, s.id, LEAST(now() + make_interval(secs => $3), s.expires_at) FROM user_sessions s WHERE s.id = $2
			 RETURNING expires_at`,
			[hash, sessionId, ttlS],
			tx
		);
		return row.expires_at;
	}

	/**
	 * Spends a refresh token and issues its successor `newHash` (RFC 9700 rotation). The spend is one
	 * conditional UPDATE, so of racing uses exactly one rotates. A token that was already spent is a
	 * replay, and the caller revokes the family — unless it was spent less than `graceS` ago and its
	 * successor is still unspent (the family has not moved on), which is a parallel refresh by the same
	 * client: it is answered with that same successor (the caller derives `newHash` from the spent token,
	 * src/users/tokens.ts successorRefreshToken), so one token never has two live successors.
	 */
	async rotateRefreshToken(oldHash: Buffer, newHash: Buffer, ttlS: number, graceS = 0): Promise<RotateResult> {
		return this.transaction(async tx => {
			const [spent] = await this.rows<{ session_id: string; user_id: string; role: Role; usable: boolean }>(
				`WITH spent AS (
				   UPDATE refresh_tokens SET rotated_at = now()
				   WHERE token_hash = $1 AND rotated_at IS NULL AND expires_at > now()
				   RETURNING session_id)
				 SELECT s.id AS session_id, s.user_id, u.role,
				        (s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL) AS usable
				 FROM spent JOIN user_sessions s ON s.id = spent.session_id JOIN users u ON u.id = s.user_id`,
				[oldHash],
				tx
			);
			if (spent) {
				if (!spent.usable) return { kind: "invalid" };
				const expiresAt = await this.insertRefreshToken(tx, spent.session_id, newHash, ttlS);
				await this.db.query(`UPDATE user_sessions SET last_refreshed_at = now() WHERE id = $1`, {
					bind: [spent.session_id],
					transaction: tx
				});
				return {
					kind: "rotated",
					sessionId: spent.session_id,
					userId: spent.user_id,
					role: spent.role,
					refreshToken: { expiresAt }
				};
			}
			const [known] = await this.rows<{ session_id: string; user_id: string; rotated_at: Date | null }>(
				`SELECT t.session_id, s.user_id, t.rotated_at FROM refresh_tokens t JOIN user_sessions s ON s.id = t.session_id
				 WHERE t.token_hash = $1`,
				[oldHash],
				tx
			);
			if (known?.rotated_at && graceS > 0) {
				// The racer that rotated committed its successor before this UPDATE could see the token spent
				// (the UPDATE waits on its row lock), so the successor row is there to be found.
				const [graced] = await this.rows<{
					session_id: string;
					user_id: string;
					role: Role;
					usable: boolean;
					expires_at: Date;
				}>(
					`SELECT s.id AS session_id, s.user_id, u.role, n.expires_at,
					        (s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL) AS usable
					 FROM refresh_tokens t
					 JOIN refresh_tokens n ON n.token_hash = $3 AND n.session_id = t.session_id
					 JOIN user_sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id
					 WHERE t.token_hash = $1 AND t.expires_at > now()
					   AND t.rotated_at > now() - make_interval(secs => $2)
					   AND n.rotated_at IS NULL AND n.expires_at > now()`,
					[oldHash, graceS, newHash],
					tx
				);
				if (graced) {
					if (!graced.usable) return { kind: "invalid" };
					return {
						kind: "rotated",
						sessionId: graced.session_id,
						userId: graced.user_id,
						role: graced.role,
						refreshToken: { expiresAt: graced.expires_at },
						graced: true
					};
				}
			}
			if (known?.rotated_at) return { kind: "reused", sessionId: known.session_id, userId: known.user_id };
			return { kind: "invalid" };
		});
	}

	/** The session a refresh token belongs to (spent or not), for logout. */
	async sessionOfRefreshToken(hash: Buffer): Promise<{ sessionId: string; userId: string } | null> {
		const [row] = await this.rows<{ session_id: string; user_id: string }>(
			`SELECT t.session_id, s.user_id FROM refresh_tokens t JOIN user_sessions s ON s.id = t.session_id WHERE t.token_hash = $1`,
			[hash]
		);
		return row ? { sessionId: row.session_id, userId: row.user_id } : null;
	}

	/** Revokes one session of `userId` (null user: any owner); true when it was live. */
	async revokeSession(sessionId: string, userId: string | null, reason: string): Promise<boolean> {
		const rows = await this.rows<{ id: string }>(
			`UPDATE user_sessions SET revoked_at = now(), revoked_reason = $3
			 WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2::uuid) AND revoked_at IS NULL RETURNING id`,
			[sessionId, userId, reason]
		);
		return rows.length > 0;
	}

	private async revokeAllSessionsTx(
		tx: Transaction | undefined,
		userId: string,
		reason: string,
		exceptSessionId?: string
	): Promise<string[]> {
		const rows = await this.rows<{ id: string }>(
			`UPDATE user_sessions SET revoked_at = now(), revoked_reason = $2
			 WHERE user_id = $1 AND revoked_at IS NULL AND ($3::uuid IS NULL OR id <> $3::uuid) RETURNING id`,
			[userId, reason, exceptSessionId ?? null],
			tx
		);
		return rows.map(r => r.id);
	}

	revokeAllSessions(userId: string, reason: string, exceptSessionId?: string): Promise<string[]> {
		return this.revokeAllSessionsTx(undefined, userId, reason, exceptSessionId);
	}

	/** Every session id the user ever had that might still be cached as live. */
	async sessionIdsOf(userId: string): Promise<string[]> {
		const rows = await this.rows<{ id: string }>(
			`SELECT id FROM user_sessions WHERE user_id = $1 AND expires_at > now() - interval '1 day'`,
			[userId]
		);
		return rows.map(r => r.id);
	}

	async sessionsOf(userId: string, opts: { includeEnded: boolean; limit: number }): Promise<SessionRow[]> {
		return this.rows(
			`SELECT * FROM user_sessions WHERE user_id = $1 ${opts.includeEnded ? "" : "AND revoked_at IS NULL AND expires_at > now()"}
			 ORDER BY created_at DESC LIMIT $2`,
			[userId, opts.limit]
		);
	}

	/** The current role for a live session of an enabled user, else null. */
	async authState(userId: string, sessionId: string): Promise<{ role: Role } | null> {
		const [row] = await this.rows<{ role: Role }>(
			`SELECT u.role FROM user_sessions s JOIN users u ON u.id = s.user_id
			 WHERE s.id = $2 AND s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.disabled_at IS NULL`,
			[userId, sessionId]
		);
		return row ?? null;
	}

	// ── API keys ─────────────────────────────────────────────────────────────────────────────

	async createApiKey(opts: {
		id: string;
		userId: string;
		name: string;
		secretHash: Buffer;
		scopes: string[];
		expiresInDays: number | null;
		maxPerUser: number;
		limits?: ApiKeyLimitsInput;
		/** An organisation key: the organisation it acts in. */
		orgId?: string | null;
	}): Promise<ApiKeyRow | "limit"> {
		return this.transaction(async tx => {
			await this.db.query(`SELECT id FROM users WHERE id = $1 FOR UPDATE`, {
				bind: [opts.userId],
				transaction: tx
			});
			const [{ n }] = await this.rows<{ n: string }>(
				`SELECT count(*) AS n FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
				[opts.userId],
				tx
			);
			if (Number(n) >= opts.maxPerUser) return "limit";
			const [row] = await this.rows<ApiKeyRow>(
				`INSERT INTO api_keys (id, user_id, name, secret_hash, scopes, expires_at, allowed_models, monthly_budget_credits, rpm, tpm,
				         monthly_cap_credits, org_id)
				 VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::int IS NULL THEN NULL ELSE now() + make_interval(days => $6::int) END,
				         $7, $8, $9, $10, $11, $12)
				 RETURNING ${API_KEY_COLUMNS}`,
				[
					opts.id,
					opts.userId,
					opts.name,
					opts.secretHash,
					opts.scopes,
					opts.expiresInDays,
					opts.limits?.models ?? null,
					opts.limits?.monthlyBudgetCredits ?? null,
					opts.limits?.rpm ?? null,
					opts.limits?.tpm ?? null,
					opts.limits?.monthlyCapCredits ?? null,
					opts.orgId ?? null
				],
				tx
			);
			await this.audit(tx, opts.userId, opts.userId, "apiKey.create", {
				id: opts.id,
				scopes: opts.scopes,
				...(opts.orgId ? { orgId: opts.orgId } : {})
			});
			return row;
		});
	}

	async apiKeysOf(userId: string): Promise<ApiKeyRow[]> {
		return this.rows(
			`SELECT ${API_KEY_COLUMNS} FROM api_keys
			 WHERE user_id = $1 AND org_id IS NULL AND revoked_at IS NULL ORDER BY created_at DESC`,
			[userId]
		);
	}

	/** Sets a live key's monthly spend cap (`null` clears it); null when the user has no such key. */
	async setApiKeyCap(userId: string, id: string, monthlyCapCredits: number | null): Promise<ApiKeyRow | null> {
		const [row] = await this.rows<ApiKeyRow>(
			`UPDATE api_keys SET monthly_cap_credits = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
			 RETURNING ${API_KEY_COLUMNS}`,
			[id, userId, monthlyCapCredits]
		);
		return row ?? null;
	}

	/** An organisation's live keys, or only those `creatorId` made. */
	async orgApiKeys(orgId: string, creatorId: string | null): Promise<ApiKeyRow[]> {
		return this.rows(
			`SELECT ${API_KEY_COLUMNS} FROM api_keys
			 WHERE org_id = $1 AND ($2::uuid IS NULL OR user_id = $2::uuid) AND revoked_at IS NULL
			 ORDER BY created_at DESC`,
			[orgId, creatorId]
		);
	}

	/** Revokes an organisation's key (only one `creatorId` made, when given); its creator, or null. */
	async revokeOrgApiKey(orgId: string, id: string, creatorId: string | null): Promise<string | null> {
		const [row] = await this.rows<{ user_id: string }>(
			`UPDATE api_keys SET revoked_at = now()
			 WHERE id = $1 AND org_id = $2 AND ($3::uuid IS NULL OR user_id = $3::uuid) AND revoked_at IS NULL
			 RETURNING user_id`,
			[id, orgId, creatorId]
		);
		return row?.user_id ?? null;
	}

	async revokeApiKey(userId: string, id: string): Promise<boolean> {
		const rows = await this.rows<{ id: string }>(
			`UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND org_id IS NULL AND revoked_at IS NULL RETURNING id`,
			[id, userId]
		);
		return rows.length > 0;
	}

	async apiKeyForVerification(id: string): Promise<ApiKeyForVerification | null> {
		const [row] = await this.rows<ApiKeyForVerification>(
			`SELECT k.id, k.user_id, k.scopes, k.last_used_at, k.secret_hash, u.role, k.expires_at,
			        k.allowed_models, k.monthly_budget_credits, k.monthly_cap_credits, k.rpm, k.tpm, k.org_id,
			        (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AND u.disabled_at IS NULL) AS usable
			 FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1`,
			[id]
		);
		return row ?? null;
	}

	/**
	 * Holds `credits` of the key's monthly budget for `holdId`, or returns false when the month's
	 * spent + reserved + credits would pass the budget. One conditional UPDATE on the key's row for
	 * the month: concurrent holds serialise on it and can never pass the budget together. A retried
	 * call with the same hold id holds once.
	 */
	async reserveKeyBudget(keyId: string, holdId: string, credits: number): Promise<"held" | "over" | "no-budget"> {
		return this.transaction(async tx => {
			const [known] = await this.rows<{ hold_id: string }>(
				`SELECT hold_id FROM api_key_holds WHERE hold_id = $1`,
				[holdId],
				tx
			);
			if (known) return "held";
			const month = `(date_trunc('month', now() AT TIME ZONE 'UTC'))::date`;
			await this.rows(
				`INSERT INTO api_key_spend (key_id, month) SELECT id, ${month} FROM api_keys WHERE id = $1 AND monthly_budget_credits IS NOT NULL
				 ON CONFLICT DO NOTHING`,
				[keyId],
				tx
			);
			const [row] = await this.rows<{ month: string }>(
				`UPDATE api_key_spend s SET reserved = s.reserved + $2
				 FROM api_keys k
				 WHERE s.key_id = $1 AND s.month = ${month} AND k.id = s.key_id
				   AND s.spent + s.reserved + $2 <= k.monthly_budget_credits
				 RETURNING s.month::text AS month`,
				[keyId, credits],
				tx
			);
			if (!row) {
				const [b] = await this.rows<{ monthly_budget_credits: string | null }>(
					`SELECT monthly_budget_credits FROM api_keys WHERE id = $1`,
					[keyId],
					tx
				);
				return b?.monthly_budget_credits == null ? "no-budget" : "over";
			}
			await this.rows(
				`INSERT INTO api_key_holds (hold_id, key_id, month, amount) VALUES ($1, $2, $3::date, $4)`,
				[holdId, keyId, row.month, credits],
				tx
			);
			return "held";
		});
	}

	/** Settles a hold at `credits` (0 = released): once; a repeated settlement changes nothing. */
	async settleKeyBudget(holdId: string, credits: number): Promise<boolean> {
		return this.transaction(async tx => {
			const [h] = await this.rows<{ key_id: string; month: string; amount: string; charged: string }>(
				`UPDATE api_key_holds SET charged = LEAST($2::bigint, amount), settled_at = now()
				 WHERE hold_id = $1 AND settled_at IS NULL RETURNING key_id, month::text AS month, amount, charged`,
				[holdId, credits],
				tx
			);
			if (!h) return false;
			await this.rows(
				`UPDATE api_key_spend SET reserved = reserved - $3, spent = spent + $4 WHERE key_id = $1 AND month = $2::date`,
				[h.key_id, h.month, h.amount, h.charged],
				tx
			);
			return true;
		});
	}

	/** This month's spend of a key (credits settled, credits held). */
	async keySpend(keyId: string): Promise<{ spent: number; reserved: number }> {
		const [r] = await this.rows<{ spent: string; reserved: string }>(
			`SELECT spent, reserved FROM api_key_spend WHERE key_id = $1 AND month = (date_trunc('month', now() AT TIME ZONE 'UTC'))::date`,
			[keyId]
		);
		return { spent: Number(r?.spent ?? 0), reserved: Number(r?.reserved ?? 0) };
	}

	/** Records use at most once per interval, whatever the request rate. */
	async touchApiKey(id: string, intervalS: number): Promise<void> {
		await this.db.query(
			`UPDATE api_keys SET last_used_at = now() WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))`,
			{ bind: [id, intervalS] }
		);
	}

	// ── tier facts (reported by payments) ────────────────────────────────────────────────────

	/** The ids among `ids` (UUIDs) that are accounts. */
	async existingUserIds(ids: string[]): Promise<string[]> {
		const rows = await this.rows<{ id: string }>(`SELECT id FROM users WHERE id = ANY($1::uuid[])`, [ids]);
		return rows.map(r => r.id);
	}

	async tierFacts(userId: string): Promise<TierFacts & { exists: boolean }> {
		const [row] = await this.rows<{ tier_override: TierName | null; plan_tier: TierName | null; exists: boolean }>(
			`SELECT u.tier_override, f.plan_tier, (u.id IS NOT NULL) AS exists
			 FROM (SELECT $1::uuid AS id) q LEFT JOIN users u ON u.id = q.id LEFT JOIN user_tier_facts f ON f.user_id = q.id`,
			[userId]
		);
		const positions = await this.rows<{ amount_wei: string; since: Date }>(
			`SELECT amount_wei, since FROM user_stake_positions WHERE user_id = $1 ORDER BY since`,
			[userId]
		);
		return {
			exists: !!row?.exists,
			tierOverride: row?.tier_override ?? null,
			planTier: row?.plan_tier ?? null,
			positions: positions.map((p): StakePosition => ({
				amountWei: BigInt(p.amount_wei),
				since: new Date(p.since).getTime()
			}))
		};
	}

	/** Applies a plan fact unless a newer one is stored already; true when applied. */
	async applyPlanFact(tx: Transaction, userId: string, planTier: TierName | null, asOf: string): Promise<boolean> {
		const rows = await this.rows<{ user_id: string }>(
			`INSERT INTO user_tier_facts (user_id, plan_tier, plan_as_of) VALUES ($1, $2, $3)
			 ON CONFLICT (user_id) DO UPDATE SET plan_tier = EXCLUDED.plan_tier, plan_as_of = EXCLUDED.plan_as_of
			 WHERE user_tier_facts.plan_as_of IS NULL OR user_tier_facts.plan_as_of <= EXCLUDED.plan_as_of
			 RETURNING user_id`,
			[userId, planTier, asOf],
			tx
		);
		return rows.length > 0;
	}

	/** Replaces the stake positions unless a newer report is stored already; true when applied. */
	async applyStakeFact(tx: Transaction, userId: string, positions: StakePosition[], asOf: string): Promise<boolean> {
		const rows = await this.rows<{ user_id: string }>(
			`INSERT INTO user_tier_facts (user_id, stake_as_of) VALUES ($1, $2)
			 ON CONFLICT (user_id) DO UPDATE SET stake_as_of = EXCLUDED.stake_as_of
			 WHERE user_tier_facts.stake_as_of IS NULL OR user_tier_facts.stake_as_of <= EXCLUDED.stake_as_of
			 RETURNING user_id`,
			[userId, asOf],
			tx
		);
		if (!rows.length) return false;
		await this.db.query(`DELETE FROM user_stake_positions WHERE user_id = $1`, { bind: [userId], transaction: tx });
		if (positions.length)
			await this.db.query(
				`INSERT INTO user_stake_positions (user_id, amount_wei, since)
				 SELECT $1, a::numeric, s FROM unnest($2::text[], $3::timestamptz[]) AS p(a, s)`,
				{
					bind: [
						userId,
						positions.map(p => p.amountWei.toString()),
						positions.map(p => new Date(p.since).toISOString())
					],
					transaction: tx
				}
			);
		return true;
	}
}

class WalletRace extends Error {}
class OrgWallet extends Error {}
