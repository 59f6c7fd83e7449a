import type { Transaction } from "sequelize";
import { DomainError } from "../../../src/errors";
import { ProjectCaches } from "../../../src/projects/caches";
import { runBlobGc } from "../../../src/projects/gc";
import { ProjectGuard, resolveVersion } from "../../../src/projects/guard";
import type { GuardRepo } from "../../../src/projects/guard";
import { ProjectLifecycle } from "../../../src/projects/lifecycle";
import { sha256Hex } from "../../../src/projects/hash";
import type { Manifest } from "../../../src/projects/manifest";
import type { MemberRecord, ProjectRecord, SandboxRecord } from "../../../src/projects/repository";
import { effectiveRole } from "../../../src/projects/access";
import type { OrgRoleOfMember } from "../../../src/projects/access";
import { initialSandboxStatus } from "../../../src/projects/sandbox";
import { SANDBOX_CHANGED, Sandboxes } from "../../../src/projects/sandboxes";
import type { SandboxesDeps } from "../../../src/projects/sandboxes";
import { FakeBlobStore, FakeCacher, FakeDb, PROJECT_ID, rejection } from "./fakes";

const hello = Buffer.from("hello");
const helloEntry = { sha256: sha256Hex(hello), size: hello.length };

describe("ProjectCaches", () => {
	function setup(manifests: Record<number, Manifest> = { 1: { "a.txt": helloEntry } }, hotManifests = 2) {
		const cacher = new FakeCacher();
		const blobs = new FakeBlobStore();
		const reads: number[] = [];
		const warnings: string[] = [];
		const caches = new ProjectCaches({
			cacher,
			warn: m => warnings.push(m),
			readManifest: async (_p, n) => {
				reads.push(n);
				return manifests[n] ?? null;
			},
			blobs,
			ttlS: 60,
			blobMaxBytes: 8,
			hotManifests
		});
		return { cacher, blobs, reads, warnings, caches };
	}

	test("a manifest comes from SQL once, then from this process; another process finds it in the cacher", async () => {
		const s = setup();
		expect(await s.caches.manifest(PROJECT_ID, 1)).toEqual({ "a.txt": helloEntry });
		expect(await s.caches.manifest(PROJECT_ID, 1)).toEqual({ "a.txt": helloEntry });
		expect(s.reads).toEqual([1]);
		expect(s.cacher.gets).toEqual([`projects.manifest:${PROJECT_ID}:1`]);
		const other = new ProjectCaches({
			cacher: s.cacher,
			warn: () => {},
			readManifest: () => Promise.reject(new Error("no SQL")),
			blobs: s.blobs,
			ttlS: 60,
			blobMaxBytes: 8
		});
		expect(await other.manifest(PROJECT_ID, 1)).toEqual({ "a.txt": helloEntry });
	});

	test("the per-process copies are a bounded LRU", async () => {
		const s = setup({ 1: {}, 2: {}, 3: {} }, 2);
		s.cacher.fail = true; // only the LRU answers
		await s.caches.manifest(PROJECT_ID, 1);
		await s.caches.manifest(PROJECT_ID, 2);
		await s.caches.manifest(PROJECT_ID, 1); // 1 is now the most recent
		await s.caches.manifest(PROJECT_ID, 3); // evicts 2
		await s.caches.manifest(PROJECT_ID, 1);
		await s.caches.manifest(PROJECT_ID, 2);
		expect(s.reads).toEqual([1, 2, 3, 2]);
	});

	test("a version that does not exist is a 404 and is not cached", async () => {
		const s = setup();
		expect((await rejection(s.caches.manifest(PROJECT_ID, 7))).code).toBe("NOT_FOUND");
		expect(s.cacher.sets).toEqual([]);
	});

	test("a failing cacher is logged and bypassed", async () => {
		const s = setup();
		s.cacher.fail = true;
		expect(await s.caches.manifest(PROJECT_ID, 1)).toEqual({ "a.txt": helloEntry });
		expect(s.warnings).toEqual(["projects cache read failed", "projects cache write failed"]);
	});

	test("rememberManifest seeds both caches: the committed version is never read from SQL", async () => {
		const s = setup({});
		await s.caches.rememberManifest(PROJECT_ID, 4, { "b.txt": helloEntry });
		expect(await s.caches.manifest(PROJECT_ID, 4)).toEqual({ "b.txt": helloEntry });
		expect(s.reads).toEqual([]);
		expect(s.cacher.sets).toEqual([`projects.manifest:${PROJECT_ID}:4`]);
	});

	test("small blobs are cached (base64), large ones always read from the store, a lost one is BLOB_MISSING", async () => {
		const s = setup();
		await s.blobs.put(helloEntry.sha256, hello);
		expect(await s.caches.blob(helloEntry)).toEqual(hello);
		expect(s.cacher.entries.get(`projects.blob:${helloEntry.sha256}`)).toBe(hello.toString("base64"));
		const big = Buffer.from("more than eight bytes");
		const bigEntry = { sha256: sha256Hex(big), size: big.length };
		await s.blobs.put(bigEntry.sha256, big);
		expect(await s.caches.blob(bigEntry)).toEqual(big);
		expect(s.cacher.sets).toEqual([`projects.blob:${helloEntry.sha256}`]);
		const lost = await rejection(s.caches.blob({ sha256: sha256Hex(Buffer.from("x")), size: 1 }));
		expect([lost.code, lost.status]).toEqual(["BLOB_MISSING", 500]);
	});
});

