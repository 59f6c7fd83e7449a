/**
 * The users service: accounts with e-mail and password or Ethereum wallets (SIWE: EOA, EIP-1271,
 * EIP-6492), sessions (short access JWTs, rotating refresh tokens), API keys, roles, tiers and
 * $FORGE holdings. The gateway calls `verifyApiKey` and `authState` on every authenticated request;
 * other services call `getTier`. The domain rules live in src/users/; this file is the shell.
 */
import { createHash } from "node:crypto";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import { getAddress, type Hex } from "viem";
import { durableEvents, type DurableThis } from "../mixins/durable-events.mixin";
import { signAccessToken } from "../src/auth/jwt";
import { ALL_SCOPES, SCOPES, effectiveScopes, scopesOfRole, type Scope } from "../src/auth/scopes";
import type { AuthUser, Role } from "../src/auth/user";
import type { Config } from "../src/config";
import { TIER_ORDER, type TierName } from "../src/domain/tiers";
import {
	Conflict,
	Forbidden,
	NotFound,
	TooManyRequests,
	Unauthorized,
	Unavailable,
	Unprocessable
} from "../src/errors";
import type { KeyValueStore } from "../src/runtime/kv";
import { runtimeOf } from "../src/runtime/runtime";
import { CACHED_ACTIONS, UserCacheInvalidator } from "../src/users/cache";
import type { UsersConfig } from "../src/users/config";
import { PasswordHasher, normalizeEmail, normalizePassword, passwordProblem } from "../src/users/credentials";
import { ForgeBalanceReader, type WalletBalance } from "../src/users/holdings";
import { checkSiweMessage } from "../src/users/siwe";
import { SignupGrants, type GrantIdentity, type GrantMoment } from "../src/users/signup-grant";
import { WalletSignatureVerifier, type WalletKind } from "../src/users/signatures";
import { CompatError, toWire } from "../src/compat/errors";
import { UsersStore, type ApiKeyRow, type SessionRow, type UserRow, type WalletRow } from "../src/users/store";
import {
	AccountGuessLimiter,
	KnownAddresses,
	ProgressiveThrottle,
	makeLimiter,
	throttleKey
} from "../src/users/throttle";
import { isUuid, parsePlanChanged, parseStakeChanged, summarizeTier, type TierSummary } from "../src/users/tier-facts";
import {
	REFRESH_TOKEN_PATTERN,
	digestsEqual,
	newApiKey,
	newNonceToken,
	newRefreshToken,
	successorRefreshToken,
	newSiweNonce,
	parseApiKey,
	sha256
} from "../src/users/tokens";
import { currentUser, type RequestMeta, type Ctx } from "../src/kit/service";
import { accountsMixin, mfaCodeParam, type AccountsThis } from "./users/accounts.mixin";
import { ssoMixin } from "./users/sso.mixin";

const ROLES: Role[] = ["user", "admin", "operator"];
const ADDRESS_PATTERN = /^0x[0-9a-fA-F]{40}$/;
const SIGNATURE_PATTERN = /^0x(?:[0-9a-fA-F]{2})+$/;
const NONCE_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;
const PRUNE_EVERY_MS = 60 * 60 * 1000;
const PRUNE_AFTER_S = 7 * 86_400;
/** A user may force a fresh balance read at most this often; in between, `refresh` serves the cache. */
const BALANCE_REFRESH_MIN_INTERVAL_MS = 5_000;

/** `$location`: moleculer-web's Location header for 201 answers. */

export interface TokenPair {
	accessToken: string;
	tokenType: "Bearer";
	expiresIn: number;
	refreshToken: string;
	refreshTokenExpiresAt: string;
	sessionId: string;
}

export interface PublicUser {
	id: string;
	email: string | null;
	emailVerified: boolean;
	displayName: string | null;
	role: Role;
	createdAt: string;
}

export interface WalletView {
	address: string;
	chainId: number;
	kind: WalletKind;
	linkedAt: string;
}

export interface Profile extends PublicUser {
	hasPassword: boolean;
	tier: TierSummary;
	wallets: WalletView[];
}

export interface SiweProof {
	address: string; // lower-case, as stored
	chainId: number;
	kind: WalletKind;
}

interface UsersThis
	extends
		Service,
		Pick<DurableThis, "publishDurable">,
		Pick<AccountsThis, "secondFactor" | "emailFlows" | "mfaChallenge" | "mailer" | "accounts"> {
	announceWalletOwner(address: string): void;
	cfg: UsersConfig;
	jwt: Config["jwt"];
	store: UsersStore;
	kv: KeyValueStore;
	hasher: PasswordHasher;
	accountIpThrottle: ProgressiveThrottle;
	ipThrottle: ProgressiveThrottle;
	accountThrottle: AccountGuessLimiter;
	knownAddresses: KnownAddresses;
	registerLimiter: RateLimiterAbstract;
	signatures: WalletSignatureVerifier;
	balances: ForgeBalanceReader | null;
	pruneTimer: NodeJS.Timeout | null;
	invalidator: UserCacheInvalidator;
	issueSession(
		user: Pick<UserRow, "id" | "role">,
		method: SessionRow["method"],
		meta: RequestMeta
	): Promise<TokenPair>;
	verifySiweProof(params: { message: string; signature: string; nonceToken: string }): Promise<SiweProof>;
	forget(userId: string, sessionIds?: readonly string[]): Promise<void>;
	refreshSecret(): string;
	forgetAllSessions(userId: string): Promise<void>;
	forgetLater(userId: string): void;
	holdingsOf(userId: string, wallets: WalletView[], refresh: boolean): Promise<ForgeSection["holdings"] & object>;
	signupGrants: SignupGrants;
	offerSignupGrant(userId: string, id: GrantIdentity, moment: GrantMoment, ip: string | undefined): Promise<void>;
}

interface ForgeSection {
	chainId: number;
	tokenAddress: string | null;
	holdings: { totalWei: string | null; wallets: WalletBalance[]; refreshed: boolean } | null;
	holdingsUnavailableReason: string | null;
	stake: { stakedWei: string; effectiveStakeWei: string; nextMaturityAt: string | null };
}

// ── views ────────────────────────────────────────────────────────────────────────────────────

const iso = (d: Date | string | null) => (d == null ? null : new Date(d).toISOString());

function publicUser(u: UserRow): PublicUser {
	return {
		id: u.id,
		email: u.email,
		emailVerified: u.email !== null && u.email_verified_at !== null,
		displayName: u.display_name,
		role: u.role,
		createdAt: iso(u.created_at)!
	};
}

function walletView(w: WalletRow): WalletView {
	return { address: getAddress(w.address), chainId: Number(w.chain_id), kind: w.kind, linkedAt: iso(w.linked_at)! };
}

