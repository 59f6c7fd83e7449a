/**
 * Typed errors of the projects domain core: DomainErrors (src/errors.ts) whose details are always
 * `{ field, reason }`, with the status each kind stands for (422 invalid input, 413 over a limit,
 * 409 conflicts with the parent version, 500 store integrity).
 */
import { DomainError } from "../errors";

export interface ProjectErrorDetails {
	/** Where in the request the problem is, e.g. `changes[3].path` or `path`. */
	field: string;
	/** Human-readable, stable enough for clients to show. */
	reason: string;
	/** The offending (normalised where possible) path, when there is one. */
	path?: string;
	/** The limit that was exceeded and the value that exceeded it. */
	limit?: number;
	actual?: number;
}

export abstract class ProjectDomainError extends DomainError {
	declare readonly details: ProjectErrorDetails;

	constructor(code: string, status: 409 | 413 | 422 | 500, message: string, details: ProjectErrorDetails) {
		super(code, status, message, details);
		this.name = new.target.name;
	}
}

/** A path breaks a rule in paths.ts. */
export class PathInvalidError extends ProjectDomainError {
	constructor(message: string, details: ProjectErrorDetails) {
		super("PATH_INVALID", 422, message, details);
	}
}

export type ChangeSetInvalidCode =
	| "CHANGESET_INVALID" // malformed operation (unknown op, missing field, bad encoding, bad mode)
	| "CHANGESET_EMPTY"
	| "DUPLICATE_PATH_IN_CHANGESET";

/** The change set itself is malformed, independent of the parent version. */
export class ChangeSetInvalidError extends ProjectDomainError {
	declare readonly code: ChangeSetInvalidCode;
	constructor(code: ChangeSetInvalidCode, message: string, details: ProjectErrorDetails) {
		super(code, 422, message, details);
	}
}

export type PathConflictCode =
	| "PATH_EXISTS" // add onto an existing path, rename onto an existing target
	| "PATH_NOT_FOUND" // modify/delete/rename of a path the parent does not have
	| "CASE_CONFLICT" // two paths equal after Unicode case folding
	| "FILE_DIRECTORY_CONFLICT"; // `a` is a file and `a/b` exists too

/** The change set is well-formed but does not fit the parent manifest. */
export class PathConflictError extends ProjectDomainError {
	declare readonly code: PathConflictCode;
	constructor(code: PathConflictCode, message: string, details: ProjectErrorDetails) {
		super(code, 409, message, details);
	}
}

export type LimitExceededCode = "FILE_TOO_LARGE" | "PROJECT_TOO_LARGE" | "TOO_MANY_FILES" | "TOO_MANY_OPS";

export class LimitExceededError extends ProjectDomainError {
	declare readonly code: LimitExceededCode;
	constructor(code: LimitExceededCode, message: string, details: ProjectErrorDetails) {
		super(code, 413, message, details);
	}
}

export type BlobIntegrityCode = "BLOB_KEY_INVALID" | "BLOB_HASH_MISMATCH" | "BLOB_CORRUPT";

/**
 * A blob key is not a SHA-256 hex digest, data does not hash to its key on write, or stored
 * data no longer hashes to its key on read (`BLOB_CORRUPT`, a server fault).
 */
export class BlobIntegrityError extends ProjectDomainError {
	declare readonly code: BlobIntegrityCode;
	constructor(code: BlobIntegrityCode, message: string, details: ProjectErrorDetails) {
		super(code, code === "BLOB_CORRUPT" ? 500 : 422, message, details);
	}
}
