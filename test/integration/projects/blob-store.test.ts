import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat, writeFile, utimes, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "pg";
import { Sequelize } from "sequelize";
import { gcUnreferenced } from "../../../src/projects/blob-store";
import type { BlobStore } from "../../../src/projects/blob-store";
import { BlobIntegrityError } from "../../../src/projects/errors";
import { FsBlobStore } from "../../../src/projects/fs-blob-store";
import { sha256Hex } from "../../../src/projects/hash";
import { PgBlobStore, PROJECT_BLOBS_DDL } from "../../../src/projects/pg-blob-store";

const PG_URL = process.env.FF_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432";

const blob = (data: Buffer): [string, Buffer] => [sha256Hex(data), data];
/** Every byte value, plus bytes that break naive text handling. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const TRICKY = Buffer.concat([
	Buffer.from([0x00, 0xff, 0xfe, 0x5c, 0x27, 0x22, 0x0d, 0x0a]),
	Buffer.from("\\x00'; DROP TABLE x;--")
]);

/** Runs inside a describe whose beforeEach empties the store. */
function sharedContract(name: string, store: () => BlobStore): void {
	describe(`${name}: BlobStore contract`, () => {
		it.each([
			["binary", ALL_BYTES],
			["tricky bytes", TRICKY],
			["empty", Buffer.alloc(0)],
			["utf-8 text", Buffer.from("héllo wörld 🎉\n")],
			["1 MiB random", randomBytes(1024 * 1024)]
		])("round-trips %s byte for byte", async (_label, data) => {
			const [sha, bytes] = blob(data);
			expect(await store().put(sha, bytes)).toBe(true);
			const back = await store().get(sha);
			expect(back).not.toBeNull();
			expect(Buffer.compare(back!, data)).toBe(0);
		});

		it("dedups: a second put of the same blob returns false", async () => {
			const [sha, data] = blob(Buffer.from("same"));
			expect(await store().put(sha, data)).toBe(true);
			expect(await store().put(sha, Buffer.from("same"))).toBe(false);
			const listed = [];
			for await (const info of store().iterate()) listed.push(info);
			expect(listed.map(x => x.sha256)).toEqual([sha]);
			expect(listed[0].size).toBe(4);
			expect(listed[0].createdAt).toBeInstanceOf(Date);
		});

		it("refuses data that does not match its key", async () => {
			const [sha] = blob(Buffer.from("right"));
			await expect(store().put(sha, Buffer.from("wrong"))).rejects.toMatchObject({
				code: "BLOB_HASH_MISMATCH",
				status: 422
			});
			expect(await store().get(sha)).toBeNull();
			const [okSha, ok] = blob(Buffer.from("ok"));
			await expect(
				store().putMany([
					[okSha, ok],
					[sha, Buffer.from("wrong")]
				])
			).rejects.toBeInstanceOf(BlobIntegrityError);
			expect(await store().has([okSha])).toEqual(new Set()); // nothing from a refused batch is stored
		});

		it("refuses keys that are not SHA-256 hex", async () => {
			for (const key of ["../../etc/passwd", "ABCDEF".padEnd(64, "0"), "abc", `${"a".repeat(64)}/x`]) {
				await expect(store().put(key, Buffer.from("x"))).rejects.toMatchObject({ code: "BLOB_KEY_INVALID" });
				await expect(store().get(key)).rejects.toMatchObject({ code: "BLOB_KEY_INVALID" });
			}
			await expect(store().has(["nope"])).rejects.toMatchObject({ code: "BLOB_KEY_INVALID" });
		});

		it("returns null for a missing blob", async () => {
			expect(await store().get("0".repeat(64))).toBeNull();
		});

		it("putMany reports which blobs were new; has and delete work on sets", async () => {
			const a = blob(Buffer.from("a"));
			const b = blob(Buffer.from("b"));
			const c = blob(ALL_BYTES);
			await store().put(...a);
			const created = await store().putMany(new Map([a, b, c, b]));
			expect(created).toEqual(new Set([b[0], c[0]]));
			const missing = "f".repeat(64);
			expect(await store().has([a[0], b[0], c[0], missing, a[0]])).toEqual(new Set([a[0], b[0], c[0]]));
			expect(await store().has([])).toEqual(new Set());
			expect(await store().delete([a[0], missing, a[0]])).toBe(1);
			expect(await store().has([a[0], b[0]])).toEqual(new Set([b[0]]));
			expect(await store().delete([])).toBe(0);
		});

		it("putMany handles batches larger than one INSERT", async () => {
			const many = Array.from({ length: 1203 }, (_, i) => blob(Buffer.from(`blob ${i}`)));
			expect((await store().putMany(many)).size).toBe(1203);
			expect((await store().has(many.map(([sha]) => sha))).size).toBe(1203);
			let count = 0;
			let previous = "";
			for await (const info of store().iterate()) {
				expect(info.sha256 > previous).toBe(true);
				previous = info.sha256;
				count++;
			}
			expect(count).toBe(1203);
		});

		it("gcUnreferenced deletes only unreferenced blobs", async () => {
			const keep = [blob(Buffer.from("keep 1")), blob(ALL_BYTES)];
			const drop = [blob(Buffer.from("drop 1")), blob(Buffer.from("drop 2")), blob(TRICKY)];
			await store().putMany([...keep, ...drop]);
			const referenced = new Set(keep.map(([sha]) => sha));

			expect(await gcUnreferenced(store(), referenced, { dryRun: true })).toEqual({
				scanned: 5,
				deleted: 3,
				spared: 0
			});
			expect((await store().has(drop.map(([sha]) => sha))).size).toBe(3);

			expect(await gcUnreferenced(store(), referenced, { batchSize: 2 })).toEqual({
				scanned: 5,
				deleted: 3,
				spared: 0
			});
			expect(await store().has([...keep, ...drop].map(([sha]) => sha))).toEqual(referenced);
			expect(Buffer.compare((await store().get(keep[1][0]))!, ALL_BYTES)).toBe(0);
		});

		it("gcUnreferenced accepts a predicate and spares blobs newer than olderThan", async () => {
			const keep = blob(Buffer.from("keep"));
			const drop = blob(Buffer.from("drop"));
			await store().putMany([keep, drop]);
			const asked: string[] = [];
			const predicate = async (sha: string): Promise<boolean> => {
				asked.push(sha);
				return sha === keep[0];
			};
			expect(await gcUnreferenced(store(), predicate, { olderThan: new Date(Date.now() - 60_000) })).toEqual({
				scanned: 2,
				deleted: 0,
				spared: 1
			});
			expect(asked.sort()).toEqual([keep[0], drop[0]].sort());
			expect(await gcUnreferenced(store(), predicate, { olderThan: new Date(Date.now() + 60_000) })).toEqual({
				scanned: 2,
				deleted: 1,
				spared: 0
			});
			expect(await store().has([keep[0], drop[0]])).toEqual(new Set([keep[0]]));
		});
	});
}