function apiKeyView(k: ApiKeyRow) {
	return {
		id: k.id,
		name: k.name,
		scopes: k.scopes,
		models: k.allowed_models,
		monthlyBudgetCredits: k.monthly_budget_credits == null ? null : Number(k.monthly_budget_credits),
		rpm: k.rpm,
		tpm: k.tpm,
		createdAt: iso(k.created_at),
		expiresAt: iso(k.expires_at),
		lastUsedAt: iso(k.last_used_at)
	};
}

function sessionView(s: SessionRow, currentSid?: string) {
	return {
		id: s.id,
		method: s.method,
		createdAt: iso(s.created_at),
		lastRefreshedAt: iso(s.last_refreshed_at),
		expiresAt: iso(s.expires_at),
		revokedAt: iso(s.revoked_at),
		revokedReason: s.revoked_reason,
		ip: s.ip,
		userAgent: s.user_agent,
		current: s.id === currentSid
	};
}

function adminUserView(u: UserRow & { wallets?: string[] }) {
	return {
		...publicUser(u),
		tierOverride: u.tier_override,
		disabled: u.disabled_at !== null,
		disabledAt: iso(u.disabled_at),
		lastLoginAt: iso(u.last_login_at),
		...(u.wallets ? { wallets: u.wallets.map(a => getAddress(a)) } : {})
	};
}

function encodeCursor(createdAt: string, id: string): string {
	return Buffer.from(JSON.stringify([createdAt, id])).toString("base64url");
}

/** `created_at::text` as Postgres writes it; anything else could fail the `::timestamptz` cast (a 500). */
const PG_TIMESTAMPTZ = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?[+-](?:0\d|1[0-5])(?::[0-5]\d)?$/;

function isPgTimestamp(text: string): boolean {
	const m = PG_TIMESTAMPTZ.exec(text);
	if (!m) return false;
	const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
	const t = new Date(Date.UTC(y, mo - 1, d));
	return (
		t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d && h < 24 && mi < 60 && s < 60
	);
}

function decodeCursor(cursor: string): { createdAt: string; id: string } | null {
	try {
		const [createdAt, id] = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as unknown[];
		if (typeof createdAt !== "string" || !isPgTimestamp(createdAt) || !isUuid(id)) return null;
		return { createdAt, id };
	} catch {
		return null;
	}
}

const nonceKey = (nonceToken: string) => `users:siwe-nonce:${createHash("sha256").update(nonceToken).digest("hex")}`;

/** What every sign-in and refresh answers: a session's access token (every scope of the role) and its next refresh token. */
function tokenPair(
	jwt: Config["jwt"],
	user: Pick<UserRow, "id" | "role">,
	sessionId: string,
	refreshToken: string,
	refreshExpiresAt: Date
): TokenPair {
	return {
		accessToken: signAccessToken(jwt, { sub: user.id, role: user.role, sid: sessionId, scopes: [ALL_SCOPES] }),
		tokenType: "Bearer",
		expiresIn: jwt.accessTtlS,
		refreshToken,
		refreshTokenExpiresAt: refreshExpiresAt.toISOString(),
		sessionId
	};
}

const INVALID_CREDENTIALS = () => Unauthorized("Invalid email or password", "INVALID_CREDENTIALS");
/** One answer for every login limiter: which one refused must not tell whether the account exists. */
const throttled = (retryAfterS: number) =>
	TooManyRequests("Too many failed sign-in attempts; try again later", retryAfterS, "LOGIN_THROTTLED");

async function consumeOrThrow(limiter: RateLimiterAbstract, key: string, message: string) {
	try {
		await limiter.consume(key);
	} catch (rej) {
		if (rej instanceof RateLimiterRes) throw TooManyRequests(message, Math.ceil(rej.msBeforeNext / 1000));
		throw rej;
	}
}

// ── the service ──────────────────────────────────────────────────────────────────────────────

const siweParams = {
	message: { type: "string", min: 1, max: 4096, description: "The exact EIP-4361 message that was signed" },
	signature: {
		type: "string",
		min: 4,
		max: 20_000,
		pattern: SIGNATURE_PATTERN,
		description: "0x-hex signature (65-byte ECDSA, EIP-1271 or EIP-6492 wrapped)"
	},
	nonceToken: {
		type: "string",
		pattern: NONCE_TOKEN_PATTERN,
		description: "The nonceToken returned with the nonce (binds it to this client)"
	}
} as const;

// `merged` is a Moleculer lifecycle hook the typings leave out.
type UsersSchema = ServiceSchema<ServiceSettingSchema, Record<string, never>, Record<string, never>, UsersThis> & {
	merged?: (this: UsersThis, schema: ServiceSchema) => void;
};

