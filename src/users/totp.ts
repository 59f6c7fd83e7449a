/**
 * TOTP (RFC 6238) with otplib, plus the two rules otplib leaves to us:
 *
 * - REPLAY. A code is valid for its whole time step (and `window` steps either side), so an observer
 *   could use it again. We therefore return the *step* a code matched, and the store accepts a step
 *   only if it is later than the last accepted one (one conditional UPDATE): each code works once,
 *   and so does every earlier one.
 * - BACKUP CODES. Ten random codes of 80 bits, shown once, stored as SHA-256 (a slow hash adds
 *   nothing at 80 bits of entropy), each spent by one conditional UPDATE.
 */
import { randomInt } from "node:crypto";
import { authenticator, totp } from "otplib";
import { sha256 } from "./tokens";

const TOTP_STEP_S = 30;
const TOTP_DIGITS = 6;
const CODE_PATTERN = /^\d{6}$/;
export const BACKUP_CODE_COUNT = 10;

/** A new shared secret: 160 bits (RFC 4226's recommendation), base32 as authenticator apps expect. */
export function newTotpSecret(): string {
	return authenticator.generateSecret(20);
}

export function otpauthUri(secret: string, accountName: string, issuer: string): string {
	return authenticator.keyuri(accountName, issuer, secret);
}

export interface TotpOptions {
	digits?: number;
	algorithm?: "sha1" | "sha256" | "sha512";
}

/** The code for `key` at `nowMs` (RFC 6238 §4 with T0 = 0 and X = 30 s). */
export function totpAt(key: Buffer, nowMs: number, opts: TotpOptions = {}): string {
	return totp
		.clone({
			epoch: nowMs,
			step: TOTP_STEP_S,
			encoding: "hex",
			digits: opts.digits ?? TOTP_DIGITS,
			algorithm: opts.algorithm ?? "sha1"
		} as never)
		.generate(key.toString("hex"));
}

export const stepOf = (nowMs: number) => Math.floor(nowMs / 1000 / TOTP_STEP_S);

/**
 * The time step `code` belongs to, if it is the code of one of the steps within `window` of now;
 * null otherwise. The caller still has to refuse a step already used (see the store).
 */
export function matchTotpStep(code: string, base32Secret: string, nowMs: number, window: number): number | null {
	if (!CODE_PATTERN.test(code)) return null;
	const key = Buffer.from(authenticator.decode(base32Secret), "hex");
	const delta = totp
		.clone({ epoch: nowMs, step: TOTP_STEP_S, encoding: "hex", digits: TOTP_DIGITS, window } as never)
		.checkDelta(code, key.toString("hex"));
	return delta === null ? null : stepOf(nowMs) + delta;
}

// Crockford's base32: no I, L, O, U (nothing to misread).
const BACKUP_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** xxxx-xxxx-xxxx-xxxx: 16 symbols of 5 bits. */
export function newBackupCode(): string {
	let s = "";
	for (let i = 0; i < 16; i++) s += BACKUP_ALPHABET[randomInt(32)];
	return s.match(/.{4}/g)!.join("-");
}

/** What a user types, in the form that was hashed: case, spaces and dashes do not matter. */
export function normalizeBackupCode(input: string): string | null {
	const s = input.toUpperCase().replace(/[\s-]/g, "");
	return /^[0-9A-HJKMNP-TV-Z]{16}$/.test(s) ? s : null;
}

export const backupCodeHash = (normalized: string) => sha256(`backup:${normalized}`);
