/** The projects domain core and blob storage, for the projects service. */
export * from "./errors";
export * from "./hash";
export * from "./paths";
export * from "./manifest";
export { applyChangeSet, DEFAULT_CHANGESET_LIMITS } from "./changeset";
export type {
	AddOp,
	ModifyOp,
	DeleteOp,
	RenameOp,
	ChangeOp,
	ChangeSetLimits,
	ChangeSetResult,
	ContentEncoding
} from "./changeset";
export * from "./textdiff";
export * from "./content-type";
export * from "./blob-store";
export * from "./fs-blob-store";
export * from "./pg-blob-store";
