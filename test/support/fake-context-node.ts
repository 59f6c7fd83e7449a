/**
 * A stand-in for the Python context node as a process, for tests of what the platform does around
 * it (embedded mode spawns `$FORGE_PYTHON -m forgefluid_context`): test/support/fake-context-python
 * runs this file. It reads the same environment (TRANSPORTER with the token in the URL, NAMESPACE,
 * NODE_ID), hosts the TS fake of the context service (fake-context.ts) and says goodbye on SIGTERM.
 */
import { ServiceBroker } from "moleculer";
import { fakeContextService } from "./fake-context";

async function main() {
	const u = new URL(process.env.TRANSPORTER ?? "");
	const broker = new ServiceBroker({
		namespace: process.env.NAMESPACE ?? "",
		nodeID: process.env.NODE_ID ?? `fake-context-${process.pid}`,
		transporter: {
			type: "NATS",
			options: { url: `nats://${u.host}`, ...(u.username ? { token: decodeURIComponent(u.username) } : {}) }
		},
		logger: false,
		// as the real node reads them (embedded mode passes the platform's: app/embedded.ts)
		heartbeatInterval: Number(process.env.HEARTBEAT_INTERVAL_S || 1),
		heartbeatTimeout: Number(process.env.HEARTBEAT_TIMEOUT_S || 3)
	});
	broker.createService(fakeContextService(broker.nodeID).schema);
	await broker.start();
	console.log(`node ${broker.nodeID} ready (argv: ${process.argv.slice(2).join(" ")})`);
	process.on("SIGTERM", () => {
		console.log(`node ${broker.nodeID} stopping`);
		void broker.stop().then(() => process.exit(0));
	});
}

main().catch(err => {
	console.error(err);
	process.exit(1);
});
