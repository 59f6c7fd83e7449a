/**
 * The projects domain wired once: the repository, the configured blob store, and the use cases
 * over them, each taking its collaborators as parameters. The service creates this in `created()`
 * and its handlers call into it.
 */
import path from "node:path";
import type { Sequelize, Transaction } from "sequelize";
import { withTransaction } from "../db/sequelize";
import type { BlobStore } from "./blob-store";
import { ProjectCaches } from "./caches";
import type { CacheBackend } from "./caches";
import type { ProjectsConfig } from "./config";
import { FsBlobStore } from "./fs-blob-store";
import { ProjectGuard } from "./guard";
import type { OrgRoleLookup } from "./guard";
import { ProjectLifecycle } from "./lifecycle";
import { PgBlobStore } from "./pg-blob-store";
import { ProjectsRepository } from "./repository";
import { Sandboxes } from "./sandboxes";
import type { CommitDeps } from "./versions";

export interface ProjectsUseCases {
	repo: ProjectsRepository;
	blobs: BlobStore;
	guard: ProjectGuard;
	lifecycle: ProjectLifecycle;
	caches: ProjectCaches;
	sandboxes: Sandboxes;
	/** What `commitVersion` (versions.ts) commits with. */
	commitDeps: CommitDeps;
	transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
}

export interface ProjectsWiring {
	sequelize: Sequelize;
	cfg: ProjectsConfig;
	/** The node's data directory: the fs store's default root is `<dataDir>/blobs`. */
	dataDir: string;
	cacher: CacheBackend | null;
	warn(message: string, detail: unknown): void;
	/** A user's role in an organisation (the orgs service's `orgs.roleOf`). */
	orgRole: OrgRoleLookup;
	/** Writes a durable event in `tx` (the service's transactional outbox). */
	publish(tx: Transaction, topic: string, payload: unknown): Promise<unknown>;
	/** The access read as a named prepared statement (DB_NAMED_STATEMENTS; default false: unnamed). */
	namedStatements?: boolean;
}

export function projectsUseCases(w: ProjectsWiring): ProjectsUseCases {
	const { sequelize, cfg, publish } = w;
	const repo = new ProjectsRepository(sequelize, w.namedStatements ?? false);
	const blobs: BlobStore =
		cfg.blobStore === "fs"
			? new FsBlobStore(cfg.blobDir ?? path.join(w.dataDir, "blobs"), { fsync: cfg.blobFsync })
			: new PgBlobStore(sequelize);
	const transaction = <T>(fn: (tx: Transaction) => Promise<T>) => withTransaction(sequelize, fn);
	const caches = new ProjectCaches({
		cacher: w.cacher,
		warn: w.warn,
		readManifest: (projectId, version) => repo.manifest(projectId, version),
		blobs,
		ttlS: cfg.cache.ttlS,
		blobMaxBytes: cfg.cache.blobMaxBytes
	});
	const sandboxes = new Sandboxes({
		repo,
		transaction,
		publish,
		timeouts: cfg.sandbox,
		purgeAfterS: cfg.purgeAfterS
	});
	const guard = new ProjectGuard(repo, w.orgRole);
	return {
		repo,
		blobs,
		guard,
		lifecycle: new ProjectLifecycle({ repo, guard, orgRole: w.orgRole, sandboxes, transaction, warn: w.warn }),
		caches,
		sandboxes,
		commitDeps: { repo, blobs, caches, transaction, publish, limits: cfg.limits },
		transaction
	};
}
