/**
 * Remote request timeouts leave no tracked context behind (src/middlewares/settle-timed-out.ts):
 * with the project's middleware order, a graceful stop after many timeouts has nothing to wait for.
 * Two brokers in this process over Moleculer's in-memory Fake transporter; the same options otherwise.
 */
import { ServiceBroker, type BrokerOptions, type Middleware } from "moleculer";
import { brokerOptions } from "../../../moleculer.config";
import { loadConfig } from "../../../src/config";

type Tracked = { _trackedContexts: unknown[] };

function options(namespace: string, nodeID: string, without?: string): BrokerOptions {
	const base = brokerOptions(loadConfig({ NAMESPACE: namespace, NODE_ID: nodeID, LOG_LEVEL: "fatal" }));
	const middlewares = (base.middlewares as Array<Middleware | string>).filter(m =>
		typeof m === "string" ? m !== without : (m as { name?: string }).name !== without
	);
	return {
		...base,
		transporter: "Fake",
		logger: false,
		middlewares,
		tracking: { enabled: true, shutdownTimeout: 5000 }
	};
}

async function cluster(without?: string) {
	const ns = `ctx-${Math.random().toString(36).slice(2)}`;
	// A callee that never answers (dead, partitioned, stuck): without its own Timeout its late
	// "timed out" reply cannot come back first and settle the caller's pending request by chance.
	const callee = new ServiceBroker(options(ns, "callee", "Timeout"));
	let release!: () => void;
	const released = new Promise<void>(r => (release = r));
	callee.createService({ name: "slow", actions: { wait: () => released.then(() => "late") } });
	const caller = new ServiceBroker(options(ns, "caller", without));
	await Promise.all([callee.start(), caller.start()]);
	await caller.waitForServices(["slow"], 10_000);
	return { caller, callee, release };
}

test("100 remote timeouts: 0 tracked contexts left on the caller, and its graceful stop does not wait", async () => {
	const { caller, callee, release } = await cluster();
	try {
		const results = await Promise.allSettled(
			Array.from({ length: 100 }, () => caller.call("slow.wait", {}, { timeout: 100 }))
		);
		expect(results.every(r => r.status === "rejected" && (r.reason as Error).name === "RequestTimeoutError")).toBe(
			true
		);
		// Contexts settle on the same turn as the timeout; a few turns are enough.
		await new Promise(r => setImmediate(r));
		expect((caller as unknown as Tracked)._trackedContexts).toHaveLength(0);
		const t = Date.now();
		await caller.stop();
		expect(Date.now() - t).toBeLessThan(2000);
	} finally {
		release();
		await callee.stop();
	}
});

test("without the settling middleware the contexts stay tracked (the upstream behaviour this works around)", async () => {
	const { caller, callee, release } = await cluster("SettleTimedOutRequests");
	try {
		await Promise.allSettled(Array.from({ length: 10 }, () => caller.call("slow.wait", {}, { timeout: 100 })));
		await new Promise(r => setImmediate(r));
		expect((caller as unknown as Tracked)._trackedContexts).toHaveLength(10);
		// Dropped by hand so that stop() does not wait for them.
		(caller as unknown as Tracked)._trackedContexts.length = 0;
	} finally {
		release();
		await caller.stop();
		await callee.stop();
	}
});
