/**
 * Starts a ForgeFluid node. With no environment: the whole platform in one process on an embedded
 * PostgreSQL under ./.data, with the Python context node beside it over a loopback NATS
 * (app/embedded.ts). With TRANSPORTER/DATABASE_URL/REDIS_URL/AMQP_URL: one cluster node hosting the
 * services named in SERVICES.
 */
import { loadConfigOrExit } from "../src/config";
import { createNode } from "../app/node";
import { startEmbeddedPlatform } from "../app/embedded";

async function main() {
	const config = loadConfigOrExit();
	const embedded = config.transporter ? null : await startEmbeddedPlatform(config);
	const node = embedded?.node ?? (await createNode(config));
	const base = node.config.http.publicUrl;
	const mode = node.config.transporter ? `cluster node ${node.broker.nodeID}` : "embedded (single process)";
	const lines = [`ForgeFluid is running — ${mode}; services: ${node.config.services.join(", ")}`];
	if (node.config.services.includes("api"))
		lines.push(
			`  API      ${base}/api/v1`,
			`  Docs     ${base}/api/docs   (OpenAPI: ${base}/api/openapi.json)`,
			`  Health   ${base}/health/ready`
		);
	// Embedded mode: on the API port; a cluster node: on METRICS_PORT only.
	if (!node.config.transporter) lines.push(`  Metrics  ${base}/metrics`);
	if (node.config.metricsPort) lines.push(`  Metrics  http://127.0.0.1:${node.config.metricsPort}/metrics`);
	if (!node.config.transporter) lines.push(`  Data     ${node.config.dataDir}`);
	if (embedded)
		lines.push(
			embedded.nats
				? `  NATS     ${embedded.nats.url} (loopback; ./forge repl joins through ${node.config.dataDir}/embedded.json)`
				: "  NATS     none (./forge repl cannot join)",
			embedded.degraded
				? `  Context  degraded: ${embedded.degraded}`
				: `  Context  Python node pid ${embedded.contextPid()}`
		);
	lines.push("Press Ctrl-C to stop.");
	console.log(lines.join("\n"));

	let signals = 0;
	const shutdown = async (sig: string) => {
		if (++signals > 1) {
			console.error("Forced exit.");
			process.exit(1);
		}
		console.log(`\n${sig}: shutting down (finishing in-flight requests)…`);
		try {
			await (embedded ?? node).stop();
			process.exit(0);
		} catch (err) {
			console.error("Shutdown failed:", err);
			process.exit(1);
		}
	};
	process.on("SIGINT", () => void shutdown("SIGINT"));
	process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

main().catch(err => {
	console.error("ForgeFluid failed to start:", err?.message ?? err);
	process.exit(1);
});
