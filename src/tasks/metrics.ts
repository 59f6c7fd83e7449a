/**
 * The tasks service's Prometheus families: queue depth and first-start wait per tier, leases handed
 * out, and leases that expired (the worker died or stalled). Registered once per broker.
 */
import type { MetricRegistry } from "moleculer";

export function registerTasksMetrics(m: MetricRegistry): void {
	if (!m.hasMetric("tasks.queue.depth")) {
		m.register({
			type: "gauge",
			name: "tasks.queue.depth",
			labelNames: ["tier"],
			description: "Queued tasks per tier"
		});
		m.register({
			type: "histogram",
			name: "tasks.queue.wait.seconds",
			labelNames: ["tier"],
			unit: "seconds",
			description: "Queue wait (submission to first start) per tier",
			buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
		});
		m.register({
			type: "counter",
			name: "tasks.dispatched.total",
			labelNames: ["tier"],
			description: "Tasks leased to workers"
		});
		m.register({
			type: "counter",
			name: "tasks.lease.expired.total",
			labelNames: ["tier"],
			description: "Leases that expired (worker died or stalled)"
		});
		m.register({
			type: "counter",
			name: "tasks.lease.recovered.total",
			description: "Leased tasks handed again to a worker that never got its lease call's answer"
		});
	}
}
