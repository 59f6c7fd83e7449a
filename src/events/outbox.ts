/**
 * Transactional outbox: a domain event is inserted in the same transaction as the state change it
 * describes, then relayed to the event bus. A relay on any node claims pending rows with
 * `FOR UPDATE SKIP LOCKED`, publishes them (publisher confirms), and marks them published; if the
 * bus is down the rows wait and are retried with backoff, so nothing committed is ever lost.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes, Sequelize, Transaction } from "sequelize";
import { EventBus, EventEnvelope, eventRetryDelayMs } from "./types";

export async function writeOutboxEvent(
	sequelize: Sequelize,
	tx: Transaction,
	topic: string,
	payload: unknown,
	headers: Record<string, string> = {}
): Promise<EventEnvelope> {
	const ev: EventEnvelope = { id: randomUUID(), topic, payload, occurredAt: new Date().toISOString(), headers };
	await sequelize.query(
		`INSERT INTO outbox_events (event_id, topic, payload, headers, created_at) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)`,
		{ bind: [ev.id, topic, JSON.stringify(payload), JSON.stringify(headers), ev.occurredAt], transaction: tx }
	);
	return ev;
}

interface OutboxRow {
	id: string;
	event_id: string;
	topic: string;
	payload: unknown;
	headers: Record<string, string>;
	created_at: Date;
	attempts: number;
}

export class OutboxRelay {
	private timer: NodeJS.Timeout | null = null;
	private running: Promise<number> | null = null;
	private again = false;
	private stopped = true;

	constructor(
		private readonly sequelize: Sequelize,
		private readonly bus: EventBus,
		private readonly opts: {
			pollMs: number;
			retryBaseMs: number;
			batchSize?: number;
			logger: { warn(...a: unknown[]): void };
		}
	) {}

	start() {
		this.stopped = false;
		this.schedule(0);
	}

	async stop() {
		this.stopped = true;
		if (this.timer) clearTimeout(this.timer);
		this.timer = null;
		await this.running?.catch(() => undefined);
	}

	/**
	 * The bus is back: the rows that failed while it was away wait no longer for their backoff (up to
	 * 30 s), they are due now, and a pass starts at once.
	 */
	async busReconnected(): Promise<void> {
		if (this.stopped) return;
		try {
			await this.sequelize.query(
				`UPDATE outbox_events SET next_attempt_at = now() WHERE published_at IS NULL AND next_attempt_at > now()`
			);
		} catch (err) {
			this.opts.logger.warn("outbox backoff reset failed; rows wait for their backoff", (err as Error).message);
		}
		this.kick();
	}

	/** Asks for a relay pass soon (e.g. right after a commit that wrote events). */
	kick() {
		if (this.stopped) return;
		if (this.running) this.again = true;
		else this.schedule(0);
	}

	private schedule(ms: number) {
		if (this.stopped) return;
		if (this.timer) clearTimeout(this.timer);
		this.timer = setTimeout(() => void this.pass(), ms);
		this.timer.unref();
	}

	private async pass() {
		this.timer = null;
		if (this.running) return;
		this.running = this.relayOnce();
		let n = 0;
		try {
			n = await this.running;
		} catch (err) {
			this.opts.logger.warn("outbox relay pass failed", (err as Error).message);
		} finally {
			this.running = null;
		}
		const more = n >= (this.opts.batchSize ?? 100) || this.again;
		this.again = false;
		this.schedule(more ? 0 : this.opts.pollMs);
	}

	/** One relay pass; returns how many events were published. Exposed for tests and operators. */
	async relayOnce(): Promise<number> {
		const batch = this.opts.batchSize ?? 100;
		return this.sequelize.transaction(async tx => {
			const rows = await this.sequelize.query<OutboxRow>(
				`SELECT id, event_id, topic, payload, headers, created_at, attempts FROM outbox_events
				 WHERE published_at IS NULL AND next_attempt_at <= now()
				 ORDER BY id LIMIT ${batch} FOR UPDATE SKIP LOCKED`,
				{ type: QueryTypes.SELECT, transaction: tx }
			);
			if (!rows.length) return 0;
			const events: EventEnvelope[] = rows.map(r => ({
				id: r.event_id,
				topic: r.topic,
				payload: r.payload,
				headers: r.headers ?? {},
				occurredAt: new Date(r.created_at).toISOString()
			}));
			const ids = rows.map(r => r.id);
			try {
				await this.bus.publish(events);
			} catch (err) {
				const attempts = Math.max(...rows.map(r => r.attempts)) + 1;
				const delay = eventRetryDelayMs(attempts, this.opts.retryBaseMs, 30_000);
				await this.sequelize.query(
					`UPDATE outbox_events SET attempts = attempts + 1, last_error = $2,
					 next_attempt_at = now() + ($3 || ' milliseconds')::interval WHERE id = ANY($1::bigint[])`,
					{
						bind: [ids, String((err as Error)?.message ?? err).slice(0, 1000), String(delay)],
						transaction: tx
					}
				);
				return 0;
			}
			await this.sequelize.query(`UPDATE outbox_events SET published_at = now() WHERE id = ANY($1::bigint[])`, {
				bind: [ids],
				transaction: tx
			});
			return rows.length;
		});
	}
}

/**
 * Idempotent consumption: records (consumer, event id) in the inbox in the same transaction as the
 * handler's writes; a redelivered event finds its row and is skipped. Returns false when skipped.
 */
export async function consumeOnce(
	sequelize: Sequelize,
	consumer: string,
	eventId: string,
	apply: (tx: Transaction) => Promise<void>
): Promise<boolean> {
	return sequelize.transaction(async tx => {
		const [, inserted] = await sequelize.query(
			`INSERT INTO inbox_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			{ bind: [consumer, eventId], transaction: tx, type: QueryTypes.INSERT }
		);
		if (!inserted) return false;
		await apply(tx);
		return true;
	});
}
