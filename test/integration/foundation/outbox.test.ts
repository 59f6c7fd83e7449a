/**
 * Durable events over the real RabbitMQ and PostgreSQL: the outbox survives a broker outage, a
 * failing consumer is retried then dead-lettered, and a redelivered event is applied once.
 */
import { QueryTypes } from "sequelize";
import { AmqpEventBus } from "../../../src/events/amqp-bus";
import type { ForgeNode } from "../../../app/node";
import { AMQP_URL, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import { ledgerFixture } from "../../support/fixtures";
import { startTcpProxy, TcpProxy } from "../../support/tcp-proxy";

jest.setTimeout(60_000);

async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 20_000): Promise<T> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const v = await fn();
		if (ok(v)) return v;
		if (Date.now() > end) throw new Error(`timed out; last value ${JSON.stringify(v)}`);
		await new Promise(r => setTimeout(r, 100));
	}
}

const balance = (node: ForgeNode, account: string) =>
	node.runtime.sequelize
		.query<{ amount: string; applications: number }>(
			`SELECT amount, applications FROM fixture_balances WHERE account = $1`,
			{
				bind: [account],
				type: QueryTypes.SELECT
			}
		)
		.then(r => r[0] ?? null);

describe("outbox relayed to RabbitMQ", () => {
	let db: TestDatabase;
	let proxy: TcpProxy;
	let node: ForgeNode;

	beforeAll(async () => {
		db = await createTestDatabase();
		proxy = await startTcpProxy({ host: "127.0.0.1", port: 5672 });
		node = await startTestNode({
			db,
			services: [],
			extraServices: [ledgerFixture()],
			env: { AMQP_URL: proxy.url("amqp", "guest:guest") }
		});
		await waitFor(
			async () => node.runtime.bus.isConnected(),
			v => v
		);
	});
	afterAll(async () => {
		await (node.runtime.bus as AmqpEventBus).destroyTopology(["ledgerfx"]).catch(() => undefined);
		await node?.stop();
		await proxy?.close();
		await db?.drop();
	});

	test("an event committed while RabbitMQ is unreachable is delivered once it is back", async () => {
		await node.broker.call("ledgerfx.credit", { account: "a", amount: 5 });
		await waitFor(
			() => balance(node, "a"),
			b => b != null
		);

		await proxy.cut();
		await waitFor(
			async () => node.runtime.bus.isConnected(),
			v => !v
		);
		const { eventId } = (await node.broker.call("ledgerfx.credit", { account: "a", amount: 7 })) as {
			eventId: string;
		};
		// Committed and waiting in the outbox, not lost.
		await new Promise(r => setTimeout(r, 500));
		const pending = await node.runtime.sequelize.query<{ published_at: Date | null; attempts: number }>(
			`SELECT published_at, attempts FROM outbox_events WHERE event_id = $1`,
			{ bind: [eventId], type: QueryTypes.SELECT }
		);
		expect(pending[0].published_at).toBeNull();
		expect((await balance(node, "a"))!.amount).toBe("5");

		await proxy.restore();
		const b = await waitFor(
			() => balance(node, "a"),
			v => v?.amount === "12"
		);
		expect(b!.applications).toBe(2);
	});

	test("rows backed off during an outage are relayed as soon as the bus reconnects, not when their backoff ends", async () => {
		await proxy.cut();
		await waitFor(
			async () => node.runtime.bus.isConnected(),
			v => !v
		);
		const { eventId } = (await node.broker.call("ledgerfx.credit", { account: "b", amount: 2 })) as {
			eventId: string;
		};
		await waitFor(
			() =>
				node.runtime.sequelize.query<{ attempts: number }>(
					`SELECT attempts FROM outbox_events WHERE event_id = $1`,
					{ bind: [eventId], type: QueryTypes.SELECT }
				),
			r => r[0]?.attempts >= 1
		);
		// What a 30 s outage leaves behind: the row's next attempt far in the future.
		await node.runtime.sequelize.query(
			`UPDATE outbox_events SET next_attempt_at = now() + interval '60 seconds' WHERE event_id = $1`,
			{ bind: [eventId] }
		);
		await proxy.restore();
		await waitFor(
			async () => node.runtime.bus.isConnected(),
			v => v
		);
		const reconnectedAt = Date.now();
		await waitFor(
			() => balance(node, "b"),
			v => v?.amount === "2",
			10_000
		);
		expect(Date.now() - reconnectedAt).toBeLessThan(5_000);
	});

	test("a redelivered event is applied once", async () => {
		const bus = node.runtime.bus as AmqpEventBus;
		const ev = {
			id: "7b0a2b64-5c7e-4c39-9a54-2f5c3f7d2d11",
			topic: "fixture.credit",
			payload: { account: "dup", amount: 3 },
			occurredAt: new Date().toISOString(),
			headers: {}
		};
		await bus.publish([ev]);
		await bus.publish([ev]);
		await Promise.all([bus.publish([ev]), bus.publish([ev])]);
		await waitFor(
			() => balance(node, "dup"),
			v => v != null
		);
		await new Promise(r => setTimeout(r, 700));
		const b = await balance(node, "dup");
		expect(b).toEqual({ amount: "3", applications: 1 });
	});
});