describe("ProjectGuard", () => {
	const base = new FakeDb().project;
	function guard(
		found: { status?: ProjectRecord["status"]; role?: MemberRecord["role"] } | null,
		members: MemberRecord[] = []
	) {
		const project = { ...base, status: found?.status ?? "active" };
		const repo: GuardRepo = {
			projectForMember: async () => (found ? { project, role: found.role ?? "owner" } : null),
			project: async () => (found ? project : null),
			members: async () => members
		};
		return new ProjectGuard(repo, async () => null);
	}
	const tx = {} as Transaction;
	const member = (userId: string, role: MemberRecord["role"]): MemberRecord => ({
		userId,
		role,
		addedBy: null,
		createdAt: new Date(0),
		updatedAt: new Date(0)
	});

	test("non-members, deleted projects and malformed ids are all 404; too low a role is 403", async () => {
		expect((await rejection(guard(null).require(PROJECT_ID, "u", "viewer"))).code).toBe("NOT_FOUND");
		expect((await rejection(guard({}).require("not-a-uuid", "u", "viewer"))).code).toBe("NOT_FOUND");
		expect((await rejection(guard({ status: "deleted" }).require(PROJECT_ID, "u", "viewer"))).code).toBe(
			"NOT_FOUND"
		);
		const low = await rejection(guard({ role: "viewer" }).require(PROJECT_ID, "u", "editor"));
		expect([low.status, low.code]).toEqual([403, "INSUFFICIENT_ROLE"]);
		expect((await guard({ role: "editor" }).require(PROJECT_ID, "u", "editor")).role).toBe("editor");
	});

	test("owner changes: only owners; a deleted project only when asked for (restore), and only to owners", async () => {
		const editor = await rejection(guard({ role: "editor" }).forOwner(tx, PROJECT_ID, "u", "delete a project"));
		expect([editor.code, editor.message]).toEqual(["INSUFFICIENT_ROLE", "Only an owner can delete a project"]);
		expect((await rejection(guard({ status: "deleted" }).forOwner(tx, PROJECT_ID, "u", "x"))).code).toBe(
			"NOT_FOUND"
		);
		const restored = await guard({ status: "deleted" }).forOwner(tx, PROJECT_ID, "u", "x", { deleted: true });
		expect(restored.project.status).toBe("deleted");
		const hidden = guard({ status: "deleted", role: "editor" }).forOwner(tx, PROJECT_ID, "u", "x", {
			deleted: true
		});
		expect((await rejection(hidden)).code).toBe("NOT_FOUND");
	});

	test("member changes throw the verdict on the named field; the last owner stays", async () => {
		const g = guard({ role: "owner" }, [member("u", "owner"), member("v", "editor")]);
		const last = await rejection(
			g.memberChange(tx, PROJECT_ID, { actorId: "u", targetId: "u", change: { kind: "remove" }, field: "userId" })
		);
		expect([last.status, last.code, (last.details as { field: string }).field]).toEqual([
			409,
			"LAST_OWNER",
			"userId"
		]);
		const same = { kind: "set", role: "editor" } as const;
		expect(
			await g.memberChange(tx, PROJECT_ID, { actorId: "u", targetId: "v", change: same, field: "role" })
		).toEqual({
			noop: true
		});
	});

	test("resolveVersion: the head by default, 404 past it", () => {
		expect(resolveVersion({ ...base, headVersion: 3 }, undefined)).toBe(3);
		expect(resolveVersion({ ...base, headVersion: 3 }, 2)).toBe(2);
		expect(() => resolveVersion({ ...base, headVersion: 3 }, 4)).toThrow(DomainError);
	});
});

