/**
 * "Never remove the last way in": a password, a wallet, a passkey or a single sign-on identity.
 * Removing one of them runs under a lock on the user's row, so two racing removals of the last two
 * cannot both pass the count.
 */
import { QueryTypes, type Sequelize, type Transaction } from "sequelize";

export async function removeUnlessLast(
	db: Sequelize,
	userId: string,
	remove: (tx: Transaction) => Promise<boolean>
): Promise<"removed" | "not_found" | "last_method"> {
	return db
		.transaction(async tx => {
			const [row] = await db.query<{ n: string }>(
				`SELECT (u.password_hash IS NOT NULL)::int
			      + (SELECT count(*) FROM user_wallets w WHERE w.user_id = u.id)
			      + (SELECT count(*) FROM user_passkeys p WHERE p.user_id = u.id)
			      + (SELECT count(*) FROM user_identities i WHERE i.user_id = u.id) AS n
			 FROM users u WHERE u.id = $1 FOR UPDATE OF u`,
				{ bind: [userId], type: QueryTypes.SELECT, transaction: tx }
			);
			if (!row) return "not_found";
			if (Number(row.n) <= 1) {
				// Only refuse what exists: a missing item is still a 404, not a 409.
				const removed = await remove(tx);
				if (!removed) return "not_found";
				throw new LastMethod();
			}
			return (await remove(tx)) ? "removed" : "not_found";
		})
		.catch(err => {
			if (err instanceof LastMethod) return "last_method" as const;
			throw err;
		});
}

/** Thrown inside the transaction so that the removal it tried is rolled back. */
class LastMethod extends Error {}