describe("FsBlobStore", () => {
	let root: string;
	let store: FsBlobStore;

	beforeAll(async () => {
		root = await mkdtemp(join(tmpdir(), "ff-blobs-"));
	});
	afterAll(async () => {
		await rm(root, { recursive: true, force: true });
	});

	beforeEach(async () => {
		await rm(root, { recursive: true, force: true });
		store = new FsBlobStore(root);
	});

	sharedContract("fs", () => store);

	it("fans out as ab/cd/<sha> with read-only files and no temp files left behind", async () => {
		const [sha, data] = blob(Buffer.from("fan out"));
		await store.put(sha, data);
		const path = join(root, sha.slice(0, 2), sha.slice(2, 4), sha);
		expect(store.pathFor(sha)).toBe(path);
		expect((await stat(path)).mode & 0o777).toBe(0o444);
		expect(await readdir(join(root, sha.slice(0, 2), sha.slice(2, 4)))).toEqual([sha]);
	});

	it("reports a blob damaged on disk as BLOB_CORRUPT", async () => {
		const [sha, data] = blob(Buffer.from("pristine"));
		await store.put(sha, data);
		await chmod(store.pathFor(sha), 0o644);
		await writeFile(store.pathFor(sha), "tampered");
		await expect(store.get(sha)).rejects.toMatchObject({ code: "BLOB_CORRUPT", status: 500 });
		expect((await new FsBlobStore(root, { verifyOnRead: false }).get(sha))!.toString()).toBe("tampered");
	});

	it("ignores and sweeps stale temp files", async () => {
		const [sha, data] = blob(Buffer.from("real"));
		await store.put(sha, data);
		const dir = join(root, sha.slice(0, 2), sha.slice(2, 4));
		const stale = join(dir, `.tmp-${sha}-dead`);
		const fresh = join(dir, `.tmp-${sha}-live`);
		await writeFile(stale, "partial");
		await writeFile(fresh, "partial");
		await utimes(stale, new Date(0), new Date(0));
		const listed = [];
		for await (const info of store.iterate()) listed.push(info.sha256);
		expect(listed).toEqual([sha]);
		expect(await store.removeStaleTempFiles(new Date(Date.now() - 60_000))).toBe(1);
		expect((await readdir(dir)).sort()).toEqual([`.tmp-${sha}-live`, sha].sort());
	});
});

