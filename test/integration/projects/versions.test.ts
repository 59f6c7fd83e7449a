/**
 * Versions over HTTP against the real PostgreSQL and Redis: commit/read/diff round trips, optimistic
 * concurrency, path attacks and limits, blob dedup, purge and GC.
 */
import { randomBytes } from "node:crypto";
import { Client } from "pg";
import { QueryTypes } from "sequelize";
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { sha256Hex } from "../../../src/projects/hash";
import { binary, client, expectError, text } from "./http";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let api: ReturnType<typeof client>;
let alice: string;
let bob: string;

const MAX_FILE = 256 * 1024;

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "projects"],
		env: {
			RATE_LIMIT_PER_MINUTE: "100000",
			PROJECTS_MAX_FILE_BYTES: String(MAX_FILE),
			PROJECTS_MAX_FILES: "50",
			BODY_LIMIT: "64kb"
		}
	});
	api = client(node.baseUrl);
	alice = bearerFor(node.config, "alice");
	bob = bearerFor(node.config, "bob");
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function sql<T extends object>(query: string, bind: unknown[] = []): Promise<T[]> {
	return node.runtime.sequelize.query<T>(query, { bind, type: QueryTypes.SELECT });
}

async function newProject(token = alice, name = "demo"): Promise<string> {
	const r = await api.call("POST", "/api/v1/projects", { token, body: { name } });
	expect(r.status).toBe(201);
	return r.json.id;
}

async function commit(
	id: string,
	baseVersion: number,
	changes: unknown[],
	token = alice,
	headers?: Record<string, string>
) {
	return api.call("POST", `/api/v1/projects/${id}/versions`, {
		token,
		body: { baseVersion, message: `on ${baseVersion}`, changes },
		headers
	});
}

async function readFile(id: string, path: string, version?: number, token = alice) {
	const q = version === undefined ? "" : `?version=${version}`;
	return api.call("GET", `/api/v1/projects/${id}/files/${path.split("/").map(encodeURIComponent).join("/")}${q}`, {
		token
	});
}

/**
 * Resolves once another session waits for a lock on `table`. (pg_locks, not pg_stat_activity: a
 * statement sent with bind parameters waits while it is parsed, before its text is shown.)
 */
async function waitForLockWaiter(pg: Client, table: string): Promise<void> {
	for (let i = 0; i < 200; i++) {
		const r = await pg.query(
			"SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
			[table]
		);
		if (r.rows[0].n > 0) return;
		await new Promise(resolve => setTimeout(resolve, 25));
	}
	throw new Error(`nobody ever waited for a lock on ${table}`);
}

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(300)]);

