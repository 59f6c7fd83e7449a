/**
 * Operator REPL (moleculer-repl). In cluster mode (TRANSPORTER set) it joins the cluster as a node
 * that hosts no domain services and talks to the others over NATS. In embedded mode it joins a
 * running `./forge start` the same way, through the loopback NATS named in DATA_DIR/embedded.json;
 * with no platform running it starts the whole platform in this process with the REPL attached.
 * Built-in commands: nodes, services, actions, call, dcall, emit, metrics, info; domain commands
 * are listed by `help`.
 */
import { loadConfigOrExit } from "../src/config";
import { createNode } from "../app/node";
import { startEmbeddedPlatform } from "../app/embedded";
import { allReplCommands } from "../src/repl/commands";
import { liveLink } from "../src/runtime/embedded-link";

async function main() {
	let config = loadConfigOrExit();
	const cluster = config.transporter != null;
	config = {
		...config,
		nodeId: process.env.NODE_ID ?? `repl-${process.pid}`,
		logLevel: (process.env.LOG_LEVEL as typeof config.logLevel) ?? "warn"
	};
	const link = cluster ? null : liveLink(config.dataDir);
	// Joining hosts no services, so it needs no database: the running platform has the embedded one.
	const platform = cluster || link ? null : await startEmbeddedPlatform(config);
	const node =
		platform?.node ??
		(await createNode(link ? { ...config, namespace: link.namespace } : config, {
			services: [],
			...(link ? { transporter: { url: link.natsUrl, token: link.token } } : {})
		}));
	(node.broker.options as { replOptions?: unknown }).replOptions = {
		customCommands: allReplCommands(),
		delimiter: "forgefluid $ "
	};
	console.log(
		cluster
			? `REPL joined cluster namespace '${config.namespace}' as ${node.broker.nodeID}`
			: link
				? `REPL joined the embedded platform (pid ${link.pid}) through ${link.natsUrl} as ${node.broker.nodeID}`
				: "REPL on the embedded platform (all services in this process)"
	);
	const repl = (await node.broker.repl()) as unknown as { on?(ev: string, fn: () => void): void } | undefined;
	const stop = () => (platform ?? node).stop().then(() => process.exit(0));
	repl?.on?.("exit", () => void stop());
	process.on("SIGTERM", () => void stop());
}

main().catch(err => {
	console.error("REPL failed to start:", err?.message ?? err);
	process.exit(1);
});
