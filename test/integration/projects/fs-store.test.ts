/** The service on the filesystem blob store (PROJECTS_BLOB_STORE=fs): round trip, dedup, GC, verification. */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { sha256Hex } from "../../../src/projects/hash";
import { binary, client } from "./http";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let dir: string;

beforeAll(async () => {
	db = await createTestDatabase();
	dir = await mkdtemp(join(tmpdir(), "ff-blobs-"));
	node = await startTestNode({
		db,
		services: ["api", "projects"],
		env: { PROJECTS_BLOB_STORE: "fs", PROJECTS_BLOB_DIR: dir, PROJECTS_BLOB_FSYNC: "false" }
	});
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
	await rm(dir, { recursive: true, force: true });
});

async function filesOnDisk(): Promise<string[]> {
	const out: string[] = [];
	for (const a of await readdir(dir))
		for (const b of await readdir(join(dir, a))) out.push(...(await readdir(join(dir, a, b))));
	return out.sort();
}

test("blobs live as files, shared across projects, collected after purge, verified by re-hashing", async () => {
	const { call } = client(node.baseUrl);
	const t = bearerFor(node.config, "fs-user");
	const shared = randomBytes(100_000);
	const own = randomBytes(10);
	const ids: string[] = [];
	for (const name of ["one", "two"]) {
		const p = await call("POST", "/api/v1/projects", { token: t, body: { name } });
		ids.push(p.json.id);
		const c = await call("POST", `/api/v1/projects/${p.json.id}/versions`, {
			token: t,
			body: {
				baseVersion: 0,
				message: "m",
				changes: [binary("big.bin", shared), binary(`${name}.bin`, name === "one" ? own : Buffer.from(name))]
			}
		});
		expect(c.status).toBe(201);
	}
	expect(await filesOnDisk()).toEqual([sha256Hex(shared), sha256Hex(own), sha256Hex(Buffer.from("two"))].sort());
	const back = await call("GET", `/api/v1/projects/${ids[1]}/files/big.bin?version=1`, { token: t });
	expect(Buffer.compare(back.bytes, shared)).toBe(0);

	expect(await node.broker.call("projects.verifyVersion", { projectId: ids[0], version: 1 })).toMatchObject({
		ok: true,
		checked: 2
	});
	// Damage one file on disk: verification names it.
	const victim = join(dir, sha256Hex(own).slice(0, 2), sha256Hex(own).slice(2, 4), sha256Hex(own));
	await chmod(victim, 0o644);
	await writeFile(victim, Buffer.from("tampered"));
	expect(await node.broker.call("projects.verifyVersion", { projectId: ids[0], version: 1 })).toEqual({
		projectId: ids[0],
		version: 1,
		checked: 2,
		ok: false,
		problems: [{ path: "one.bin", sha256: sha256Hex(own), problem: "corrupt" }]
	});

	await call("DELETE", `/api/v1/projects/${ids[0]}`, { token: t });
	await node.broker.call("projects.purge", { projectId: ids[0] });
	expect(await node.broker.call("projects.gc", { graceS: 0 })).toMatchObject({ scanned: 3, deleted: 1 });
	expect(await filesOnDisk()).toEqual([sha256Hex(shared), sha256Hex(Buffer.from("two"))].sort());
});

test("GC removes the temporary files crashed writers left (the fs store's own leftovers), not in a dry run", async () => {
	const shard = join(dir, "ab", "cd");
	await mkdir(shard, { recursive: true });
	const leftover = join(shard, `.tmp-${"ab".repeat(32)}-dead`);
	await writeFile(leftover, "torn");
	const old = new Date(Date.now() - 3_600_000);
	await utimes(leftover, old, old);
	expect(await node.broker.call("projects.gc", { graceS: 60, dryRun: true })).toMatchObject({ removedTempFiles: 0 });
	expect(await readdir(shard)).toHaveLength(1);
	expect(await node.broker.call("projects.gc", { graceS: 60 })).toMatchObject({ removedTempFiles: 1 });
	expect(await readdir(shard)).toEqual([]);
});