describe("commit, read and diff round trips", () => {
	let id: string;
	const v1Files: Record<string, Buffer> = {
		"README.md": Buffer.from("# Demo\n\nline two\nline three\n"),
		"src/index.ts": Buffer.from("export const greet = (n: string) => `hi ${n}`;\n"),
		"src/util/math.ts": Buffer.from("export const add = (a: number, b: number) => a + b;\n"),
		"assets/logo.png": PNG,
		"data/all-bytes.bin": ALL_BYTES,
		"docs/ünïcødé 🎉.txt": Buffer.from("héllo wörld\n"),
		"site/index.html": Buffer.from("<script>alert(1)</script>"),
		["__proto__"]: Buffer.from("a file named __proto__\n")
	};

	beforeAll(async () => {
		id = await newProject();
	});

	test("version 1: text, binary and nested files, byte-identical on the way back", async () => {
		const changes = Object.entries(v1Files).map(([p, data]) =>
			p.endsWith(".png") || p.endsWith(".bin") ? binary(p, data) : text(p, data.toString("utf8"))
		);
		const r = await commit(id, 0, changes);
		expect(r.status).toBe(201);
		expect(r.json).toMatchObject({
			projectId: id,
			number: 1,
			parentNumber: 0,
			authorId: "alice",
			taskId: null,
			fileCount: 8
		});
		expect(r.headers.get("location")).toBe(`/api/v1/projects/${id}/versions/1`);
		for (const [p, data] of Object.entries(v1Files)) {
			const f = await readFile(id, p, 1);
			expect({ p, status: f.status }).toEqual({ p, status: 200 });
			expect(Buffer.compare(f.bytes, data)).toBe(0);
			expect(f.headers.get("x-content-sha256")).toBe(sha256Hex(data));
			expect(f.headers.get("x-content-type-options")).toBe("nosniff");
		}
	});

	test("files are served with their content type; active content as a sandboxed attachment", async () => {
		const png = await readFile(id, "assets/logo.png", 1);
		expect(png.headers.get("content-type")).toBe("image/png");
		expect(png.headers.get("content-disposition")).toMatch(/^inline;/);
		const bin = await readFile(id, "data/all-bytes.bin", 1);
		expect(bin.headers.get("content-type")).toBe("application/octet-stream");
		const ts = await readFile(id, "src/index.ts", 1);
		expect(ts.headers.get("content-type")).toBe("text/typescript; charset=utf-8");
		const html = await readFile(id, "site/index.html", 1);
		expect(html.headers.get("content-type")).toBe("text/html; charset=utf-8");
		expect(html.headers.get("content-disposition")).toBe(
			`attachment; filename="index.html"; filename*=UTF-8''index.html`
		);
		expect(html.headers.get("content-security-policy")).toBe("sandbox; default-src 'none'");
		expect(html.headers.get("cache-control")).toBe("private, max-age=31536000, immutable");
		const head = await readFile(id, "src/index.ts");
		expect(head.headers.get("cache-control")).toBe("private, no-cache");
		expect(head.headers.get("x-project-version")).toBe("1");
	});

	test("versions 2 and 3: modify, rename, delete, add; every version still reads as it was", async () => {
		const v2 = await commit(id, 1, [
			{ op: "modify", path: "README.md", content: "# Demo\n\nline two changed\nline three\n" },
			{ op: "rename", from: "src/util/math.ts", to: "src/lib/math.ts" },
			{ op: "delete", path: "site/index.html" },
			binary("assets/icon.png", PNG.subarray(0, 100)),
			{
				op: "modify",
				path: "data/all-bytes.bin",
				content: Buffer.from(ALL_BYTES).reverse().toString("base64"),
				encoding: "base64"
			}
		]);
		expect(v2.status).toBe(201);
		expect(v2.json.number).toBe(2);
		const v3 = await commit(id, 2, [
			{ op: "rename", from: "assets/logo.png", to: "img/logo.png" },
			{ op: "delete", path: "__proto__" }
		]);
		expect(v3.status).toBe(201);
		expect(v3.json).toMatchObject({ number: 3, fileCount: 7 });

		expect(Buffer.compare((await readFile(id, "src/util/math.ts", 1)).bytes, v1Files["src/util/math.ts"])).toBe(0);
		expectError(await readFile(id, "src/util/math.ts", 2), 404, "NOT_FOUND");
		expect(Buffer.compare((await readFile(id, "src/lib/math.ts", 2)).bytes, v1Files["src/util/math.ts"])).toBe(0);
		expect((await readFile(id, "data/all-bytes.bin", 2)).bytes).toEqual(Buffer.from(ALL_BYTES).reverse());
		expect(Buffer.compare((await readFile(id, "data/all-bytes.bin", 1)).bytes, ALL_BYTES)).toBe(0);
		expect(Buffer.compare((await readFile(id, "img/logo.png", 3)).bytes, PNG)).toBe(0);
		expect((await readFile(id, "__proto__", 2)).bytes.toString()).toBe("a file named __proto__\n");
		expectError(await readFile(id, "__proto__", 3), 404, "NOT_FOUND");
		expectError(await readFile(id, "README.md", 4), 404, "NOT_FOUND");
	});

	test("tree and manifest of each version, in path order", async () => {
		const t1 = await api.call("GET", `/api/v1/projects/${id}/files?version=1`, { token: alice });
		expect(t1.status).toBe(200);
		expect(t1.json.files.map((f: { path: string }) => f.path)).toEqual([
			"README.md",
			"__proto__",
			"assets/logo.png",
			"data/all-bytes.bin",
			"docs/ünïcødé 🎉.txt",
			"site/index.html",
			"src/index.ts",
			"src/util/math.ts"
		]);
		const t3 = await api.call("GET", `/api/v1/projects/${id}/files?prefix=src`, { token: alice });
		expect(t3.json).toMatchObject({ version: 3, files: [{ path: "src/index.ts" }, { path: "src/lib/math.ts" }] });
		const v2 = await api.call("GET", `/api/v1/projects/${id}/versions/2`, { token: alice });
		expect(v2.status).toBe(200);
		expect(v2.json).toMatchObject({ number: 2, parentNumber: 1, fileCount: 8 });
		expect(v2.json.files.find((f: { path: string }) => f.path === "assets/icon.png")).toEqual({
			path: "assets/icon.png",
			sha256: sha256Hex(PNG.subarray(0, 100)),
			size: 100,
			mode: 420
		});
		const list = await api.call("GET", `/api/v1/projects/${id}/versions?limit=2`, { token: alice });
		expect(list.json.items.map((v: { number: number }) => v.number)).toEqual([3, 2]);
		const rest = await api.call("GET", `/api/v1/projects/${id}/versions?limit=2&cursor=${list.json.nextCursor}`, {
			token: alice
		});
		expect(rest.json).toMatchObject({
			items: [{ number: 1 }, { number: 0, message: "Project created" }],
			nextCursor: null
		});
	});

	test("diff between versions: added, removed, modified, renamed, with unified text patches", async () => {
		const d = await api.call("GET", `/api/v1/projects/${id}/diff?from=1&to=3`, { token: alice });
		expect(d.status).toBe(200);
		expect(d.json.added.map((x: { path: string }) => x.path)).toEqual(["assets/icon.png"]);
		expect(d.json.removed.map((x: { path: string }) => x.path)).toEqual(["__proto__", "site/index.html"]);
		expect(d.json.modified.map((x: { path: string }) => x.path)).toEqual(["README.md", "data/all-bytes.bin"]);
		expect(d.json.renamed).toEqual([
			{ from: "assets/logo.png", to: "img/logo.png", sha256: sha256Hex(PNG), size: PNG.length, mode: 420 },
			{
				from: "src/util/math.ts",
				to: "src/lib/math.ts",
				sha256: sha256Hex(v1Files["src/util/math.ts"]),
				size: v1Files["src/util/math.ts"].length,
				mode: 420
			}
		]);
		const patch = (p: string) => d.json.patches.find((x: { path: string }) => x.path === p);
		expect(patch("README.md")).toEqual({
			path: "README.md",
			kind: "text",
			patch: "--- a/README.md\n+++ b/README.md\n@@ -1,4 +1,4 @@\n # Demo\n \n-line two\n+line two changed\n line three\n"
		});
		expect(patch("data/all-bytes.bin")).toEqual({
			path: "data/all-bytes.bin",
			kind: "binary",
			patch: "Binary files a/data/all-bytes.bin and b/data/all-bytes.bin differ\n"
		});
		expect(patch("site/index.html").patch).toBe(
			"--- a/site/index.html\n+++ /dev/null\n@@ -1,1 +0,0 @@\n-<script>alert(1)</script>\n\\ No newline at end of file\n"
		);
		expect(patch("src/lib/math.ts")).toBeUndefined(); // a pure rename has no content change
		expect(d.json.patchesTruncated).toBe(false);

		const back = await api.call("GET", `/api/v1/projects/${id}/diff?from=3&to=1&patches=false`, { token: alice });
		expect(back.json.added.map((x: { path: string }) => x.path)).toEqual(["__proto__", "site/index.html"]);
		expect(back.json.renamed.map((x: { from: string }) => x.from)).toEqual(["img/logo.png", "src/lib/math.ts"]);
		expect(back.json.patches).toBeUndefined();
		expectError(
			await api.call("GET", `/api/v1/projects/${id}/diff?from=1&to=9`, { token: alice }),
			404,
			"NOT_FOUND"
		);
		expectError(
			await api.call("GET", `/api/v1/projects/${id}/diff?from=x&to=1`, { token: alice }),
			422,
			"VALIDATION_ERROR"
		);
	});

	test("an empty file is an empty body; a path that names a directory is not a file", async () => {
		const r = await commit(id, 3, [text("empty/nothing.txt", "")]);
		expect(r.status).toBe(201);
		const f = await readFile(id, "empty/nothing.txt", 4);
		expect({
			status: f.status,
			length: f.bytes.length,
			header: f.headers.get("content-length"),
			type: f.headers.get("content-type")
		}).toEqual({
			status: 200,
			length: 0,
			header: "0",
			type: "text/plain; charset=utf-8"
		});
		expectError(await readFile(id, "empty", 4), 404, "NOT_FOUND");
	});

	test("a retried commit with the same Idempotency-Key creates one version", async () => {
		const headers = { "idempotency-key": "retry-key-0001" };
		const first = await commit(id, 4, [text("retry.txt", "once")], alice, headers);
		expect(first.status).toBe(201);
		const again = await commit(id, 4, [text("retry.txt", "once")], alice, headers);
		expect(again.status).toBe(201);
		expect(again.json).toEqual(first.json);
		const head = await api.call("GET", `/api/v1/projects/${id}`, { token: alice });
		expect(head.json.headVersion).toBe(5);
	});

	test("a commit body above BODY_LIMIT is accepted on the commit route only", async () => {
		const big = "x".repeat(100 * 1024);
		const r = await commit(id, 5, [text("big.txt", big)]);
		expect(r.status).toBe(201);
		expect((await readFile(id, "big.txt")).bytes.toString()).toBe(big);
		const other = await api.call("POST", "/api/v1/projects", {
			token: alice,
			body: { name: "n", description: big }
		});
		expectError(other, 413, "PAYLOAD_TOO_LARGE");
	});
});