describe("Sandboxes", () => {
	function setup(state: SandboxRecord["state"] = "none") {
		const db = new FakeDb();
		let row: SandboxRecord = {
			...initialSandboxStatus(new Date("2026-12-01T00:00:00Z")),
			state,
			version: state === "none" ? null : 1,
			projectId: PROJECT_ID,
			generation: 1
		};
		let rivalEvery = false;
		const purges: Date[] = [];
		const repo: SandboxesDeps["repo"] = {
			sandbox: async () => ({ ...row }),
			updateSandbox: async (_tx, _id, generation, next) => {
				if (rivalEvery) row = { ...row, generation: row.generation + 1 };
				if (generation !== row.generation) return null;
				row = { ...row, ...next, generation: row.generation + 1 };
				return { ...row };
			},
			heartbeat: async (_id, version) =>
				row.state === "running" && (version === null || version === row.version) ? { ...row } : null,
			failTimedOutSandboxes: async () => [
				{ ...row, state: "failed", failureReason: "heartbeat timeout", from: "running" as const }
			],
			purge: async ({ deletedBefore }) => {
				purges.push(deletedBefore);
				return ["gone"];
			}
		};
		const sandboxes = new Sandboxes({
			repo,
			transaction: db.transaction,
			publish: db.publish,
			timeouts: { heartbeatTimeoutS: 60, provisionTimeoutS: 600 },
			purgeAfterS: 100
		});
		return { db, sandboxes, purges, row: () => row, rivalAlways: () => (rivalEvery = true) };
	}

	test("a transition is applied on the generation and published in its transaction", async () => {
		const s = setup();
		const r = await s.sandboxes.apply(PROJECT_ID, { to: "provisioning", actor: "user", version: 1 });
		expect(r).toMatchObject({ state: "provisioning", version: 1, generation: 2 });
		expect(s.db.state.events).toEqual([
			{
				topic: SANDBOX_CHANGED,
				payload: expect.objectContaining({ from: "none", to: "provisioning", actor: "user", generation: 2 })
			}
		]);
	});

	test("illegal transitions are 409 and write nothing; asking for the current state is a no-op", async () => {
		const s = setup();
		const err = await rejection(s.sandboxes.apply(PROJECT_ID, { to: "running", actor: "user" }));
		expect([err.status, err.code]).toEqual([409, "ILLEGAL_SANDBOX_TRANSITION"]);
		expect((await s.sandboxes.apply(PROJECT_ID, { to: "none", actor: "user" })).generation).toBe(1);
		expect(s.db.transactions).toEqual([]);
	});

	test("a rival transition every time: three plans, then SANDBOX_BUSY", async () => {
		const s = setup();
		s.rivalAlways();
		const err = await rejection(s.sandboxes.apply(PROJECT_ID, { to: "provisioning", actor: "user", version: 1 }));
		expect(err.code).toBe("SANDBOX_BUSY");
		expect(s.db.transactions).toHaveLength(3);
		expect(s.db.state.events).toEqual([]);
	});

	test("stopIfUp stops a running sandbox and leaves a stopped one alone", async () => {
		const up = setup("running");
		await up.sandboxes.stopIfUp(PROJECT_ID);
		expect(up.row().state).toBe("stopped");
		const down = setup("stopped");
		await down.sandboxes.stopIfUp(PROJECT_ID);
		expect(down.db.transactions).toEqual([]);
	});

	test("heartbeats: the status while running, else 409 SANDBOX_NOT_RUNNING with the state; bad ids 404", async () => {
		const s = setup("running");
		expect((await s.sandboxes.heartbeat(PROJECT_ID, 1)).state).toBe("running");
		const other = await rejection(s.sandboxes.heartbeat(PROJECT_ID, 2));
		expect([other.code, (other.details as { state: string }).state]).toEqual(["SANDBOX_NOT_RUNNING", "running"]);
		expect((await rejection(s.sandboxes.heartbeat("nope", 1))).code).toBe("NOT_FOUND");
	});

	test("the sweep publishes each timed-out sandbox as failed by the sweep and purges old deleted projects", async () => {
		const s = setup("running");
		const before = Date.now();
		expect(await s.sandboxes.sweep()).toEqual({ failedSandboxes: 1, purgedProjects: 1 });
		expect(s.db.state.events).toEqual([
			{
				topic: SANDBOX_CHANGED,
				payload: expect.objectContaining({ from: "running", to: "failed", actor: "sweep" })
			}
		]);
		expect(s.purges[0].getTime()).toBeLessThanOrEqual(before - 100_000 + 1000);
	});
});

