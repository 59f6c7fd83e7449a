/** What the projects service's handlers see as `this`: the wired use cases and a few shell helpers. */
import type { DurableThis } from "../../mixins/durable-events.mixin";
import type { Ctx } from "../../src/kit/service";
import type { OrgRoleOfMember } from "../../src/projects/access";
import type { ChangeOp } from "../../src/projects/changeset";
import type { ProjectsConfig } from "../../src/projects/config";
import type { SandboxRecord } from "../../src/projects/repository";
import type { ProjectsUseCases } from "../../src/projects/use-cases";
import type { sandboxView } from "../../src/projects/views";

export interface ProjectsThis extends DurableThis, ProjectsUseCases {
	cfg: ProjectsConfig;
	sweepTimer: NodeJS.Timeout | null;
	sweeping: Promise<unknown> | null;
	keepOrgKeyInOrg(ctx: Ctx<{ id?: unknown; projectId?: unknown; orgId?: string }>): Promise<void>;
	orgMemberships(ctx: Ctx<object>, userId: string): Promise<Array<{ orgId: string; role: OrgRoleOfMember }>>;
	sandboxOut(s: SandboxRecord): ReturnType<typeof sandboxView>;
	sweepOnce(): Promise<{ failedSandboxes: number; purgedProjects: number }>;
	scheduleSweep(): void;
}

/** Parameter schemas the public and internal actions share. */
export const idParam = { type: "string", min: 1, max: 64 } as const;
export const userIdParam = { type: "string", min: 1, max: 128 } as const;
export const versionParam = { type: "number", integer: true, min: 0, max: 2_147_483_647, convert: true } as const;
const changeItem = {
	type: "object",
	strict: "remove",
	props: {
		op: { type: "enum", values: ["add", "modify", "delete", "rename"] },
		path: { type: "string", optional: true },
		from: { type: "string", optional: true },
		to: { type: "string", optional: true },
		content: { type: "string", optional: true },
		encoding: { type: "enum", values: ["utf8", "base64"], optional: true },
		mode: { type: "number", integer: true, optional: true }
	}
} as const;
export const commitParams = {
	baseVersion: { ...versionParam, convert: false },
	message: { type: "string", min: 1, max: 2000, trim: true },
	changes: { type: "array", min: 1, max: 100_000, items: changeItem }
} as const;

/** The params of a commit (`commitParams`), as the handlers receive them. */
export type Commit = { baseVersion: number; message: string; changes: ChangeOp[] };
