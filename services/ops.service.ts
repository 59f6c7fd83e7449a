/**
 * Hosted on every node: the node's own health (each dependency it uses), and — on nodes without the
 * HTTP gateway — a tiny health endpoint for orchestrator probes (HEALTH_PORT).
 */
import http from "node:http";
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { runtimeOf } from "../src/runtime/runtime";
import { NODE_EVICTED_EVENT, confirmEviction } from "../src/middlewares/dead-node-detector";

interface OpsThis extends Service {
	healthServer: http.Server | null;
	report(): Promise<HealthReport>;
}

export interface HealthReport {
	ready: boolean;
	nodeID: string;
	uptimeS: number;
	dependencies: Array<{ name: string; ok: boolean; required: boolean; latencyMs?: number; error?: string }>;
	services: Record<string, { available: boolean; nodes: number }>;
}

const OpsService: ServiceSchema<ServiceSettingSchema, Record<string, never>, Record<string, never>, OpsThis> = {
	name: "ops",
	actions: {
		health: {
			visibility: "public",
			handler(this: OpsThis) {
				return this.report();
			}
		}
	},
	events: {
		// Another node evicted a node that stopped answering: check it from here too, at once, instead
		// of waiting for this node's own heartbeat timeout (src/middlewares/dead-node-detector.ts).
		[NODE_EVICTED_EVENT]: {
			params: { nodeID: "string", by: "string" },
			handler(this: OpsThis, ctx: { params: { nodeID: string } }) {
				const pingMs = Math.min(1000, runtimeOf(this.broker).config.requestTimeoutMs);
				return confirmEviction(this.broker, ctx.params.nodeID, pingMs).then(() => undefined);
			}
		}
	},
	methods: {
		async report(this: OpsThis): Promise<HealthReport> {
			const rt = runtimeOf(this.broker);
			const dependencies = await rt.checkDependencies();
			// Cluster nodes and embedded mode with its loopback NATS both have a transit.
			const transit = (this.broker as unknown as { transit?: { connected: boolean } }).transit;
			if (transit) dependencies.push({ name: "nats", ok: !!transit.connected, required: true });
			const services: HealthReport["services"] = {};
			const list = this.broker.registry.getServiceList({
				onlyAvailable: false,
				skipInternal: true,
				withActions: false
			}) as Array<{
				name: string;
				available: boolean;
			}>;
			for (const s of list) {
				if (s.name === "ops") continue;
				const cur = services[s.name] ?? { available: false, nodes: 0 };
				cur.nodes += 1;
				cur.available = cur.available || s.available;
				services[s.name] = cur;
			}
			return {
				// Ready while every dependency the node cannot serve without answers (DependencyState.required).
				ready: dependencies.every(d => d.ok || !d.required),
				nodeID: this.broker.nodeID,
				uptimeS: Math.round(process.uptime()),
				dependencies,
				services
			};
		}
	},
	started(this: OpsThis) {
		const port = runtimeOf(this.broker).config.healthPort;
		this.healthServer = null;
		if (!port) return;
		this.healthServer = http.createServer((req, res) => {
			const send = (status: number, body: unknown) => {
				res.writeHead(status, { "Content-Type": "application/json" });
				res.end(JSON.stringify(body));
			};
			if (req.method === "GET" && req.url === "/health/live")
				return send(200, { status: "ok", nodeID: this.broker.nodeID });
			if (req.method === "GET" && req.url === "/health/ready")
				return void this.report().then(
					r => send(r.ready ? 200 : 503, r),
					() => send(503, { ready: false })
				);
			send(404, { error: { code: "NOT_FOUND", message: "Not found" } });
		});
		return new Promise<void>(resolve => this.healthServer!.listen(port, "0.0.0.0", () => resolve()));
	},
	stopped(this: OpsThis) {
		return new Promise<void>(resolve => (this.healthServer ? this.healthServer.close(() => resolve()) : resolve()));
	}
};

export default OpsService as unknown as ServiceSchema;
