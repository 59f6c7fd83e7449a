/**
 * TOTP two-factor: enrolment, the second step of a sign-in, step-up for sensitive changes, and
 * turning it off. Codes are checked by src/users/totp.ts; replay is refused by the store (a step
 * is accepted once); guessing is throttled per account, before any check, over the same
 * progressive throttle as passwords (one count for the sign-in step and every step-up).
 */
import { Forbidden, TooManyRequests, Unauthorized } from "../errors";
import type { AccountStore } from "./account-store";
import type { UsersConfig } from "./config";
import type { Mailer } from "./mailer";
import type { ProgressiveThrottle } from "./throttle";
import {
	BACKUP_CODE_COUNT,
	backupCodeHash,
	matchTotpStep,
	newBackupCode,
	newTotpSecret,
	normalizeBackupCode,
	otpauthUri
} from "./totp";

export interface SecondFactorDeps {
	cfg: UsersConfig;
	accounts: AccountStore;
	mailer: Mailer;
	/** Keyed by user id; shared by the sign-in step and step-up. */
	guesses: ProgressiveThrottle;
	/** The account's verified address, if any (notices go only there). */
	verifiedEmail(userId: string): Promise<string | null>;
	audit(userId: string, actorId: string, action: string, details: object): Promise<void>;
	now(): number;
}

export type CodeCheck = { ok: true; via: "totp" | "backup_code" } | { ok: false };

export class SecondFactor {
	constructor(private readonly d: SecondFactorDeps) {}

	/** 2FA is on (enrolment confirmed). */
	async enabled(userId: string): Promise<boolean> {
		return !!(await this.d.accounts.totpOf(userId))?.confirmed_at;
	}

	/** Enrolment: a new secret for the app, named after the account's address, which must be verified. */
	async start(userId: string): Promise<{ secret: string; otpauthUri: string }> {
		// Notices of 2FA changes and the way back in go to the address: it must be proven first.
		const accountName = await this.d.verifiedEmail(userId);
		if (!accountName)
			throw Forbidden("Two-factor authentication needs a verified e-mail address", "EMAIL_NOT_VERIFIED");
		const secret = newTotpSecret();
		if (!(await this.d.accounts.startTotp(userId, secret)))
			throw Forbidden("Two-factor authentication is already on; turn it off first", "MFA_ALREADY_ENABLED");
		return { secret, otpauthUri: otpauthUri(secret, accountName, this.d.cfg.accounts.totpIssuer) };
	}

	/** The first code proves the app holds the secret; the answer holds the backup codes, shown once. */
	async confirm(userId: string, code: string): Promise<{ backupCodes: string[] }> {
		const row = await this.d.accounts.totpOf(userId);
		if (!row) throw Forbidden("Start the enrolment first (POST /users/me/2fa/totp)", "MFA_NOT_STARTED");
		if (row.confirmed_at) throw Forbidden("Two-factor authentication is already on", "MFA_ALREADY_ENABLED");
		await this.admit(userId);
		const step = matchTotpStep(code, row.secret, this.d.now(), this.d.cfg.accounts.totpWindow);
		if (step === null || !(await this.d.accounts.acceptTotpStep(userId, step, "pending"))) {
			await this.d.guesses.recordFailure(userId);
			throw Forbidden("The code is wrong or was already used", "MFA_CODE_INVALID");
		}
		await this.d.guesses.reset(userId);
		const backupCodes = Array.from({ length: BACKUP_CODE_COUNT }, newBackupCode);
		if (
			!(await this.d.accounts.confirmTotp(
				userId,
				backupCodes.map(c => backupCodeHash(normalizeBackupCode(c)!))
			))
		)
			throw Forbidden("Two-factor authentication is already on", "MFA_ALREADY_ENABLED");
		await this.d.audit(userId, userId, "user.2fa.enable", { method: "totp" });
		await this.notify(userId, "enabled");
		return { backupCodes };
	}

	private async admit(userId: string): Promise<void> {
		const wait = await this.d.guesses.retryAfterS(userId);
		if (wait > 0) throw TooManyRequests("Too many wrong codes; try again later", wait, "MFA_THROTTLED");
	}

	/**
	 * Checks a code of a user with 2FA on: a TOTP code (of a step not used before) or an unused
	 * backup code. Throttled before the check; failures counted, a success clears the count.
	 */
	async check(userId: string, code: string): Promise<CodeCheck> {
		await this.admit(userId);
		const row = await this.d.accounts.totpOf(userId);
		if (!row?.confirmed_at) return { ok: false };
		let result: CodeCheck = { ok: false };
		const step = matchTotpStep(code.trim(), row.secret, this.d.now(), this.d.cfg.accounts.totpWindow);
		if (step !== null) {
			if (await this.d.accounts.acceptTotpStep(userId, step, "confirmed")) result = { ok: true, via: "totp" };
		} else {
			const backup = normalizeBackupCode(code);
			if (backup && (await this.d.accounts.spendBackupCode(userId, backupCodeHash(backup))))
				result = { ok: true, via: "backup_code" };
		}
		if (!result.ok) {
			await this.d.guesses.recordFailure(userId);
			return result;
		}
		await this.d.guesses.reset(userId);
		if (result.via === "backup_code") {
			await this.d.audit(userId, userId, "user.2fa.backup_code", {
				left: await this.d.accounts.backupCodesLeft(userId)
			});
			await this.notify(userId, "backup_code_used");
		}
		return result;
	}

	/**
	 * Step-up: with 2FA on, a sensitive change (password, API key, wallet, e-mail, deletion) needs a
	 * fresh code in the request. Without 2FA there is nothing to step up to.
	 */
	async stepUp(userId: string, code: string | undefined): Promise<void> {
		if (!(await this.enabled(userId))) return;
		if (!code) throw Forbidden("This change needs a current two-factor code (mfaCode)", "MFA_REQUIRED");
		if (!(await this.check(userId, code)).ok)
			throw Forbidden("The two-factor code is wrong or was already used", "MFA_CODE_INVALID");
	}

	async disable(userId: string, code: string): Promise<void> {
		if (!(await this.enabled(userId))) throw Forbidden("Two-factor authentication is not on", "MFA_NOT_ENABLED");
		if (!(await this.check(userId, code)).ok)
			throw Forbidden("The two-factor code is wrong or was already used", "MFA_CODE_INVALID");
		await this.d.accounts.removeTotp(userId);
		await this.d.audit(userId, userId, "user.2fa.disable", { method: "totp" });
		await this.notify(userId, "disabled");
	}

	/** The operator's reset (REPL `users-2fa-reset`): audited with the operator as actor. */
	async operatorReset(userId: string, actor: string): Promise<boolean> {
		const removed = await this.d.accounts.removeTotp(userId);
		await this.d.audit(userId, actor, "user.2fa.reset", { removed });
		if (removed) await this.notify(userId, "reset_by_operator");
		return removed;
	}

	private async notify(userId: string, change: "enabled" | "disabled" | "reset_by_operator" | "backup_code_used") {
		const email = await this.d.verifiedEmail(userId);
		if (email) this.d.mailer.sendLater(email, { kind: "twoFactorChanged", change });
	}
}

export const mfaTokenInvalid = () =>
	Unauthorized("Unknown, expired or already used sign-in step; sign in again", "MFA_TOKEN_INVALID");