describe("concurrent commits on one base", () => {
	test("exactly one wins; the others get 409 with the head and can rebase", async () => {
		const id = await newProject();
		expect((await commit(id, 0, [text("counter.txt", "0")])).status).toBe(201);
		const racers = await Promise.all(
			Array.from({ length: 6 }, (_, i) =>
				commit(id, 1, [
					{ op: "modify", path: "counter.txt", content: `writer ${i}` },
					text(`w${i}.txt`, `${i}`)
				])
			)
		);
		const winners = racers.filter(r => r.status === 201);
		const losers = racers.filter(r => r.status !== 201);
		expect(winners).toHaveLength(1);
		expect(losers).toHaveLength(5);
		for (const l of losers) {
			expectError(l, 409, "VERSION_CONFLICT");
			expect(l.json.error.details).toMatchObject({ field: "baseVersion", baseVersion: 1, headVersion: 2 });
		}
		const winner = racers.indexOf(winners[0]);
		const tree = await api.call("GET", `/api/v1/projects/${id}/files`, { token: alice });
		expect(tree.json.files.map((f: { path: string }) => f.path)).toEqual(["counter.txt", `w${winner}.txt`]);
		expect((await readFile(id, "counter.txt")).bytes.toString()).toBe(`writer ${winner}`);
		const rows = await sql<{ n: string }>("SELECT count(*) AS n FROM project_versions WHERE project_id = $1", [id]);
		expect(Number(rows[0].n)).toBe(3);

		const loser = racers.findIndex(r => r.status === 409);
		const rebased = await commit(id, losers[0].json.error.details.headVersion, [text(`w${loser}.txt`, `${loser}`)]);
		expect(rebased.status).toBe(201);
		expect(rebased.json.number).toBe(3);
	});
});

