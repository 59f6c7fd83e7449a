/**
 * Project metadata, membership and permissions over HTTP, and the internal actions other services
 * use (access, readContext, commitAsUser), against the real PostgreSQL and Redis.
 */
import type { ServiceSchema } from "moleculer";
import { QueryTypes } from "sequelize";
import { bearerFor, createTestDatabase, startTestNode, TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { binary, client, expectError, text } from "./http";

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let api: ReturnType<typeof client>;
/** The users service's `exist`, as these tests' accounts: every name except those starting with "ghost". */
const knownUsers: ServiceSchema = {
	name: "users",
	actions: {
		exist: {
			visibility: "public",
			handler: (ctx: { params: { userIds: string[] } }) => ({
				known: ctx.params.userIds.filter(id => !id.startsWith("ghost"))
			})
		}
	}
};

const tokens: Record<string, string> = {};
const tok = (user: string) => (tokens[user] ??= bearerFor(node.config, user));

beforeAll(async () => {
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "projects"],
		extraServices: [knownUsers],
		env: { RATE_LIMIT_PER_MINUTE: "100000" }
	});
	api = client(node.baseUrl);
});
afterAll(async () => {
	await node?.stop();
	await db?.drop();
});

async function create(user: string, name: string): Promise<string> {
	const r = await api.call("POST", "/api/v1/projects", { token: tok(user), body: { name } });
	expect(r.status).toBe(201);
	return r.json.id;
}

