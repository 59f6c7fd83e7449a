/**
 * Operator REPL commands for the context service (the Python node), called over the transporter:
 *
 *   context-status <projectId>    what the context service has indexed for the project
 *   context-reindex <projectId>   index the project's head version now (after a lost event, a
 *                                 rebuilt index, or to check that indexing works); idempotent
 */
import type { ServiceBroker } from "moleculer";
import type { ReplCommand } from "../repl/command";

const print = (v: unknown) => console.log(JSON.stringify(v, null, 2));
const failure = (err: unknown) => {
	const e = err as { message?: string; type?: string; code?: number; data?: unknown };
	return {
		error: {
			type: e.type ?? "ERROR",
			code: e.code ?? null,
			message: e.message ?? String(err),
			data: e.data ?? null
		}
	};
};

/** The head version, from projects (the authority on versions). */
async function headVersion(broker: ServiceBroker, projectId: string): Promise<number> {
	const r = await broker.call<{ project: { headVersion: number } }, unknown>("projects.inspect", {
		projectId,
		versions: 1
	});
	return r.project.headVersion;
}

export const contextReplCommands: ReplCommand[] = [
	{
		command: "context-status <projectId>",
		description: "What the context service has indexed for a project (context.status)",
		async action(broker, args) {
			try {
				print(await broker.call("context.status", { projectId: String(args.projectId) }, { timeout: 10_000 }));
			} catch (err) {
				print(failure(err));
			}
		}
	},
	{
		command: "context-reindex <projectId>",
		description: "Index a project's head version now (context.index; idempotent)",
		async action(broker, args) {
			const projectId = String(args.projectId);
			try {
				const version = await headVersion(broker, projectId);
				if (version < 1)
					return print({ projectId, version, indexed: false, reason: "the project has no version yet" });
				const t = Date.now();
				const r = await broker.call("context.index", { projectId, version }, { timeout: 600_000 });
				print({ ...(r as object), projectId, version, ms: Date.now() - t });
			} catch (err) {
				print(failure(err));
			}
		}
	}
];
