/**
 * Sends the account messages with nodemailer. With SMTP_URL, over SMTP; without it (embedded
 * mode), nodemailer still builds the whole MIME message but hands it to a development outbox that
 * keeps the last messages in memory, prints them to the console and lists them for GET /dev/outbox.
 * The two differ only in the transport: the same message is built either way.
 */
import nodemailer, { type Transporter } from "nodemailer";
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

	constructor(
		private readonly cfg: MailConfig,
		private readonly log: { info(...args: unknown[]): void; warn(...args: unknown[]): void }
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

	/** For requests that must not wait for (or reveal) delivery: failures are logged, never thrown. */
	sendLater(to: string, mail: AccountMail): void {
		this.send(to, mail).catch((err: Error) => this.log.warn(`mail '${mail.kind}' was not sent: ${err.message}`));
	}

	/** Newest first; optionally only those to one address. Empty when mail goes over SMTP. */
	list(to?: string): OutboxMessage[] {
		return (this.outbox ?? []).filter(m => !to || m.to === to).reverse();
	}

	close(): void {
		this.transport.close();
	}
}
