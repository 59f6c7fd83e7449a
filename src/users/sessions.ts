/**
 * Sessions: a session is a refresh-token family with an absolute lifetime; each sign-in issues one
 * (a short access JWT and its first refresh token), each refresh spends the refresh token for its one
 * successor (RFC 9700 rotation), and a spent token that comes back ends the whole family. Sign-out
 * ends one session or all of them. The SQL is src/users/store.ts; the cache of session states the
 * gateway reads is dropped through `forget`.
 */
import type { Config } from "../config";
import { signAccessToken } from "../auth/jwt";
import { ALL_SCOPES } from "../auth/scopes";
import type { AuthUser, Role } from "../auth/user";
import { NotFound, Unauthorized, Unprocessable } from "../errors";
import type { UsersConfig } from "./config";
import type { SessionRow, UsersStore } from "./store";
import { newRefreshToken, sha256, successorRefreshToken } from "./tokens";

export interface TokenPair {
	accessToken: string;
	tokenType: "Bearer";
	expiresIn: number;
	refreshToken: string;
	refreshTokenExpiresAt: string;
	sessionId: string;
}

/** Where a sign-in came from, as the gateway saw it. */
export interface ClientInfo {
	ip?: string;
	userAgent?: string;
}

export interface SessionsDeps {
	store: Pick<
		UsersStore,
		| "createSession"
		| "rotateRefreshToken"
		| "revokeSession"
		| "revokeAllSessions"
		| "sessionOfRefreshToken"
		| "sessionsOf"
	>;
	jwt: Config["jwt"];
	cfg: UsersConfig["sessions"];
	/** Drops the cached state of the user (and of these sessions). */
	forget(userId: string, sessionIds?: readonly string[]): Promise<void>;
	/** Told when a spent refresh token came back (someone holds a copy). */
	onReuse(details: { userId: string; sessionId: string; ip: string | undefined }): void;
}

export class Sessions {
	constructor(private readonly d: SessionsDeps) {}

	/** What every sign-in answers: a session's access token (every scope of the role) and its first refresh token. */
	async issue(
		user: { id: string; role: Role },
		method: SessionRow["method"],
		client: ClientInfo
	): Promise<TokenPair> {
		const refresh = newRefreshToken();
		const { sessionId, refreshExpiresAt } = await this.d.store.createSession({
			userId: user.id,
			method,
			ip: client.ip ?? null,
			userAgent: client.userAgent || null,
			maxAgeS: this.d.cfg.maxAgeS,
			refreshTokenHash: refresh.hash,
			refreshTtlS: this.d.cfg.refreshTokenTtlS
		});
		return this.pair(user, sessionId, refresh.token, refreshExpiresAt);
	}

	/**
	 * Spends `refreshToken` for its successor. Racing refreshes with the same token (within the grace)
	 * get the same successor; a token spent before comes back as a replay and ends the family.
	 */
	async refresh(refreshToken: string, client: ClientInfo): Promise<TokenPair> {
		const next = successorRefreshToken(this.refreshSecret(), refreshToken);
		const r = await this.d.store.rotateRefreshToken(
			sha256(refreshToken),
			next.hash,
			this.d.cfg.refreshTokenTtlS,
			this.d.cfg.refreshReuseGraceS
		);
		if (r.kind === "reused") {
			// RFC 9700 §4.14.2: a spent token came back, so someone holds a copy; end the whole family.
			await this.d.store.revokeSession(r.sessionId, null, "refresh_token_reuse");
			await this.d.forget(r.userId, [r.sessionId]);
			this.d.onReuse({ userId: r.userId, sessionId: r.sessionId, ip: client.ip });
			throw Unauthorized(
				"This refresh token was already used; the session has been revoked",
				"REFRESH_TOKEN_REUSED"
			);
		}
		if (r.kind !== "rotated") throw Unauthorized("Invalid or expired refresh token", "INVALID_REFRESH_TOKEN");
		return this.pair({ id: r.userId, role: r.role }, r.sessionId, next.token, r.refreshToken.expiresAt);
	}

	/**
	 * Ends the session of `refreshToken`, or the caller's own, or with `all` every session of the caller.
	 * An unknown token answers like a known one: sign-out is idempotent and reveals nothing.
	 */
	async logout(
		caller: AuthUser | null | undefined,
		opts: { refreshToken?: string; all?: boolean }
	): Promise<{ revoked: number }> {
		if (opts.all) {
			if (!caller?.sid) throw Unauthorized("Signing out everywhere needs a signed-in session");
			return { revoked: await this.endAll(caller.id, "logout_all") };
		}
		let target: { sessionId: string; userId: string } | null;
		if (opts.refreshToken) target = await this.d.store.sessionOfRefreshToken(sha256(opts.refreshToken));
		else if (caller?.sid) target = { sessionId: caller.sid, userId: caller.id };
		else
			throw Unprocessable("Some fields are invalid", [
				{ field: "refreshToken", message: "is required without a signed-in session", type: "required" }
			]);
		if (!target) return { revoked: 0 };
		const ended = await this.d.store.revokeSession(target.sessionId, null, "logout");
		await this.d.forget(target.userId, [target.sessionId]);
		return { revoked: ended ? 1 : 0 };
	}

	/** The user's own revocation of one of their sessions. */
	async revoke(userId: string, sessionId: string): Promise<void> {
		if (!(await this.d.store.revokeSession(sessionId, userId, "user_revoked"))) throw NotFound("Session");
		await this.d.forget(userId, [sessionId]);
	}

	/** Ends every live session of the user (but `exceptSessionId`); the ids ended. */
	async endAllExcept(userId: string, reason: string, exceptSessionId?: string): Promise<string[]> {
		const ended = await this.d.store.revokeAllSessions(userId, reason, exceptSessionId);
		await this.d.forget(userId, ended);
		return ended;
	}

	async endAll(userId: string, reason: string): Promise<number> {
		return (await this.endAllExcept(userId, reason)).length;
	}

	list(userId: string, includeEnded: boolean, limit = 100): Promise<SessionRow[]> {
		return this.d.store.sessionsOf(userId, { includeEnded, limit });
	}

	/** The key successors of refresh tokens are derived under: the active JWT signing key's secret. */
	private refreshSecret(): string {
		const jwt = this.d.jwt;
		return (jwt.keys.find(k => k.kid === jwt.activeKid) ?? jwt.keys[0]).secret;
	}

	private pair(
		user: { id: string; role: Role },
		sessionId: string,
		refreshToken: string,
		expiresAt: Date
	): TokenPair {
		const jwt = this.d.jwt;
		return {
			accessToken: signAccessToken(jwt, { sub: user.id, role: user.role, sid: sessionId, scopes: [ALL_SCOPES] }),
			tokenType: "Bearer",
			expiresIn: jwt.accessTtlS,
			refreshToken,
			refreshTokenExpiresAt: expiresAt.toISOString(),
			sessionId
		};
	}
}