describe("path attacks and limits store nothing", () => {
	let id: string;
	const attacks: Array<[string, string]> = [
		["parent segment", "../x"],
		["nested parent", "a/../../etc/passwd"],
		["absolute", "/etc/passwd"],
		["dot segment", "a/./b"],
		["NUL", "a\u0000b"],
		["backslash", "a\\b"],
		["drive letter", "C:/Windows/x"],
		["empty segment", "a//b"],
		["trailing slash", "a/"],
		["overlong path", `${"d".repeat(200)}/`.repeat(6) + "f"],
		["overlong segment", "s".repeat(256)],
		["too deep", Array.from({ length: 33 }, () => "d").join("/")],
		["fullwidth solidus", "a\uFF0Fb"],
		["fullwidth dots", "\uFF0E\uFF0E/x"],
		["one dot leader", "\u2024\u2024/x"],
		["division slash", "a\u2215b"],
		["fraction slash", "a\u2044b"],
		["zero-width space", "a\u200Bb"],
		["right-to-left override", "evil\u202Etxt.exe"],
		["git metadata", ".git/hooks/pre-commit"],
		["git metadata, other case", "sub/.GIT/config"],
		["windows device", "con.txt"],
		["lone surrogate", "a\uD800b"]
	];

	async function blobCount(): Promise<number> {
		return Number((await sql<{ n: string }>("SELECT count(*) AS n FROM project_blobs"))[0].n);
	}

	beforeAll(async () => {
		id = await newProject();
		expect((await commit(id, 0, [text("keep.txt", "keep")])).status).toBe(201);
	});

	test.each(attacks)("%s is refused with 422 PATH_INVALID", async (_label, path) => {
		const before = await blobCount();
		const unique = `content for ${path} ${randomBytes(8).toString("hex")}`;
		const r = await commit(id, 1, [text("fine.txt", unique), text(path, unique)]);
		expectError(r, 422, "PATH_INVALID");
		expect(r.json.error.details).toMatchObject({ field: "changes[1].path", reason: expect.any(String) });
		expect(await blobCount()).toBe(before);
		const rename = await commit(id, 1, [{ op: "rename", from: "keep.txt", to: path }]);
		expectError(rename, 422, "PATH_INVALID");
		expect((await api.call("GET", `/api/v1/projects/${id}`, { token: alice })).json.headVersion).toBe(1);
	});

	test("the same attacks on the read route, with the path sent verbatim, never escape", async () => {
		for (const p of [
			"..%2F..%2Fetc%2Fpasswd",
			"a/%2e%2e/keep.txt",
			"%2Fetc%2Fpasswd",
			"a/./keep.txt",
			"a%00b",
			"a%EF%BC%8Fb",
			"keep.txt%2F"
		]) {
			const r = await api.rawGet(`/api/v1/projects/${id}/files/${p}`, alice);
			expect({ p, status: r.status }).toEqual({ p, status: 422 });
			expect(JSON.parse(r.body).error.code).toBe("PATH_INVALID");
		}
		const raw = await api.rawGet(`/api/v1/projects/${id}/files/../../../etc/passwd`, alice);
		expect([404, 422]).toContain(raw.status);
		expect(raw.body).not.toContain("root:");
		expect((await api.rawGet(`/api/v1/projects/${id}/files/%E0%A4%A`, alice)).status).toBe(400);
	});

	test("a file over the size limit is refused with 413 and stores nothing", async () => {
		const before = await blobCount();
		const r = await commit(id, 1, [text("ok.txt", "fits"), binary("huge.bin", randomBytes(MAX_FILE + 1))]);
		expectError(r, 413, "FILE_TOO_LARGE");
		expect(r.json.error.details).toMatchObject({
			field: "changes[1].content",
			limit: MAX_FILE,
			actual: MAX_FILE + 1
		});
		expect(await blobCount()).toBe(before);
		const exact = await commit(id, 1, [binary("exact.bin", randomBytes(MAX_FILE))]);
		expect(exact.status).toBe(201);
	});

	test("too many files, malformed change sets and conflicts with the parent are refused", async () => {
		const many = Array.from({ length: 60 }, (_, i) => text(`f${i}.txt`, `${i}`));
		expectError(await commit(id, 2, many), 413, "TOO_MANY_FILES");
		expectError(
			await commit(id, 2, [{ op: "add", path: "x.bin", content: "not base64!", encoding: "base64" }]),
			422,
			"CHANGESET_INVALID"
		);
		expectError(await commit(id, 2, [text("keep.txt", "again")]), 409, "PATH_EXISTS");
		expectError(await commit(id, 2, [{ op: "delete", path: "nope.txt" }]), 409, "PATH_NOT_FOUND");
		expectError(await commit(id, 2, [text("KEEP.txt", "case")]), 409, "CASE_CONFLICT");
		expectError(await commit(id, 2, [text("keep.txt/inner", "dir")]), 409, "FILE_DIRECTORY_CONFLICT");
		expectError(
			await commit(id, 2, [text("d.txt", "1"), { op: "delete", path: "d.txt" }]),
			422,
			"DUPLICATE_PATH_IN_CHANGESET"
		);
		expectError(await commit(id, 2, []), 422, "VALIDATION_ERROR");
		expectError(await commit(id, 2, [{ op: "chmod", path: "keep.txt" }]), 422, "VALIDATION_ERROR");
		expect((await api.call("GET", `/api/v1/projects/${id}`, { token: alice })).json.headVersion).toBe(2);
	});
});

