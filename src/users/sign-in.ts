/**
 * Password accounts: sign-up, sign-in and password change, woven through four throttles.
 *
 * THE THROTTLES (src/users/throttle.ts)
 * - per IP and per account+IP (progressive delays after failures): checked before any hashing, so a
 *   guesser cannot make us burn CPU;
 * - account-wide (every attempt counted before hashing, one attempt per delay past the allowance):
 *   guesses at one account spread over many addresses; the owner's usual addresses skip it;
 * - sign-ups per IP.
 * Every refusal by a login limiter is the same 429 LOGIN_THROTTLED: which one refused must not tell
 * whether the account exists. Unknown users and password-less accounts verify a dummy hash, so they
 * cost the same time and give the same answer as a wrong password.
 */
import { RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import type { AuthUser } from "../auth/user";
import { Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, Unprocessable } from "../errors";
import type { AccountStore } from "./account-store";
import type { UsersConfig } from "./config";
import { normalizeEmail, normalizePassword, passwordProblem, type PasswordHasher } from "./credentials";
import type { AccountMail } from "./mail-templates";
import { mfaTokenInvalid, type SecondFactor } from "./second-factor";
import type { ClientInfo, Sessions, TokenPair } from "./sessions";
import type { SessionRow, UserRow, UsersStore } from "./store";
import { throttleKey, type AccountGuessLimiter, type KnownAddresses, type ProgressiveThrottle } from "./throttle";
import { publicUser, type PublicUser } from "./views";

export interface MfaChallenge {
	mfaRequired: true;
	mfaToken: string;
	expiresIn: number;
	methods: string[];
}

export type SignedIn = TokenPair & { user: PublicUser };
export type SignInResult = SignedIn | MfaChallenge;
/** The sign-up answer when it must not tell whether the address is taken (SIGNUP_REVEALS_TAKEN=false). */
export interface SignUpPending {
	status: "pending";
	email: string;
	message: string;
}
export type SignUpResult = ({ created: true } & SignedIn) | ({ created: false } & SignUpPending);
/** First factors that leave a second step to TOTP when it is on (a passkey is two factors itself). */
export type OneFactorMethod = "password" | "siwe" | "sso";

const accountDisabled = () => Forbidden("This account is disabled", "ACCOUNT_DISABLED");

export interface SignInStepsDeps {
	store: Pick<UsersStore, "userById" | "touchLogin">;
	secondFactor: Pick<SecondFactor, "enabled" | "check">;
	/** The single-use mfaToken of the second step. */
	tokens: Pick<AccountStore, "issueToken" | "peekToken" | "failTokenAttempt" | "spendToken">;
	sessions: Pick<Sessions, "issue">;
	mfa: Pick<UsersConfig["accounts"], "mfaTokenTtlS" | "mfaTokenMaxAttempts">;
}

/** What every sign-in ends with: the disabled check, the second step when 2FA is on, the session. */
export class SignInSteps {
	constructor(private readonly d: SignInStepsDeps) {}

	/** An account with 2FA on: no session yet, a single-use token for POST /auth/login/mfa. */
	async challenge(userId: string, method: OneFactorMethod): Promise<MfaChallenge> {
		const ttl = this.d.mfa.mfaTokenTtlS;
		const mfaToken = await this.d.tokens.issueToken(userId, "mfa_login", ttl, { sessionMethod: method });
		return { mfaRequired: true, mfaToken, expiresIn: ttl, methods: ["totp", "backup_code"] };
	}

	/** A first factor proved `userId` (an SSO identity, a passkey): a session, or the second step. */
	async complete(userId: string, method: "sso" | "passkey", client: ClientInfo): Promise<SignInResult> {
		const user = await this.d.store.userById(userId);
		if (!user || user.disabled_at) throw accountDisabled();
		if (method !== "passkey" && (await this.d.secondFactor.enabled(user.id)))
			return this.challenge(user.id, method);
		return this.session(user, method, client);
	}

	/** The second step: a current TOTP or backup code for the mfaToken's account. */
	async finish(mfaToken: string, code: string, client: ClientInfo): Promise<SignedIn> {
		const pending = await this.d.tokens.peekToken(mfaToken, "mfa_login");
		if (!pending) throw mfaTokenInvalid();
		const check = await this.d.secondFactor.check(pending.user_id, code);
		if (!check.ok) {
			await this.d.tokens.failTokenAttempt(mfaToken, this.d.mfa.mfaTokenMaxAttempts);
			throw Forbidden("The two-factor code is wrong or was already used", "MFA_CODE_INVALID");
		}
		// Spent only now, and by one conditional UPDATE: of two racing finishes one gets a session.
		if (!(await this.d.tokens.spendToken(mfaToken, "mfa_login"))) throw mfaTokenInvalid();
		const user = await this.d.store.userById(pending.user_id);
		if (!user || user.disabled_at) throw accountDisabled();
		return this.session(user, pending.session_method ?? "password", client);
	}

	private async session(user: UserRow, method: SessionRow["method"], client: ClientInfo): Promise<SignedIn> {
		await this.d.store.touchLogin(user.id);
		return { ...(await this.d.sessions.issue(user, method, client)), user: publicUser(user) };
	}
}

type Throttle = Pick<ProgressiveThrottle, "retryAfterS" | "recordFailure" | "reset">;

export interface SignInDeps {
	store: Pick<
		UsersStore,
		"userByEmail" | "userById" | "createPasswordUser" | "setPasswordHash" | "touchLogin" | "audit"
	>;
	hasher: Pick<PasswordHasher, "hash" | "verify" | "needsRehash">;
	passwords: UsersConfig["passwords"];
	throttles: {
		/** Failures per client address. */
		ip: Throttle;
		/** Failures per account and address (and per user and address for password changes). */
		accountIp: Throttle;
		/** Attempts at one account from anywhere. */
		account: Pick<AccountGuessLimiter, "admit" | "reset">;
		/** The addresses an account signed in from lately (they skip the account-wide limiter). */
		known: Pick<KnownAddresses, "has" | "remember">;
		/** Sign-ups per address. */
		register: Pick<RateLimiterAbstract, "consume">;
	};
	secondFactor: Pick<SecondFactor, "enabled" | "stepUp">;
	/** The answer for an account with 2FA on: no session yet, a token for the second step. */
	mfaChallenge(userId: string, method: "password"): Promise<MfaChallenge>;
	sessions: Pick<Sessions, "issue" | "endAllExcept">;
	/** Queues an account mail. */
	mail(to: string, mail: AccountMail): void;
	/** After a sign-up: the verification mail and the welcome grant. */
	signedUp(userId: string, email: string, client: ClientInfo): Promise<void>;
	/** A sign-up with a taken address (answered as if new): the owner is told, through the same mail path. */
	signUpTaken(email: string): Promise<void>;
	/** SIGNUP_REVEALS_TAKEN: a taken address answers 409 and a new one gets tokens at once. */
	revealsTaken: boolean;
	now(): Date;
}

const invalidCredentials = () => Unauthorized("Invalid email or password", "INVALID_CREDENTIALS");
const throttled = (retryAfterS: number) =>
	TooManyRequests("Too many failed sign-in attempts; try again later", retryAfterS, "LOGIN_THROTTLED");
const wrongPasswords = (retryAfterS: number) =>
	TooManyRequests("Too many wrong passwords; try again later", retryAfterS, "LOGIN_THROTTLED");
const invalidField = (field: string, message: string, type?: string) =>
	Unprocessable("Some fields are invalid", [{ field, message, ...(type ? { type } : {}) }]);

export class PasswordAccounts {
	constructor(private readonly d: SignInDeps) {}

	/**
	 * Sign-up. By default (SIGNUP_REVEALS_TAKEN=false) the answer does not tell whether the address
	 * was free: both get the same "pending" body, after the same hash and one mail through the same
	 * per-address allowance (the verification link for a new account, a "someone tried to sign up"
	 * notice to the owner of a taken one); the new account signs in with POST /auth/login.
	 */
	async register(
		input: { email: string; password: string; displayName?: string },
		client: ClientInfo
	): Promise<SignUpResult> {
		const email = normalizeEmail(input.email);
		if (!email) throw invalidField("email", "is not a valid e-mail address");
		const password = this.acceptable(input.password, "password");
		try {
			await this.d.throttles.register.consume(client.ip ?? "unknown");
		} catch (rej) {
			if (rej instanceof RateLimiterRes)
				throw TooManyRequests(
					"Too many sign-ups from this address; try again later",
					Math.ceil(rej.msBeforeNext / 1000)
				);
			throw rej;
		}
		// Hashed before the address is looked at: a taken address costs the same hash as a new one.
		const hash = await this.d.hasher.hash(password);
		const user = await this.d.store.createPasswordUser(email, hash, input.displayName ?? null);
		const pending: SignUpResult = {
			created: false,
			status: "pending",
			email,
			message: "Check your inbox; then sign in with your password"
		};
		if (!user) {
			if (this.d.revealsTaken) throw Conflict("An account with this e-mail already exists", "EMAIL_TAKEN");
			await this.d.signUpTaken(email);
			return pending;
		}
		await this.d.store.audit(undefined, user.id, user.id, "user.register", { method: "password" });
		await this.d.signedUp(user.id, email, client);
		if (!this.d.revealsTaken) return pending;
		return {
			created: true,
			...(await this.d.sessions.issue(user, "password", client)),
			user: publicUser(user)
		};
	}

	async login(input: { email: string; password: string }, client: ClientInfo): Promise<SignInResult> {
		const t = this.d.throttles;
		const ip = client.ip ?? "unknown";
		const email = normalizeEmail(input.email) ?? input.email.trim().toLowerCase();
		const accountKey = throttleKey(email, ip);
		const emailKey = throttleKey("account", email);
		const wait = Math.max(await t.ip.retryAfterS(ip), await t.accountIp.retryAfterS(accountKey));
		if (wait > 0) throw throttled(wait);
		const known = await t.known.has(email, client.ip);
		const viaAccountLimiter = known !== true;
		if (viaAccountLimiter) {
			const accountWait = await t.account.admit(emailKey);
			if (accountWait > 0) throw throttled(accountWait);
		}

		const user = await this.d.store.userByEmail(email);
		const password = normalizePassword(input.password);
		const ok = await this.d.hasher.verify(user?.password_hash ?? null, password);
		if (!ok || !user) {
			// The account-wide limiter counted this attempt when it admitted it.
			await Promise.all([t.accountIp.recordFailure(accountKey), t.ip.recordFailure(ip)]);
			throw invalidCredentials();
		}
		// A success from a known address leaves the account-wide count alone: the owner signing in
		// at home must not hand a guesser elsewhere a fresh allowance.
		await Promise.all([t.accountIp.reset(accountKey), viaAccountLimiter ? t.account.reset(emailKey) : undefined]);
		if (user.disabled_at) throw accountDisabled();
		await t.known.remember(email, client.ip);
		if (this.d.hasher.needsRehash(user.password_hash!))
			await this.d.store.setPasswordHash(user.id, await this.d.hasher.hash(password));
		if (await this.d.secondFactor.enabled(user.id)) return this.d.mfaChallenge(user.id, "password");
		// An address the account never signed in from: tell the owner (a verified address only).
		if (known === false && user.email_verified_at) this.newSignInNotice(user, client);
		await this.d.store.touchLogin(user.id);
		return { ...(await this.d.sessions.issue(user, "password", client)), user: publicUser(user) };
	}

	/**
	 * Sets a new password, proving the current one when there is one (throttled like a login, per user
	 * and address and per user), and ends every other session: whoever else holds one may know the old
	 * password.
	 */
	async changePassword(
		caller: AuthUser,
		input: { currentPassword?: string; newPassword: string; mfaCode?: string },
		client: ClientInfo
	): Promise<{ changed: true; endedSessions: number }> {
		const t = this.d.throttles;
		const user = await this.d.store.userById(caller.id);
		if (!user) throw NotFound("User");
		await this.d.secondFactor.stepUp(user.id, input.mfaCode);
		if (!user.email)
			throw Conflict("An account needs an e-mail address before it can have a password", "EMAIL_REQUIRED");
		if (user.password_hash) {
			const key = throttleKey("password-change", user.id, client.ip ?? "unknown");
			const wait = await t.accountIp.retryAfterS(key);
			if (wait > 0) throw wrongPasswords(wait);
			// A stolen session used from many addresses: the current password is guessed per account
			// too (the account-wide limiter, counted before hashing).
			const accountKey = throttleKey("password-change-account", user.id);
			const accountWait = await t.account.admit(accountKey);
			if (accountWait > 0) throw wrongPasswords(accountWait);
			if (!(await this.d.hasher.verify(user.password_hash, normalizePassword(input.currentPassword ?? "")))) {
				await t.accountIp.recordFailure(key);
				throw Forbidden("The current password is wrong", "INVALID_CURRENT_PASSWORD");
			}
			await Promise.all([t.accountIp.reset(key), t.account.reset(accountKey)]);
		}
		const password = this.acceptable(input.newPassword, "newPassword");
		await this.d.store.setPasswordHash(user.id, await this.d.hasher.hash(password));
		const ended = await this.d.sessions.endAllExcept(user.id, "password_changed", caller.sid);
		await this.d.store.audit(undefined, user.id, user.id, "user.password", { endedSessions: ended.length });
		return { changed: true, endedSessions: ended.length };
	}

	/** The normalised password, or a 422 on `field` naming the policy it breaks. */
	private acceptable(raw: string, field: string): string {
		const password = normalizePassword(raw);
		const problem = passwordProblem(password, this.d.passwords);
		if (problem) throw invalidField(field, problem, "passwordPolicy");
		return password;
	}

	private newSignInNotice(user: UserRow, client: ClientInfo) {
		this.d.mail(user.email!, {
			kind: "newSignIn",
			method: "password",
			ip: client.ip ?? null,
			userAgent: client.userAgent || null,
			at: this.d.now().toISOString()
		});
	}
}
