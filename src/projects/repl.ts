/**
 * Operator REPL commands for projects (moleculer-repl custom commands). They call the projects
 * service's protected actions over the transporter, so a REPL node needs no local services.
 *
 *   projects-show <projectId> [-n 20]         metadata, members, latest versions, sandbox state
 *   projects-verify <projectId> <version>     re-hash every blob of a version from the store
 *   projects-purge [projectId] [--older-than] hard-delete soft-deleted projects
 *   projects-gc [--dry-run] [--grace <s>]     delete blobs no version references
 *   projects-sweep                            run the sandbox-timeout and purge sweep now
 */
import type { ServiceBroker } from "moleculer";
import type { ReplCommand } from "../repl/command";

interface InspectResult {
	project: {
		id: string;
		name: string;
		status: string;
		ownerId: string;
		headVersion: number;
		fileCount: number;
		totalBytes: number;
		createdAt: string;
		deletedAt: string | null;
	};
	members: Array<{ userId: string; role: string }>;
	versions: Array<{
		number: number;
		message: string;
		authorId: string;
		taskId: string | null;
		fileCount: number;
		totalBytes: number;
		createdAt: string;
	}>;
	sandbox: {
		state: string;
		version: number | null;
		stateChangedAt: string;
		lastHeartbeatAt: string | null;
		failureReason: string | null;
	} | null;
}

/** Long operations (GC, verifying a large version) must not hit the default request timeout. */
const LONG = { timeout: 0 };

function intOption(value: unknown, name: string): number | undefined {
	if (value === undefined) return undefined;
	const n = Number(value);
	if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`);
	return n;
}

/** The `projects-show` text: one screen for an operator. */
function formatProject(r: InspectResult): string {
	const p = r.project;
	const lines = [
		`${p.name}  (${p.id})`,
		`  status ${p.status}${p.deletedAt ? ` since ${p.deletedAt}` : ""}, owner ${p.ownerId}, created ${p.createdAt}`,
		`  head v${p.headVersion}: ${p.fileCount} files, ${p.totalBytes} bytes`,
		`  members: ${r.members.map(m => `${m.userId} (${m.role})`).join(", ") || "none"}`,
		r.sandbox
			? `  sandbox: ${r.sandbox.state}${r.sandbox.version !== null ? ` at v${r.sandbox.version}` : ""} since ${r.sandbox.stateChangedAt}` +
				(r.sandbox.lastHeartbeatAt ? `, last heartbeat ${r.sandbox.lastHeartbeatAt}` : "") +
				(r.sandbox.failureReason ? `, failed: ${r.sandbox.failureReason}` : "")
			: "  sandbox: none",
		"  versions:",
		...r.versions.map(
			v =>
				`    v${v.number}  ${v.createdAt}  ${v.authorId}${v.taskId ? ` (task ${v.taskId})` : ""}  ${v.fileCount} files, ${v.totalBytes} bytes  ${JSON.stringify(v.message)}`
		)
	];
	return lines.join("\n");
}

export const projectsReplCommands: ReplCommand[] = [
	{
		command: "projects-show <projectId>",
		description: "A project: metadata, members, latest versions and sandbox state",
		options: [{ option: "-n, --versions <count>", description: "how many versions to list (default 20)" }],
		async action(broker: ServiceBroker, args) {
			const versions = intOption(args.options?.versions, "versions") ?? 20;
			const r = (await broker.call("projects.inspect", {
				projectId: String(args.projectId),
				versions
			})) as InspectResult;
			console.log(formatProject(r));
		}
	},
	{
		command: "projects-verify <projectId> <version>",
		description:
			"Re-hash every blob of a version from the blob store; lists missing, corrupt and wrongly sized blobs",
		async action(broker: ServiceBroker, args) {
			const version = intOption(args.version, "version")!;
			const r = (await broker.call(
				"projects.verifyVersion",
				{ projectId: String(args.projectId), version },
				LONG
			)) as {
				checked: number;
				ok: boolean;
				problems: Array<{ path: string; sha256: string; problem: string }>;
			};
			console.log(
				r.ok ? `ok: ${r.checked} blobs verified` : `${r.problems.length} of ${r.checked} blobs are bad:`
			);
			for (const p of r.problems) console.log(`  ${p.problem.padEnd(13)} ${p.sha256}  ${p.path}`);
		}
	},
	{
		command: "projects-purge [projectId]",
		description:
			"Hard-delete soft-deleted projects: one by id (now), or all deleted longer ago than --older-than (default PROJECTS_PURGE_AFTER_S)",
		options: [{ option: "--older-than <seconds>", description: "purge projects deleted at least this long ago" }],
		async action(broker: ServiceBroker, args) {
			const olderThanS = intOption(args.options?.olderThan, "older-than");
			const projectId = args.projectId === undefined ? undefined : String(args.projectId);
			const r = (await broker.call("projects.purge", { projectId, olderThanS }, LONG)) as { purged: string[] };
			console.log(`purged ${r.purged.length} project(s)${r.purged.length ? `: ${r.purged.join(", ")}` : ""}`);
		}
	},
	{
		command: "projects-gc",
		description: "Delete blobs that no version of any project references (safe while commits run)",
		options: [
			{ option: "--dry-run", description: "count what would be deleted, delete nothing" },
			{
				option: "--grace <seconds>",
				description: "spare unreferenced blobs younger than this (default PROJECTS_GC_GRACE_S)"
			}
		],
		async action(broker: ServiceBroker, args) {
			const graceS = intOption(args.options?.grace, "grace");
			const r = (await broker.call("projects.gc", { dryRun: args.options?.dryRun === true, graceS }, LONG)) as {
				scanned: number;
				deleted: number;
				spared: number;
				removedTempFiles: number;
			};
			console.log(
				`${args.options?.dryRun === true ? "would delete" : "deleted"} ${r.deleted} of ${r.scanned} blobs; spared ${r.spared} young ones; removed ${r.removedTempFiles} stale temp files`
			);
		}
	},
	{
		command: "projects-sweep",
		description: "Fail sandboxes whose heartbeats stopped and purge expired deleted projects, now",
		async action(broker: ServiceBroker) {
			const r = (await broker.call("projects.sweep", {})) as { failedSandboxes: number; purgedProjects: number };
			console.log(`${r.failedSandboxes} sandbox(es) failed on timeout, ${r.purgedProjects} project(s) purged`);
		}
	}
];
