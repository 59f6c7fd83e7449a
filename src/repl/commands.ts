/**
 * Operator REPL commands (moleculer-repl custom commands). Each domain exports its own list from
 * src/<svc>/repl.ts; they call actions over the transporter, so a REPL node needs no local services.
 */
import { aiReplCommands } from "../ai/repl";
import { contextReplCommands } from "../context/repl";
import { orgsReplCommands } from "../orgs/repl";
import { paymentsReplCommands } from "../payments/repl";
import { projectsReplCommands } from "../projects/repl";
import { tasksReplCommands } from "../tasks/repl";
import { usersReplCommands } from "../users/repl";
import type { ReplCommand } from "./command";

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

export const clusterReplCommands: ReplCommand[] = [
	{
		command: "health",
		description: "Each node's dependencies and readiness (ops.health on every node)",
		async action(broker) {
			const nodes = broker.registry.getNodeList({ onlyAvailable: true, withServices: false }) as Array<{
				id: string;
			}>;
			for (const n of nodes) {
				try {
					print(await broker.call("ops.health", {}, { nodeID: n.id, timeout: 3000 }));
				} catch (err) {
					print({ nodeID: n.id, error: (err as Error).message });
				}
			}
		}
	},
	{
		command: "breakers",
		description: "Circuit-breaker state of every endpoint this node has called",
		action(broker) {
			const store = (
				broker as unknown as {
					CircuitBreakerStore?: Map<string, { state: string; count: number; failures: number }>;
				}
			).CircuitBreakerStore;
			const rows = [...(store?.entries() ?? [])].map(([ep, s]) => ({
				endpoint: ep,
				state: s.state,
				count: s.count,
				failures: s.failures
			}));
			console.table(rows);
		}
	}
];

/** Every command the REPL offers; domain modules add theirs here. */
export function allReplCommands(): ReplCommand[] {
	return [
		...clusterReplCommands,
		...usersReplCommands,
		...projectsReplCommands,
		...tasksReplCommands,
		...paymentsReplCommands,
		...orgsReplCommands,
		...aiReplCommands,
		...contextReplCommands
	];
}
