/**
 * E-mail and password rules, and argon2id hashing. Unknown accounts are answered after hashing a
 * dummy password with the same parameters, so "no such user" and "wrong password" take the same time.
 */
import { randomBytes } from "node:crypto";
import argon2 from "argon2";
import type { UsersConfig } from "./config";

const EMAIL_MAX_LENGTH = 254;
const EMAIL_RE = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]+$/;

/**
 * One canonical spelling per mailbox: Unicode NFKC, trimmed, lower-cased. The local part is
 * case-sensitive in theory only; treating it otherwise would let two accounts share a mailbox.
 */
export function normalizeEmail(raw: string): string | null {
	const email = raw.normalize("NFKC").trim().toLowerCase();
	return email.length <= EMAIL_MAX_LENGTH && EMAIL_RE.test(email) ? email : null;
}

/** NFKC so the same password typed on two keyboards hashes the same (NIST SP 800-63B 5.1.1.2). */
export function normalizePassword(raw: string): string {
	return raw.normalize("NFKC");
}

/** Why a new password is refused, or null. Lengths count code points, not UTF-16 units. */
export function passwordProblem(
	password: string,
	policy: Pick<UsersConfig["passwords"], "minLength" | "maxLength">
): string | null {
	const length = [...password].length;
	if (length < policy.minLength) return `must be at least ${policy.minLength} characters`;
	if (length > policy.maxLength) return `must be at most ${policy.maxLength} characters`;
	if (password.trim().length === 0) return "must not be blank";
	return null;
}

export class PasswordHasher {
	private dummy: Promise<string> | null = null;
	private readonly options: argon2.HashOptions & { raw?: false };

	/**
	 * `onVerified` hears of every argon2 verification once it has run, with what it ran against: a
	 * stored hash or the dummy. The service counts them as a metric (a failed-login dashboard, and the
	 * proof that unknown users pay for a verification too).
	 */
	constructor(
		params: UsersConfig["passwords"]["argon2"],
		private readonly onVerified: (against: "stored" | "dummy") => void = () => undefined
	) {
		this.options = {
			type: argon2.argon2id,
			memoryCost: params.memoryCostKiB,
			timeCost: params.timeCost,
			parallelism: params.parallelism
		};
	}

	hash(password: string): Promise<string> {
		return argon2.hash(password, this.options);
	}

	/**
	 * True only when `hash` is set and matches. With no hash (unknown user, wallet-only account) a
	 * dummy hash is verified instead, so the answer costs the same.
	 */
	async verify(hash: string | null, password: string): Promise<boolean> {
		const target = hash ?? (await this.dummyHash());
		let ok: boolean;
		try {
			ok = await argon2.verify(target, password);
		} catch {
			ok = false;
		}
		this.onVerified(hash === null ? "dummy" : "stored");
		return hash !== null && ok;
	}

	/** A stored hash made with weaker or other parameters is upgraded at the next successful login. */
	needsRehash(hash: string): boolean {
		if (!hash.startsWith("$argon2id$")) return true;
		try {
			return argon2.needsRehash(hash, this.options);
		} catch {
			return true;
		}
	}

	/** Computed once per process, from a random password nobody knows. */
	dummyHash(): Promise<string> {
		this.dummy ??= this.hash(randomBytes(32).toString("base64url"));
		return this.dummy;
	}
}
