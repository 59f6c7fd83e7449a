/**
 * Sends the account messages with nodemailer. With SMTP_URL, over SMTP; without it (embedded
 * mode), nodemailer still builds the whole MIME message but hands it to a development outbox that
 * keeps the last messages in memory, prints them to the console and lists them for GET /dev/outbox.
 * The two differ only in the transport: the same message is built either way.
 *
 * Over SMTP, `sendLater` queues the message in PostgreSQL (`mail_outbox`) and a poller on every
 * node sends what is due (rows claimed with FOR UPDATE SKIP LOCKED and a 5-minute lease). A refused
 * or failed send is retried after MAIL_RETRY_BASE_S·2^(attempt-1) s (at most MAIL_RETRY_MAX_S), up to
 * MAIL_MAX_ATTEMPTS, then marked failed and logged as an error. Sent rows are deleted (their links
 * hold single-use tokens). A node that dies mid-send leaves the row to another node after the lease:
 * delivery is at least once. Hand-written rather than a job library: it is one table and one query,
 * and PostgreSQL is already every node's store.
 */
import nodemailer, { type Transporter } from "nodemailer";
import { QueryTypes, type Sequelize } from "sequelize";
import type { MailConfig } from "./config";
import { renderAccountMail, type AccountMail } from "./mail-templates";

export interface OutboxMessage {
	id: string;
	to: string;
	from: string;
	subject: string;
	text: string;
	html: string;
	/** The links of the text part, in order (what a developer clicks). */
	links: string[];
	sentAt: string;
}

const LINK = /https?:\/\/[^\s<>"]+/g;

export class Mailer {
	private readonly transport: Transporter;
	private readonly outbox: OutboxMessage[] | null;
	private timer: NodeJS.Timeout | null = null;
	private draining: Promise<void> | null = null;

	/** `db`: the queue for SMTP mode (without it, SMTP sends are attempted once, in the background). */
	constructor(
		private readonly cfg: MailConfig,
		private readonly log: {
			info(...args: unknown[]): void;
			warn(...args: unknown[]): void;
			error(...args: unknown[]): void;
		},
		private readonly db: Sequelize | null = null
	) {
		if (cfg.smtpUrl) {
			this.transport = nodemailer.createTransport(cfg.smtpUrl);
			this.outbox = null;
		} else {
			this.transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
			this.outbox = [];
		}
	}

	get usesOutbox(): boolean {
		return this.outbox !== null;
	}

	/** Builds and sends one message; resolves once the transport accepted it. */
	async send(to: string, mail: AccountMail): Promise<void> {
		const content = renderAccountMail(mail);
		const info = (await this.transport.sendMail({ from: this.cfg.from, to, ...content })) as {
			messageId: string;
		};
		if (!this.outbox) return;
		const message: OutboxMessage = {
			id: info.messageId,
			to,
			from: this.cfg.from,
			subject: content.subject,
			text: content.text,
			html: content.html,
			links: content.text.match(LINK) ?? [],
			sentAt: new Date().toISOString()
		};
		this.outbox.push(message);
		if (this.outbox.length > this.cfg.outboxSize) this.outbox.shift();
		this.log.info(`[dev outbox] to ${to}: ${content.subject}\n${content.text}`);
	}

	/**
	 * For requests that must not wait for (or reveal) delivery: over SMTP the message is queued (the
	 * INSERT is issued now, not awaited), else handed to the outbox; failures are logged, never thrown.
	 */
	sendLater(to: string, mail: AccountMail): void {
		if (this.outbox || !this.db) {
			this.send(to, mail).catch((err: Error) =>
				this.log.warn(`mail '${mail.kind}' was not sent: ${err.message}`)
			);
			return;
		}
		this.db
			.query(`INSERT INTO mail_outbox (to_address, mail) VALUES ($1, $2::jsonb) RETURNING id`, {
				bind: [to, JSON.stringify(mail)],
				type: QueryTypes.SELECT
			})
			.then(() => this.drain())
			.catch((err: Error) => this.log.error(`mail '${mail.kind}' was not queued: ${err.message}`));
	}

	/** Starts polling the queue (SMTP mode with a database). */
	startQueue(): void {
		if (this.outbox || !this.db || this.timer) return;
		this.timer = setInterval(() => void this.drain(), this.cfg.queuePollMs);
		this.timer.unref();
		void this.drain();
	}

	/** Sends every due message; one drain at a time per node. */
	drain(): Promise<void> {
		this.draining ??= this.drainOnce()
			.catch((err: Error) => this.log.warn(`mail queue: ${err.message}`))
			.finally(() => (this.draining = null));
		return this.draining;
	}

	private async drainOnce(): Promise<void> {
		const db = this.db!;
		for (;;) {
			if (!this.timer) return;
			const rows = await db.query<{ id: string; to_address: string; mail: AccountMail; attempts: number }>(
				`UPDATE mail_outbox SET next_attempt_at = now() + interval '5 minutes'
				 WHERE id IN (SELECT id FROM mail_outbox WHERE failed_at IS NULL AND next_attempt_at <= now()
				              ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED)
				 RETURNING id, to_address, mail, attempts`,
				{ type: QueryTypes.SELECT }
			);
			if (!rows.length) return;
			for (const row of rows) {
				try {
					await this.send(row.to_address, row.mail);
					await db.query(`DELETE FROM mail_outbox WHERE id = $1`, { bind: [row.id] });
				} catch (err) {
					const attempts = row.attempts + 1;
					const message = (err as Error).message.slice(0, 1000);
					if (attempts >= this.cfg.maxAttempts) {
						this.log.error(
							`mail '${row.mail.kind}' to ${row.to_address} failed ${attempts} times; given up: ${message}`
						);
						await db.query(
							`UPDATE mail_outbox SET attempts = $2, last_error = $3, failed_at = now() WHERE id = $1`,
							{ bind: [row.id, attempts, message] }
						);
					} else {
						const delayS = Math.min(this.cfg.retryBaseS * 2 ** (attempts - 1), this.cfg.retryMaxS);
						this.log.warn(
							`mail '${row.mail.kind}' not sent (attempt ${attempts}), retry in ${delayS}s: ${message}`
						);
						await db.query(
							`UPDATE mail_outbox SET attempts = $2, last_error = $3,
							        next_attempt_at = now() + make_interval(secs => $4) WHERE id = $1`,
							{ bind: [row.id, attempts, message, delayS] }
						);
					}
				}
			}
		}
	}

	/** Newest first; optionally only those to one address. Empty when mail goes over SMTP. */
	list(to?: string): OutboxMessage[] {
		return (this.outbox ?? []).filter(m => !to || m.to === to).reverse();
	}

	async close(): Promise<void> {
		if (this.timer) clearInterval(this.timer);
		this.timer = null;
		await this.draining;
		this.transport.close();
	}
}
