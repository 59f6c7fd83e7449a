/**
 * Operator REPL commands for the task queue. They call the tasks service's internal actions over
 * the transporter, so a REPL node needs no local services.
 *
 *   tasks-stats                 depth, expected wait and recent waits per tier
 *   tasks-inspect <taskId>      one task: state, lease, node, attempts, settlement
 *   tasks-requeue <taskId>      a queued task skips its backoff; a running one loses its lease and queues again
 *   tasks-cancel <taskId>       cancel as its owner would (running: the worker is told to stop)
 *   tasks-drain <nodeID> [--undo]  stop (or resume) leasing to an ai node; its in-flight tasks finish
 *   tasks-prune [--dry-run]     one retention run now: finished tasks past TASKS_RETENTION_DAYS into the
 *                               daily summaries, then the event bookkeeping (--dry-run: count only)
 *   tasks-history <userId>      a user's daily summaries of pruned tasks (as submitter or payer)
 */
import type { ServiceBroker } from "moleculer";
import type { ReplCommand } from "../repl/command";

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));

async function run(fn: () => Promise<unknown>) {
	try {
		print(await fn());
	} catch (err) {
		print({ error: (err as { type?: string }).type ?? "ERROR", message: (err as Error).message });
	}
}

export const tasksReplCommands: ReplCommand[] = [
	{
		command: "tasks-stats",
		description: "Queue depth, expected wait and recent waits per tier",
		action: (broker: ServiceBroker) => run(() => broker.call("tasks.stats", {}))
	},
	{
		command: "tasks-inspect <taskId>",
		description: "One task: state, lease, node, attempts, settlement",
		action: (broker: ServiceBroker, args) => run(() => broker.call("tasks.inspect", { id: String(args.taskId) }))
	},
	{
		command: "tasks-requeue <taskId>",
		description: "Queue a task again now (running: its lease is revoked)",
		action: (broker: ServiceBroker, args) => run(() => broker.call("tasks.requeue", { id: String(args.taskId) }))
	},
	{
		command: "tasks-cancel <taskId>",
		description: "Cancel a queued or running task; the unused hold is released",
		action: (broker: ServiceBroker, args) =>
			run(() => broker.call("tasks.adminCancel", { id: String(args.taskId) }))
	},
	{
		command: "tasks-drain <nodeID>",
		description: "Stop leasing tasks to an ai node (in-flight tasks finish); --undo resumes",
		options: [{ option: "--undo", description: "resume leasing to the node" }],
		action: (broker: ServiceBroker, args) =>
			run(() => broker.call("tasks.drain", { nodeID: String(args.nodeID), undo: !!args.options?.undo }))
	},
	{
		command: "tasks-prune",
		description: "Run retention now: old finished tasks into daily summaries, then outbox/inbox; --dry-run counts",
		options: [{ option: "--dry-run", description: "count what would be pruned, delete nothing" }],
		action: (broker: ServiceBroker, args) =>
			run(() => broker.call("tasks.prune", { dryRun: args.options?.dryRun === true }, { timeout: 600_000 }))
	},
	{
		command: "tasks-history <userId>",
		description: "A user's daily summaries of pruned tasks (as submitter or payer), newest first",
		action: (broker: ServiceBroker, args) =>
			run(() => broker.call("tasks.history", { userId: String(args.userId) }))
	}
];