describe("runBlobGc", () => {
	function setup() {
		const db = new FakeDb();
		const store = new FakeBlobStore();
		const locked: Transaction[] = [];
		const referenced = new Set<string>();
		const removeStaleTempFiles = jest.fn(async () => 2);
		Object.assign(store, { removeStaleTempFiles });
		const deps = {
			store,
			repo: {
				lockForGc: async (tx: Transaction) => void locked.push(tx),
				referencedBlobs: async (shas: readonly string[]) => new Set(shas.filter(s => referenced.has(s)))
			},
			transaction: db.transaction
		};
		return { db, store, locked, referenced, removeStaleTempFiles, deps };
	}

	test("deletes unreferenced blobs in the locked transaction, then the store's leftovers", async () => {
		const s = setup();
		const keep = Buffer.from("keep");
		await s.store.put(sha256Hex(keep), keep);
		await s.store.put(sha256Hex(hello), hello);
		s.referenced.add(sha256Hex(keep));
		const r = await runBlobGc(s.deps, { dryRun: false, graceS: 0 });
		expect(r).toEqual({ scanned: 2, deleted: 1, spared: 0, removedTempFiles: 2 });
		expect(s.store.keys()).toEqual([sha256Hex(keep)]);
		const del = s.store.calls.find(c => c.method === "delete")!;
		expect(del.transaction).toBe(s.locked[0]);
		expect(s.db.transactions.map(t => t.tx)).toEqual(s.locked);
	});

	test("a dry run deletes nothing and leaves the leftovers", async () => {
		const s = setup();
		await s.store.put(sha256Hex(hello), hello);
		expect(await runBlobGc(s.deps, { dryRun: true, graceS: 0 })).toEqual({
			scanned: 1,
			deleted: 1,
			spared: 0,
			removedTempFiles: 0
		});
		expect(s.store.keys()).toHaveLength(1);
		expect(s.removeStaleTempFiles).not.toHaveBeenCalled();
	});
});

