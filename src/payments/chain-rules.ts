/**
 * The rules that decide whether an on-chain log pays an invoice. A payment is recognised from the
 * router's `PaymentReceived` log only (never from tx.from / tx.to: a smart wallet, relayer or
 * friend may pay), and every field of the log is checked against the configuration and the invoice.
 */

export interface PaymentLog {
	/** The contract that emitted the log. */
	address: string;
	logIndex: number;
	invoiceId: string;
	payer: string;
	token: string;
	amountWei: bigint;
	treasury: string;
}

export interface Expected {
	router: string;
	token: string;
	treasury: string;
}

export interface InvoiceFacts {
	id: string;
	userId: string;
	amountWei: bigint;
	expiresAt: Date;
}

export type Verdict = { ok: true } | { ok: false; status: 404 | 409 | 422; code: string; message: string };

const eq = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

/**
 * Judges one payment log against its invoice for a claimant. Checks run from the most telling to
 * the least: whose invoice it is (someone else's is "not found", never confirmed to exist), then
 * the token, the recipient, the emitting contract, the amount and the invoice's lifetime.
 */
export function judgePayment(
	log: PaymentLog,
	invoice: InvoiceFacts | null,
	claimantId: string,
	expected: Expected,
	blockTime: Date
): Verdict {
	if (!invoice || invoice.userId !== claimantId)
		return {
			ok: false,
			status: 404,
			code: "INVOICE_NOT_FOUND",
			message: "This transaction pays no invoice of yours"
		};
	if (!eq(log.token, expected.token))
		return { ok: false, status: 422, code: "WRONG_TOKEN", message: "The payment is not in FORGE" };
	if (!eq(log.treasury, expected.treasury))
		return {
			ok: false,
			status: 422,
			code: "WRONG_RECIPIENT",
			message: "The payment did not go to the platform treasury"
		};
	if (!eq(log.address, expected.router))
		return {
			ok: false,
			status: 422,
			code: "WRONG_CONTRACT",
			message: "The payment was not made through the platform's payment router"
		};
	if (log.amountWei !== invoice.amountWei)
		return {
			ok: false,
			status: 422,
			code: "AMOUNT_MISMATCH",
			message: `The invoice asks for ${invoice.amountWei} wei; the transaction paid ${log.amountWei}`
		};
	if (blockTime.getTime() > invoice.expiresAt.getTime())
		return {
			ok: false,
			status: 422,
			code: "INVOICE_EXPIRED",
			message: "The payment was mined after the invoice expired"
		};
	return { ok: true };
}

/** Confirmations of a block at `blockNumber` when the chain head is `head` (1 = just mined). */
export function confirmationsOf(head: number, blockNumber: number): number {
	return head >= blockNumber ? head - blockNumber + 1 : 0;
}

/** The highest block with at least `confirmations` confirmations, or -1 when none has. */
export function safeBlock(head: number, confirmations: number): number {
	return head - confirmations + 1;
}
