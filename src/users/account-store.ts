/**
 * SQL of the account flows (issue 18): one-time tokens, e-mail verification and change, TOTP and
 * backup codes, export and deletion. Every decision taken under concurrency (spending a token, a
 * TOTP step, a backup code, claiming an address) is one conditional statement, so of two racing
 * requests exactly one wins.
 */
import { randomBytes } from "node:crypto";
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import type { SecretBox } from "./secret-box";
import { sha256 } from "./tokens";

export type TokenKind = "email_verify" | "password_reset" | "mfa_login";

export const ACCOUNT_TOKEN_PATTERN = /^fft_[A-Za-z0-9_-]{43}$/;

export interface SpentToken {
	user_id: string;
	email: string | null;
	session_method: "password" | "siwe" | "sso" | null;
}

export interface TotpRow {
	user_id: string;
	secret: string;
	confirmed_at: Date | null;
	last_step: string | null;
}

function newAccountToken(): { token: string; hash: Buffer } {
	const token = `fft_${randomBytes(32).toString("base64url")}`;
	return { token, hash: sha256(token) };
}

export class AccountStore {
	/** `box` seals the TOTP secrets at rest (src/users/secret-box.ts). */
	constructor(
		private readonly db: Sequelize,
		private readonly box: SecretBox
	) {}