describe("ProjectLifecycle", () => {
	function setup(
		opts: {
			role?: MemberRecord["role"];
			status?: ProjectRecord["status"];
			noop?: boolean;
			orgId?: string | null;
			orgRoles?: Record<string, OrgRoleOfMember>;
		} = {}
	) {
		const db = new FakeDb();
		const project = { ...db.project, status: opts.status ?? "active", orgId: opts.orgId ?? null };
		const calls: string[] = [];
		const warnings: string[] = [];
		let stopFails = false;
		const lifecycle = new ProjectLifecycle({
			repo: {
				createProject: async (_tx, p) => ({
					...project,
					id: p.id,
					ownerId: p.ownerId,
					orgId: p.orgId ?? null,
					name: p.name
				}),
				updateProject: async (_tx, _id, patch) => {
					calls.push(`update:${patch.status ?? ""}`);
					return { ...project, status: patch.status ?? project.status, deletedAt: new Date() };
				},
				setMember: async (_tx, _id, userId, role) => void calls.push(`set:${userId}:${role}`),
				removeMember: async (_tx, _id, userId) => void calls.push(`remove:${userId}`),
				setOrg: async (_tx, _id, orgId) => {
					calls.push(`org:${orgId}`);
					return { ...project, orgId };
				}
			},
			orgRole: async (_orgId, userId) => opts.orgRoles?.[userId] ?? null,
			guard: {
				forOwner: async () => ({ project, role: opts.role ?? "owner" }),
				memberChange: async () => ({ noop: opts.noop ?? false })
			},
			sandboxes: {
				stopIfUp: async id => {
					calls.push(`stop:${id}`);
					if (stopFails) throw new Error("runner gone");
				}
			},
			transaction: db.transaction,
			warn: m => warnings.push(m)
		});
		return { db, lifecycle, calls, warnings, failStop: () => (stopFails = true) };
	}

	test("create gives a fresh id owned by the creator", async () => {
		const { lifecycle } = setup();
		const a = await lifecycle.create("u1", { name: "a", description: "" });
		const b = await lifecycle.create("u1", { name: "b", description: "" });
		expect(a.ownerId).toBe("u1");
		expect(a.id).not.toBe(b.id);
	});

	test("update maps archived to the status; remove deletes, then stops the sandbox, logging a failure to", async () => {
		const s = setup();
		await s.lifecycle.update("u1", PROJECT_ID, { archived: true });
		await s.lifecycle.update("u1", PROJECT_ID, { name: "n" });
		s.failStop();
		expect((await s.lifecycle.remove("u1", PROJECT_ID)).status).toBe("deleted");
		expect(s.calls).toEqual(["update:archived", "update:", "update:deleted", `stop:${PROJECT_ID}`]);
		expect(s.warnings).toEqual(["could not stop the sandbox of a deleted project"]);
	});

	test("restore needs a deleted project", async () => {
		expect((await rejection(setup().lifecycle.restore("u1", PROJECT_ID))).code).toBe("PROJECT_NOT_DELETED");
		const r = await setup({ status: "deleted" }).lifecycle.restore("u1", PROJECT_ID);
		expect(r.project.status).toBe("active");
	});

	test("setMember: an unknown account is 404 USER_NOT_FOUND, told only for a real change", async () => {
		const s = setup();
		const err = await rejection(
			s.lifecycle.setMember("u1", PROJECT_ID, { userId: "x", role: "viewer", accountExists: false })
		);
		expect([err.status, err.code]).toEqual([404, "USER_NOT_FOUND"]);
		const noop = setup({ noop: true });
		await noop.lifecycle.setMember("u1", PROJECT_ID, { userId: "x", role: "viewer", accountExists: false });
		expect(noop.calls).toEqual([]);
		await s.lifecycle.setMember("u1", PROJECT_ID, { userId: "y", role: "editor", accountExists: true });
		await s.lifecycle.removeMember("u1", PROJECT_ID, "y");
		expect(s.calls).toEqual(["set:y:editor", "remove:y"]);
	});
});