describe("dedup, purge and garbage collection", () => {
	const sharedContent = randomBytes(4096);
	const sha = sha256Hex(sharedContent);

	async function blobRows(shas: string[]): Promise<string[]> {
		const rows = await sql<{ sha256: string }>(
			"SELECT sha256 FROM project_blobs WHERE sha256 = ANY($1::bpchar[]) ORDER BY sha256",
			[shas]
		);
		return rows.map(r => r.sha256);
	}

	test("the same content in two projects is stored once; purge then GC removes only unreferenced blobs", async () => {
		const a = await newProject(alice, "a");
		const b = await newProject(bob, "b");
		const onlyA = randomBytes(1000);
		const onlyB = randomBytes(1000);
		expect((await commit(a, 0, [binary("shared.bin", sharedContent), binary("a.bin", onlyA)], alice)).status).toBe(
			201
		);
		expect(
			(await commit(b, 0, [binary("copy/shared.bin", sharedContent), binary("b.bin", onlyB)], bob)).status
		).toBe(201);
		// Twice in one project and again in a later version: still one blob.
		expect((await commit(a, 1, [binary("again.bin", sharedContent)], alice)).status).toBe(201);
		expect(await blobRows([sha])).toEqual([sha]);
		const refs = await sql<{ project_id: string }>(
			"SELECT project_id FROM project_blob_refs WHERE sha256 = $1 ORDER BY project_id",
			[sha]
		);
		expect(refs.map(r => r.project_id).sort()).toEqual([a, b].sort());

		// Soft delete keeps everything; purge forgets the project; GC then deletes what nobody references.
		expect((await api.call("DELETE", `/api/v1/projects/${a}`, { token: alice })).status).toBe(200);
		const keptBySoftDelete = await node.broker.call("projects.gc", { graceS: 0 });
		expect(keptBySoftDelete).toMatchObject({ deleted: 0 });
		expect(await node.broker.call("projects.purge", { projectId: a })).toEqual({ purged: [a] });
		expectError(await api.call("POST", `/api/v1/projects/${a}/restore`, { token: alice }), 404, "NOT_FOUND");
		const dry = await node.broker.call("projects.gc", { graceS: 0, dryRun: true });
		expect(dry).toMatchObject({ deleted: 1 });
		expect(await blobRows([sha256Hex(onlyA)])).toHaveLength(1);
		const gc = await node.broker.call("projects.gc", { graceS: 0 });
		expect(gc).toMatchObject({ deleted: 1, spared: 0 });
		expect(await blobRows([sha, sha256Hex(onlyA), sha256Hex(onlyB)])).toEqual([sha, sha256Hex(onlyB)].sort());
		expect(Buffer.compare((await readFile(b, "copy/shared.bin", 1, bob)).bytes, sharedContent)).toBe(0);

		// A grace period spares young unreferenced blobs.
		expect((await api.call("DELETE", `/api/v1/projects/${b}`, { token: bob })).status).toBe(200);
		expect(await node.broker.call("projects.purge", { projectId: b })).toEqual({ purged: [b] });
		expect(await node.broker.call("projects.gc", { graceS: 3600 })).toMatchObject({ deleted: 0, spared: 2 });
		expect(await node.broker.call("projects.gc", { graceS: 0 })).toMatchObject({ deleted: 2 });
		expect(await blobRows([sha, sha256Hex(onlyB)])).toEqual([]);
		// Every other project still reads all of its files.
		const others = await sql<{ project_id: string; sha256: string }>(
			"SELECT r.project_id, r.sha256 FROM project_blob_refs r LEFT JOIN project_blobs b ON b.sha256 = r.sha256 WHERE b.sha256 IS NULL"
		);
		expect(others).toEqual([]);
	});

	test("purge refuses projects that are not deleted", async () => {
		const c = await newProject();
		expect(await node.broker.call("projects.purge", { projectId: c })).toEqual({ purged: [] });
		expect((await api.call("GET", `/api/v1/projects/${c}`, { token: alice })).status).toBe(200);
	});

	test("GC never deletes a blob that a commit in flight has found in the store and is about to reference", async () => {
		// An orphan: a blob committed in a project that was then purged, so GC wants it gone.
		const orphan = randomBytes(2048);
		const q = await newProject();
		expect((await commit(q, 0, [binary("orphan.bin", orphan)])).status).toBe(201);
		await api.call("DELETE", `/api/v1/projects/${q}`, { token: alice });
		await node.broker.call("projects.purge", { projectId: q });
		const p = await newProject();

		// Stall a commit that reuses the orphan after it has found the blob present but before its references exist.
		const blocker = new Client({ connectionString: db.url });
		await blocker.connect();
		try {
			await blocker.query("BEGIN");
			await blocker.query("LOCK TABLE project_blob_refs IN EXCLUSIVE MODE");
			const committing = commit(p, 0, [binary("reused.bin", orphan)]);
			await waitForLockWaiter(blocker, "project_blob_refs");
			const collecting = node.broker.call("projects.gc", { graceS: 0 });
			// GC must now wait for the commit (it cannot take its lock); give it the chance to misbehave.
			const early = await Promise.race([
				collecting.then(() => "finished"),
				new Promise(r => setTimeout(() => r("waiting"), 500))
			]);
			expect(early).toBe("waiting");
			await blocker.query("ROLLBACK");
			expect((await committing).status).toBe(201);
			expect(await collecting).toMatchObject({ deleted: 0 });
		} finally {
			await blocker.end();
		}
		const v = await node.broker.call("projects.verifyVersion", { projectId: p, version: 1 });
		expect(v).toEqual({ projectId: p, version: 1, ok: true, checked: 1, problems: [] });
	}, 30_000);
});
