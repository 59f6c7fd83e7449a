/**
 * Blobs as rows of `project_blobs` in PostgreSQL, over a Sequelize instance the caller owns.
 * Raw SQL with bind parameters; every method runs in the caller's transaction when given one, so a
 * commit puts its blobs and records its version atomically.
 */
import { QueryTypes } from "sequelize";
import type { Sequelize } from "sequelize";
import type { BlobCallOptions, BlobInfo, BlobStore } from "./blob-store";
import { BlobIntegrityError } from "./errors";
import { assertSha256Hex, sha256Hex, verifyBlob } from "./hash";

/** The table, for the migration to run as-is. */
export const PROJECT_BLOBS_DDL = `CREATE TABLE IF NOT EXISTS project_blobs (
  sha256 CHAR(64) PRIMARY KEY,
  size BIGINT NOT NULL,
  data BYTEA NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`;

export interface PgBlobStoreOptions {
	/** Re-hash blobs on `get`. Default true. */
	verifyOnRead?: boolean;
	/** Rows per `iterate` page. Default 1000. */
	pageSize?: number;
}

/** A multi-row INSERT stays under both: PostgreSQL's 65,535 bind parameters and a sane message size. */
const INSERT_MAX_ROWS = 500;
const INSERT_MAX_BYTES = 16 * 1024 * 1024;

interface ShaRow {
	sha256: string;
}

export class PgBlobStore implements BlobStore {
	private readonly verifyOnRead: boolean;
	private readonly pageSize: number;

	constructor(
		private readonly sequelize: Sequelize,
		options: PgBlobStoreOptions = {}
	) {
		this.verifyOnRead = options.verifyOnRead ?? true;
		this.pageSize = options.pageSize ?? 1000;
	}

	async put(sha256: string, data: Buffer, options: BlobCallOptions = {}): Promise<boolean> {
		verifyBlob(sha256, data);
		return (await this.insert([[sha256, data]], options)).size === 1;
	}

	async putMany(blobs: Iterable<readonly [string, Buffer]>, options: BlobCallOptions = {}): Promise<Set<string>> {
		const unique = new Map<string, Buffer>();
		for (const [sha256, data] of blobs) {
			verifyBlob(sha256, data);
			unique.set(sha256, data);
		}
		const created = new Set<string>();
		let batch: [string, Buffer][] = [];
		let batchBytes = 0;
		for (const blob of unique) {
			if (
				batch.length > 0 &&
				(batch.length >= INSERT_MAX_ROWS || batchBytes + blob[1].length > INSERT_MAX_BYTES)
			) {
				for (const sha of await this.insert(batch, options)) created.add(sha);
				batch = [];
				batchBytes = 0;
			}
			batch.push(blob);
			batchBytes += blob[1].length;
		}
		if (batch.length > 0) for (const sha of await this.insert(batch, options)) created.add(sha);
		return created;
	}

	async get(sha256: string, options: BlobCallOptions = {}): Promise<Buffer | null> {
		assertSha256Hex(sha256);
		const rows = await this.sequelize.query<{ data: Buffer }>("SELECT data FROM project_blobs WHERE sha256 = $1", {
			bind: [sha256],
			type: QueryTypes.SELECT,
			transaction: options.transaction
		});
		if (rows.length === 0) return null;
		const data = rows[0].data;
		if (this.verifyOnRead && sha256Hex(data) !== sha256) {
			const reason = `stored data no longer hashes to ${sha256}`;
			throw new BlobIntegrityError("BLOB_CORRUPT", `Blob corrupt: ${reason}`, { field: "sha256", reason });
		}
		return data;
	}

	async has(shas: readonly string[], options: BlobCallOptions = {}): Promise<Set<string>> {
		if (shas.length === 0) return new Set();
		return new Set(
			await this.keysQuery("SELECT sha256 FROM project_blobs WHERE sha256 = ANY($1::bpchar[])", shas, options)
		);
	}

	async delete(shas: readonly string[], options: BlobCallOptions = {}): Promise<number> {
		if (shas.length === 0) return 0;
		// RETURNING gives a row count that does not depend on how Sequelize reports DELETE results.
		const sql = "DELETE FROM project_blobs WHERE sha256 = ANY($1::bpchar[]) RETURNING sha256";
		return (await this.keysQuery(sql, shas, options)).length;
	}

	/** Pages through the table in key order; rows added or deleted meanwhile may or may not appear. */
	async *iterate(): AsyncIterable<BlobInfo> {
		let after = "";
		for (;;) {
			const rows = await this.sequelize.query<{ sha256: string; size: string | number; created_at: Date }>(
				"SELECT sha256, size, created_at FROM project_blobs WHERE sha256 > $1 ORDER BY sha256 LIMIT $2",
				{ bind: [after, this.pageSize], type: QueryTypes.SELECT }
			);
			for (const row of rows) yield { sha256: row.sha256, size: Number(row.size), createdAt: row.created_at };
			if (rows.length < this.pageSize) return;
			after = rows[rows.length - 1].sha256;
		}
	}

	/** The keys `sql` returns, run over `$1`: the distinct, validated `shas`. */
	private async keysQuery(sql: string, shas: readonly string[], options: BlobCallOptions): Promise<string[]> {
		for (const sha of shas) assertSha256Hex(sha);
		const rows = await this.sequelize.query<ShaRow>(sql, {
			bind: [[...new Set(shas)]],
			type: QueryTypes.SELECT,
			transaction: options.transaction
		});
		return rows.map(row => row.sha256);
	}

	/** Inserts verified blobs; returns the keys that were new. */
	private async insert(
		blobs: readonly (readonly [string, Buffer])[],
		options: BlobCallOptions
	): Promise<Set<string>> {
		const values = blobs.map((_, i) => `($${3 * i + 1}, $${3 * i + 2}, $${3 * i + 3})`).join(", ");
		const rows = await this.sequelize.query<ShaRow>(
			`INSERT INTO project_blobs (sha256, size, data) VALUES ${values} ON CONFLICT (sha256) DO NOTHING RETURNING sha256`,
			{
				bind: blobs.flatMap(([sha256, data]) => [sha256, data.length, data]),
				type: QueryTypes.SELECT,
				transaction: options.transaction
			}
		);
		return new Set(rows.map(row => row.sha256));
	}
}
