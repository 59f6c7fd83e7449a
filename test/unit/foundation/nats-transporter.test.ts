/** The batching NATS transporter: packets of one event-loop turn reach the client together, in order, and none is lost on disconnect. */
import { BatchingNatsTransporter, cutOffRecently } from "../../../src/runtime/nats-transporter";

function withFakeClient() {
	const t = new BatchingNatsTransporter({ url: "nats://127.0.0.1:1" });
	const calls: string[] = [];
	const client = {
		publish: (topic: string, data: Buffer) => calls.push(`${topic}:${data.toString()}`),
		flush: () => {
			calls.push("flush");
			return Promise.resolve();
		},
		close: () => {
			calls.push("close");
			return Promise.resolve();
		}
	};
	(t as unknown as { client: unknown }).client = client;
	return { t, calls };
}

const nextTurn = () => new Promise<void>(r => setImmediate(r));

describe("BatchingNatsTransporter", () => {
	test("packets sent in one turn are published together at the end of it, in send order", async () => {
		const { t, calls } = withFakeClient();
		await t.send("A", Buffer.from("1"));
		await t.send("B", Buffer.from("2"));
		await t.send("A", Buffer.from("3"));
		expect(calls).toEqual([]);
		await nextTurn();
		expect(calls).toEqual(["A:1", "B:2", "A:3"]);
		await t.send("C", Buffer.from("4"));
		await nextTurn();
		expect(calls).toEqual(["A:1", "B:2", "A:3", "C:4"]);
	});

	test("disconnect publishes what is pending before the client flushes and closes", async () => {
		const { t, calls } = withFakeClient();
		await t.send("DISCONNECT", Buffer.from("bye"));
		await t.disconnect();
		expect(calls).toEqual(["DISCONNECT:bye", "flush", "close"]);
		await nextTurn(); // the scheduled drain finds nothing left and no client
		expect(calls).toHaveLength(3);
	});

	test("without a client nothing is queued", async () => {
		const t = new BatchingNatsTransporter({ url: "nats://127.0.0.1:1" });
		await t.send("A", Buffer.from("1"));
		expect((t as unknown as { pending: unknown[] }).pending).toEqual([]);
	});

	test("its own link: down from the client's disconnect, and for `ms` after its reconnect (cutOffRecently)", async () => {
		const t = new BatchingNatsTransporter({ url: "nats://127.0.0.1:1" });
		const events: Array<{ type: string }> = [];
		let wake: (() => void) | null = null;
		const status = async function* () {
			for (;;) {
				while (events.length) yield events.shift()!;
				await new Promise<void>(r => (wake = r));
			}
		};
		(t as unknown as { client: unknown }).client = { status };
		(t as unknown as { watchLink(): void }).watchLink();
		const emit = async (type: string) => {
			events.push({ type });
			wake?.();
			for (let i = 0; i < 5; i++) await nextTurn();
		};
		const now = Date.now();
		expect(t.linkTroubleWithin(6000, now)).toBe(false);
		await emit("disconnect");
		expect(t.linkTroubleWithin(6000, now + 60_000)).toBe(true); // down: however long ago
		await emit("reconnect");
		const up = Date.now();
		expect(t.linkTroubleWithin(6000, up + 5000)).toBe(true);
		expect(t.linkTroubleWithin(6000, up + 7000)).toBe(false);
		const broker = { transit: { tx: t } } as unknown as Parameters<typeof cutOffRecently>[0];
		expect(cutOffRecently(broker, 6000)).toBe(true);
		expect(cutOffRecently({ transit: { tx: {} } } as unknown as Parameters<typeof cutOffRecently>[0], 6000)).toBe(
			false
		);
	});
});
