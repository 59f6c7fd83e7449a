/** The projects service's settings, read from the environment (documented in docs/projects.md). */
import type { EnvReader } from "../env-reader";
import { DEFAULT_CHANGESET_LIMITS } from "./changeset";
import type { ChangeSetLimits } from "./changeset";

const MiB = 1024 * 1024;

export interface ProjectsConfig {
	/** Where blob bytes live: rows of `project_blobs` ("pg") or files under `blobDir` ("fs"). */
	blobStore: "pg" | "fs";
	/** Root of the filesystem blob store; null means `<DATA_DIR>/blobs`. */
	blobDir: string | null;
	/** fsync blob files and directories ("fs" store only). */
	blobFsync: boolean;
	limits: ChangeSetLimits;
	cache: {
		/** Lifetime of cached manifests and blobs; they never go stale (immutable), the TTL only bounds memory. */
		ttlS: number;
		/** Blobs up to this size are cached; larger ones are always read from the store. */
		blobMaxBytes: number;
	};
	diff: {
		/** Unified text patches are computed for at most this many paths per diff request. */
		maxPatchFiles: number;
		/** Sides larger than this are reported as too large to diff. */
		maxFileBytes: number;
	};
	/** Upper bound on `readContext`'s `maxBytes`. */
	contextMaxBytes: number;
	sandbox: {
		/** A running sandbox whose last heartbeat is older than this becomes failed. */
		heartbeatTimeoutS: number;
		/** A sandbox stuck in provisioning longer than this becomes failed. */
		provisionTimeoutS: number;
		/** How often each node runs the (idempotent) sandbox and purge sweeps; 0 turns them off. */
		sweepMs: number;
	};
	/** Soft-deleted projects are purged (hard-deleted) this long after deletion by the sweep. */
	purgeAfterS: number;
	/** GC spares unreferenced blobs younger than this, for commits still in flight on the "fs" store. */
	gcGraceS: number;
}

export function loadProjectsConfig(r: EnvReader): ProjectsConfig {
	const limits: ChangeSetLimits = {
		maxFileBytes: r.int("PROJECTS_MAX_FILE_BYTES", DEFAULT_CHANGESET_LIMITS.maxFileBytes, 1, 64 * MiB),
		maxProjectBytes: r.int(
			"PROJECTS_MAX_PROJECT_BYTES",
			DEFAULT_CHANGESET_LIMITS.maxProjectBytes,
			1,
			16 * 1024 * MiB
		),
		maxFiles: r.int("PROJECTS_MAX_FILES", DEFAULT_CHANGESET_LIMITS.maxFiles, 1, 1_000_000),
		maxOps: r.int("PROJECTS_MAX_CHANGESET_OPS", DEFAULT_CHANGESET_LIMITS.maxOps, 1, 100_000)
	};
	if (limits.maxFileBytes > limits.maxProjectBytes) {
		r.problems.push("PROJECTS_MAX_FILE_BYTES must not exceed PROJECTS_MAX_PROJECT_BYTES");
	}
	const blobDir = r.optStr("PROJECTS_BLOB_DIR");
	return {
		blobStore: r.oneOf("PROJECTS_BLOB_STORE", "pg", ["pg", "fs"] as const),
		blobDir,
		blobFsync: r.bool("PROJECTS_BLOB_FSYNC", true),
		limits,
		cache: {
			ttlS: r.int("PROJECTS_CACHE_TTL_S", 3600, 1, 30 * 86_400),
			blobMaxBytes: r.int("PROJECTS_CACHE_BLOB_MAX_BYTES", 64 * 1024, 0, 16 * MiB)
		},
		diff: {
			maxPatchFiles: r.int("PROJECTS_DIFF_MAX_PATCH_FILES", 200, 0, 10_000),
			maxFileBytes: r.int("PROJECTS_DIFF_MAX_FILE_BYTES", MiB, 1, 64 * MiB)
		},
		contextMaxBytes: r.int("PROJECTS_CONTEXT_MAX_BYTES", 2 * MiB, 1, 256 * MiB),
		sandbox: {
			heartbeatTimeoutS: r.int("PROJECTS_SANDBOX_HEARTBEAT_TIMEOUT_S", 60, 1, 86_400),
			provisionTimeoutS: r.int("PROJECTS_SANDBOX_PROVISION_TIMEOUT_S", 600, 1, 86_400),
			sweepMs: r.int("PROJECTS_SWEEP_MS", 10_000, 0, 3_600_000)
		},
		purgeAfterS: r.int("PROJECTS_PURGE_AFTER_S", 30 * 86_400, 0, 10 * 365 * 86_400),
		gcGraceS: r.int("PROJECTS_GC_GRACE_S", 3600, 0, 30 * 86_400)
	};
}
