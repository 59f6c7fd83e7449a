/**
 * GET /users/me/export and DELETE /users/me.
 *
 * Deletion is a step-up action: with 2FA on, a current code; else, with a password, the password;
 * else (a wallet-only account) a session that signed in within RECENT_SIGN_IN_S. What goes:
 * sessions (ended, their IP and browser blanked), API keys, wallets (free to sign up again), 2FA,
 * tokens, the e-mail (free at once), the password, the display name. What stays: the user id as a
 * tombstone, because payments' ledger names it; those entries stay as they are, attached to an id
 * that no longer leads to a person. The durable `users.deleted` event, committed with the deletion,
 * has payments blank what else of its rows points at the person (src/payments/forget.ts).
 */
import { Forbidden, NotFound, TooManyRequests } from "../errors";
import type { AccountStore } from "./account-store";
import type { UsersConfig } from "./config";
import { normalizePassword, type PasswordHasher } from "./credentials";
import type { Mailer } from "./mailer";
import type { SecondFactor } from "./second-factor";
import type { ProgressiveThrottle } from "./throttle";
import type { UsersStore } from "./store";
import type { Transaction } from "sequelize";

/** Durable, published in the deletion's transaction: `{ userId }`. */
export const USER_DELETED = "users.deleted";

/** Checks a `users.deleted` payload (a consumer trusts no shape). */
export function parseUserDeleted(p: unknown): { userId: string } {
	const e = p as { userId?: unknown } | null;
	if (!e || typeof e.userId !== "string" || !/^[0-9a-f-]{36}$/i.test(e.userId))
		throw new Error(`malformed ${USER_DELETED} payload`);
	return { userId: e.userId };
}

export async function exportAccount(
	userId: string,
	d: { accounts: AccountStore; ledger(userId: string): Promise<unknown> }
): Promise<object> {
	const data = await d.accounts.exportOf(userId);
	if (!data) throw NotFound("User");
	let ledger: unknown;
	try {
		ledger = await d.ledger(userId);
	} catch (err) {
		// The export is still the user's data without payments; say what is missing rather than fail.
		ledger = { unavailable: (err as Error).message };
	}
	return { exportedAt: new Date().toISOString(), format: "forgefluid-account-export/1", ...data, ledger };
}

export async function deleteAccount(
	req: { userId: string; sessionId: string | null; password?: string; mfaCode?: string },
	d: {
		cfg: UsersConfig;
		store: UsersStore;
		accounts: AccountStore;
		hasher: PasswordHasher;
		secondFactor: SecondFactor;
		mailer: Mailer;
		/** Wrong step-up passwords, keyed by user id. */
		passwordGuesses: ProgressiveThrottle;
		/** Publishes a durable event in the deletion's transaction. */
		publish(tx: Transaction, topic: string, payload: object): Promise<unknown>;
	}
): Promise<{ sessions: string[]; wallets: string[] }> {
	const user = await d.store.userById(req.userId);
	if (!user) throw NotFound("User");
	if (await d.secondFactor.enabled(user.id)) await d.secondFactor.stepUp(user.id, req.mfaCode);
	else if (user.password_hash) {
		if (!req.password) throw Forbidden("Deleting the account needs the current password", "PASSWORD_REQUIRED");
		// Guessing the password here is throttled per account as the sign-in step's codes are, checked first.
		const wait = await d.passwordGuesses.retryAfterS(user.id);
		if (wait > 0) throw TooManyRequests("Too many wrong passwords; try again later", wait, "STEP_UP_THROTTLED");
		if (!(await d.hasher.verify(user.password_hash, normalizePassword(req.password)))) {
			await d.passwordGuesses.recordFailure(user.id);
			throw Forbidden("The current password is wrong", "INVALID_CURRENT_PASSWORD");
		}
		await d.passwordGuesses.reset(user.id);
	} else {
		const session = req.sessionId
			? (await d.store.sessionsOf(user.id, { includeEnded: false, limit: 100 })).find(s => s.id === req.sessionId)
			: undefined;
		const ageS = session ? (Date.now() - new Date(session.created_at).getTime()) / 1000 : Infinity;
		if (ageS > d.cfg.accounts.recentSignInS)
			throw Forbidden(
				"Sign in again (a fresh sign-in is needed to delete the account)",
				"RECENT_SIGN_IN_REQUIRED"
			);
	}
	const verified = user.email ? await d.accounts.emailVerifiedAt(user.id) : null;
	const r = await d.accounts.deleteAccount(user.id, tx => d.publish(tx, USER_DELETED, { userId: user.id }));
	if (!r) throw NotFound("User");
	if (r.email && verified) d.mailer.sendLater(r.email, { kind: "accountDeleted" });
	return { sessions: r.sessions, wallets: r.wallets };
}