describe("project metadata", () => {
	test("create, read, rename, archive, unarchive", async () => {
		const r = await api.call("POST", "/api/v1/projects", {
			token: tok("owner1"),
			body: { name: "  My App  ", description: "d", ownerId: "someone-else" }
		});
		expect(r.status).toBe(201);
		expect(r.json).toMatchObject({
			name: "My App",
			description: "d",
			status: "active",
			ownerId: "owner1",
			role: "owner",
			headVersion: 0,
			fileCount: 0,
			totalBytes: 0
		});
		expect(r.headers.get("location")).toBe(`/api/v1/projects/${r.json.id}`);
		const id = r.json.id;
		expect((await api.call("GET", `/api/v1/projects/${id}`, { token: tok("owner1") })).json.name).toBe("My App");
		const renamed = await api.call("PATCH", `/api/v1/projects/${id}`, {
			token: tok("owner1"),
			body: { name: "Renamed" }
		});
		expect(renamed.json).toMatchObject({ name: "Renamed", status: "active", archivedAt: null });
		const archived = await api.call("PATCH", `/api/v1/projects/${id}`, {
			token: tok("owner1"),
			body: { archived: true }
		});
		expect(archived.json).toMatchObject({ status: "archived", archivedAt: expect.any(String) });
		// Archived projects are read-only.
		const c = await api.call("POST", `/api/v1/projects/${id}/versions`, {
			token: tok("owner1"),
			body: { baseVersion: 0, message: "m", changes: [text("a", "b")] }
		});
		expectError(c, 409, "PROJECT_ARCHIVED");
		expect(
			(await api.call("PATCH", `/api/v1/projects/${id}`, { token: tok("owner1"), body: { archived: false } }))
				.json.status
		).toBe("active");
		expectError(
			await api.call("PATCH", `/api/v1/projects/${id}`, { token: tok("owner1"), body: { name: "" } }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await api.call("POST", "/api/v1/projects", { token: tok("owner1"), body: {} }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(await api.call("GET", "/api/v1/projects"), 401, "UNAUTHORIZED");
	});

	test("list: own and shared, archived on request, cursor pagination without gaps or repeats", async () => {
		const ids: string[] = [];
		for (let i = 0; i < 5; i++) ids.push(await create("lister", `p${i}`));
		const shared = await create("other", "theirs");
		await api.call("PUT", `/api/v1/projects/${shared}/members/lister`, {
			token: tok("other"),
			body: { role: "viewer" }
		});
		await api.call("PATCH", `/api/v1/projects/${ids[0]}`, { token: tok("lister"), body: { archived: true } });
		await api.call("DELETE", `/api/v1/projects/${ids[1]}`, { token: tok("lister") });

		const seen: string[] = [];
		let cursor: string | null = null;
		do {
			const q: string = cursor ? `?limit=2&cursor=${cursor}` : "?limit=2";
			const page = await api.call("GET", `/api/v1/projects${q}`, { token: tok("lister") });
			expect(page.status).toBe(200);
			expect(page.json.items.length).toBeLessThanOrEqual(2);
			seen.push(...page.json.items.map((p: { id: string }) => p.id));
			cursor = page.json.nextCursor;
		} while (cursor);
		expect(seen).toEqual([shared, ids[4], ids[3], ids[2]]);

		const own = await api.call("GET", "/api/v1/projects?scope=own&includeArchived=true", { token: tok("lister") });
		expect(own.json.items.map((p: { id: string }) => p.id)).toEqual([ids[4], ids[3], ids[2], ids[0]]);
		const sharedOnly = await api.call("GET", "/api/v1/projects?scope=shared", { token: tok("lister") });
		expect(sharedOnly.json.items).toEqual([
			expect.objectContaining({ id: shared, role: "viewer", ownerId: "other" })
		]);
		expectError(
			await api.call("GET", "/api/v1/projects?cursor=bogus", { token: tok("lister") }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await api.call("GET", "/api/v1/projects?limit=1000", { token: tok("lister") }),
			422,
			"VALIDATION_ERROR"
		);
	});

	test("delete is soft and restorable by an owner until purged", async () => {
		const id = await create("owner2", "doomed");
		const del = await api.call("DELETE", `/api/v1/projects/${id}`, { token: tok("owner2") });
		expect(del.status).toBe(200);
		expect(del.json).toMatchObject({
			id,
			status: "deleted",
			deletedAt: expect.any(String),
			purgeAfter: expect.any(String)
		});
		expectError(await api.call("GET", `/api/v1/projects/${id}`, { token: tok("owner2") }), 404, "NOT_FOUND");
		expectError(await api.call("DELETE", `/api/v1/projects/${id}`, { token: tok("owner2") }), 404, "NOT_FOUND");
		const restored = await api.call("POST", `/api/v1/projects/${id}/restore`, { token: tok("owner2") });
		expect(restored.json).toMatchObject({ id, status: "active", deletedAt: null });
		expectError(
			await api.call("POST", `/api/v1/projects/${id}/restore`, { token: tok("owner2") }),
			409,
			"PROJECT_NOT_DELETED"
		);
	});
});

describe("members and permissions", () => {
	let id: string;

	beforeAll(async () => {
		id = await create("boss", "team");
		const v1 = await api.call("POST", `/api/v1/projects/${id}/versions`, {
			token: tok("boss"),
			body: { baseVersion: 0, message: "init", changes: [text("a.txt", "a\n")] }
		});
		expect(v1.status).toBe(201);
		expect(
			(
				await api.call("PUT", `/api/v1/projects/${id}/members/ed`, {
					token: tok("boss"),
					body: { role: "editor" }
				})
			).status
		).toBe(200);
		expect(
			(
				await api.call("PUT", `/api/v1/projects/${id}/members/vi`, {
					token: tok("boss"),
					body: { role: "viewer" }
				})
			).status
		).toBe(200);
	});

	test("members are listed with roles", async () => {
		const r = await api.call("GET", `/api/v1/projects/${id}/members`, { token: tok("vi") });
		expect(r.json.items.map((m: { userId: string; role: string }) => [m.userId, m.role])).toEqual([
			["boss", "owner"],
			["ed", "editor"],
			["vi", "viewer"]
		]);
	});

	test("members page with the list cursor: owners, editors, viewers, no gaps or repeats; a bad cursor is the one 422", async () => {
		const seen: string[][] = [];
		let cursor: string | null = null;
		do {
			const q: string = cursor ? `?limit=1&cursor=${cursor}` : "?limit=1";
			const page = await api.call("GET", `/api/v1/projects/${id}/members${q}`, { token: tok("vi") });
			expect(page.status).toBe(200);
			expect(page.json.items).toHaveLength(1);
			seen.push(page.json.items.map((m: { userId: string; role: string }) => [m.userId, m.role])[0]);
			cursor = page.json.nextCursor;
		} while (cursor);
		expect(seen).toEqual([
			["boss", "owner"],
			["ed", "editor"],
			["vi", "viewer"]
		]);
		const versionsCursor = (await api.call("GET", `/api/v1/projects/${id}/versions?limit=1`, { token: tok("vi") }))
			.json.nextCursor;
		for (const bad of ["bogus", versionsCursor ?? "c1.x"]) {
			const r = await api.call("GET", `/api/v1/projects/${id}/members?cursor=${bad}`, { token: tok("vi") });
			expectError(r, 422, "VALIDATION_ERROR");
			expect(r.json.error.details).toEqual([
				{ field: "cursor", message: "not a cursor from this list", type: "cursor" }
			]);
		}
	});

	test("a viewer reads but cannot commit, start the sandbox, change the project or its members", async () => {
		const t = tok("vi");
		expect((await api.call("GET", `/api/v1/projects/${id}/files/a.txt`, { token: t })).bytes.toString()).toBe(
			"a\n"
		);
		expect((await api.call("GET", `/api/v1/projects/${id}/diff?from=0&to=1`, { token: t })).status).toBe(200);
		expect((await api.call("GET", `/api/v1/projects/${id}/sandbox`, { token: t })).status).toBe(200);
		const commit = await api.call("POST", `/api/v1/projects/${id}/versions`, {
			token: t,
			body: { baseVersion: 1, message: "m", changes: [text("b.txt", "b")] }
		});
		expectError(commit, 403, "INSUFFICIENT_ROLE");
		expectError(
			await api.call("PUT", `/api/v1/projects/${id}/sandbox`, { token: t, body: { state: "provisioning" } }),
			403,
			"INSUFFICIENT_ROLE"
		);
		expectError(
			await api.call("PATCH", `/api/v1/projects/${id}`, { token: t, body: { name: "mine" } }),
			403,
			"INSUFFICIENT_ROLE"
		);
		expectError(await api.call("DELETE", `/api/v1/projects/${id}`, { token: t }), 403, "INSUFFICIENT_ROLE");
		expectError(
			await api.call("PUT", `/api/v1/projects/${id}/members/vi`, { token: t, body: { role: "owner" } }),
			403,
			"FORBIDDEN"
		);
		expectError(await api.call("DELETE", `/api/v1/projects/${id}/members/ed`, { token: t }), 403, "FORBIDDEN");
		expect((await api.call("GET", `/api/v1/projects/${id}`, { token: tok("boss") })).json.headVersion).toBe(1);
	});

	test("an editor commits but cannot manage the project", async () => {
		const r = await api.call("POST", `/api/v1/projects/${id}/versions`, {
			token: tok("ed"),
			body: { baseVersion: 1, message: "edit", changes: [text("b.txt", "b")] }
		});
		expect(r.status).toBe(201);
		expect(r.json.authorId).toBe("ed");
		expectError(
			await api.call("PATCH", `/api/v1/projects/${id}`, { token: tok("ed"), body: { archived: true } }),
			403,
			"INSUFFICIENT_ROLE"
		);
		expectError(
			await api.call("PUT", `/api/v1/projects/${id}/members/x`, { token: tok("ed"), body: { role: "viewer" } }),
			403,
			"FORBIDDEN"
		);
		// Not allowed to manage members: refused before anyone learns whether the account exists.
		expectError(
			await api.call("PUT", `/api/v1/projects/${id}/members/ghost-ed`, {
				token: tok("ed"),
				body: { role: "viewer" }
			}),
			403,
			"FORBIDDEN"
		);
	});

	test("an owner cannot add an account that does not exist (404 USER_NOT_FOUND); nothing changes", async () => {
		const before = (await api.call("GET", `/api/v1/projects/${id}/members`, { token: tok("boss") })).json.items;
		const r = await api.call("PUT", `/api/v1/projects/${id}/members/ghost-1`, {
			token: tok("boss"),
			body: { role: "viewer" }
		});
		expectError(r, 404, "USER_NOT_FOUND");
		expect((await api.call("GET", `/api/v1/projects/${id}/members`, { token: tok("boss") })).json.items).toEqual(
			before
		);
	});

	test("a non-member gets 404 on every route, exactly as for a project that does not exist", async () => {
		const t = tok("stranger");
		const missing = "00000000-0000-4000-8000-000000000000";
		for (const target of [id, missing, "not-a-uuid"]) {
			const calls: Array<[string, string, unknown?]> = [
				["GET", ""],
				["PATCH", "", { name: "x" }],
				["DELETE", ""],
				["POST", "/restore"],
				["GET", "/members"],
				["PUT", "/members/stranger", { role: "owner" }],
				["DELETE", "/members/boss"],
				["GET", "/versions"],
				["GET", "/versions/1"],
				["POST", "/versions", { baseVersion: 1, message: "m", changes: [text("x", "y")] }],
				["GET", "/files"],
				["GET", "/files/a.txt"],
				["GET", "/diff?from=0&to=1"],
				["GET", "/sandbox"],
				["PUT", "/sandbox", { state: "provisioning" }]
			];
			for (const [method, suffix, body] of calls) {
				const r = await api.call(method, `/api/v1/projects/${target}${suffix}`, { token: t, body });
				expect({ target, method, suffix, status: r.status, code: r.json?.error?.code }).toEqual({
					target,
					method,
					suffix,
					status: 404,
					code: "NOT_FOUND"
				});
			}
		}
		const list = await api.call("GET", "/api/v1/projects?includeArchived=true", { token: t });
		expect(list.json.items).toEqual([]);
		// Nothing leaked in between: the project is unchanged.
		const p = await api.call("GET", `/api/v1/projects/${id}`, { token: tok("boss") });
		expect(p.json).toMatchObject({ name: "team", status: "active" });
	});

	test("roles change; the last owner can neither leave nor be demoted; members may leave", async () => {
		expectError(
			await api.call("DELETE", `/api/v1/projects/${id}/members/boss`, { token: tok("boss") }),
			409,
			"LAST_OWNER"
		);
		expectError(
			await api.call("PUT", `/api/v1/projects/${id}/members/boss`, {
				token: tok("boss"),
				body: { role: "editor" }
			}),
			409,
			"LAST_OWNER"
		);
		expectError(
			await api.call("PUT", `/api/v1/projects/${id}/members/x`, { token: tok("boss"), body: { role: "admin" } }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await api.call("DELETE", `/api/v1/projects/${id}/members/nobody`, { token: tok("boss") }),
			404,
			"NOT_A_MEMBER"
		);
		expect(
			(
				await api.call("PUT", `/api/v1/projects/${id}/members/ed`, {
					token: tok("boss"),
					body: { role: "owner" }
				})
			).status
		).toBe(200);
		expect((await api.call("DELETE", `/api/v1/projects/${id}/members/boss`, { token: tok("boss") })).status).toBe(
			200
		);
		expectError(await api.call("GET", `/api/v1/projects/${id}`, { token: tok("boss") }), 404, "NOT_FOUND");
		expect((await api.call("DELETE", `/api/v1/projects/${id}/members/vi`, { token: tok("vi") })).json).toEqual({
			projectId: id,
			userId: "vi",
			removed: true
		});
		expectError(await api.call("GET", `/api/v1/projects/${id}`, { token: tok("vi") }), 404, "NOT_FOUND");
		const members = await api.call("GET", `/api/v1/projects/${id}/members`, { token: tok("ed") });
		expect(members.json.items).toEqual([expect.objectContaining({ userId: "ed", role: "owner" })]);
	});
});

describe("internal actions for other services", () => {
	let id: string;

	beforeAll(async () => {
		id = await create("dev", "ai-target");
		await api.call("PUT", `/api/v1/projects/${id}/members/watcher`, {
			token: tok("dev"),
			body: { role: "viewer" }
		});
		const r = await api.call("POST", `/api/v1/projects/${id}/versions`, {
			token: tok("dev"),
			body: {
				baseVersion: 0,
				message: "init",
				changes: [
					text("src/a.ts", "const a = 1;\n"),
					text("src/b.ts", "const b = 2;\n"),
					binary("logo.png", Buffer.from([0x89, 0x50, 0, 1]))
				]
			}
		});
		expect(r.status).toBe(201);
	});

	test("access returns the role, or 404 for non-members, and is not reachable through the gateway", async () => {
		expect(await node.broker.call("projects.access", { projectId: id, userId: "watcher" })).toEqual({
			projectId: id,
			role: "viewer",
			status: "active",
			headVersion: 1,
			// a personal project: no organisation (tasks.submit reads it for the payer and the tier)
			orgId: null
		});
		await expect(node.broker.call("projects.access", { projectId: id, userId: "stranger" })).rejects.toMatchObject({
			code: 404,
			type: "NOT_FOUND"
		});
		expectError(
			await api.call("GET", `/api/v1/projects/access?projectId=${id}&userId=dev`, { token: tok("dev") }),
			404,
			"NOT_FOUND"
		);
	});

	test("readContext returns text files within the byte budget and lists what it left out", async () => {
		const r = await node.broker.call("projects.readContext", { projectId: id, userId: "watcher", maxBytes: 20 });
		expect(r).toEqual({
			projectId: id,
			version: 1,
			maxBytes: 20,
			files: [{ path: "src/a.ts", size: 13, content: "const a = 1;\n" }],
			omitted: [
				{ path: "logo.png", size: 4, reason: "binary" },
				{ path: "src/b.ts", size: 13, reason: "budget" }
			],
			totalBytes: 13
		});
		await expect(
			node.broker.call("projects.readContext", { projectId: id, userId: "stranger", maxBytes: 100 })
		).rejects.toMatchObject({ code: 404 });
	});

	test("commitAsUser checks the user's role and records the task id on the version and its durable event", async () => {
		const changes = [{ op: "modify", path: "src/a.ts", content: "const a = 42;\n" }];
		await expect(
			node.broker.call("projects.commitAsUser", {
				projectId: id,
				userId: "watcher",
				baseVersion: 1,
				message: "ai",
				changes,
				taskId: "task-1"
			})
		).rejects.toMatchObject({ code: 403, type: "INSUFFICIENT_ROLE" });
		await expect(
			node.broker.call("projects.commitAsUser", {
				projectId: id,
				userId: "stranger",
				baseVersion: 1,
				message: "ai",
				changes,
				taskId: "task-1"
			})
		).rejects.toMatchObject({ code: 404 });
		const v = await node.broker.call("projects.commitAsUser", {
			projectId: id,
			userId: "dev",
			baseVersion: 1,
			message: "ai edit",
			changes,
			taskId: "task-7"
		});
		expect(v).toMatchObject({ projectId: id, number: 2, authorId: "dev", taskId: "task-7" });
		await expect(
			node.broker.call("projects.commitAsUser", {
				projectId: id,
				userId: "dev",
				baseVersion: 1,
				message: "stale",
				changes,
				taskId: "task-8"
			})
		).rejects.toMatchObject({ code: 409, type: "VERSION_CONFLICT", data: { headVersion: 2 } });

		const events = await node.runtime.sequelize.query<{ payload: Record<string, unknown> }>(
			`SELECT payload FROM outbox_events WHERE topic = 'projects.version.created' AND payload->>'projectId' = $1 ORDER BY id`,
			{ bind: [id], type: QueryTypes.SELECT }
		);
		expect(events.map(e => e.payload)).toEqual([
			expect.objectContaining({
				version: 1,
				parentVersion: 0,
				authorId: "dev",
				taskId: null,
				changes: { added: 3, removed: 0, modified: 0, renamed: 0 }
			}),
			expect.objectContaining({
				version: 2,
				parentVersion: 1,
				authorId: "dev",
				taskId: "task-7",
				message: "ai edit",
				changes: { added: 0, removed: 0, modified: 1, renamed: 0 }
			})
		]);
	});
});

describe("REPL commands", () => {
	const { projectsReplCommands } =
		// eslint-disable-next-line @typescript-eslint/no-require-imports
		require("../../../src/projects/repl") as typeof import("../../../src/projects/repl");
	const run = async (
		name: string,
		args: Record<string, unknown>,
		options: Record<string, unknown> = {}
	): Promise<string> => {
		const cmd = projectsReplCommands.find(c => c.command.split(" ")[0] === name)!;
		const lines: string[] = [];
		const spy = jest.spyOn(console, "log").mockImplementation((...a: unknown[]) => void lines.push(a.join(" ")));
		try {
			await cmd.action(node.broker, { ...args, options });
		} finally {
			spy.mockRestore();
		}
		return lines.join("\n");
	};

	test("show, verify, purge, gc and sweep print what they did", async () => {
		const id = await create("repl-user", "shown");
		await api.call("POST", `/api/v1/projects/${id}/versions`, {
			token: tok("repl-user"),
			body: { baseVersion: 0, message: "first", changes: [text("x.txt", "x")] }
		});
		const shown = await run("projects-show", { projectId: id }, { versions: "5" });
		expect(shown).toContain(`shown  (${id})`);
		expect(shown).toContain("head v1: 1 files, 1 bytes");
		expect(shown).toContain("members: repl-user (owner)");
		expect(shown).toContain("sandbox: none since");
		expect(shown).toMatch(/v1 {2}\S+ {2}repl-user {2}1 files, 1 bytes {2}"first"/);
		expect(await run("projects-verify", { projectId: id, version: "1" })).toBe("ok: 1 blobs verified");
		expect(await run("projects-gc", {}, { dryRun: true, grace: "0" })).toMatch(/^would delete \d+ of \d+ blobs/);
		expect(await run("projects-purge", { projectId: id })).toBe("purged 0 project(s)");
		await api.call("DELETE", `/api/v1/projects/${id}`, { token: tok("repl-user") });
		expect(await run("projects-purge", { projectId: id })).toBe(`purged 1 project(s): ${id}`);
		expect(await run("projects-sweep", {})).toMatch(
			/^\d+ sandbox\(es\) failed on timeout, \d+ project\(s\) purged$/
		);
		await expect(run("projects-show", { projectId: id })).rejects.toMatchObject({ code: 404 });
		await expect(run("projects-gc", {}, { grace: "-1" })).rejects.toThrow("--grace must be a non-negative integer");
	});
});
