/**
 * context-bridge: carries the durable `projects.version.created` event (outbox → bus, at least once)
 * to the Python context service as `context.index({ projectId, version })`.
 *
 * Why a TS consumer: the durable bus (RabbitMQ with acks, retry queue with backoff, dead letters; or
 * the in-process bus in embedded mode) and its inbox table are the TS runtime's; the Python node
 * speaks Moleculer over NATS only. `context.index` is idempotent, so a redelivery costs a no-op.
 * Why its own service rather than inside `ai`: it needs a database (the inbox row is written in the
 * handler's transaction) and one consumer group, "context", whatever number of ai replicas runs;
 * it is hosted with `ai` in the deployment files because ai is the role that depends on context.
 * A failure (no context node, timeout, an error) rejects, so the bus retries it with its backoff.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { durableEvents } from "../mixins/durable-events.mixin";
import { runtimeOf } from "../src/runtime/runtime";

interface VersionCreated {
	projectId: string;
	version: number;
}

interface BridgeThis extends Service {
	indexTimeoutMs: number;
}

const ContextBridgeService: ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	BridgeThis
> = {
	name: "context-bridge",
	mixins: [
		durableEvents({
			group: "context",
			handlers: {
				async "projects.version.created"(this: BridgeThis, payload: VersionCreated, { attempt }) {
					const t = performance.now();
					try {
						await this.broker.call(
							"context.index",
							{ projectId: payload.projectId, version: payload.version },
							{ timeout: this.indexTimeoutMs, retries: 0 }
						);
						this.broker.metrics.increment("context.bridge.index.total", { outcome: "ok" });
						this.broker.metrics.observe("context.bridge.index.seconds", (performance.now() - t) / 1000);
					} catch (err) {
						this.broker.metrics.increment("context.bridge.index.total", { outcome: "failed" });
						this.logger.warn(
							`context.index of project ${payload.projectId} v${payload.version} failed (attempt ${attempt}); the bus retries: ${(err as Error).message}`
						);
						throw err;
					}
				}
			}
		})
	],

	created(this: BridgeThis) {
		this.indexTimeoutMs = runtimeOf(this.broker).config.context.indexTimeoutMs;
		const m = this.broker.metrics;
		if (!m.hasMetric("context.bridge.index.total")) {
			m.register({
				type: "counter",
				name: "context.bridge.index.total",
				labelNames: ["outcome"],
				description: "context.index calls made for projects.version.created, by outcome"
			});
			m.register({
				type: "histogram",
				name: "context.bridge.index.seconds",
				unit: "seconds",
				buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120],
				description: "Time context.index took for one new version"
			});
		}
	}
};

export default ContextBridgeService as unknown as ServiceSchema;