	private rows<T extends object>(sql: string, bind: unknown[] = [], transaction?: Transaction): Promise<T[]> {
		return this.db.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction });
	}

	// ── one-time tokens ──────────────────────────────────────────────────────────────────────

	async issueToken(
		userId: string,
		kind: TokenKind,
		ttlS: number,
		extra: { email?: string | null; sessionMethod?: "password" | "siwe" | "sso" } = {}
	): Promise<string> {
		const t = newAccountToken();
		await this.rows(
			`INSERT INTO user_tokens (token_hash, user_id, kind, email, session_method, expires_at)
			 VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING user_id`,
			[t.hash, userId, kind, extra.email ?? null, extra.sessionMethod ?? null, ttlS]
		);
		return t.token;
	}

	/**
	 * A reset token for whoever has this address, in one statement that runs whether or not anyone
	 * does: the work is the same for known and unknown addresses. The token string is made either way.
	 */
	async issueTokenForEmail(
		email: string,
		kind: TokenKind,
		ttlS: number
	): Promise<{ token: string; userId: string } | null> {
		const t = newAccountToken();
		const [row] = await this.rows<{ user_id: string }>(
			`INSERT INTO user_tokens (token_hash, user_id, kind, email, expires_at)
			 SELECT $1, id, $3, email, now() + make_interval(secs => $4) FROM users
			 WHERE email = $2 AND deleted_at IS NULL
			 RETURNING user_id`,
			[t.hash, email, kind, ttlS]
		);
		return row ? { token: t.token, userId: row.user_id } : null;
	}

	/** Spends a live token of this kind (single use); null if unknown, expired, spent or of another kind. */
	async spendToken(token: string, kind: TokenKind, tx?: Transaction): Promise<SpentToken | null> {
		const [row] = await this.rows<SpentToken>(
			`UPDATE user_tokens SET used_at = now()
			 WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > now()
			 RETURNING user_id, email, session_method`,
			[sha256(token), kind],
			tx
		);
		return row ?? null;
	}

	/** A live token's owner without spending it (the second sign-in step reads, then spends on success). */
	async peekToken(token: string, kind: TokenKind): Promise<(SpentToken & { attempts: number }) | null> {
		const [row] = await this.rows<SpentToken & { attempts: number }>(
			`SELECT user_id, email, session_method, attempts FROM user_tokens
			 WHERE token_hash = $1 AND kind = $2 AND used_at IS NULL AND expires_at > now()`,
			[sha256(token), kind]
		);
		return row ?? null;
	}

	/** Counts a wrong code against a token; past `max` attempts the token is spent. */
	async failTokenAttempt(token: string, max: number): Promise<void> {
		await this.rows(
			`UPDATE user_tokens SET attempts = attempts + 1,
			        used_at = CASE WHEN attempts + 1 >= $2 THEN now() ELSE used_at END
			 WHERE token_hash = $1 AND used_at IS NULL RETURNING user_id`,
			[sha256(token), max]
		);
	}

	/** Ends the tokens of a kind a user still holds (a reset makes the other reset links useless). */
	async revokeTokens(userId: string, kinds: TokenKind[], tx?: Transaction): Promise<void> {
		await this.rows(
			`UPDATE user_tokens SET used_at = now() WHERE user_id = $1 AND kind = ANY($2) AND used_at IS NULL RETURNING user_id`,
			[userId, kinds],
			tx
		);
	}

	// ── e-mail ───────────────────────────────────────────────────────────────────────────────

	/**
	 * Applies a spent verification: the account's own address becomes verified, or (a change) the
	 * account moves to the proven address. "taken": another account holds that address by now.
	 */
	async applyVerifiedEmail(
		userId: string,
		email: string
	): Promise<{ result: "verified" | "changed"; previous: string | null } | { result: "taken" | "gone" }> {
		try {
			return await this.applyVerifiedEmailTx(userId, email);
		} catch (err) {
			// Two accounts proving one address at once: the unique index decides.
			if ((err as Error).name === "SequelizeUniqueConstraintError") return { result: "taken" };
			throw err;
		}
	}

	private applyVerifiedEmailTx(userId: string, email: string) {
		{
			return this.db.transaction(async tx => {
				const [user] = await this.rows<{ email: string | null; email_verified_at: Date | null }>(
					`SELECT email, email_verified_at FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`,
					[userId],
					tx
				);
				if (!user) return { result: "gone" as const };
				if (user.email === email) {
					await this.rows(
						`UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()), updated_at = now() WHERE id = $1 RETURNING id`,
						[userId],
						tx
					);
					return { result: "verified" as const, previous: user.email };
				}
				const [moved] = await this.rows<{ id: string }>(
					`UPDATE users SET email = $2, email_verified_at = now(), updated_at = now()
				 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM users WHERE email = $2) RETURNING id`,
					[userId, email],
					tx
				);
				if (!moved) return { result: "taken" as const };
				// Links sent to the old address (verification, reset) must not act on the account any more.
				await this.revokeTokens(userId, ["email_verify", "password_reset"], tx);
				return { result: "changed" as const, previous: user.email };
			});
		}
	}

	async emailVerifiedAt(userId: string): Promise<Date | null> {
		const [row] = await this.rows<{ email_verified_at: Date | null }>(
			`SELECT email_verified_at FROM users WHERE id = $1`,
			[userId]
		);
		return row?.email_verified_at ?? null;
	}

	async emailTaken(email: string): Promise<boolean> {
		const [row] = await this.rows(`SELECT 1 FROM users WHERE email = $1`, [email]);
		return !!row;
	}

	/** The reset: a new hash, the address proven (the link reached it), every reset link spent. */
	async resetPassword(userId: string, passwordHash: string, email: string | null): Promise<void> {
		await this.db.transaction(async tx => {
			await this.rows(
				`UPDATE users SET password_hash = $2, updated_at = now(),
				        email_verified_at = CASE WHEN email = $3 THEN COALESCE(email_verified_at, now()) ELSE email_verified_at END
				 WHERE id = $1 RETURNING id`,
				[userId, passwordHash, email],
				tx
			);
			await this.revokeTokens(userId, ["password_reset", "mfa_login"], tx);
		});
	}

	// ── TOTP ─────────────────────────────────────────────────────────────────────────────────

	/** The row with its secret opened; a secret sealed under an old key is resealed under the current one. */
	async totpOf(userId: string): Promise<TotpRow | null> {
		const [row] = await this.rows<TotpRow>(
			`SELECT user_id, secret, confirmed_at, last_step FROM user_totp WHERE user_id = $1`,
			[userId]
		);
		if (!row) return null;
		const secret = this.box.open(row.secret, userId);
		if (this.box.needsReseal(row.secret))
			await this.rows(`UPDATE user_totp SET secret = $3 WHERE user_id = $1 AND secret = $2 RETURNING user_id`, [
				userId,
				row.secret,
				this.box.seal(secret, userId)
			]);
		return { ...row, secret };
	}

	/** Starts (or restarts) an enrolment; false when 2FA is already on (it must be turned off first). */
	async startTotp(userId: string, secret: string): Promise<boolean> {
		const rows = await this.rows(
			`INSERT INTO user_totp (user_id, secret) VALUES ($1, $2)
			 ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, created_at = now(), last_step = NULL
			 WHERE user_totp.confirmed_at IS NULL
			 RETURNING user_id`,
			[userId, this.box.seal(secret, userId)]
		);
		return rows.length > 0;
	}

	/**
	 * Accepts a matched time step only if it is later than the last one accepted: the replay rule.
	 * `pending`: the step of an enrolment's confirmation (confirmed_at still null).
	 */
	async acceptTotpStep(userId: string, step: number, state: "confirmed" | "pending"): Promise<boolean> {
		const rows = await this.rows(
			`UPDATE user_totp SET last_step = $2
			 WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2)
			   AND (confirmed_at IS NOT NULL) = $3
			 RETURNING user_id`,
			[userId, step, state === "confirmed"]
		);
		return rows.length > 0;
	}

	/** Turns 2FA on with these backup codes (replacing any). */
	async confirmTotp(userId: string, backupCodeHashes: Buffer[]): Promise<boolean> {
		return this.db.transaction(async tx => {
			const rows = await this.rows(
				`UPDATE user_totp SET confirmed_at = now() WHERE user_id = $1 AND confirmed_at IS NULL RETURNING user_id`,
				[userId],
				tx
			);
			if (!rows.length) return false;
			await this.rows(`DELETE FROM user_backup_codes WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			for (const hash of backupCodeHashes)
				await this.rows(
					`INSERT INTO user_backup_codes (code_hash, user_id) VALUES ($1, $2) RETURNING user_id`,
					[hash, userId],
					tx
				);
			return true;
		});
	}

	async spendBackupCode(userId: string, hash: Buffer): Promise<boolean> {
		const rows = await this.rows(
			`UPDATE user_backup_codes SET used_at = now() WHERE code_hash = $1 AND user_id = $2 AND used_at IS NULL RETURNING user_id`,
			[hash, userId]
		);
		return rows.length > 0;
	}

	async backupCodesLeft(userId: string): Promise<number> {
		const [row] = await this.rows<{ n: string }>(
			`SELECT count(*) AS n FROM user_backup_codes WHERE user_id = $1 AND used_at IS NULL`,
			[userId]
		);
		return Number(row?.n ?? 0);
	}

	/** Removes 2FA entirely; true if there was any. */
	async removeTotp(userId: string): Promise<boolean> {
		return this.db.transaction(async tx => {
			const rows = await this.rows(`DELETE FROM user_totp WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			await this.rows(`DELETE FROM user_backup_codes WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			return rows.length > 0;
		});
	}

	// ── export and deletion ─────────────────────────────────────────────────────────────────

	/** Everything the users service holds about a person (secrets and hashes excepted). */
	async exportOf(userId: string) {
		const [user] = await this.rows<Record<string, unknown>>(
			`SELECT id, email, email_verified_at, display_name, role, tier_override, disabled_at, last_login_at,
			        created_at, updated_at, password_hash IS NOT NULL AS has_password
			 FROM users WHERE id = $1 AND deleted_at IS NULL`,
			[userId]
		);
		if (!user) return null;
		const [wallets, sessions, apiKeys, audit, totp, identities, passkeys] = await Promise.all([
			this.rows(
				`SELECT address, chain_id::text AS chain_id, kind, linked_at, last_sign_in_at FROM user_wallets WHERE user_id = $1 ORDER BY linked_at`,
				[userId]
			),
			this.rows(
				`SELECT id, method, ip, user_agent, created_at, last_refreshed_at, expires_at, revoked_at, revoked_reason
				 FROM user_sessions WHERE user_id = $1 ORDER BY created_at`,
				[userId]
			),
			this.rows(
				`SELECT id, name, scopes, created_at, expires_at, last_used_at, revoked_at FROM api_keys WHERE user_id = $1 ORDER BY created_at`,
				[userId]
			),
			this.rows(
				`SELECT actor_id, action, details, created_at FROM user_audit_events WHERE user_id = $1 ORDER BY id`,
				[userId]
			),
			this.rows<{ confirmed_at: Date | null }>(`SELECT confirmed_at FROM user_totp WHERE user_id = $1`, [userId]),
			this.rows(
				`SELECT provider, subject, email, email_verified, created_at, last_used_at FROM user_identities WHERE user_id = $1 ORDER BY created_at`,
				[userId]
			),
			this.rows(
				`SELECT credential_id, name, transports, created_at, last_used_at FROM user_passkeys WHERE user_id = $1 ORDER BY created_at`,
				[userId]
			)
		]);
		return {
			user,
			wallets,
			sessions,
			apiKeys,
			audit,
			identities,
			passkeys,
			twoFactor: { totpEnabledAt: totp[0]?.confirmed_at ?? null }
		};
	}

	/**
	 * Deletes an account: sessions end, API keys and wallets go, 2FA and tokens go, the e-mail is
	 * freed. The row stays as a tombstone (disabled, deleted, nothing personal) because payments'
	 * ledger names the user id: those entries stay, attached to an id that no longer leads to anyone.
	 * Returns the sessions that ended (for the gateway's cache) and the wallets that were unlinked.
	 */
	async deleteAccount(
		userId: string,
		/** In the deletion's transaction: the durable `users.deleted` event (payments pseudonymises its rows). */
		announce?: (tx: Transaction) => Promise<unknown>
	): Promise<{ sessions: string[]; wallets: string[]; email: string | null } | null> {
		return this.db.transaction(async tx => {
			const [user] = await this.rows<{ email: string | null }>(
				`SELECT email FROM users WHERE id = $1 AND deleted_at IS NULL FOR UPDATE`,
				[userId],
				tx
			);
			if (!user) return null;
			const sessions = await this.rows<{ id: string }>(
				`UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'account_deleted'
				 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id`,
				[userId],
				tx
			);
			const wallets = await this.rows<{ address: string }>(
				`DELETE FROM user_wallets WHERE user_id = $1 RETURNING address`,
				[userId],
				tx
			);
			await this.rows(`DELETE FROM api_keys WHERE user_id = $1 RETURNING id`, [userId], tx);
			await this.rows(`DELETE FROM user_totp WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			await this.rows(`DELETE FROM user_backup_codes WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			await this.rows(`DELETE FROM user_tokens WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			await this.rows(`DELETE FROM user_passkeys WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			await this.rows(`DELETE FROM user_identities WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			// The welcome grant's row stays (no second grant for the same address), without the IP.
			await this.rows(`UPDATE signup_grants SET ip = NULL WHERE user_id = $1 RETURNING user_id`, [userId], tx);
			// Sessions keep no address or browser of a deleted person either.
			await this.rows(
				`UPDATE user_sessions SET ip = NULL, user_agent = NULL WHERE user_id = $1 RETURNING id`,
				[userId],
				tx
			);
			await this.rows(
				`UPDATE users SET email = NULL, email_verified_at = NULL, password_hash = NULL, display_name = NULL,
				        tier_override = NULL, disabled_at = COALESCE(disabled_at, now()), deleted_at = now(), updated_at = now()
				 WHERE id = $1 RETURNING id`,
				[userId],
				tx
			);
			await this.rows(
				`INSERT INTO user_audit_events (user_id, actor_id, action, details) VALUES ($1, $2, 'user.delete', $3::jsonb) RETURNING id`,
				[userId, userId, JSON.stringify({ sessions: sessions.length, wallets: wallets.length })],
				tx
			);
			await announce?.(tx);
			return { sessions: sessions.map(s => s.id), wallets: wallets.map(w => w.address), email: user.email };
		});
	}
}
