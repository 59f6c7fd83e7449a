/**
 * A user's own monthly spend cap (PUT /billing/cap) and what the month has spent against it: the
 * `payer:<id>` counter of src/payments/spend-caps.ts (held + settled this calendar month, UTC).
 */
import { QueryTypes, type Sequelize } from "sequelize";
import { credits } from "./ledger";
import { capMonth } from "./spend-caps";

export interface PayerCapView {
	monthlyCapCredits: number | null;
	/** Held + settled this month (UTC). */
	spentCredits: number;
	/** YYYY-MM-01 (UTC). */
	month: string;
}

export class PayerCaps {
	constructor(private readonly db: Sequelize) {}

	/** The user's own cap, or null. */
	async capOf(payerId: string): Promise<number | null> {
		const [row] = await this.db.query<{ c: string }>(
			`SELECT monthly_cap_credits AS c FROM payer_caps WHERE payer_id = $1`,
			{ bind: [payerId], type: QueryTypes.SELECT }
		);
		return row ? credits(row.c) : null;
	}

	/** Sets (`null`: removes) the cap. */
	async set(payerId: string, monthlyCapCredits: number | null): Promise<void> {
		if (monthlyCapCredits == null)
			await this.db.query(`DELETE FROM payer_caps WHERE payer_id = $1`, { bind: [payerId] });
		else
			await this.db.query(
				`INSERT INTO payer_caps (payer_id, monthly_cap_credits) VALUES ($1, $2)
				 ON CONFLICT (payer_id) DO UPDATE SET monthly_cap_credits = $2, updated_at = now()`,
				{ bind: [payerId, monthlyCapCredits] }
			);
	}

	async view(payerId: string, now = new Date()): Promise<PayerCapView> {
		const month = capMonth(now);
		const [cap, [row]] = await Promise.all([
			this.capOf(payerId),
			this.db.query<{ spent: string }>(`SELECT spent FROM spend_counters WHERE counter = $1 AND month = $2`, {
				bind: [`payer:${payerId}`, month],
				type: QueryTypes.SELECT
			})
		]);
		return { monthlyCapCredits: cap, spentCredits: row ? credits(row.spent) : 0, month };
	}
}
