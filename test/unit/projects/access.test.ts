import { checkMemberChange, hasRole, isProjectRole } from "../../../src/projects/access";

describe("roles", () => {
	test("viewer < editor < owner; no role is never enough", () => {
		expect(hasRole("viewer", "viewer")).toBe(true);
		expect(hasRole("viewer", "editor")).toBe(false);
		expect(hasRole("editor", "editor")).toBe(true);
		expect(hasRole("editor", "owner")).toBe(false);
		expect(hasRole("owner", "viewer")).toBe(true);
		expect(hasRole(null, "viewer")).toBe(false);
		expect(hasRole(undefined, "viewer")).toBe(false);
		expect(isProjectRole("admin")).toBe(false);
		expect(isProjectRole("editor")).toBe(true);
	});
});

describe("member changes", () => {
	const base = { actorId: "o1", actorRole: "owner" as const, targetId: "u2", targetRole: null, ownerCount: 1 };

	test("an owner adds and changes members", () => {
		expect(checkMemberChange({ ...base, change: { kind: "set", role: "editor" } })).toEqual({
			ok: true,
			noop: false
		});
		expect(checkMemberChange({ ...base, targetRole: "editor", change: { kind: "set", role: "editor" } })).toEqual({
			ok: true,
			noop: true
		});
		expect(checkMemberChange({ ...base, targetRole: "viewer", change: { kind: "set", role: "owner" } })).toEqual({
			ok: true,
			noop: false
		});
	});

	test("editors and viewers cannot manage others but may leave", () => {
		for (const actorRole of ["editor", "viewer"] as const) {
			expect(checkMemberChange({ ...base, actorRole, change: { kind: "set", role: "viewer" } })).toMatchObject({
				ok: false,
				status: 403
			});
			expect(
				checkMemberChange({ ...base, actorRole, targetRole: "viewer", change: { kind: "remove" } })
			).toMatchObject({ ok: false, status: 403 });
			expect(
				checkMemberChange({
					...base,
					actorRole,
					actorId: "u2",
					targetRole: actorRole,
					change: { kind: "remove" }
				})
			).toEqual({ ok: true, noop: false });
		}
	});

	test("the last owner can be neither removed nor demoted; with two owners either can go", () => {
		const self = { ...base, targetId: "o1", targetRole: "owner" as const };
		expect(checkMemberChange({ ...self, change: { kind: "remove" } })).toMatchObject({
			ok: false,
			status: 409,
			code: "LAST_OWNER"
		});
		expect(checkMemberChange({ ...self, change: { kind: "set", role: "editor" } })).toMatchObject({
			ok: false,
			status: 409,
			code: "LAST_OWNER"
		});
		expect(checkMemberChange({ ...self, ownerCount: 2, change: { kind: "remove" } })).toEqual({
			ok: true,
			noop: false
		});
		expect(checkMemberChange({ ...self, change: { kind: "set", role: "owner" } })).toEqual({
			ok: true,
			noop: true
		});
	});

	test("removing someone who is not a member is a 404", () => {
		expect(checkMemberChange({ ...base, change: { kind: "remove" } })).toMatchObject({
			ok: false,
			status: 404,
			code: "NOT_A_MEMBER"
		});
	});
});
