/**
 * Prometheus text exposition of the broker's metric registry (Moleculer's registry is the one place
 * metrics are kept; services call `broker.metrics`).
 *
 * Hand-written on purpose, in place of the renderer of Moleculer's Prometheus reporter (whose HTTP
 * server, path and gzip handling are kept): that renderer writes `_rate`, `_min`, `_mean`,
 * `_variance`, `_stddev` and `_max` series of no declared family and `quantile` series inside
 * histograms, which `promtool check metrics` refuses, and it publishes the host's identity. prom-client
 * renders only its own registry, not Moleculer's. This one writes:
 * - counters and gauges as they are; Moleculer's `info` metrics as gauges of value 1 with a `value` label;
 * - histograms as `_bucket`/`_sum`/`_count` only; a histogram with quantiles and no buckets as a summary;
 * - label names in snake_case (`nodeID` → `node_id`); HELP on every family (the description, or the
 *   metric's name and unit);
 * - no family that identifies the host (HOST_IDENTITY) and no host-derived default label: Prometheus
 *   adds `instance` from the scrape target.
 */
import type { MetricRegistry } from "moleculer";
import { MetricReporters } from "moleculer";

/** Moleculer built-ins that name the machine, its user, its network or the process's arguments. */
export const HOST_IDENTITY = [
	"os.hostname",
	"os.user.*",
	"os.network.*",
	"os.datetime.*",
	"os.cpu.info.*",
	"os.type",
	"os.release",
	"process.arguments",
	"process.pid",
	"process.ppid"
];

const hidden = (name: string) =>
	HOST_IDENTITY.some(p => (p.endsWith(".*") ? name.startsWith(p.slice(0, -1)) : name === p));

export const promMetricName = (name: string) => name.replace(/[.-]/g, "_");
export const promLabelName = (name: string) =>
	name
		.replace(/([a-z0-9])([A-Z]+)/g, "$1_$2")
		.replace(/[^A-Za-z0-9_]/g, "_")
		.toLowerCase();

const escapeLabel = (v: unknown) => String(v).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const num = (v: unknown) =>
	v == null || (typeof v === "number" && Number.isNaN(v))
		? "NaN"
		: v === Infinity
			? "+Inf"
			: v === -Infinity
				? "-Inf"
				: String(v);

function labels(
	base: Record<string, unknown>,
	item: Record<string, unknown> | undefined,
	extra: Record<string, unknown> = {}
): string {
	const all: Record<string, unknown> = { ...base, ...(item ?? {}), ...extra };
	const keys = Object.keys(all).filter(k => all[k] !== undefined);
	if (!keys.length) return "";
	return `{${keys.map(k => `${promLabelName(k)}="${escapeLabel(all[k])}"`).join(",")}}`;
}

interface MetricLike {
	name: string;
	type: string;
	description?: string;
	unit?: string;
	snapshot(): Array<{
		labels?: Record<string, unknown>;
		value?: unknown;
		buckets?: Record<string, number>;
		quantiles?: Record<string, number>;
		sum?: number;
		count?: number;
	}>;
}

export function renderPrometheus(registry: MetricRegistry, defaultLabels: Record<string, unknown> = {}): string {
	const out: string[] = [];
	const store = (registry as unknown as { store: Map<string, MetricLike> }).store;
	for (const metric of store.values()) {
		if (hidden(metric.name)) continue;
		const snapshot = metric.snapshot();
		if (!snapshot.length) continue;
		const name = promMetricName(metric.name);
		const help = metric.description || `${metric.name}${metric.unit ? ` (${metric.unit})` : ""}`;
		const header = (type: string) => out.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
		switch (metric.type) {
			case "counter":
			case "gauge":
				header(metric.type);
				for (const s of snapshot) out.push(`${name}${labels(defaultLabels, s.labels)} ${num(s.value)}`);
				break;
			case "info":
				header("gauge");
				for (const s of snapshot) out.push(`${name}${labels(defaultLabels, s.labels, { value: s.value })} 1`);
				break;
			case "histogram": {
				const withBuckets = snapshot.some(s => s.buckets);
				header(withBuckets ? "histogram" : "summary");
				for (const s of snapshot) {
					if (withBuckets) {
						const buckets = Object.entries(s.buckets ?? {}).sort(([a], [b]) => Number(a) - Number(b));
						for (const [le, n] of buckets)
							out.push(`${name}_bucket${labels(defaultLabels, s.labels, { le })} ${num(n)}`);
						out.push(`${name}_bucket${labels(defaultLabels, s.labels, { le: "+Inf" })} ${num(s.count)}`);
					} else
						for (const [q, v] of Object.entries(s.quantiles ?? {}))
							out.push(`${name}${labels(defaultLabels, s.labels, { quantile: q })} ${num(v)}`);
					out.push(`${name}_sum${labels(defaultLabels, s.labels)} ${num(s.sum)}`);
					out.push(`${name}_count${labels(defaultLabels, s.labels)} ${num(s.count)}`);
				}
				break;
			}
			default:
				continue;
		}
	}
	return out.length ? `${out.join("\n")}\n` : "";
}

/**
 * Moleculer's Prometheus reporter (its own HTTP server on METRICS_PORT, path, gzip) with the renderer
 * above. The only default label is the Moleculer namespace.
 */
export class ForgePrometheusReporter extends MetricReporters.Prometheus {
	constructor(opts: { port: number; host?: string; path?: string }) {
		super({ path: "/metrics", ...opts });
	}

	override generatePrometheusResponse(): string {
		const self = this as unknown as { registry: MetricRegistry };
		return renderPrometheus(self.registry, { namespace: self.registry.broker.namespace });
	}
}