describe("organisation projects", () => {
	const ORG = "9a1c1f8e-1111-4e3a-9a55-0c3e7d4b2a10";
	const base = { ...new FakeDb().project, orgId: ORG };

	function orgGuard(ownRole: MemberRecord["role"] | null, orgRoles: Record<string, OrgRoleOfMember>) {
		const repo: GuardRepo = {
			projectForMember: async () => ({ project: base, role: ownRole }),
			project: async () => base,
			members: async () => []
		};
		const asked: string[] = [];
		const guard = new ProjectGuard(repo, async (orgId, userId) => {
			asked.push(`${orgId}:${userId}`);
			return orgRoles[userId] ?? null;
		});
		return { guard, asked };
	}

	test("the organisation role combines with the project role; billing reads; outsiders get 404", async () => {
		const roles = { o: "owner", a: "admin", b: "billing", m: "member" } as const;
		expect((await orgGuard(null, roles).guard.require(PROJECT_ID, "o", "owner")).role).toBe("owner");
		expect((await orgGuard(null, roles).guard.require(PROJECT_ID, "a", "owner")).role).toBe("owner");
		expect((await orgGuard(null, roles).guard.require(PROJECT_ID, "m", "viewer")).role).toBe("viewer");
		expect((await orgGuard("editor", roles).guard.require(PROJECT_ID, "m", "editor")).role).toBe("editor");
		const billing = await rejection(orgGuard("owner", roles).guard.require(PROJECT_ID, "b", "editor"));
		expect([billing.status, billing.code]).toEqual([403, "INSUFFICIENT_ROLE"]);
		// A project role without the organisation (a removed member) gives nothing.
		const gone = orgGuard("owner", roles);
		expect((await rejection(gone.guard.require(PROJECT_ID, "x", "viewer"))).code).toBe("NOT_FOUND");
		expect(gone.asked).toEqual([`${ORG}:x`]);
	});

	test("effectiveRole: a user's own project goes by the project role only", () => {
		expect(effectiveRole("editor", { owned: false, role: null })).toBe("editor");
		expect(effectiveRole(null, { owned: false, role: null })).toBeNull();
		expect(effectiveRole(null, { owned: true, role: null })).toBeNull();
		expect(effectiveRole("owner", { owned: true, role: "billing" })).toBe("viewer");
		expect(effectiveRole(null, { owned: true, role: "member" })).toBe("viewer");
	});

	function lifecycle(orgRoles: Record<string, OrgRoleOfMember>, projectOrg: string | null = null) {
		const db = new FakeDb();
		const project = { ...db.project, orgId: projectOrg };
		const calls: string[] = [];
		const l = new ProjectLifecycle({
			repo: {
				createProject: async (_tx, p) => ({ ...project, id: p.id, ownerId: p.ownerId, orgId: p.orgId ?? null }),
				updateProject: async () => project,
				setMember: async () => undefined,
				removeMember: async () => undefined,
				setOrg: async (_tx, _id, orgId) => {
					calls.push(`org:${orgId}`);
					return { ...project, orgId };
				}
			},
			orgRole: async (_orgId, userId) => orgRoles[userId] ?? null,
			guard: { forOwner: async () => ({ project, role: "owner" }), memberChange: async () => ({ noop: false }) },
			sandboxes: { stopIfUp: async () => undefined },
			transaction: db.transaction,
			warn: () => undefined
		});
		return { l, calls };
	}

	test("an owner or admin creates the organisation's projects; a member 403, an outsider 404", async () => {
		const { l } = lifecycle({ o: "owner", a: "admin", m: "member", b: "billing" });
		expect((await l.create("a", { name: "x", description: "", orgId: ORG })).orgId).toBe(ORG);
		expect((await l.create("o", { name: "x", description: "", orgId: ORG })).ownerId).toBe("o");
		expect((await rejection(l.create("m", { name: "x", description: "", orgId: ORG }))).code).toBe(
			"INSUFFICIENT_ROLE"
		);
		expect((await rejection(l.create("b", { name: "x", description: "", orgId: ORG }))).status).toBe(403);
		expect((await rejection(l.create("z", { name: "x", description: "", orgId: ORG }))).status).toBe(404);
		expect((await l.create("z", { name: "x", description: "" })).orgId).toBeNull();
	});

	test("transfer moves a user's project in once, for an organisation owner or admin", async () => {
		const { l, calls } = lifecycle({ a: "admin", m: "member" });
		expect((await l.transfer("a", PROJECT_ID, ORG)).project.orgId).toBe(ORG);
		expect(calls).toEqual([`org:${ORG}`]);
		expect((await rejection(l.transfer("m", PROJECT_ID, ORG))).code).toBe("INSUFFICIENT_ROLE");
		expect((await rejection(l.transfer("z", PROJECT_ID, ORG))).status).toBe(404);
		const already = await rejection(lifecycle({ a: "admin" }, ORG).l.transfer("a", PROJECT_ID, ORG));
		expect([already.status, already.code]).toEqual([409, "ALREADY_IN_ORG"]);
	});
});
