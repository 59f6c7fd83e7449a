/**
 * src/users/sessions.ts over an in-memory store with the rotation rule of src/users/store.ts (no
 * grace): a refresh spends its token for one successor; a spent token that comes back ends the family.
 */
import { verifyAccessToken } from "../../../src/auth/jwt";
import { DomainError } from "../../../src/errors";
import { Sessions, type SessionsDeps } from "../../../src/users/sessions";
import type { RotateResult } from "../../../src/users/store";

const USER = "11111111-1111-4111-8111-111111111111";
const jwt = {
	issuer: "forgefluid-test",
	audience: "forgefluid-test",
	keys: [{ kid: "k1", secret: "a test secret that is long enough for HS256 use" }],
	activeKid: "k1",
	accessTtlS: 900
};

function memoryStore() {
	const tokens = new Map<string, { sessionId: string; rotated: boolean }>();
	const sessions = new Map<string, { userId: string; revokedReason: string | null }>();
	let n = 0;
	const store: SessionsDeps["store"] = {
		async createSession(o) {
			const sessionId = `00000000-0000-4000-8000-00000000000${++n}`;
			sessions.set(sessionId, { userId: o.userId, revokedReason: null });
			tokens.set(o.refreshTokenHash.toString("hex"), { sessionId, rotated: false });
			return { sessionId, refreshExpiresAt: new Date("2027-01-01T00:00:00Z") };
		},
		async rotateRefreshToken(oldHash, newHash): Promise<RotateResult> {
			const t = tokens.get(oldHash.toString("hex"));
			if (!t) return { kind: "invalid" };
			const s = sessions.get(t.sessionId)!;
			if (t.rotated) return { kind: "reused", sessionId: t.sessionId, userId: s.userId };
			t.rotated = true;
			if (s.revokedReason) return { kind: "invalid" };
			tokens.set(newHash.toString("hex"), { sessionId: t.sessionId, rotated: false });
			return {
				kind: "rotated",
				sessionId: t.sessionId,
				userId: s.userId,
				role: "user",
				refreshToken: { expiresAt: new Date("2027-01-01T00:00:00Z") }
			};
		},
		async revokeSession(sessionId, userId, reason) {
			const s = sessions.get(sessionId);
			if (!s || s.revokedReason || (userId && s.userId !== userId)) return false;
			s.revokedReason = reason;
			return true;
		},
		async revokeAllSessions(userId, reason, except) {
			const ended = [...sessions].filter(([id, s]) => s.userId === userId && !s.revokedReason && id !== except);
			for (const [, s] of ended) s.revokedReason = reason;
			return ended.map(([id]) => id);
		},
		async sessionOfRefreshToken() {
			return null;
		},
		async sessionsOf() {
			return [];
		}
	};
	return { store, sessions };
}

function setup() {
	const { store, sessions } = memoryStore();
	const forgotten: Array<[string, readonly string[] | undefined]> = [];
	const reuses: unknown[] = [];
	const s = new Sessions({
		store,
		jwt,
		cfg: {
			refreshTokenTtlS: 3600,
			refreshReuseGraceS: 0,
			maxAgeS: 86_400,
			authStateCacheTtlS: 60,
			gatewayCheck: true
		},
		forget: async (userId, ids) => void forgotten.push([userId, ids]),
		onReuse: d => reuses.push(d)
	});
	return { s, sessions, forgotten, reuses };
}

const code = (p: Promise<unknown>) =>
	p.then(
		() => null,
		(e: DomainError) => ({ status: e.status, code: e.code })
	);

describe("sessions", () => {
	test("a sign-in issues a session's access token (every scope of the role) and its first refresh token", async () => {
		const { s } = setup();
		const pair = await s.issue({ id: USER, role: "user" }, "password", { ip: "203.0.113.7" });
		expect(pair).toMatchObject({
			tokenType: "Bearer",
			expiresIn: 900,
			refreshToken: expect.stringMatching(/^ffr_/)
		});
		expect(verifyAccessToken(jwt, pair.accessToken)).toMatchObject({
			id: USER,
			sid: pair.sessionId,
			scopes: ["*"]
		});
	});

	test("a refresh spends the token for its successor, which refreshes in turn", async () => {
		const { s } = setup();
		const first = await s.issue({ id: USER, role: "user" }, "password", {});
		const second = await s.refresh(first.refreshToken, {});
		expect(second.sessionId).toBe(first.sessionId);
		expect(second.refreshToken).not.toBe(first.refreshToken);
		await expect(s.refresh(second.refreshToken, {})).resolves.toMatchObject({ sessionId: first.sessionId });
	});

	test("a spent refresh token that comes back revokes the whole family, successors included", async () => {
		const { s, sessions, forgotten, reuses } = setup();
		const first = await s.issue({ id: USER, role: "user" }, "password", {});
		const second = await s.refresh(first.refreshToken, {});
		expect(await code(s.refresh(first.refreshToken, { ip: "198.51.100.9" }))).toEqual({
			status: 401,
			code: "REFRESH_TOKEN_REUSED"
		});
		expect(sessions.get(first.sessionId)!.revokedReason).toBe("refresh_token_reuse");
		expect(forgotten).toContainEqual([USER, [first.sessionId]]);
		expect(reuses).toEqual([{ userId: USER, sessionId: first.sessionId, ip: "198.51.100.9" }]);
		// The thief's or the owner's successor: neither refreshes any more.
		expect(await code(s.refresh(second.refreshToken, {}))).toEqual({ status: 401, code: "INVALID_REFRESH_TOKEN" });
	});

	test("an unknown refresh token is invalid and revokes nothing", async () => {
		const { s, sessions } = setup();
		await s.issue({ id: USER, role: "user" }, "password", {});
		expect(await code(s.refresh(`ffr_${"x".repeat(43)}`, {}))).toEqual({
			status: 401,
			code: "INVALID_REFRESH_TOKEN"
		});
		expect([...sessions.values()].every(x => x.revokedReason === null)).toBe(true);
	});

	test("sign-out everywhere needs a session; another user's session is not the caller's to revoke", async () => {
		const { s } = setup();
		const mine = await s.issue({ id: USER, role: "user" }, "password", {});
		expect(await code(s.logout({ id: USER, role: "user", keyId: "k", scopes: [] }, { all: true }))).toEqual({
			status: 401,
			code: "UNAUTHORIZED"
		});
		expect(await code(s.revoke("22222222-2222-4222-8222-222222222222", mine.sessionId))).toEqual({
			status: 404,
			code: "NOT_FOUND"
		});
		await expect(
			s.logout({ id: USER, role: "user", sid: mine.sessionId, scopes: ["*"] }, { all: true })
		).resolves.toEqual({
			revoked: 1
		});
	});
});
