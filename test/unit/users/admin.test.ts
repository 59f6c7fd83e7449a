/** src/users/admin.ts over a fake store: the list's cursor (microsecond instants, the one 422) and the admin's changes. */
import { DomainError } from "../../../src/errors";
import { encodeCursor } from "../../../src/http/cursor";
import { Administration, type AdminDeps } from "../../../src/users/admin";
import type { UserRow } from "../../../src/users/store";

const ADMIN = "11111111-1111-4111-8111-111111111111";
const OTHER = "22222222-2222-4222-8222-222222222222";

function row(id: string, cursorAt: string): UserRow & { wallets: string[]; cursor_at: string } {
	const at = new Date(cursorAt);
	return {
		id,
		email: `${id.slice(0, 4)}@example.com`,
		email_verified_at: null,
		password_hash: null,
		display_name: null,
		role: "user",
		tier_override: null,
		disabled_at: null,
		last_login_at: null,
		created_at: at,
		wallets: [],
		cursor_at: cursorAt
	};
}

function setup(rows: ReturnType<typeof row>[] = []) {
	const asked: unknown[] = [];
	const forgotten: unknown[] = [];
	const changed: unknown[] = [];
	const store = {
		async listUsers(opts: { after: unknown; limit: number }) {
			asked.push(opts.after);
			return rows.slice(0, opts.limit);
		},
		async adminUpdate(id: string) {
			return id === OTHER
				? {
						before: row(OTHER, "2030-01-01T00:00:00.000000Z"),
						after: row(OTHER, "2030-01-01T00:00:00.000000Z")
					}
				: null;
		}
	} as unknown as AdminDeps["store"];
	const admin = new Administration({
		store,
		forget: async (userId, opts) => void forgotten.push([userId, opts.sessions]),
		changed: (userId, fields) => void changed.push([userId, fields]),
		now: () => 0
	});
	return { admin, asked, forgotten, changed };
}

const refusal = (p: Promise<unknown>) =>
	p.then(
		() => null,
		(e: DomainError) => ({ status: e.status, code: e.code, details: e.details })
	);

describe("admin user list", () => {
	test("the next cursor carries the last row's instant to the microsecond, and is read back unchanged", async () => {
		const rows = [row(OTHER, "2030-01-01T00:00:00.123457Z"), row(ADMIN, "2030-01-01T00:00:00.123456Z")];
		const s = setup(rows);
		const page = await s.admin.list({ limit: 1 });
		expect(page.items.map(u => u.id)).toEqual([OTHER]);
		expect(page.nextCursor).toBe(encodeCursor(["2030-01-01T00:00:00.123457Z", OTHER]));
		await s.admin.list({ limit: 1, cursor: page.nextCursor! });
		expect(s.asked).toEqual([null, { createdAt: "2030-01-01T00:00:00.123457Z", id: OTHER }]);
	});

	test("the last page has no cursor", async () => {
		const s = setup([row(OTHER, "2030-01-01T00:00:00.123457Z")]);
		expect((await s.admin.list({ limit: 1 })).nextCursor).toBeNull();
	});

	test.each([
		["garbage", "garbage"],
		["another list's shape", encodeCursor([42])],
		["31 February", encodeCursor(["2021-02-31T00:00:00.000000Z", OTHER])],
		["year 0", encodeCursor(["0000-01-01T00:00:00Z", OTHER])],
		["an offset", encodeCursor(["2030-01-01T00:00:00+02:00", OTHER])]
	])("%s: the list's 422, before any query", async (_what, cursor) => {
		const s = setup();
		expect(await refusal(s.admin.list({ limit: 1, cursor }))).toEqual({
			status: 422,
			code: "VALIDATION_ERROR",
			details: [{ field: "cursor", message: "not a cursor from this list", type: "cursor" }]
		});
		expect(s.asked).toEqual([]);
	});
});

describe("admin changes", () => {
	const actor = { id: ADMIN, role: "admin" as const, sid: "s", scopes: ["*"] };

	test("administrators cannot demote or disable themselves", async () => {
		const s = setup();
		expect(await refusal(s.admin.update(actor, ADMIN, { role: "user" }))).toMatchObject({
			status: 409,
			code: "SELF_CHANGE_FORBIDDEN"
		});
		expect(await refusal(s.admin.update(actor, ADMIN, { disabled: true }))).toMatchObject({ status: 409 });
	});

	test("a role change drops every cached session state and names the changed fields", async () => {
		const s = setup();
		await s.admin.update(actor, OTHER.toUpperCase(), { role: "operator", tierOverride: undefined });
		expect(s.forgotten).toEqual([[OTHER, true]]);
		expect(s.changed).toEqual([[OTHER, ["role"]]]);
		await s.admin.update(actor, OTHER, { tierOverride: null });
		expect(s.forgotten[1]).toEqual([OTHER, false]);
		expect(s.changed[1]).toEqual([OTHER, ["tierOverride"]]);
	});

	test("nothing to change is a 422; an unknown user a 404", async () => {
		const s = setup();
		expect(await refusal(s.admin.update(actor, OTHER, {}))).toMatchObject({ status: 422 });
		expect(
			await refusal(s.admin.update(actor, "33333333-3333-4333-8333-333333333333", { role: "user" }))
		).toMatchObject({
			status: 404
		});
	});
});