describe("failing consumers", () => {
	let db: TestDatabase;
	let node: ForgeNode;
	afterEach(async () => {
		await (node?.runtime.bus as AmqpEventBus | undefined)?.destroyTopology(["ledgerfx"]).catch(() => undefined);
		await node?.stop();
		await db?.drop();
	});

	test("a consumer that throws is retried, then succeeds", async () => {
		db = await createTestDatabase();
		node = await startTestNode({
			db,
			services: [],
			extraServices: [ledgerFixture({ failTimes: 2 })],
			env: { AMQP_URL }
		});
		await node.broker.call("ledgerfx.credit", { account: "r", amount: 4 });
		const b = await waitFor(
			() => balance(node, "r"),
			v => v != null
		);
		expect(b).toEqual({ amount: "4", applications: 1 });
	});

	test("a consumer that keeps throwing is dead-lettered with its error", async () => {
		db = await createTestDatabase();
		node = await startTestNode({
			db,
			services: [],
			extraServices: [ledgerFixture({ failAlways: true })],
			env: { AMQP_URL, EVENT_MAX_ATTEMPTS: "3" }
		});
		const { eventId } = (await node.broker.call("ledgerfx.credit", { account: "d", amount: 1 })) as {
			eventId: string;
		};
		const bus = node.runtime.bus as AmqpEventBus;
		const dead = await waitFor(
			() => bus.drainDeadLetters("ledgerfx"),
			v => v.length > 0
		);
		expect(dead).toHaveLength(1);
		expect(dead[0].event.id).toBe(eventId);
		expect(dead[0].attempts).toBe(3);
		expect(dead[0].error).toContain("consumer failure");
		expect(await balance(node, "d")).toBeNull();
	});
});

describe("embedded mode (in-process bus)", () => {
	let db: TestDatabase;
	let node: ForgeNode;
	afterAll(async () => {
		await node?.stop();
		await db?.drop();
	});

	test("delivers, retries and dead-letters to the table", async () => {
		db = await createTestDatabase();
		node = await startTestNode({
			db,
			services: [],
			extraServices: [ledgerFixture({ failAlways: true })],
			env: { AMQP_URL: "", REDIS_URL: "", EVENT_MAX_ATTEMPTS: "2" }
		});
		expect(node.runtime.bus.kind).toBe("memory");
		const { eventId } = (await node.broker.call("ledgerfx.credit", { account: "m", amount: 1 })) as {
			eventId: string;
		};
		const rows = await waitFor(
			() =>
				node.runtime.sequelize.query<{ event_id: string; attempts: number }>(
					`SELECT event_id, attempts FROM event_dead_letters`,
					{ type: QueryTypes.SELECT }
				),
			r => r.length > 0
		);
		expect(rows).toEqual([{ event_id: eventId, attempts: 2 }]);
	});
});
