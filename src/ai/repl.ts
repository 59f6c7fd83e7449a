/**
 * Operator REPL commands for the ai service. Circuit state is per ai node, so each command asks
 * every node hosting `ai`.
 *
 *   ai-deployments               circuit, cooldown, in-flight and failures of each deployment, per node
 *   ai-reset [deploymentId]      close circuits and clear cooldowns (all deployments without an id)
 *   ai-capacity                  worker slots and busy slots per node
 */
import type { ServiceBroker } from "moleculer";
import type { ReplCommand } from "../repl/command";
import type { DeploymentHealth } from "./router";

function aiNodes(broker: ServiceBroker): string[] {
	const list = broker.registry.getServiceList({
		onlyAvailable: true,
		skipInternal: true,
		withActions: false
	}) as Array<{ name: string; nodeID: string }>;
	return [...new Set(list.filter(s => s.name === "ai").map(s => s.nodeID))].sort();
}

async function eachNode<T>(
	broker: ServiceBroker,
	action: string,
	params: Record<string, unknown>,
	show: (nodeID: string, r: T) => void
) {
	const nodes = aiNodes(broker);
	if (!nodes.length) console.log("No ai node is available.");
	for (const nodeID of nodes) {
		try {
			show(nodeID, await broker.call<T, Record<string, unknown>>(action, params, { nodeID, timeout: 3000 }));
		} catch (err) {
			console.log(`${nodeID}: ${(err as Error).message}`);
		}
	}
}

const table = (nodeID: string, r: { deployments: DeploymentHealth[] }) => {
	console.log(`node ${nodeID}`);
	console.table(
		r.deployments.map(d => ({
			deployment: d.id,
			model: d.model,
			provider: d.provider,
			circuit: d.circuit,
			availableIn: d.availableAt ? `${Math.ceil((d.availableAt - Date.now()) / 1000)} s` : "",
			inflight: d.inflight,
			ok: d.successes,
			failed: d.failures,
			lastError: d.lastError ?? ""
		}))
	);
};

export const aiReplCommands: ReplCommand[] = [
	{
		command: "ai-deployments",
		description: "AI deployments on every ai node: circuit state, cooldown, in-flight attempts, failures",
		action: broker => eachNode(broker, "ai.health", {}, table)
	},
	{
		command: "ai-reset [deploymentId]",
		description: "Close the circuit and clear the cooldown of a deployment (or all) on every ai node",
		action: (broker, args) =>
			eachNode(broker, "ai.resetDeployment", args.deploymentId ? { id: String(args.deploymentId) } : {}, table)
	},
	{
		command: "ai-capacity",
		description: "Worker slots and busy slots of every ai node",
		action: broker => eachNode(broker, "ai.capacity", {}, (_n, r) => console.log(JSON.stringify(r)))
	}
];
