import jwt from "jsonwebtoken";
import { signAccessToken, verifyAccessToken } from "../../../src/auth/jwt";

const cfg = {
	issuer: "forgefluid",
	audience: "forgefluid-api",
	keys: [
		{ kid: "k2", secret: "second-secret-0123456789abcdef0123" },
		{ kid: "k1", secret: "first-secret-0123456789abcdef01234" }
	],
	activeKid: "k2",
	accessTtlS: 900
};

describe("access tokens", () => {
	test("round trip with a small user object", () => {
		const t = signAccessToken(cfg, { sub: "u1", role: "admin", sid: "s1", scopes: ["tasks:write"] });
		expect(verifyAccessToken(cfg, t)).toEqual({ id: "u1", role: "admin", sid: "s1", scopes: ["tasks:write"] });
	});

	test("tokens of a retired key stop verifying; tokens of an older configured key still verify", () => {
		const old = signAccessToken({ ...cfg, activeKid: "k1" }, { sub: "u1", role: "user", scopes: [] });
		expect(verifyAccessToken(cfg, old)?.id).toBe("u1");
		expect(verifyAccessToken({ ...cfg, keys: [cfg.keys[0]] }, old)).toBeNull();
	});

	test("refuses expired, wrong audience, wrong issuer, alg none, and unknown roles", () => {
		const now = Math.floor(Date.now() / 1000);
		expect(
			verifyAccessToken(cfg, signAccessToken(cfg, { sub: "u", role: "user", scopes: [] }, now - 2000))
		).toBeNull();
		expect(
			verifyAccessToken(
				{ ...cfg, audience: "other" },
				signAccessToken(cfg, { sub: "u", role: "user", scopes: [] })
			)
		).toBeNull();
		expect(
			verifyAccessToken({ ...cfg, issuer: "other" }, signAccessToken(cfg, { sub: "u", role: "user", scopes: [] }))
		).toBeNull();
		const none = jwt.sign({ sub: "u", role: "admin", iss: cfg.issuer, aud: cfg.audience }, "", {
			algorithm: "none",
			keyid: "k2"
		} as jwt.SignOptions);
		expect(verifyAccessToken(cfg, none)).toBeNull();
		const weirdRole = jwt.sign({ role: "root" }, cfg.keys[0].secret, {
			algorithm: "HS256",
			keyid: "k2",
			issuer: cfg.issuer,
			audience: cfg.audience,
			subject: "u"
		});
		expect(verifyAccessToken(cfg, weirdRole)).toBeNull();
		expect(verifyAccessToken(cfg, "not.a.token")).toBeNull();
	});
});

test("a remembered token still expires, and is not reused under another key set", () => {
	const now = Date.now();
	const t = signAccessToken(
		{ ...cfg, accessTtlS: 60 },
		{ sub: "u-exp", role: "user", scopes: [] },
		Math.floor(now / 1000)
	);
	expect(verifyAccessToken(cfg, t)?.id).toBe("u-exp");
	expect(
		verifyAccessToken({ ...cfg, keys: [{ kid: "k2", secret: "a-different-secret-0123456789abcdef" }] }, t)
	).toBeNull();
	jest.useFakeTimers({ now: now + 70_000 });
	try {
		expect(verifyAccessToken(cfg, t)).toBeNull();
	} finally {
		jest.useRealTimers();
	}
});
