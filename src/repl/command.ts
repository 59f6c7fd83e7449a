/**
 * One operator REPL command (a moleculer-repl custom command). A leaf: each domain's src/<domain>/repl.ts
 * and the registry in src/repl/commands.ts import it; it imports none of them.
 */
import type { ServiceBroker } from "moleculer";

export interface ReplCommand {
	command: string;
	description: string;
	alias?: string | string[];
	options?: Array<{ option: string; description: string }>;
	action(
		broker: ServiceBroker,
		args: Record<string, unknown> & { options: Record<string, unknown> },
		helpers?: unknown
	): Promise<void> | void;
}
