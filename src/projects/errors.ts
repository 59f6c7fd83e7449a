/**
 * Typed errors of the projects domain core. Every error carries a stable `code` string and
 * `{ field, reason }` details; `httpStatus` is the status the service layer is expected to map
 * it to (422 invalid input, 413 over a limit, 409 conflicts with the parent version, 500 store
 * integrity). The core does not depend on Moleculer, so these are plain `Error` subclasses; the
 * service wraps them in `MoleculerClientError(message, httpStatus, code, details)`.
 */

export interface ProjectErrorDetails {
	/** Where in the request the problem is, e.g. `ops[3].path` or `path`. */
	field: string;
	/** Human-readable, stable enough for clients to show. */
	reason: string;
	/** The offending (normalised where possible) path, when there is one. */
	path?: string;
	/** The limit that was exceeded and the value that exceeded it. */
	limit?: number;
	actual?: number;
}

export abstract class ProjectDomainError extends Error {
	abstract readonly code: string;
	abstract readonly httpStatus: 409 | 413 | 422 | 500;
	readonly details: ProjectErrorDetails;

	constructor(message: string, details: ProjectErrorDetails) {
		super(message);
		this.name = new.target.name;
		this.details = details;
	}
}

/** A path breaks a rule in paths.ts. */
export class PathInvalidError extends ProjectDomainError {
	readonly code = "PATH_INVALID";
	readonly httpStatus = 422;
}

export type ChangeSetInvalidCode =
	| "CHANGESET_INVALID" // malformed operation (unknown op, missing field, bad encoding, bad mode)
	| "CHANGESET_EMPTY"
	| "DUPLICATE_PATH_IN_CHANGESET";

/** The change set itself is malformed, independent of the parent version. */
export class ChangeSetInvalidError extends ProjectDomainError {
	readonly httpStatus = 422;
	constructor(
		readonly code: ChangeSetInvalidCode,
		message: string,
		details: ProjectErrorDetails
	) {
		super(message, details);
	}
}

export type PathConflictCode =
	| "PATH_EXISTS" // add onto an existing path, rename onto an existing target
	| "PATH_NOT_FOUND" // modify/delete/rename of a path the parent does not have
	| "CASE_CONFLICT" // two paths equal after Unicode case folding
	| "FILE_DIRECTORY_CONFLICT"; // `a` is a file and `a/b` exists too

/** The change set is well-formed but does not fit the parent manifest. */
export class PathConflictError extends ProjectDomainError {
	readonly httpStatus = 409;
	constructor(
		readonly code: PathConflictCode,
		message: string,
		details: ProjectErrorDetails
	) {
		super(message, details);
	}
}

export type LimitExceededCode = "FILE_TOO_LARGE" | "PROJECT_TOO_LARGE" | "TOO_MANY_FILES" | "TOO_MANY_OPS";

export class LimitExceededError extends ProjectDomainError {
	readonly httpStatus = 413;
	constructor(
		readonly code: LimitExceededCode,
		message: string,
		details: ProjectErrorDetails
	) {
		super(message, details);
	}
}

export type BlobIntegrityCode = "BLOB_KEY_INVALID" | "BLOB_HASH_MISMATCH" | "BLOB_CORRUPT";

/**
 * A blob key is not a SHA-256 hex digest, data does not hash to its key on write, or stored
 * data no longer hashes to its key on read (`BLOB_CORRUPT`, a server fault).
 */
export class BlobIntegrityError extends ProjectDomainError {
	readonly httpStatus: 422 | 500;
	constructor(
		readonly code: BlobIntegrityCode,
		message: string,
		details: ProjectErrorDetails
	) {
		super(message, details);
		this.httpStatus = code === "BLOB_CORRUPT" ? 500 : 422;
	}
}
