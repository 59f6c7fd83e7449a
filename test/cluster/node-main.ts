/**
 * One node of a multi-node test cluster, in its own process: the real node factory plus the probe
 * fixtures. ROLE=gateway hosts the gateway with the probe routes; ROLE=worker hosts the probe service
 * (PROBE_MODE=failing makes its `flaky` action fail, to trip circuit breakers).
 */
import { Errors, ServiceSchema } from "moleculer";
import { loadConfig } from "../../src/config";
import { createNode } from "../../app/node";
import { createApiService } from "../../services/api.service";
import { PROBE_BODY, PROBE_ROUTES } from "../support/fixtures";

const role = process.env.ROLE ?? "worker";
const failing = process.env.PROBE_MODE === "failing";

const ClusterProbe: ServiceSchema = {
	name: "probe",
	actions: {
		whoami: {
			retryPolicy: { enabled: true },
			async handler(ctx) {
				const delay = Number((ctx.params as { delayMs?: string }).delayMs ?? 0);
				if (delay) await new Promise(r => setTimeout(r, Math.min(delay, 2000)));
				return { nodeID: this.broker.nodeID };
			}
		},
		flaky() {
			if (failing) throw new Errors.MoleculerServerError("worker is broken", 500, "BROKEN");
			return { nodeID: this.broker.nodeID };
		}
	}
};

const routes = [
	...PROBE_ROUTES.filter(r => r.path !== "/probe/whoami"),
	{
		method: "GET" as const,
		path: "/probe/whoami",
		action: "probe.whoami",
		response: PROBE_BODY,
		auth: "none" as const,
		summary: "Which node answered",
		tag: "probe"
	},
	{
		method: "GET" as const,
		path: "/probe/flaky",
		action: "probe.flaky",
		response: PROBE_BODY,
		auth: "none" as const,
		summary: "Fails on a broken worker",
		tag: "probe"
	}
];

async function main() {
	const config = loadConfig();
	const node = await createNode(config, {
		services: [],
		extraServices: role === "gateway" ? [createApiService({ routes })] : [ClusterProbe]
	});
	const api = node.broker.getLocalService("api") as unknown as { server?: import("node:http").Server } | undefined;
	const addr = api?.server?.address();
	console.log(`NODE_READY ${node.broker.nodeID} ${addr && typeof addr === "object" ? addr.port : 0}`);
	const stop = () =>
		node.stop().then(
			() => process.exit(0),
			() => process.exit(1)
		);
	process.on("SIGTERM", stop);
	process.on("SIGINT", stop);
}

main().catch(err => {
	console.error("node failed", err);
	process.exit(1);
});
