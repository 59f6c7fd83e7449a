/**
 * FORGE payments: invoices bound to users, claims by (chain id, tx hash), confirmations, and reorg
 * checks that reverse a credit whose block left the canonical chain.
 *
 * A log backs at most one live payment and an invoice is paid at most once: both are partial
 * unique indexes, so concurrent claims of one transaction race on the index and the loser reads
 * the winner's row. The credit is a ledger transaction caused by the payment id, posted in the
 * same database transaction that marks the payment credited.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { QueryTypes, Sequelize, Transaction } from "sequelize";
import { Conflict, NotFound, Unprocessable } from "../errors";
import type { ForgeChain } from "./chain";
import { confirmationsOf, judgePayment, PaymentLog } from "./chain-rules";
import { Ledger, availableKey, credits } from "./ledger";
import { creditsToWei } from "./prices";

export type PaymentStatus = "pending" | "confirmed" | "credited" | "rejected" | "reversed";

interface PaymentRow {
	id: string;
	user_id: string;
	chain_id: number;
	tx_hash: string;
	log_index: number;
	invoice_id: string;
	payer: string;
	amount_wei: string;
	credits: string;
	block_number: string;
	block_hash: string;
	block_time: Date;
	status: PaymentStatus;
	reason: string | null;
	credit_transaction_id: string | null;
	shortfall: string;
	shortfall_recovered: string;
	created_at: Date;
	updated_at: Date;
}

interface InvoiceRow {
	id: string;
	user_id: string;
	chain_id: number;
	token: string;
	router: string;
	treasury: string;
	amount_wei: string;
	credits: string;
	expires_at: Date;
	created_at: Date;
}

export interface PaymentView {
	id: string;
	chainId: number;
	txHash: string;
	logIndex: number;
	invoiceId: string;
	payer: string;
	amountWei: string;
	credits: number;
	blockNumber: number;
	confirmations: number | null;
	requiredConfirmations: number;
	status: PaymentStatus;
	reason: string | null;
	createdAt: string;
	updatedAt: string;
}

const LIVE = "('pending', 'confirmed', 'credited')";

function invoiceView(r: InvoiceRow, paid: PaymentStatus | null) {
	return {
		invoiceId: r.id,
		chainId: r.chain_id,
		token: r.token,
		router: r.router,
		treasury: r.treasury,
		amountWei: String(r.amount_wei),
		credits: credits(r.credits),
		expiresAt: new Date(r.expires_at).toISOString(),
		createdAt: new Date(r.created_at).toISOString(),
		payment: paid
	};
}

export class CryptoPayments {
	constructor(
		private readonly sequelize: Sequelize,
		private readonly ledger: Ledger,
		private readonly chain: ForgeChain,
		private readonly log: { warn(...a: unknown[]): void; info(...a: unknown[]): void }
	) {}

	private get s() {
		return this.chain.settings;
	}

	private q<T extends object>(tx: Transaction | null, sql: string, bind: unknown[]): Promise<T[]> {
		return this.sequelize.query<T>(sql, { bind, type: QueryTypes.SELECT, transaction: tx ?? undefined });
	}

	private view(r: PaymentRow, head: number | null): PaymentView {
		return {
			id: r.id,
			chainId: r.chain_id,
			txHash: r.tx_hash,
			logIndex: r.log_index,
			invoiceId: r.invoice_id,
			payer: r.payer,
			amountWei: String(r.amount_wei),
			credits: credits(r.credits),
			blockNumber: Number(r.block_number),
			confirmations: head == null ? null : confirmationsOf(head, Number(r.block_number)),
			requiredConfirmations: this.s.confirmations,
			status: r.status,
			reason: r.reason,
			createdAt: new Date(r.created_at).toISOString(),
			updatedAt: new Date(r.updated_at).toISOString()
		};
	}

	/** A new invoice for `credits`; with a client key, a retried request returns the same invoice. */
	async createInvoice(
		userId: string,
		credits: bigint,
		clientKey: string | null
	): Promise<ReturnType<typeof invoiceView>> {
		if (clientKey) {
			const [existing] = await this.q<InvoiceRow>(
				null,
				`SELECT * FROM crypto_invoices WHERE user_id = $1 AND client_key = $2`,
				[userId, clientKey]
			);
			if (existing) {
				if (BigInt(existing.credits) !== credits)
					throw Conflict("This Idempotency-Key was used for another invoice", "IDEMPOTENCY_KEY_REUSED");
				return invoiceView(existing, null);
			}
		}
		const id = `0x${randomBytes(32).toString("hex")}`;
		const amountWei = creditsToWei(credits, this.s.creditsPerForge);
		const rows = await this.q<InvoiceRow>(
			null,
			`INSERT INTO crypto_invoices (id, user_id, client_key, chain_id, token, router, treasury, amount_wei, credits, expires_at)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + ($10 || ' seconds')::interval)
			 ON CONFLICT (user_id, client_key) DO NOTHING RETURNING *`,
			[
				id,
				userId,
				clientKey,
				this.s.chainId,
				this.s.token,
				this.s.router,
				this.s.treasury,
				amountWei.toString(),
				credits.toString(),
				String(this.s.invoiceTtlS)
			]
		);
		if (!rows.length) return this.createInvoice(userId, credits, clientKey); // lost a race on the same key
		return invoiceView(rows[0], null);
	}

	async getInvoice(userId: string, id: string): Promise<ReturnType<typeof invoiceView>> {
		const [row] = await this.q<InvoiceRow>(null, `SELECT * FROM crypto_invoices WHERE id = $1 AND user_id = $2`, [
			id.toLowerCase(),
			userId
		]);
		if (!row) throw NotFound("Invoice");
		const [live] = await this.q<{ status: PaymentStatus }>(
			null,
			`SELECT status FROM crypto_payments WHERE invoice_id = $1 AND status IN ${LIVE}`,
			[row.id]
		);
		return invoiceView(row, live?.status ?? null);
	}

	async getPayment(userId: string, id: string): Promise<PaymentView> {
		const [row] = await this.q<PaymentRow>(null, `SELECT * FROM crypto_payments WHERE id = $1 AND user_id = $2`, [
			id,
			userId
		]);
		if (!row) throw NotFound("Payment");
		let head: number | null;
		try {
			head = await this.chain.head();
		} catch {
			head = null; // the state is still worth answering without the chain
		}
		return this.view(row, head);
	}

	/** Claims the payment in `txHash` for `userId`. Returns the payment and whether it was already claimed. */
	async claim(userId: string, chainId: number, txHashRaw: string): Promise<PaymentView & { duplicate: boolean }> {
		const txHash = txHashRaw.toLowerCase();
		if (chainId !== this.s.chainId)
			throw Unprocessable(
				"This chain is not accepted",
				[{ field: "chainId", message: `must be ${this.s.chainId}`, type: "chain" }],
				"UNSUPPORTED_CHAIN"
			);
		const known = await this.q<PaymentRow>(
			null,
			`SELECT * FROM crypto_payments WHERE chain_id = $1 AND tx_hash = $2 AND status IN ${LIVE}`,
			[chainId, txHash]
		);
		const mine = known.find(r => r.user_id === userId);
		if (mine) return { ...this.view(mine, await this.chain.head()), duplicate: true };

		const receipt = await this.chain.receipt(txHash);
		if (!receipt)
			throw Unprocessable(
				"No mined transaction with this hash",
				[{ field: "txHash", message: "unknown or not mined yet", type: "chain" }],
				"TX_NOT_FOUND"
			);
		if (receipt.status !== 1)
			throw Unprocessable(
				"The transaction reverted",
				[{ field: "txHash", message: "reverted", type: "chain" }],
				"TX_REVERTED"
			);
		if (!receipt.payments.length)
			throw Unprocessable(
				"The transaction contains no payment through the payment router",
				[{ field: "txHash", message: "no PaymentReceived log", type: "chain" }],
				"NO_PAYMENT_IN_TX"
			);
		const invoices = await this.q<InvoiceRow>(null, `SELECT * FROM crypto_invoices WHERE id = ANY($1::text[])`, [
			receipt.payments.map(p => p.invoiceId)
		]);
		const byId = new Map(invoices.map(i => [i.id, i]));
		const log: PaymentLog =
			receipt.payments.find(p => byId.get(p.invoiceId)?.user_id === userId) ?? receipt.payments[0];
		const invoice = byId.get(log.invoiceId) ?? null;
		const block = await this.chain.block(receipt.blockNumber);
		if (!block || block.hash !== receipt.blockHash)
			throw Conflict("The chain is reorganising; try again shortly", "CHAIN_REORG");
		const verdict = judgePayment(
			log,
			invoice && {
				id: invoice.id,
				userId: invoice.user_id,
				amountWei: BigInt(invoice.amount_wei),
				expiresAt: new Date(invoice.expires_at)
			},
			userId,
			{ router: this.s.router, token: this.s.token, treasury: this.s.treasury },
			block.time
		);
		if (!verdict.ok) {
			if (verdict.status === 404) throw NotFound("Invoice");
			if (verdict.status === 409) throw Conflict(verdict.message, verdict.code);
			throw Unprocessable(
				verdict.message,
				[{ field: "txHash", message: verdict.message, type: "chain" }],
				verdict.code
			);
		}
		const head = await this.chain.head();
		const id = randomUUID();
		return this.ledger.run(async tx => {
			const inserted = await this.q<PaymentRow>(
				tx,
				`INSERT INTO crypto_payments (id, user_id, chain_id, tx_hash, log_index, invoice_id, payer, amount_wei, credits,
					block_number, block_hash, block_time, status)
				 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'pending')
				 ON CONFLICT DO NOTHING RETURNING *`,
				[
					id,
					userId,
					chainId,
					txHash,
					log.logIndex,
					invoice!.id,
					log.payer,
					log.amountWei.toString(),
					String(invoice!.credits),
					receipt.blockNumber,
					receipt.blockHash,
					block.time
				]
			);
			if (!inserted.length) {
				const [same] = await this.q<PaymentRow>(
					tx,
					`SELECT * FROM crypto_payments WHERE chain_id = $1 AND tx_hash = $2 AND log_index = $3 AND status IN ${LIVE}`,
					[chainId, txHash, log.logIndex]
				);
				if (same && same.user_id === userId) return { ...this.view(same, head), duplicate: true };
				throw Conflict("This invoice is already paid", "INVOICE_ALREADY_PAID");
			}
			let row = inserted[0];
			if (confirmationsOf(head, receipt.blockNumber) >= this.s.confirmations)
				row = await this.creditPayment(tx, row);
			return { ...this.view(row, head), duplicate: false };
		});
	}

	/**
	 * Credits a payment, first settling what earlier reversals of the same invoice could not take
	 * back. A reorg reverses a credit with a clawback that never goes below zero; when the same
	 * payment (the same transaction re-mined, or another one paying the same invoice) is credited
	 * again, the part the user already spent is recovered from the new credit, so across reversal
	 * and re-credit the user is credited the payment's value once. The invoice is the key: a
	 * payment's invoice is the one its log names, so the same (chain, tx, log) is the same invoice.
	 */
	private async creditPayment(tx: Transaction, row: PaymentRow): Promise<PaymentRow> {
		// Locked before the ledger moves (payment rows, then accounts, as in watchOne).
		const open = await this.q<{ id: string; shortfall: string; shortfall_recovered: string }>(
			tx,
			`SELECT id, shortfall, shortfall_recovered FROM crypto_payments
			 WHERE invoice_id = $1 AND user_id = $2 AND id <> $3 AND shortfall > shortfall_recovered ORDER BY created_at, id FOR UPDATE`,
			[row.invoice_id, row.user_id, row.id]
		);
		const amount = BigInt(row.credits);
		const posted = await this.ledger.credit(tx, {
			kind: "crypto_payment",
			userId: row.user_id,
			credits: amount,
			from: "sys:token_treasury",
			source: "crypto",
			expiresAt: null,
			causeType: "crypto_payment",
			causeId: row.id,
			description: "FORGE payment",
			metadata: {
				chainId: row.chain_id,
				txHash: row.tx_hash,
				logIndex: row.log_index,
				invoiceId: row.invoice_id,
				amountWei: String(row.amount_wei)
			}
		});
		if (!posted.duplicate && open.length) {
			let left = amount;
			const recovered: Array<{ paymentId: string; amount: bigint }> = [];
			for (const o of open) {
				const outstanding = BigInt(o.shortfall) - BigInt(o.shortfall_recovered);
				const take = outstanding < left ? outstanding : left;
				if (take <= 0n) break;
				recovered.push({ paymentId: o.id, amount: take });
				left -= take;
			}
			const total = amount - left;
			// A separate balanced transaction (not a smaller credit): the ledger shows the payment credited
			// in full and the earlier shortfall settled from it, taken from the lot this credit just made.
			await this.ledger.post(tx, {
				kind: "crypto_shortfall_recovery",
				userId: row.user_id,
				causeType: "crypto_payment",
				causeId: row.id,
				description: "FORGE payment re-credited: settles the shortfall of its earlier reversal",
				metadata: {
					invoiceId: row.invoice_id,
					recovered: recovered.map(r => ({ paymentId: r.paymentId, amount: r.amount.toString() }))
				},
				entries: [
					{ account: availableKey(row.user_id), amount: -total, lotId: posted.lotIds[0] },
					{ account: "sys:token_treasury", amount: total }
				]
			});
			for (const r of recovered)
				await this.q(
					tx,
					`UPDATE crypto_payments SET shortfall_recovered = shortfall_recovered + $2, updated_at = now() WHERE id = $1 RETURNING id`,
					[r.paymentId, r.amount.toString()]
				);
			this.log.info(
				`crypto payment ${row.id}: ${total} credits settle the shortfall of earlier reversals of invoice ${row.invoice_id}`
			);
		}
		const [updated] = await this.q<PaymentRow>(
			tx,
			`UPDATE crypto_payments SET status = 'credited', credit_transaction_id = $2, updated_at = now() WHERE id = $1 RETURNING *`,
			[row.id, posted.id]
		);
		return updated;
	}

	/**
	 * One pass over live payments: credits those that reached their confirmations on the canonical
	 * chain, follows transactions re-mined in another block, and rejects (pending) or reverses
	 * (credited) those whose transaction left the chain. Safe on many nodes at once (row locks).
	 */
	async watch(): Promise<{ credited: number; reversed: number; rejected: number }> {
		const head = await this.chain.head();
		const rows = await this.q<{ id: string }>(
			null,
			`SELECT id FROM crypto_payments WHERE chain_id = $1 AND status IN ${LIVE}
			 AND (status <> 'credited' OR block_number >= $2) ORDER BY block_number LIMIT 500`,
			[this.s.chainId, head - this.s.reorgWindowBlocks]
		);
		const out = { credited: 0, reversed: 0, rejected: 0 };
		for (const { id } of rows) {
			try {
				const r = await this.watchOne(id, head);
				if (r) out[r]++;
			} catch (err) {
				this.log.warn(`crypto payment ${id}: check failed`, (err as Error).message);
			}
		}
		return out;
	}

	/**
	 * Re-checks one payment. Only an answer about the chain reverses or rejects: a block at the
	 * payment's height with another hash, on a chain that does not hold the transaction (or holds it
	 * reverted, or without the log). A node that cannot answer (an error, a null block, a head below
	 * the payment's block, answers that disagree with each other) proves nothing: the payment waits
	 * for the next pass.
	 */
	private async watchOne(id: string, head: number): Promise<"credited" | "reversed" | "rejected" | null> {
		const [snapshot] = await this.q<PaymentRow>(null, `SELECT * FROM crypto_payments WHERE id = $1`, [id]);
		if (!snapshot) return null;
		let blockNumber = Number(snapshot.block_number);
		if (head < blockNumber) return null; // the node is behind the payment
		const block = await this.chain.block(blockNumber);
		if (!block) return null; // no answer for a height at or below the head: a lagging or failing node
		let blockHash = snapshot.block_hash;
		let blockTime = snapshot.block_time;
		let gone = false;
		if (block.hash !== snapshot.block_hash) {
			// Another block at its height: is the transaction (with the same log) mined elsewhere?
			const receipt = await this.chain.receipt(snapshot.tx_hash);
			if (!receipt) {
				// "Not mined" counts only from a node that still shows the other block at that height.
				const again = await this.chain.block(blockNumber);
				if (!again || again.hash === snapshot.block_hash) return null;
				gone = true;
			} else {
				const same =
					receipt.status === 1 &&
					receipt.payments.find(
						p => p.logIndex === snapshot.log_index && p.invoiceId === snapshot.invoice_id
					);
				if (!same || same.amountWei !== BigInt(snapshot.amount_wei)) gone = true;
				else {
					const newBlock = await this.chain.block(receipt.blockNumber);
					if (!newBlock || newBlock.hash !== receipt.blockHash) return null; // mid-reorg or a lagging node: look again later
					blockNumber = receipt.blockNumber;
					blockHash = receipt.blockHash;
					blockTime = newBlock.time;
				}
			}
		}
		return this.ledger.run(async tx => {
			const [row] = await this.q<PaymentRow>(tx, `SELECT * FROM crypto_payments WHERE id = $1 FOR UPDATE`, [id]);
			if (!row || row.status !== snapshot.status || row.block_hash !== snapshot.block_hash) return null; // someone else moved it
			if (gone) {
				if (row.status === "credited") {
					const lot = await this.q<{ id: string }>(
						tx,
						`SELECT id FROM credit_lots WHERE transaction_id = $1`,
						[row.credit_transaction_id]
					);
					const r = await this.ledger.clawback(tx, {
						kind: "crypto_reversal",
						userId: row.user_id,
						amount: BigInt(row.credits),
						to: "sys:token_treasury",
						preferLotId: lot[0]?.id ? String(lot[0].id) : null,
						causeType: "crypto_payment",
						causeId: row.id,
						description: "FORGE payment reversed: its block left the chain",
						metadata: {
							txHash: row.tx_hash,
							blockNumber: Number(row.block_number),
							blockHash: row.block_hash
						}
					});
					// The shortfall stays open on this row until a re-credit of the same invoice settles it.
					await this.q(
						tx,
						`UPDATE crypto_payments SET status = 'reversed', reason = $2, shortfall = $3, updated_at = now() WHERE id = $1 RETURNING id`,
						[
							id,
							r.shortfall > 0n ? `REORGED_OUT (shortfall ${r.shortfall})` : "REORGED_OUT",
							r.shortfall.toString()
						]
					);
					this.log.warn(`crypto payment ${id} reversed: tx ${row.tx_hash} left the chain`);
					return "reversed";
				}
				await this.q(
					tx,
					`UPDATE crypto_payments SET status = 'rejected', reason = 'REORGED_OUT', updated_at = now() WHERE id = $1 RETURNING id`,
					[id]
				);
				return "rejected";
			}
			if (blockHash !== row.block_hash)
				await this.q(
					tx,
					`UPDATE crypto_payments SET block_number = $2, block_hash = $3, block_time = $4, updated_at = now() WHERE id = $1 RETURNING id`,
					[id, blockNumber, blockHash, blockTime]
				);
			if (row.status !== "credited" && confirmationsOf(head, blockNumber) >= this.s.confirmations) {
				await this.creditPayment(tx, { ...row, block_number: String(blockNumber), block_hash: blockHash });
				return "credited";
			}
			return null;
		});
	}

	/** Payments of a user, newest first (for the REPL and support). */
	async listForUser(userId: string, limit = 20): Promise<PaymentView[]> {
		const rows = await this.q<PaymentRow>(
			null,
			`SELECT * FROM crypto_payments WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2`,
			[userId, limit]
		);
		return rows.map(r => this.view(r, null));
	}
}