describe("PgBlobStore", () => {
	const database = `ff_test_blob_${randomBytes(6).toString("hex")}`;
	let admin: Client;
	let sequelize: Sequelize;
	let store: PgBlobStore;

	beforeAll(async () => {
		admin = new Client({ connectionString: `${PG_URL}/postgres` });
		await admin.connect();
		await admin.query(`CREATE DATABASE ${database}`);
		sequelize = new Sequelize(`${PG_URL}/${database}`, { logging: false });
		await sequelize.query(PROJECT_BLOBS_DDL);
		await sequelize.query(PROJECT_BLOBS_DDL); // idempotent, for re-run migrations
		store = new PgBlobStore(sequelize, { pageSize: 100 });
	});

	afterAll(async () => {
		await sequelize?.close();
		await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
		await admin.end();
	});

	beforeEach(async () => {
		await sequelize.query("TRUNCATE project_blobs");
	});

	sharedContract("pg", () => store);

	it("stores size and data as declared", async () => {
		const [sha, data] = blob(ALL_BYTES);
		await store.put(sha, data);
		const [rows] = await sequelize.query(
			`SELECT size, octet_length(data) AS len, encode(data, 'hex') AS hex FROM project_blobs WHERE sha256 = '${sha}'`
		);
		expect(rows).toEqual([{ size: "256", len: 256, hex: ALL_BYTES.toString("hex") }]);
	});

	it("joins a caller's transaction: a rolled-back put leaves nothing", async () => {
		const [sha, data] = blob(Buffer.from("in a transaction"));
		const transaction = await sequelize.transaction();
		expect(await store.put(sha, data, { transaction })).toBe(true);
		expect(await store.has([sha], { transaction })).toEqual(new Set([sha]));
		expect(await store.get(sha)).toBeNull(); // not visible outside yet
		await transaction.rollback();
		expect(await store.has([sha])).toEqual(new Set());

		await sequelize.transaction(async t => {
			await store.putMany([[sha, data]], { transaction: t });
		});
		expect((await store.get(sha))!.toString()).toBe("in a transaction");
	});

	it("reports a row damaged in the database as BLOB_CORRUPT", async () => {
		const [sha, data] = blob(Buffer.from("pristine"));
		await store.put(sha, data);
		await sequelize.query(`UPDATE project_blobs SET data = 'tampered'::bytea WHERE sha256 = '${sha}'`);
		await expect(store.get(sha)).rejects.toMatchObject({ code: "BLOB_CORRUPT" });
	});
});
