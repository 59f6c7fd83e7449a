/** SQL of single sign-on identities (`user_identities`): one (provider, subject) belongs to one account. */
import { randomUUID } from "node:crypto";
import { QueryTypes, UniqueConstraintError, type Sequelize, type Transaction } from "sequelize";
import type { SsoProfile } from "./sso-providers";

export interface IdentityRow {
	id: string;
	user_id: string;
	provider: string;
	subject: string;
	email: string | null;
	email_verified: boolean;
	created_at: Date;
	last_used_at: Date | null;
}

export class IdentityStore {
	constructor(private readonly db: Sequelize) {}

	private rows<T extends object>(sql: string, bind: unknown[]): Promise<T[]> {
		return this.db.query<T>(sql, { bind, type: QueryTypes.SELECT });
	}

	async find(provider: string, subject: string): Promise<IdentityRow | null> {
		const [row] = await this.rows<IdentityRow>(
			`SELECT * FROM user_identities WHERE provider = $1 AND subject = $2`,
			[provider, subject]
		);
		return row ?? null;
	}

	list(userId: string): Promise<IdentityRow[]> {
		return this.rows(`SELECT * FROM user_identities WHERE user_id = $1 ORDER BY created_at`, [userId]);
	}

	async touch(id: string, profile: SsoProfile): Promise<void> {
		await this.rows(
			`UPDATE user_identities SET last_used_at = now(), email = $2, email_verified = $3 WHERE id = $1 RETURNING id`,
			[id, profile.email, profile.emailVerified]
		);
	}

	/** Links; null when the identity is already someone's (a race included). */
	async link(userId: string, provider: string, profile: SsoProfile): Promise<IdentityRow | null> {
		const [row] = await this.rows<IdentityRow>(
			`INSERT INTO user_identities (id, user_id, provider, subject, email, email_verified, last_used_at)
			 VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (provider, subject) DO NOTHING RETURNING *`,
			[randomUUID(), userId, provider, profile.subject, profile.email, profile.emailVerified]
		);
		return row ?? null;
	}

	/**
	 * A new account for a first sign-in, with the identity, in one transaction. `email` is set only
	 * when the provider vouched for it (then it counts as verified). "email_taken": an account holds
	 * the address; "identity_taken": a racing first sign-in of the same identity won.
	 */
	async createAccount(
		provider: string,
		profile: SsoProfile,
		email: string | null
	): Promise<{ userId: string } | "email_taken" | "identity_taken"> {
		try {
			return await this.db.transaction(async transaction => {
				const userId = randomUUID();
				const [user] = await this.db.query<{ id: string }>(
					`INSERT INTO users (id, email, email_verified_at, display_name)
					 VALUES ($1, $2, CASE WHEN $2::text IS NULL THEN NULL ELSE now() END, $3)
					 ON CONFLICT (email) DO NOTHING RETURNING id`,
					{ bind: [userId, email, profile.name?.slice(0, 200) ?? null], type: QueryTypes.SELECT, transaction }
				);
				if (!user) return "email_taken" as const;
				await this.db.query(
					`INSERT INTO user_identities (id, user_id, provider, subject, email, email_verified, last_used_at)
					 VALUES ($1, $2, $3, $4, $5, $6, now())`,
					{
						bind: [randomUUID(), userId, provider, profile.subject, profile.email, profile.emailVerified],
						transaction
					}
				);
				return { userId };
			});
		} catch (err) {
			if (err instanceof UniqueConstraintError) return "identity_taken";
			throw err;
		}
	}

	async remove(userId: string, id: string, transaction: Transaction): Promise<boolean> {
		const rows = await this.db.query(`DELETE FROM user_identities WHERE id = $1 AND user_id = $2 RETURNING id`, {
			bind: [id, userId],
			type: QueryTypes.SELECT,
			transaction
		});
		return rows.length > 0;
	}
}
