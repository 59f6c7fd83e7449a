/**
 * Operator REPL (moleculer-repl). In cluster mode (TRANSPORTER set) it joins the cluster as a node
 * that hosts no domain services and talks to the others over NATS; in embedded mode it starts the
 * whole platform in this process with the REPL attached (the embedded database allows one process).
 * Built-in commands: nodes, services, actions, call, dcall, emit, metrics, info; domain commands
 * are listed by `help`.
 */
import { loadConfigOrExit } from "../src/config";
import { createNode } from "../app/node";
import { allReplCommands } from "../src/repl/commands";

async function main() {
	let config = loadConfigOrExit();
	const cluster = config.transporter != null;
	config = {
		...config,
		nodeId: process.env.NODE_ID ?? `repl-${process.pid}`,
		logLevel: (process.env.LOG_LEVEL as typeof config.logLevel) ?? "warn"
	};
	const node = await createNode(config, { services: cluster ? [] : config.services });
	(node.broker.options as { replOptions?: unknown }).replOptions = {
		customCommands: allReplCommands(),
		delimiter: "forgefluid $ "
	};
	console.log(
		cluster
			? `REPL joined cluster namespace '${config.namespace}' as ${node.broker.nodeID}`
			: "REPL on the embedded platform (all services in this process)"
	);
	const repl = (await node.broker.repl()) as unknown as { on?(ev: string, fn: () => void): void } | undefined;
	const stop = () => node.stop().then(() => process.exit(0));
	repl?.on?.("exit", () => void stop());
	process.on("SIGTERM", () => void stop());
}

main().catch(err => {
	console.error("REPL failed to start:", err?.message ?? err);
	process.exit(1);
});
