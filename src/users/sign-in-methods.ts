/**
 * "Never remove the last way in": a password, a wallet, a passkey or a single sign-on identity.
 * Removing one of them runs under a lock on the user's row, so two racing removals of the last two
 * cannot both pass the count.
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";

/** The ways a user can sign in. */
export interface SignInMethods {
	password: boolean;
	wallets: number;
	passkeys: number;
	identities: number;
}

const methodCount = (m: SignInMethods): number => (m.password ? 1 : 0) + m.wallets + m.passkeys + m.identities;

/** Where the methods are counted: one transaction, and the user's methods read under a lock on the user. */
export interface MethodLock<Tx> {
	/** Runs `fn` in one transaction; a throw rolls it back. */
	transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
	/** The user's methods, the user's row locked until the transaction ends; null for no such user. */
	lockedMethods(tx: Tx, userId: string): Promise<SignInMethods | null>;
}

export type RemoveOutcome = "removed" | "not_found" | "last_method";

/**
 * Runs `remove` (true when it removed something) unless what it removes is the user's last method:
 * then the removal is rolled back and the answer is "last_method". A missing item stays "not_found".
 */
export async function removeUnlessLastWith<Tx>(
	lock: MethodLock<Tx>,
	userId: string,
	remove: (tx: Tx) => Promise<boolean>
): Promise<RemoveOutcome> {
	return lock
		.transaction(async tx => {
			const methods = await lock.lockedMethods(tx, userId);
			if (!methods) return "not_found" as const;
			const removed = await remove(tx);
			if (!removed) return "not_found" as const;
			// Only refuse what exists: a missing item is still a 404, not a 409.
			if (methodCount(methods) <= 1) throw new LastMethod();
			return "removed" as const;
		})
		.catch(err => {
			if (err instanceof LastMethod) return "last_method" as const;
			throw err;
		});
}

/** The methods as PostgreSQL holds them. */
export function pgMethodLock(db: Sequelize): MethodLock<Transaction> {
	return {
		transaction: fn => db.transaction(fn),
		async lockedMethods(tx, userId) {
			const [row] = await db.query<{ password: boolean; wallets: string; passkeys: string; identities: string }>(
				`SELECT u.password_hash IS NOT NULL AS password,
				        (SELECT count(*) FROM user_wallets w WHERE w.user_id = u.id) AS wallets,
				        (SELECT count(*) FROM user_passkeys p WHERE p.user_id = u.id) AS passkeys,
				        (SELECT count(*) FROM user_identities i WHERE i.user_id = u.id) AS identities
				 FROM users u WHERE u.id = $1 FOR UPDATE OF u`,
				{ bind: [userId], type: QueryTypes.SELECT, transaction: tx }
			);
			if (!row) return null;
			return {
				password: row.password,
				wallets: Number(row.wallets),
				passkeys: Number(row.passkeys),
				identities: Number(row.identities)
			};
		}
	};
}

export function removeUnlessLast(
	db: Sequelize,
	userId: string,
	remove: (tx: Transaction) => Promise<boolean>
): Promise<RemoveOutcome> {
	return removeUnlessLastWith(pgMethodLock(db), userId, remove);
}

/** Thrown inside the transaction so that the removal it tried is rolled back. */
class LastMethod extends Error {}
