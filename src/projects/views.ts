/**
 * The projects service's answers: the functions that turn records into response bodies, and the
 * response schemas of the REST contract they satisfy (src/http/schema.ts).
 */
import { Type } from "@sinclair/typebox";
import { Str, Uuid, DateTime, Count, Nullable, List, Named } from "../http/schema";
import type { ProjectRole } from "./access";
import { fileModeOf } from "./manifest";
import type { Manifest, ManifestEntry } from "./manifest";
import type { MemberRecord, ProjectRecord, SandboxRecord, VersionRecord } from "./repository";

export function iso(d: Date | null): string | null {
	return d ? new Date(d).toISOString() : null;
}

export function projectView(p: ProjectRecord, role: ProjectRole) {
	return {
		id: p.id,
		name: p.name,
		description: p.description,
		status: p.status,
		ownerId: p.ownerId,
		orgId: p.orgId,
		role,
		headVersion: p.headVersion,
		fileCount: p.fileCount,
		totalBytes: p.totalBytes,
		createdAt: iso(p.createdAt),
		updatedAt: iso(p.updatedAt),
		archivedAt: iso(p.archivedAt),
		deletedAt: iso(p.deletedAt)
	};
}

export function versionView(v: VersionRecord) {
	return {
		projectId: v.projectId,
		number: v.number,
		parentNumber: v.parentNumber,
		message: v.message,
		authorId: v.authorId,
		taskId: v.taskId,
		fileCount: v.fileCount,
		totalBytes: v.totalBytes,
		createdAt: iso(v.createdAt)
	};
}

export function entryView(entry: ManifestEntry) {
	return { sha256: entry.sha256, size: entry.size, mode: fileModeOf(entry) };
}

/** A manifest's files in path order, optionally only those under `prefix` (ending in "/"). */
export function filesView(manifest: Manifest, prefix = "") {
	return Object.entries(manifest)
		.filter(([p]) => p.startsWith(prefix))
		.map(([p, e]) => ({ path: p, ...entryView(e) }));
}

export function memberView(m: MemberRecord) {
	return {
		userId: m.userId,
		role: m.role,
		addedBy: m.addedBy,
		createdAt: iso(m.createdAt),
		updatedAt: iso(m.updatedAt)
	};
}

export function sandboxView(s: SandboxRecord, heartbeatTimeoutS: number) {
	return {
		projectId: s.projectId,
		state: s.state,
		version: s.version,
		stateChangedAt: iso(s.stateChangedAt),
		startedAt: iso(s.startedAt),
		stoppedAt: iso(s.stoppedAt),
		lastHeartbeatAt: iso(s.lastHeartbeatAt),
		failureReason: s.failureReason,
		heartbeatTimeoutS
	};
}

const UserId = () => Str(128);
const Sha256 = () => Type.String({ pattern: "^[0-9a-f]{64}$", maxLength: 64 });
const FilePath = () => Str(4096);
const Mode = () => Type.Integer({ format: "int32", minimum: 0, maximum: 0o177777 });

export const Project = Named("Project", {
	id: Uuid(),
	name: Str(200),
	description: Str(5000),
	status: Str(32),
	ownerId: UserId(),
	orgId: Nullable(Uuid("The organisation that owns the project; null for a user's own")),
	role: Str(32),
	headVersion: Count(),
	fileCount: Count(),
	totalBytes: Count(),
	createdAt: Nullable(DateTime()),
	updatedAt: Nullable(DateTime()),
	archivedAt: Nullable(DateTime()),
	deletedAt: Nullable(DateTime()),
	purgeAfter: Type.Optional(DateTime("When a deleted project is purged"))
});

export const Version = Named("Version", {
	projectId: Uuid(),
	number: Count(),
	parentNumber: Nullable(Count()),
	message: Str(2000),
	authorId: UserId(),
	taskId: Nullable(Str(128)),
	fileCount: Count(),
	totalBytes: Count(),
	createdAt: Nullable(DateTime())
});

export const FileEntry = Named("FileEntry", { path: FilePath(), sha256: Sha256(), size: Count(), mode: Mode() });
const Blob = Type.Object({ sha256: Sha256(), size: Count(), mode: Mode() });

export const Member = Named("Member", {
	userId: UserId(),
	role: Str(32),
	addedBy: Nullable(UserId()),
	createdAt: Nullable(DateTime()),
	updatedAt: Nullable(DateTime())
});

export const Sandbox = Named("Sandbox", {
	projectId: Uuid(),
	state: Str(32),
	version: Nullable(Count()),
	stateChangedAt: Nullable(DateTime()),
	startedAt: Nullable(DateTime()),
	stoppedAt: Nullable(DateTime()),
	lastHeartbeatAt: Nullable(DateTime()),
	failureReason: Nullable(Str(2000)),
	heartbeatTimeoutS: Count()
});

export const Diff = Named("Diff", {
	projectId: Uuid(),
	from: Count(),
	to: Count(),
	added: List(FileEntry, 100_000),
	removed: List(FileEntry, 100_000),
	modified: List(Type.Object({ path: FilePath(), from: Blob, to: Blob }), 100_000),
	renamed: List(
		Type.Object({ from: FilePath(), to: FilePath(), sha256: Sha256(), size: Count(), mode: Mode() }),
		100_000
	),
	patches: Type.Optional(
		List(Type.Object({ path: FilePath(), kind: Str(32), patch: Type.Optional(Str(10_000_000)) }), 100_000)
	)
});

export const views = {
	create: Project,
	list: Type.Object({ items: List(Project, 200), nextCursor: Nullable(Str(512)) }),
	get: Project,
	update: Project,
	remove: Project,
	restore: Project,
	transfer: Project,
	members: Type.Object({ items: List(Member, 200), nextCursor: Nullable(Str(512)) }),
	setMember: Type.Object({ projectId: Uuid(), userId: UserId(), role: Str(32) }),
	removeMember: Type.Object({ projectId: Uuid(), userId: UserId(), removed: Type.Boolean() }),
	versions: Type.Object({ items: List(Version, 200), nextCursor: Nullable(Str(512)) }),
	version: Type.Composite([Version, Type.Object({ files: List(FileEntry, 100_000) })], { $id: "VersionWithFiles" }),
	commit: Version,
	tree: Type.Object({ projectId: Uuid(), version: Count(), files: List(FileEntry, 100_000) }),
	file: Type.String({ contentEncoding: "binary", maxLength: 50 * 1024 * 1024, description: "The file's bytes" }),
	diff: Diff,
	sandbox: Sandbox,
	setSandbox: Sandbox
};
