/**
 * E-mail verification, e-mail change and password reset: the use cases behind /auth/email/*,
 * /auth/password/* and POST /users/me/email. Each takes its collaborators at construction.
 *
 * ENUMERATION. "Forgot password" answers the same, after the same work, for every address: one
 * INSERT … SELECT that inserts nothing when nobody has the address, no password hashing either way,
 * and the mail is handed to the mailer without waiting. Throttles count per IP (429) and per address
 * (silently: past its allowance an address gets no more mail this hour, and the answer is unchanged).
 */
import { RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import { Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, Unprocessable } from "../errors";
import type { AccountStore } from "./account-store";
import type { UsersConfig } from "./config";
import { normalizeEmail, normalizePassword, passwordProblem, type PasswordHasher } from "./credentials";
import type { Mailer } from "./mailer";
import { throttleKey } from "./throttle";

export interface EmailFlowDeps {
	cfg: UsersConfig;
	accounts: AccountStore;
	mailer: Mailer;
	hasher: PasswordHasher;
	limits: {
		/** Mails per address (keyed by the hashed address, known or not). */
		mailPerAddress: RateLimiterAbstract;
		mailPerIp: RateLimiterAbstract;
		resetPerIp: RateLimiterAbstract;
	};
	/** The account's current address, null when it has none (a wallet account), undefined for no account. */
	currentEmail(userId: string): Promise<string | null | undefined>;
	/** A second-factor step-up for a sensitive change (with 2FA on: a current code). */
	stepUp(userId: string, code: string | undefined): Promise<void>;
	/** Ends every session and refresh family of the user and drops the gateway's cached states. */
	endAllSessions(userId: string, reason: string): Promise<number>;
	audit(userId: string, action: string, details: object): Promise<void>;
}

/** true when the limiter still had a point for the key. */
async function take(limiter: RateLimiterAbstract, key: string): Promise<{ ok: true } | { ok: false; retryS: number }> {
	try {
		await limiter.consume(key);
		return { ok: true };
	} catch (rej) {
		if (rej instanceof RateLimiterRes) return { ok: false, retryS: Math.ceil(rej.msBeforeNext / 1000) };
		throw rej;
	}
}

const invalidToken = () => Unauthorized("Unknown, expired or already used link; ask for a new one", "INVALID_TOKEN");

export class EmailFlows {
	constructor(private readonly d: EmailFlowDeps) {}

	link(path: string, token: string): string {
		return `${this.d.cfg.mail.appUrl}${path}?token=${encodeURIComponent(token)}`;
	}

	/** `ip` null: the caller limits per IP already (sign-ups). */
	private async ipAllowance(limiter: RateLimiterAbstract, ip: string | null | undefined): Promise<void> {
		if (ip === null) return;
		const r = await take(limiter, ip ?? "unknown");
		if (!r.ok) throw TooManyRequests("Too many requests from this address; try again later", r.retryS);
	}

	private async addressAllowance(email: string): Promise<boolean> {
		return (await take(this.d.limits.mailPerAddress, throttleKey("mail", email))).ok;
	}

	/** Sends a verification link for `email` (the account's own address, or the one it changes to). */
	async sendVerification(
		userId: string,
		email: string,
		change: boolean,
		ip: string | null | undefined
	): Promise<void> {
		await this.ipAllowance(this.d.limits.mailPerIp, ip);
		if (!(await this.addressAllowance(email))) return;
		const ttl = this.d.cfg.accounts.verifyTokenTtlS;
		const token = await this.d.accounts.issueToken(userId, "email_verify", ttl, { email });
		this.d.mailer.sendLater(email, {
			kind: "verifyEmail",
			link: this.link("/verify-email", token),
			expiresInS: ttl,
			change
		});
	}

	/**
	 * A sign-up with an address that has an account: the owner is told, through the same per-address
	 * allowance and the same durable mail path as the verification link a new address gets.
	 */
	async notifySignUpAttempt(email: string): Promise<void> {
		if (!(await this.addressAllowance(email))) return;
		this.d.mailer.sendLater(email, {
			kind: "signUpAttempted",
			resetLink: `${this.d.cfg.mail.appUrl}/forgot-password`
		});
	}

	async verify(token: string): Promise<{ userId: string; email: string; changed: boolean }> {
		const spent = await this.d.accounts.spendToken(token, "email_verify");
		if (!spent || !spent.email) throw invalidToken();
		const r = await this.d.accounts.applyVerifiedEmail(spent.user_id, spent.email);
		if (r.result === "gone") throw invalidToken();
		if (r.result === "taken") throw Conflict("Another account uses this e-mail address by now", "EMAIL_TAKEN");
		if (r.result === "changed") {
			await this.d.audit(spent.user_id, "user.email.change", { from: r.previous, to: spent.email });
			if (r.previous) this.d.mailer.sendLater(r.previous, { kind: "emailChanged", newEmail: spent.email });
		} else await this.d.audit(spent.user_id, "user.email.verify", { email: spent.email });
		return { userId: spent.user_id, email: spent.email, changed: r.result === "changed" };
	}

	/** POST /users/me/email/verify/resend: the link again, for an address not verified yet. */
	async resend(userId: string, ip?: string): Promise<void> {
		const email = await this.d.currentEmail(userId);
		if (email === undefined) throw NotFound("User");
		if (!email) throw Forbidden("The account has no e-mail address (POST /users/me/email)", "EMAIL_REQUIRED");
		if (await this.d.accounts.emailVerifiedAt(userId))
			throw Forbidden("The e-mail address is already verified", "EMAIL_ALREADY_VERIFIED");
		await this.sendVerification(userId, email, false, ip);
	}

	/** POST /users/me/email: the change applies once the new address proves itself. */
	async change(userId: string, rawEmail: string, mfaCode: string | undefined, ip?: string): Promise<string> {
		const email = normalizeEmail(rawEmail);
		if (!email)
			throw Unprocessable("Some fields are invalid", [
				{ field: "email", message: "is not a valid e-mail address" }
			]);
		const current = await this.d.currentEmail(userId);
		if (current === undefined) throw NotFound("User");
		await this.d.stepUp(userId, mfaCode);
		await this.requestChange(userId, current, email, ip);
		return email;
	}

	private async requestChange(userId: string, current: string | null, email: string, ip?: string): Promise<void> {
		if (email === current)
			throw Unprocessable("Some fields are invalid", [
				{ field: "email", message: "is already the account's address", type: "unchanged" }
			]);
		// An address in use is refused here: the owner of the account asking already knows every
		// address it could try, and a signed-in, throttled caller cannot enumerate at scale.
		if (await this.d.accounts.emailTaken(email))
			throw Conflict("An account with this e-mail already exists", "EMAIL_TAKEN");
		await this.sendVerification(userId, email, current !== null, ip);
	}

	async forgotPassword(email: string, ip?: string): Promise<void> {
		await this.ipAllowance(this.d.limits.mailPerIp, ip);
		const allowed = await this.addressAllowance(email);
		const ttl = this.d.cfg.accounts.resetTokenTtlS;
		// Runs whether or not the address is anyone's, and whether or not it may get more mail: same work.
		const issued = await this.d.accounts.issueTokenForEmail(email, "password_reset", ttl);
		if (issued && allowed)
			this.d.mailer.sendLater(email, {
				kind: "resetPassword",
				link: this.link("/reset-password", issued.token),
				expiresInS: ttl
			});
	}

	async resetPassword(
		token: string,
		password: string,
		ip?: string
	): Promise<{ userId: string; endedSessions: number }> {
		await this.ipAllowance(this.d.limits.resetPerIp, ip);
		const normalized = normalizePassword(password);
		const problem = passwordProblem(normalized, this.d.cfg.passwords);
		// Checked before the token is spent: a rejected password must not burn the link.
		if (problem)
			throw Unprocessable("Some fields are invalid", [
				{ field: "password", message: problem, type: "passwordPolicy" }
			]);
		const spent = await this.d.accounts.spendToken(token, "password_reset");
		if (!spent) throw invalidToken();
		await this.d.accounts.resetPassword(spent.user_id, await this.d.hasher.hash(normalized), spent.email);
		const endedSessions = await this.d.endAllSessions(spent.user_id, "password_reset");
		await this.d.audit(spent.user_id, "user.password.reset", { endedSessions });
		if (spent.email) this.d.mailer.sendLater(spent.email, { kind: "passwordChanged" });
		return { userId: spent.user_id, endedSessions };
	}
}