const UsersService: UsersSchema = {
	name: "users",
	mixins: [
		accountsMixin as unknown as ServiceSchema,
		ssoMixin as unknown as ServiceSchema,
		durableEvents({
			group: "users",
			handlers: {
				async "payments.plan.changed"(this: UsersThis, payload, { tx, event }) {
					const fact = parsePlanChanged(payload);
					if (await this.store.applyPlanFact(tx, fact.userId, fact.planTier, event.occurredAt))
						tx.afterCommit(() => this.forgetLater(fact.userId));
				},
				async "payments.stake.changed"(this: UsersThis, payload, { tx, event }) {
					const fact = parseStakeChanged(payload);
					if (await this.store.applyStakeFact(tx, fact.userId, fact.positions, event.occurredAt))
						tx.afterCommit(() => this.forgetLater(fact.userId));
				}
			}
		})
	],

	/** Cache TTLs come from the configuration, which exists only once the broker does. */
	merged(this: UsersThis, schema: ServiceSchema) {
		const cfg = runtimeOf(this.broker).config.users;
		const actions = schema.actions as Record<string, { cache?: object }>;
		const ttl: Record<string, number> = {
			authState: cfg.sessions.authStateCacheTtlS,
			getTier: cfg.tierCacheTtlS,
			profile: cfg.tierCacheTtlS
		};
		for (const [name, seconds] of Object.entries(ttl))
			actions[name] = { ...actions[name], cache: { ...actions[name].cache, ttl: seconds } };
	},

	actions: {
		// ── passwords ──────────────────────────────────────────────────────────────────────
		register: {
			params: {
				$$strict: "remove",
				email: { type: "email", max: 254, normalize: true },
				password: { type: "string", min: 1, max: 1024 },
				displayName: { type: "string", min: 1, max: 80, trim: true, optional: true }
			},
			async handler(this: UsersThis, ctx: Ctx<{ email: string; password: string; displayName?: string }>) {
				const email = normalizeEmail(ctx.params.email);
				if (!email)
					throw Unprocessable("Some fields are invalid", [
						{ field: "email", message: "is not a valid e-mail address" }
					]);
				const password = normalizePassword(ctx.params.password);
				const problem = passwordProblem(password, this.cfg.passwords);
				if (problem)
					throw Unprocessable("Some fields are invalid", [
						{ field: "password", message: problem, type: "passwordPolicy" }
					]);
				await consumeOrThrow(
					this.registerLimiter,
					ctx.meta.ip ?? "unknown",
					"Too many sign-ups from this address; try again later"
				);
				// Hashed before the address is looked at: a taken address costs the same hash as a new one.
				const hash = await this.hasher.hash(password);
				const user = await this.store.createPasswordUser(email, hash, ctx.params.displayName ?? null);
				if (!user) throw Conflict("An account with this e-mail already exists", "EMAIL_TAKEN");
				await this.store.audit(undefined, user.id, user.id, "user.register", { method: "password" });
				// Sign-ups are limited per IP above; the mail is limited per address only.
				await this.emailFlows.sendVerification(user.id, email, false, null);
				await this.offerSignupGrant(user.id, { kind: "email", email }, "signup", ctx.meta.ip);
				ctx.meta.$location = "/api/v1/users/me";
				return { ...(await this.issueSession(user, "password", ctx.meta)), user: publicUser(user) };
			}
		},

		login: {
			params: {
				$$strict: "remove",
				email: { type: "string", min: 1, max: 254 },
				password: { type: "string", min: 1, max: 1024 }
			},
			async handler(this: UsersThis, ctx: Ctx<{ email: string; password: string }>) {
				const ip = ctx.meta.ip ?? "unknown";
				const email = normalizeEmail(ctx.params.email) ?? ctx.params.email.trim().toLowerCase();
				const accountKey = throttleKey(email, ip);
				const emailKey = throttleKey("account", email);
				// Throttled before any hashing: a guesser cannot make us burn CPU.
				const wait = Math.max(
					await this.ipThrottle.retryAfterS(ip),
					await this.accountIpThrottle.retryAfterS(accountKey)
				);
				if (wait > 0) throw throttled(wait);
				// Guesses at one account spread over many addresses; the owner's usual addresses skip it.
				const known = await this.knownAddresses.has(email, ctx.meta.ip);
				const viaAccountLimiter = known !== true;
				if (viaAccountLimiter) {
					const accountWait = await this.accountThrottle.admit(emailKey);
					if (accountWait > 0) throw throttled(accountWait);
				}

				const user = await this.store.userByEmail(email);
				const password = normalizePassword(ctx.params.password);
				// Unknown users and password-less accounts verify a dummy hash: same answer, same time.
				const ok = await this.hasher.verify(user?.password_hash ?? null, password);
				if (!ok || !user) {
					// The account-wide limiter counted this attempt when it admitted it.
					await Promise.all([
						this.accountIpThrottle.recordFailure(accountKey),
						this.ipThrottle.recordFailure(ip)
					]);
					throw INVALID_CREDENTIALS();
				}
				// A success from a known address leaves the account-wide count alone: the owner signing in
				// at home must not hand a guesser elsewhere a fresh allowance.
				await Promise.all([
					this.accountIpThrottle.reset(accountKey),
					viaAccountLimiter ? this.accountThrottle.reset(emailKey) : undefined
				]);
				if (user.disabled_at) throw Forbidden("This account is disabled", "ACCOUNT_DISABLED");
				await this.knownAddresses.remember(email, ctx.meta.ip);
				if (this.hasher.needsRehash(user.password_hash!))
					await this.store.setPasswordHash(user.id, await this.hasher.hash(password));
				if (await this.secondFactor.enabled(user.id)) return this.mfaChallenge(user.id, "password");
				// An address the account never signed in from: tell the owner (a verified address only).
				if (known === false && user.email_verified_at)
					this.mailer.sendLater(user.email!, {
						kind: "newSignIn",
						method: "password",
						ip: ctx.meta.ip ?? null,
						userAgent: ctx.meta.userAgent || null,
						at: new Date().toISOString()
					});
				await this.store.touchLogin(user.id);
				return { ...(await this.issueSession(user, "password", ctx.meta)), user: publicUser(user) };
			}
		},

		// ── sessions ───────────────────────────────────────────────────────────────────────
		refresh: {
			params: { $$strict: "remove", refreshToken: { type: "string", pattern: REFRESH_TOKEN_PATTERN } },
			async handler(this: UsersThis, ctx: Ctx<{ refreshToken: string }>) {
				// The spent token's one successor: racing refreshes with it (within the grace) get this same token.
				const next = successorRefreshToken(this.refreshSecret(), ctx.params.refreshToken);
				const r = await this.store.rotateRefreshToken(
					sha256(ctx.params.refreshToken),
					next.hash,
					this.cfg.sessions.refreshTokenTtlS,
					this.cfg.sessions.refreshReuseGraceS
				);
				if (r.kind === "reused") {
					// RFC 9700 §4.14.2: a spent token came back, so someone holds a copy; end the whole family.
					await this.store.revokeSession(r.sessionId, null, "refresh_token_reuse");
					await this.forget(r.userId, [r.sessionId]);
					this.logger.warn(
						{ userId: r.userId, sessionId: r.sessionId, ip: ctx.meta.ip },
						"refresh token reuse: session revoked"
					);
					throw Unauthorized(
						"This refresh token was already used; the session has been revoked",
						"REFRESH_TOKEN_REUSED"
					);
				}
				if (r.kind !== "rotated")
					throw Unauthorized("Invalid or expired refresh token", "INVALID_REFRESH_TOKEN");
				return tokenPair(
					this.jwt,
					{ id: r.userId, role: r.role },
					r.sessionId,
					next.token,
					r.refreshToken.expiresAt
				);
			}
		},

		logout: {
			params: {
				$$strict: "remove",
				refreshToken: { type: "string", pattern: REFRESH_TOKEN_PATTERN, optional: true },
				all: { type: "boolean", optional: true, description: "End every session of the signed-in user" }
			},
			async handler(this: UsersThis, ctx: Ctx<{ refreshToken?: string; all?: boolean }>) {
				const user = ctx.meta.user;
				if (ctx.params.all) {
					if (!user?.sid) throw Unauthorized("Signing out everywhere needs a signed-in session");
					const ended = await this.store.revokeAllSessions(user.id, "logout_all");
					await this.forget(user.id, ended);
					return { revoked: ended.length };
				}
				let target: { sessionId: string; userId: string } | null;
				if (ctx.params.refreshToken)
					target = await this.store.sessionOfRefreshToken(sha256(ctx.params.refreshToken));
				else if (user?.sid) target = { sessionId: user.sid, userId: user.id };
				else
					throw Unprocessable("Some fields are invalid", [
						{ field: "refreshToken", message: "is required without a signed-in session", type: "required" }
					]);
				// An unknown token answers like a known one: logout is idempotent and reveals nothing.
				if (!target) return { revoked: 0 };
				const ended = await this.store.revokeSession(target.sessionId, null, "logout");
				await this.forget(target.userId, [target.sessionId]);
				return { revoked: ended ? 1 : 0 };
			}
		},

		listSessions: {
			auth: "required",
			scope: "users:read",
			async handler(this: UsersThis, ctx: Ctx) {
				const user = currentUser(ctx);
				const sessions = await this.store.sessionsOf(user.id, { includeEnded: false, limit: 100 });
				return { items: sessions.map(s => sessionView(s, user.sid)) };
			}
		},

		revokeSession: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: { type: "uuid" } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				const user = currentUser(ctx);
				if (!(await this.store.revokeSession(ctx.params.id, user.id, "user_revoked")))
					throw NotFound("Session");
				await this.forget(user.id, [ctx.params.id]);
				return { id: ctx.params.id, revoked: true };
			}
		},

		// ── Sign-In with Ethereum ──────────────────────────────────────────────────────────
		siweNonce: {
			async handler(this: UsersThis) {
				const nonce = newSiweNonce();
				const nonceToken = newNonceToken();
				const ttlMs = this.cfg.siwe.nonceTtlS * 1000;
				await this.kv.set(nonceKey(nonceToken), nonce, ttlMs);
				return {
					nonce,
					nonceToken,
					expiresAt: new Date(Date.now() + ttlMs).toISOString(),
					domain: this.cfg.siwe.domain,
					uri: this.cfg.siwe.uri,
					chainIds: this.cfg.siwe.chainIds,
					version: "1",
					maxValiditySeconds: this.cfg.siwe.maxValidityS
				};
			}
		},

		siweVerify: {
			params: { $$strict: "remove", ...siweParams },
			async handler(this: UsersThis, ctx: Ctx<{ message: string; signature: string; nonceToken: string }>) {
				const proof = await this.verifySiweProof(ctx.params);
				const { userId, created } = await this.store.userForWalletSignIn(
					proof.address,
					proof.chainId,
					proof.kind
				);
				const user = await this.store.userById(userId);
				if (!user) throw new Error(`user ${userId} of wallet ${proof.address} not found`);
				if (user.disabled_at) throw Forbidden("This account is disabled", "ACCOUNT_DISABLED");
				await this.store.touchWalletSignIn(proof.address, proof.kind);
				if (await this.secondFactor.enabled(user.id))
					return { ...(await this.mfaChallenge(user.id, "siwe")), created };
				await this.store.touchLogin(user.id);
				if (created) {
					await this.store.audit(undefined, user.id, user.id, "user.register", {
						method: "siwe",
						address: proof.address
					});
					this.announceWalletOwner(proof.address);
					await this.offerSignupGrant(
						user.id,
						{ kind: "wallet", address: proof.address },
						"wallet",
						ctx.meta.ip
					);
				} else await this.forget(user.id); // the wallet's kind may have changed (deployed since)
				return { ...(await this.issueSession(user, "siwe", ctx.meta)), user: publicUser(user), created };
			}
		},

		// ── profile and wallets ────────────────────────────────────────────────────────────
		me: {
			auth: "required",
			scope: "users:read",
			params: {
				$$strict: "remove",
				refresh: {
					type: "boolean",
					convert: true,
					optional: true,
					description: "Re-read $FORGE balances from the chain"
				}
			},
			async handler(this: UsersThis, ctx: Ctx<{ refresh?: boolean }>) {
				const user = currentUser(ctx);
				const profile = (await ctx.call(CACHED_ACTIONS.profile.name, { userId: user.id })) as Profile;
				const forge: ForgeSection = {
					chainId: this.cfg.chain.forgeChainId,
					tokenAddress: this.cfg.chain.forgeTokenAddress,
					holdings: null,
					holdingsUnavailableReason: null,
					stake: {
						stakedWei: profile.tier.stakedWei,
						effectiveStakeWei: profile.tier.effectiveStakeWei,
						nextMaturityAt: profile.tier.nextStakeMaturityAt
					}
				};
				if (this.balances)
					forge.holdings = await this.holdingsOf(user.id, profile.wallets, ctx.params.refresh === true);
				else
					forge.holdingsUnavailableReason =
						"CHAIN_NOT_CONFIGURED: set CHAIN_RPC_URL and FORGE_TOKEN_ADDRESS to show $FORGE balances";
				return {
					...profile,
					permissions: effectiveScopes(user),
					credential: user.keyId
						? { type: "apiKey", keyId: user.keyId }
						: { type: "session", sessionId: user.sid ?? null },
					forge
				};
			}
		},

		updateMe: {
			auth: "required",
			scope: "users:write",
			params: {
				$$strict: "remove",
				displayName: { type: "string", min: 1, max: 80, trim: true, nullable: true }
			},
			async handler(this: UsersThis, ctx: Ctx<{ displayName: string | null }>) {
				const user = currentUser(ctx);
				await this.store.setDisplayName(user.id, ctx.params.displayName);
				await this.forget(user.id);
				return ctx.call(CACHED_ACTIONS.profile.name, { userId: user.id });
			}
		},

		changePassword: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				currentPassword: { type: "string", min: 1, max: 1024, optional: true },
				newPassword: { type: "string", min: 1, max: 1024 },
				mfaCode: mfaCodeParam
			},
			async handler(
				this: UsersThis,
				ctx: Ctx<{ currentPassword?: string; newPassword: string; mfaCode?: string }>
			) {
				const auth = currentUser(ctx);
				const user = await this.store.userById(auth.id);
				if (!user) throw NotFound("User");
				await this.secondFactor.stepUp(user.id, ctx.params.mfaCode);
				if (!user.email)
					throw Conflict(
						"An account needs an e-mail address before it can have a password",
						"EMAIL_REQUIRED"
					);
				if (user.password_hash) {
					const key = throttleKey("password-change", user.id, ctx.meta.ip ?? "unknown");
					const wait = await this.accountIpThrottle.retryAfterS(key);
					if (wait > 0)
						throw TooManyRequests("Too many wrong passwords; try again later", wait, "LOGIN_THROTTLED");
					// A stolen session used from many addresses: the current password is guessed per
					// account too (the account-wide limiter, counted before hashing).
					const accountKey = throttleKey("password-change-account", user.id);
					const accountWait = await this.accountThrottle.admit(accountKey);
					if (accountWait > 0)
						throw TooManyRequests(
							"Too many wrong passwords; try again later",
							accountWait,
							"LOGIN_THROTTLED"
						);
					if (
						!(await this.hasher.verify(
							user.password_hash,
							normalizePassword(ctx.params.currentPassword ?? "")
						))
					) {
						await this.accountIpThrottle.recordFailure(key);
						throw Forbidden("The current password is wrong", "INVALID_CURRENT_PASSWORD");
					}
					await Promise.all([this.accountIpThrottle.reset(key), this.accountThrottle.reset(accountKey)]);
				}
				const password = normalizePassword(ctx.params.newPassword);
				const problem = passwordProblem(password, this.cfg.passwords);
				if (problem)
					throw Unprocessable("Some fields are invalid", [
						{ field: "newPassword", message: problem, type: "passwordPolicy" }
					]);
				await this.store.setPasswordHash(user.id, await this.hasher.hash(password));
				// Whoever else holds a session may know the old password: end every other session.
				const ended = await this.store.revokeAllSessions(user.id, "password_changed", auth.sid);
				await this.store.audit(undefined, user.id, user.id, "user.password", { endedSessions: ended.length });
				await this.forget(user.id, ended);
				return { changed: true, endedSessions: ended.length };
			}
		},

		linkWallet: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", ...siweParams, mfaCode: mfaCodeParam },
			async handler(
				this: UsersThis,
				ctx: Ctx<{ message: string; signature: string; nonceToken: string; mfaCode?: string }>
			) {
				const user = currentUser(ctx);
				await this.secondFactor.stepUp(user.id, ctx.params.mfaCode);
				const proof = await this.verifySiweProof(ctx.params);
				const r = await this.store.linkWallet(
					user.id,
					proof.address,
					proof.chainId,
					proof.kind,
					this.cfg.maxWalletsPerUser
				);
				if (r.result === "taken") throw Conflict("This wallet is linked to another account", "WALLET_TAKEN");
				if (r.result === "limit")
					throw Conflict(`An account may link at most ${this.cfg.maxWalletsPerUser} wallets`, "WALLET_LIMIT");
				await this.forget(user.id);
				if (r.result !== "already") {
					this.announceWalletOwner(proof.address);
					await this.offerSignupGrant(
						user.id,
						{ kind: "wallet", address: proof.address },
						"wallet",
						ctx.meta.ip
					);
				}
				ctx.meta.$location = "/api/v1/users/me";
				return { ...walletView(r.wallet!), alreadyLinked: r.result === "already" };
			}
		},

		unlinkWallet: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", address: { type: "string", pattern: ADDRESS_PATTERN } },
			async handler(this: UsersThis, ctx: Ctx<{ address: string }>) {
				const user = currentUser(ctx);
				const address = ctx.params.address.toLowerCase();
				const r = await this.store.unlinkWallet(user.id, address);
				if (r === "not_found") throw NotFound("Wallet");
				if (r === "last_method")
					throw Conflict("This wallet is the account's only way to sign in", "LAST_SIGN_IN_METHOD");
				await this.forget(user.id);
				this.announceWalletOwner(address);
				return { address: getAddress(address), unlinked: true };
			}
		},

		// ── API keys ───────────────────────────────────────────────────────────────────────
		createApiKey: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				name: { type: "string", min: 1, max: 64, trim: true },
				scopes: {
					type: "array",
					items: { type: "enum", values: [...SCOPES] },
					min: 1,
					max: SCOPES.length,
					unique: true
				},
				expiresInDays: { type: "number", integer: true, min: 1, max: 3650, optional: true },
				mfaCode: mfaCodeParam,
				// Limits the /v1 compatible endpoints enforce (docs/compat.md).
				models: {
					type: "array",
					items: { type: "string", min: 1, max: 200 },
					min: 1,
					max: 100,
					unique: true,
					optional: true
				},
				monthlyBudgetCredits: {
					type: "number",
					integer: true,
					min: 1,
					max: Number.MAX_SAFE_INTEGER,
					optional: true
				},
				rpm: { type: "number", integer: true, min: 1, max: 1_000_000, optional: true },
				tpm: { type: "number", integer: true, min: 1, max: 1_000_000_000, optional: true }
			},
			async handler(
				this: UsersThis,
				ctx: Ctx<{
					name: string;
					scopes: Scope[];
					expiresInDays?: number;
					mfaCode?: string;
					models?: string[];
					monthlyBudgetCredits?: number;
					rpm?: number;
					tpm?: number;
				}>
			) {
				const user = currentUser(ctx);
				await this.secondFactor.stepUp(user.id, ctx.params.mfaCode);
				const allowed = scopesOfRole(user.role);
				const denied = ctx.params.scopes.filter(s => !allowed.includes(s));
				if (denied.length)
					throw Unprocessable(
						"Some fields are invalid",
						denied.map(s => ({
							field: "scopes",
							message: `scope '${s}' is not available to role ${user.role}`,
							type: "scope"
						}))
					);
				const fresh = newApiKey();
				const row = await this.store.createApiKey({
					id: fresh.id,
					userId: user.id,
					name: ctx.params.name,
					secretHash: fresh.secretHash,
					scopes: ctx.params.scopes,
					expiresInDays: ctx.params.expiresInDays ?? null,
					maxPerUser: this.cfg.apiKeys.maxPerUser,
					limits: {
						models: ctx.params.models ?? null,
						monthlyBudgetCredits: ctx.params.monthlyBudgetCredits ?? null,
						rpm: ctx.params.rpm ?? null,
						tpm: ctx.params.tpm ?? null
					}
				});
				if (row === "limit")
					throw Conflict(
						`An account may hold at most ${this.cfg.apiKeys.maxPerUser} active API keys`,
						"API_KEY_LIMIT"
					);
				ctx.meta.$location = "/api/v1/users/me/api-keys";
				// The only time the secret is ever shown.
				return { ...apiKeyView(row), key: fresh.key };
			}
		},

		listApiKeys: {
			auth: "required",
			sessionOnly: true,
			async handler(this: UsersThis, ctx: Ctx) {
				return { items: (await this.store.apiKeysOf(currentUser(ctx).id)).map(apiKeyView) };
			}
		},

		revokeApiKey: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: { type: "string", pattern: /^[A-Za-z0-9]{1,64}$/ } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				const user = currentUser(ctx);
				if (!(await this.store.revokeApiKey(user.id, ctx.params.id))) throw NotFound("API key");
				await this.store.audit(undefined, user.id, user.id, "apiKey.revoke", { id: ctx.params.id });
				return { id: ctx.params.id, revoked: true };
			}
		},

		// ── administration ─────────────────────────────────────────────────────────────────
		adminListUsers: {
			permissions: ["admin", "operator"],
			scope: "admin",
			params: {
				$$strict: "remove",
				limit: { type: "number", integer: true, min: 1, max: 100, convert: true, default: 20 },
				cursor: { type: "string", max: 200, optional: true },
				q: {
					type: "string",
					min: 1,
					max: 254,
					trim: true,
					optional: true,
					description: "e-mail prefix, user id or wallet address (prefix)"
				},
				role: { type: "enum", values: ROLES, optional: true },
				disabled: { type: "boolean", convert: true, optional: true }
			},
			async handler(
				this: UsersThis,
				ctx: Ctx<{ limit: number; cursor?: string; q?: string; role?: Role; disabled?: boolean }>
			) {
				const after = ctx.params.cursor ? decodeCursor(ctx.params.cursor) : null;
				if (ctx.params.cursor && !after)
					throw Unprocessable("Some fields are invalid", [
						{ field: "cursor", message: "is not a cursor from this list" }
					]);
				const rows = await this.store.listUsers({
					limit: ctx.params.limit + 1,
					after,
					q: ctx.params.q ?? null,
					role: ctx.params.role ?? null,
					disabled: ctx.params.disabled ?? null
				});
				const page = rows.slice(0, ctx.params.limit);
				const last = page[page.length - 1];
				return {
					items: page.map(adminUserView),
					nextCursor: rows.length > ctx.params.limit && last ? encodeCursor(last.cursor_at, last.id) : null
				};
			}
		},

		adminGetUser: {
			permissions: ["admin", "operator"],
			scope: "admin",
			params: { $$strict: "remove", id: { type: "uuid" } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				const user = await this.store.userById(ctx.params.id);
				if (!user) throw NotFound("User");
				const [facts, wallets, sessions] = await Promise.all([
					this.store.tierFacts(user.id),
					this.store.walletsOf(user.id),
					this.store.sessionsOf(user.id, { includeEnded: false, limit: 50 })
				]);
				return {
					...adminUserView(user),
					tier: summarizeTier(facts, Date.now()),
					wallets: wallets.map(walletView),
					sessions: sessions.map(s => sessionView(s))
				};
			}
		},

		adminUpdateUser: {
			permissions: ["admin"],
			scope: "admin",
			params: {
				$$strict: "remove",
				id: { type: "uuid" },
				role: { type: "enum", values: ROLES, optional: true },
				tierOverride: {
					type: "enum",
					values: [...TIER_ORDER],
					optional: true,
					nullable: true,
					description: "null clears the override"
				},
				disabled: { type: "boolean", optional: true }
			},
			async handler(
				this: UsersThis,
				ctx: Ctx<{ id: string; role?: Role; tierOverride?: TierName | null; disabled?: boolean }>
			) {
				const actor = currentUser(ctx);
				const { role, tierOverride, disabled } = ctx.params;
				const id = ctx.params.id.toLowerCase();
				if (role === undefined && tierOverride === undefined && disabled === undefined)
					throw Unprocessable("Some fields are invalid", [
						{
							field: "role",
							message: "give at least one of role, tierOverride, disabled",
							type: "required"
						}
					]);
				if (id === actor.id && ((role !== undefined && role !== actor.role) || disabled === true))
					throw Conflict("Administrators cannot demote or disable themselves", "SELF_CHANGE_FORBIDDEN");
				const r = await this.store.adminUpdate(id, { role, tierOverride, disabled }, { actorId: actor.id });
				if (!r) throw NotFound("User");
				// Role and disabled state are read by the gateway per request: drop every cached session state.
				if (role !== undefined || disabled !== undefined) await this.forgetAllSessions(id);
				else await this.forget(id);
				this.broker.broadcast("users.changed", {
					userId: id,
					fields: Object.keys(ctx.params).filter(k => k !== "id")
				});
				return adminUserView(r.after);
			}
		},

		// ── internal: the gateway and other services ───────────────────────────────────────
		// "public": callable by other nodes over the transporter, never published by the gateway
		// (Moleculer's "protected" would hide them from every other node).
		verifyApiKey: {
			visibility: "public",
			params: { key: { type: "string", max: 256 } },
			async handler(this: UsersThis, ctx: Context<{ key: string }>): Promise<AuthUser | null> {
				const parsed = parseApiKey(ctx.params.key);
				if (!parsed) return null;
				const row = await this.store.apiKeyForVerification(parsed.id);
				if (!row || !digestsEqual(row.secret_hash, sha256(parsed.secret)) || !row.usable) return null;
				const interval = this.cfg.apiKeys.lastUsedWriteIntervalS * 1000;
				if (!row.last_used_at || Date.now() - new Date(row.last_used_at).getTime() > interval)
					this.store
						.touchApiKey(row.id, this.cfg.apiKeys.lastUsedWriteIntervalS)
						.catch(err => this.logger.warn("api key last-used update failed", err.message));
				return {
					id: row.user_id,
					role: row.role,
					keyId: row.id,
					scopes: row.scopes.filter(s => scopesOfRole(row.role).includes(s as Scope)),
					...(row.allowed_models || row.monthly_budget_credits || row.rpm || row.tpm
						? {
								keyLimits: {
									models: row.allowed_models,
									monthlyBudgetCredits:
										row.monthly_budget_credits == null ? null : Number(row.monthly_budget_credits),
									rpm: row.rpm,
									tpm: row.tpm
								}
							}
						: {})
				};
			}
		},

		/** Holds part of an API key's monthly budget (ai, for /v1 requests): 402-kind refusal when spent. */
		reserveKeyBudget: {
			visibility: "public",
			retryPolicy: { enabled: true },
			params: {
				keyId: { type: "string", pattern: /^[A-Za-z0-9]{1,64}$/ },
				holdId: { type: "string", min: 1, max: 128 },
				credits: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER },
				limit: { type: "number", integer: true, min: 1, optional: true }
			},
			async handler(this: UsersThis, ctx: Context<{ keyId: string; holdId: string; credits: number }>) {
				const r = await this.store.reserveKeyBudget(ctx.params.keyId, ctx.params.holdId, ctx.params.credits);
				if (r === "over")
					throw toWire(
						new CompatError(
							"insufficient_credits",
							`This API key's monthly budget does not cover this request (at most ${ctx.params.credits} credits)`,
							null,
							"key_budget_exceeded"
						)
					);
				return { held: r === "held" };
			}
		},

		settleKeyBudget: {
			visibility: "public",
			retryPolicy: { enabled: true },
			params: {
				keyId: { type: "string", pattern: /^[A-Za-z0-9]{1,64}$/ },
				holdId: { type: "string", min: 1, max: 128 },
				credits: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }
			},
			async handler(this: UsersThis, ctx: Context<{ keyId: string; holdId: string; credits: number }>) {
				return { settled: await this.store.settleKeyBudget(ctx.params.holdId, ctx.params.credits) };
			}
		},

		/** An API key's spend this month (tests, operators). */
		keySpend: {
			visibility: "public",
			params: { keyId: { type: "string", pattern: /^[A-Za-z0-9]{1,64}$/ } },
			async handler(this: UsersThis, ctx: Context<{ keyId: string }>) {
				return this.store.keySpend(ctx.params.keyId);
			}
		},

		/**
		 * Mails an organisation invitation through the account mailer (orgs service; the dev outbox in
		 * embedded mode). The link is built here from APP_URL; the token travels only in the message.
		 */
		sendOrgInvitation: {
			visibility: "public",
			params: {
				to: { type: "email", max: 254 },
				orgName: { type: "string", min: 1, max: 100 },
				role: { type: "string", min: 1, max: 32 },
				inviterId: { type: "uuid" },
				token: { type: "string", pattern: /^ffi_[A-Za-z0-9_-]{43}$/ },
				expiresInS: { type: "number", integer: true, min: 1 }
			},
			async handler(
				this: UsersThis,
				ctx: Context<{
					to: string;
					orgName: string;
					role: string;
					inviterId: string;
					token: string;
					expiresInS: number;
				}>
			) {
				const p = ctx.params;
				const inviter = await this.store.userById(p.inviterId);
				const link = `${this.cfg.mail.appUrl}/invitations/accept?token=${encodeURIComponent(p.token)}`;
				this.mailer.sendLater(p.to, {
					kind: "orgInvitation",
					orgName: p.orgName,
					role: p.role,
					inviter: inviter?.display_name ?? inviter?.email ?? null,
					link,
					expiresInS: p.expiresInS
				});
				return { sent: true };
			}
		},

		/** Who owns a wallet (payments attributes on-chain stakes through it). */
		walletOwner: {
			visibility: "public",
			retryPolicy: { enabled: true },
			params: { address: { type: "string", pattern: ADDRESS_PATTERN } },
			async handler(this: UsersThis, ctx: Context<{ address: string }>): Promise<{ userId: string } | null> {
				const w = await this.store.walletByAddress(ctx.params.address.toLowerCase());
				return w ? { userId: w.user_id } : null;
			}
		},

		authState: {
			visibility: "public",
			cache: { keys: [...CACHED_ACTIONS.authState.keys] },
			params: { userId: { type: "string", max: 64 }, sid: { type: "string", max: 64 } },
			async handler(
				this: UsersThis,
				ctx: Context<{ userId: string; sid: string }>
			): Promise<{ role: Role } | null> {
				if (!isUuid(ctx.params.userId) || !isUuid(ctx.params.sid)) return null;
				return this.store.authState(ctx.params.userId, ctx.params.sid);
			}
		},

		/** Which of these ids are accounts (disabled ones included); other strings are simply not. */
		exist: {
			visibility: "public",
			retryPolicy: { enabled: true },
			params: { userIds: { type: "array", items: { type: "string", min: 1, max: 200 }, min: 1, max: 500 } },
			async handler(this: UsersThis, ctx: Context<{ userIds: string[] }>): Promise<{ known: string[] }> {
				const ids = [...new Set(ctx.params.userIds.filter(isUuid))];
				return { known: ids.length ? await this.store.existingUserIds(ids) : [] };
			}
		},

		getTier: {
			visibility: "public",
			retryPolicy: { enabled: true },
			cache: { keys: [...CACHED_ACTIONS.getTier.keys] },
			params: { userId: { type: "uuid" } },
			async handler(
				this: UsersThis,
				ctx: Context<{ userId: string }>
			): Promise<TierSummary & { userId: string }> {
				const facts = await this.store.tierFacts(ctx.params.userId);
				if (!facts.exists) throw NotFound("User");
				return { userId: ctx.params.userId, ...summarizeTier(facts, Date.now()) };
			}
		},

		profile: {
			visibility: "public",
			retryPolicy: { enabled: true },
			cache: { keys: [...CACHED_ACTIONS.profile.keys] },
			params: { userId: { type: "uuid" } },
			async handler(this: UsersThis, ctx: Context<{ userId: string }>): Promise<Profile> {
				const user = await this.store.userById(ctx.params.userId);
				if (!user) throw NotFound("User");
				const [facts, wallets] = await Promise.all([
					this.store.tierFacts(user.id),
					this.store.walletsOf(user.id)
				]);
				return {
					...publicUser(user),
					hasPassword: user.password_hash !== null,
					tier: summarizeTier(facts, Date.now()),
					wallets: wallets.map(walletView)
				};
			}
		},

		userSessions: {
			visibility: "public",
			params: { userId: { type: "uuid" }, includeEnded: { type: "boolean", optional: true } },
			async handler(this: UsersThis, ctx: Context<{ userId: string; includeEnded?: boolean }>) {
				const sessions = await this.store.sessionsOf(ctx.params.userId, {
					includeEnded: ctx.params.includeEnded ?? false,
					limit: 100
				});
				return { items: sessions.map(s => sessionView(s)) };
			}
		},

		revokeUserSessions: {
			visibility: "public",
			params: { userId: { type: "uuid" }, reason: { type: "string", min: 1, max: 64, default: "operator" } },
			async handler(this: UsersThis, ctx: Context<{ userId: string; reason: string }>) {
				const ended = await this.store.revokeAllSessions(ctx.params.userId, ctx.params.reason);
				await this.store.audit(undefined, ctx.params.userId, "operator", "sessions.revoke", {
					reason: ctx.params.reason,
					count: ended.length
				});
				await this.forget(ctx.params.userId, ended);
				return { userId: ctx.params.userId, revoked: ended.length };
			}
		}
	},

	methods: {
		/**
		 * The welcome grant for a newly proven identity (src/users/signup-grant.ts). Recorded with its
		 * durable event; then asked of payments at once so the credit is there for the next request.
		 * Never fails the caller's request: a refusal is silent, a failure is logged (the event delivers).
		 */
		async offerSignupGrant(
			this: UsersThis,
			userId: string,
			id: GrantIdentity,
			moment: GrantMoment,
			ip: string | undefined
		) {
			try {
				const r = await this.signupGrants.offer(userId, id, moment, ip);
				if (!r.granted) return;
				await this.broker.call("payments.grant", {
					userId,
					credits: r.event.credits,
					operator: "signup",
					reason: "Welcome credit",
					source: "promo",
					expiresAt: r.event.expiresAt,
					key: r.event.key
				});
			} catch (err) {
				this.logger.warn("welcome grant: delivered later by its event", (err as Error).message);
			}
		},

		/**
		 * Tells payments that a wallet changed hands, so its indexed stake is attributed (or no longer
		 * attributed) to the right user at once. A hint: payments also re-asks `walletOwner` on its own,
		 * so a failure (payments down, no chain configured) only delays the attribution.
		 */
		announceWalletOwner(this: UsersThis, address: string) {
			this.broker.call("payments.refreshWalletOwner", { address: getAddress(address) }).catch((err: Error) => {
				if (
					!["ServiceNotFoundError", "ServiceNotAvailableError"].includes(err.name) &&
					(err as { code?: number }).code !== 503
				)
					this.logger.warn(`could not announce the owner of ${address} to payments: ${err.message}`);
			});
		},

		async issueSession(
			this: UsersThis,
			user: Pick<UserRow, "id" | "role">,
			method: SessionRow["method"],
			meta: RequestMeta
		): Promise<TokenPair> {
			const refresh = newRefreshToken();
			const { sessionId, refreshExpiresAt } = await this.store.createSession({
				userId: user.id,
				method,
				ip: meta.ip ?? null,
				userAgent: meta.userAgent || null,
				maxAgeS: this.cfg.sessions.maxAgeS,
				refreshTokenHash: refresh.hash,
				refreshTtlS: this.cfg.sessions.refreshTokenTtlS
			});
			return tokenPair(this.jwt, user, sessionId, refresh.token, refreshExpiresAt);
		},

		/**
		 * A SIWE message proves control of its address only if: it is for us (domain, URI, chain), it is
		 * fresh (issued, not before, expiry), its nonce is the one we gave *this* client and has not been
		 * spent (consumed atomically, so of two parallel uses one wins), and the address signed it.
		 */
		async verifySiweProof(
			this: UsersThis,
			params: { message: string; signature: string; nonceToken: string }
		): Promise<SiweProof> {
			const check = checkSiweMessage(params.message, this.cfg.siwe, Date.now());
			if (!check.ok) {
				if (check.code === "SIWE_INVALID_MESSAGE")
					throw Unprocessable(
						check.message,
						[{ field: "message", message: check.message, type: "siwe" }],
						check.code
					);
				throw Unauthorized(check.message, check.code);
			}
			const { fields } = check;
			const issued = await this.kv.getDel(nonceKey(params.nonceToken));
			if (!issued)
				throw Unauthorized("Unknown, expired or already used nonce; ask for a new one", "SIWE_NONCE_INVALID");
			if (issued !== fields.nonce)
				throw Unauthorized("The message's nonce was not issued to this client", "SIWE_NONCE_MISMATCH");
			const verdict = await this.signatures.verify({
				chainId: fields.chainId,
				address: fields.address as Hex,
				message: params.message,
				signature: params.signature as Hex
			});
			if (!verdict.valid) {
				if (verdict.reason === "rpc_unavailable") throw Unavailable(verdict.detail, "CHAIN_UNAVAILABLE");
				throw Unauthorized(verdict.detail, "SIWE_SIGNATURE_INVALID");
			}
			return { address: fields.address.toLowerCase(), chainId: fields.chainId, kind: verdict.kind };
		},

		/** The key successors of refresh tokens are derived under: the active JWT signing key's secret. */
		refreshSecret(this: UsersThis) {
			const key = this.jwt.keys.find(k => k.kid === this.jwt.activeKid) ?? this.jwt.keys[0];
			return key.secret;
		},

		forget(this: UsersThis, userId: string, sessionIds: readonly string[] = []) {
			return this.invalidator.forget(userId, sessionIds);
		},

		/** For callbacks that cannot wait (after a commit): a failure is logged; the cache TTL bounds the staleness. */
		forgetLater(this: UsersThis, userId: string) {
			this.invalidator
				.forget(userId)
				.catch(err => this.logger.warn("cache invalidation failed", userId, (err as Error).message));
		},

		async forgetAllSessions(this: UsersThis, userId: string) {
			await this.invalidator.forget(userId, await this.store.sessionIdsOf(userId));
		},

		async holdingsOf(this: UsersThis, userId: string, wallets: WalletView[], refresh: boolean) {
			// A forced refresh costs RPC calls: at most one per user per interval, else the cache answers.
			const refreshed =
				refresh &&
				(await this.kv.setIfAbsent(`users:balance-refresh:${userId}`, "1", BALANCE_REFRESH_MIN_INTERVAL_MS));
			const balances = await this.balances!.balances(
				wallets.map(w => w.address),
				refreshed
			);
			const known = balances.filter(b => b.balanceWei !== null);
			return {
				totalWei:
					known.length === balances.length
						? balances.reduce((sum, b) => sum + BigInt(b.balanceWei!), 0n).toString()
						: null,
				wallets: balances,
				refreshed
			};
		}
	},

	created(this: UsersThis) {
		const rt = runtimeOf(this.broker);
		this.cfg = rt.config.users;
		this.jwt = rt.config.jwt;
		this.store = new UsersStore(rt.sequelize);
		this.kv = rt.kv;
		const m = this.broker.metrics;
		if (!m.hasMetric("users.password.verifications.total"))
			m.register({
				type: "counter",
				name: "users.password.verifications.total",
				labelNames: ["against"],
				description: "argon2 password verifications, against a stored hash or the dummy (unknown users)"
			});
		this.hasher = new PasswordHasher(this.cfg.passwords.argon2, against =>
			m.increment("users.password.verifications.total", { against })
		);
		const prefix = `${rt.config.redisPrefix}users:throttle`;
		this.accountIpThrottle = new ProgressiveThrottle(rt.redis, `${prefix}:account-ip`, this.cfg.throttle.accountIp);
		this.ipThrottle = new ProgressiveThrottle(rt.redis, `${prefix}:ip`, this.cfg.throttle.ip);
		this.accountThrottle = new AccountGuessLimiter(rt.redis, `${prefix}:account`, this.cfg.throttle.account);
		this.knownAddresses = new KnownAddresses(rt.kv, "users:login-known", this.cfg.throttle.knownIpTtlS);
		this.registerLimiter = makeLimiter(
			rt.redis,
			`${prefix}:register`,
			this.cfg.throttle.registerPerIpPerHour,
			3600
		);
		this.signatures = new WalletSignatureVerifier(
			this.cfg.chain.rpcUrls,
			this.cfg.chain.rpcTimeoutMs,
			runtimeOf(this.broker).config.deps.chain.retries
		);
		const rpcUrl = this.cfg.chain.rpcUrls[this.cfg.chain.forgeChainId];
		this.balances =
			rpcUrl && this.cfg.chain.forgeTokenAddress
				? new ForgeBalanceReader({
						rpcUrl,
						chainId: this.cfg.chain.forgeChainId,
						tokenAddress: this.cfg.chain.forgeTokenAddress,
						timeoutMs: this.cfg.chain.rpcTimeoutMs,
						ttlS: this.cfg.chain.balanceCacheTtlS,
						kv: rt.kv
					})
				: null;
		this.pruneTimer = null;
		this.invalidator = new UserCacheInvalidator(this.broker);
		this.signupGrants = new SignupGrants({
			sequelize: rt.sequelize,
			cfg: this.cfg.signupGrant,
			ipLimiter: makeLimiter(rt.redis, `${prefix}:signup-grant`, this.cfg.signupGrant.perIpPerDay, 86_400),
			publish: (tx, topic, payload) => this.publishDurable(tx, topic, payload)
		});
	},

	async started(this: UsersThis) {
		// Hash the dummy password now, so the first unknown-user login is not the one that pays for it.
		await this.hasher.dummyHash();
		this.pruneTimer = setInterval(() => {
			this.store
				.pruneSessions(PRUNE_AFTER_S)
				.catch(err => this.logger.warn("session pruning failed", err.message));
		}, PRUNE_EVERY_MS);
		this.pruneTimer.unref();
	},

	async stopped(this: UsersThis) {
		if (this.pruneTimer) clearInterval(this.pruneTimer);
		this.invalidator.stop();
		this.balances?.destroy();
	}
};

export default UsersService as unknown as ServiceSchema;
