/** Organisation roles: what each may do, and the member-change rules (owners, the last owner, leaving). */
import { memberChangeRefusal, orgCan, ORG_ROLES, type OrgRole } from "../../../src/orgs/rules";

const change = (actorRole: OrgRole, targetRole: OrgRole, next: OrgRole | null, owners = 1, self = false) =>
	memberChangeRefusal({ actorId: "a", actorRole, targetId: self ? "a" : "t", targetRole, next, owners });

test("what each role may do", () => {
	const table = Object.fromEntries(
		ORG_ROLES.map(r => [
			r,
			(["view", "update", "manageMembers", "invite", "billing", "manageProjects"] as const).filter(a =>
				orgCan(r, a)
			)
		])
	);
	expect(table).toEqual({
		owner: ["view", "update", "manageMembers", "invite", "billing", "manageProjects"],
		admin: ["view", "update", "manageMembers", "invite", "billing", "manageProjects"],
		billing: ["view", "billing"],
		member: ["view"]
	});
	expect(orgCan(null, "view")).toBe(false);
});

test("only owners touch owners; admins manage the rest; members and billing change nobody", () => {
	expect(change("admin", "member", "billing")).toBeNull();
	expect(change("admin", "member", null)).toBeNull();
	expect(change("admin", "owner", "member", 2)).toBe("OWNER_REQUIRED");
	expect(change("admin", "member", "owner")).toBe("OWNER_REQUIRED");
	expect(change("owner", "member", "owner")).toBeNull();
	expect(change("member", "member", null)).toBe("INSUFFICIENT_ROLE");
	expect(change("billing", "member", "admin")).toBe("INSUFFICIENT_ROLE");
	expect(change("member", "member", "admin", 1, true)).toBe("INSUFFICIENT_ROLE"); // no self-promotion
});

test("anyone may leave, except the last owner; an owner steps down only when another owner exists", () => {
	expect(change("member", "member", null, 1, true)).toBeNull();
	expect(change("billing", "billing", null, 1, true)).toBeNull();
	expect(change("owner", "owner", null, 1, true)).toBe("LAST_OWNER");
	expect(change("owner", "owner", null, 2, true)).toBeNull();
	expect(change("owner", "owner", "admin", 1, true)).toBe("LAST_OWNER");
	expect(change("owner", "owner", "admin", 2, true)).toBeNull();
	expect(change("owner", "owner", null, 1)).toBe("LAST_OWNER");
	expect(change("owner", "owner", "owner", 1, true)).toBeNull(); // a cap change on oneself
});
