/**
 * Single sign-on through the real gateway and PostgreSQL, against a real certified OpenID Provider
 * (oidc-provider, run by the test in child processes: test/support/oidc-provider.mjs) and a local
 * GitHub-speaking fake (authorize, access_token with PKCE, /user, /user/emails).
 *
 * Covered: the code flow with PKCE, state and nonce; a tampered state, a wrong nonce, an expired
 * code, an issuer mismatch (the callback's `iss`, and discovery); single-use flows; accounts made by
 * a first sign-in; no merging by e-mail (verified: 409, unverified: a separate account without the
 * address); linking from a signed-in account only; the last way in kept; bad input as 4xx.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import path from "node:path";
import { QueryTypes } from "sequelize";
import type { ForgeNode } from "../../../app/node";
import { runtimeOf } from "../../../src/runtime/runtime";
import { createTestDatabase, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import { expectError, httpClient } from "./http";
import { signUp } from "../../support/sign-up";

jest.setTimeout(120_000);

const REDIRECT_BASE = "http://app.test/sso/callback";
const PASSWORD = "correct horse battery staple";
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);
const children: ChildProcess[] = [];
let github: http.Server;
let mainIssuer: string;
const sql = <T extends object>(query: string, bind: unknown[] = []) =>
	runtimeOf(node.broker).sequelize.query<T>(query, { bind, type: QueryTypes.SELECT });

async function freePort(): Promise<number> {
	const s = net.createServer();
	await new Promise<void>(r => s.listen(0, "127.0.0.1", r));
	const port = (s.address() as AddressInfo).port;
	await new Promise(r => s.close(r));
	return port;
}

/** Starts oidc-provider on its own port; resolves with its issuer once it listens. */
async function startProvider(id: string, codeTtlS: number): Promise<string> {
	const port = await freePort();
	const child = spawn(
		process.execPath,
		[
			path.join(__dirname, "../../support/oidc-provider.mjs"),
			String(port),
			`${REDIRECT_BASE}/${id}`,
			String(codeTtlS)
		],
		{ stdio: ["ignore", "pipe", "pipe"] }
	);
	children.push(child);
	let err = "";
	child.stderr!.on("data", d => (err += String(d)));
	return new Promise((resolve, reject) => {
		child.stdout!.on("data", d => {
			const m = /ready (\S+)/.exec(String(d));
			if (m) resolve(m[1]);
		});
		child.on("exit", code => reject(new Error(`oidc-provider exited ${code}: ${err}`)));
	});
}

// ── the GitHub-speaking fake ──────────────────────────────────────────────────────────────────
const GH_USERS: Record<
	string,
	{ id: number; login: string; emails: Array<{ email: string; primary: boolean; verified: boolean }> }
> = {};
const ghCodes = new Map<string, { login: string; challenge: string; redirectUri: string }>();
const ghTokens = new Map<string, string>();
const ghSeen: Array<{ path: string; body?: Record<string, string> }> = [];

function startGithub(): Promise<string> {
	github = http.createServer(async (req, res) => {
		const url = new URL(req.url!, "http://x");
		const chunks: Buffer[] = [];
		for await (const c of req) chunks.push(c as Buffer);
		const body = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString()));
		ghSeen.push({ path: url.pathname, body });
		const json = (status: number, v: unknown) => {
			res.writeHead(status, { "content-type": "application/json" });
			res.end(JSON.stringify(v));
		};
		if (url.pathname === "/login/oauth/authorize") {
			const q = url.searchParams;
			if (q.get("client_id") !== "gh-client" || q.get("code_challenge_method") !== "S256")
				return json(400, { error: "bad request" });
			const code = randomBytes(10).toString("hex");
			ghCodes.set(code, {
				login: q.get("login")!,
				challenge: q.get("code_challenge")!,
				redirectUri: q.get("redirect_uri")!
			});
			const to = new URL(q.get("redirect_uri")!);
			to.searchParams.set("code", code);
			to.searchParams.set("state", q.get("state")!);
			res.writeHead(302, { location: to.href });
			return res.end();
		}
		if (url.pathname === "/login/oauth/access_token" && req.method === "POST") {
			const grant = ghCodes.get(body.code);
			ghCodes.delete(body.code);
			const verifierOk =
				grant &&
				createHash("sha256")
					.update(body.code_verifier ?? "")
					.digest("base64url") === grant.challenge;
			// GitHub's way: 200 with an error member.
			if (
				body.client_id !== "gh-client" ||
				body.client_secret !== "gh-secret" ||
				!grant ||
				!verifierOk ||
				body.redirect_uri !== grant.redirectUri
			)
				return json(200, {
					error: "bad_verification_code",
					error_description: "The code passed is incorrect or expired."
				});
			const token = `gho_${randomBytes(12).toString("hex")}`;
			ghTokens.set(token, grant.login);
			return json(200, { access_token: token, token_type: "bearer", scope: "read:user,user:email" });
		}
		const login = ghTokens.get((req.headers.authorization ?? "").replace(/^Bearer /, ""));
		const user = login ? GH_USERS[login] : undefined;
		if (!user) return json(401, { message: "Bad credentials" });
		if (url.pathname === "/api/user") return json(200, { id: user.id, login: user.login, name: null });
		if (url.pathname === "/api/user/emails") return json(200, user.emails);
		json(404, { message: "Not Found" });
	});
	return new Promise(r =>
		github.listen(0, "127.0.0.1", () => r(`http://127.0.0.1:${(github.address() as AddressInfo).port}`))
	);
}

// ── driving a provider the way a browser would ─────────────────────────────────────────────────
/** Follows the provider's redirects (with its cookies) until it sends the browser to the app's callback. */
async function authorize(authorizationUrl: string, extra: Record<string, string>): Promise<URL> {
	const jar = new Map<string, string>();
	let next = new URL(authorizationUrl);
	for (const [k, v] of Object.entries(extra)) next.searchParams.set(k, v);
	for (let i = 0; i < 10; i++) {
		const res = await fetch(next, {
			redirect: "manual",
			headers: { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") }
		});
		for (const c of res.headers.getSetCookie()) {
			const [kv] = c.split(";");
			const idx = kv.indexOf("=");
			jar.set(kv.slice(0, idx), kv.slice(idx + 1));
		}
		const loc = res.headers.get("location");
		if (!loc) throw new Error(`no redirect from ${next.href}: ${res.status} ${await res.text()}`);
		const target = new URL(loc, next);
		if (target.href.startsWith(REDIRECT_BASE)) return target;
		next = target;
	}
	throw new Error("too many redirects");
}

const hint = (sub: string, email: string, verified: boolean) => ({ login_hint: `${sub}~${email}~${verified ? 1 : 0}` });

async function start(provider: string, token?: string) {
	const r = await call(
		"POST",
		token ? `/api/v1/users/me/identities/${provider}/start` : `/api/v1/auth/sso/${provider}/start`,
		{
			token,
			body: {}
		}
	);
	expect(r.status).toBe(200);
	return r.json as { authorizationUrl: string; flowToken: string; expiresIn: number };
}

const callbackBody = (flowToken: string, cb: URL) => ({
	flowToken,
	code: cb.searchParams.get("code"),
	state: cb.searchParams.get("state"),
	...(cb.searchParams.has("iss") ? { iss: cb.searchParams.get("iss") } : {})
});

async function ssoSignIn(provider: string, extra: Record<string, string>) {
	const s = await start(provider);
	const cb = await authorize(s.authorizationUrl, extra);
	return call("POST", `/api/v1/auth/sso/${provider}/callback`, { body: callbackBody(s.flowToken, cb) });
}

async function passwordUser() {
	const email = `${uniqueId("pw")}@example.com`;
	const u = await signUp(call, email, PASSWORD);
	return { email, userId: u.userId, access: u.accessToken };
}

beforeAll(async () => {
	db = await createTestDatabase();
	const [issuer, shortIssuer, ghUrl] = await Promise.all([
		startProvider("test", 120),
		startProvider("short", 1),
		startGithub()
	]);
	mainIssuer = issuer;
	const port = new URL(issuer).port;
	node = await startTestNode({
		db,
		services: ["api", "users", "payments"],
		env: {
			AUTH_SESSION_CHECK: "true",
			SIGNUP_GRANT_CREDITS: "2500",
			SIGNUP_GRANT_EMAIL_ON: "verified",
			SIGNUP_GRANT_PER_IP_PER_DAY: "1000",
			SSO_ALLOW_HTTP: "true",
			SSO_REDIRECT_BASE: REDIRECT_BASE,
			OIDC_PROVIDERS: JSON.stringify([
				{ id: "test", name: "Test OP", issuer, clientId: "forge" },
				{ id: "short", issuer: shortIssuer, clientId: "forge" },
				// The same provider under another name for its issuer: discovery must refuse it.
				{ id: "wrongiss", issuer: `http://localhost:${port}`, clientId: "forge" }
			]),
			OIDC_CLIENT_SECRETS: [
				"test:forge-test-secret-0123456789abcdef",
				"short:forge-test-secret-0123456789abcdef",
				"wrongiss:forge-test-secret-0123456789abcdef"
			].join(","),
			GITHUB_CLIENT_ID: "gh-client",
			GITHUB_CLIENT_SECRET: "gh-secret",
			GITHUB_URL: ghUrl,
			GITHUB_API_URL: `${ghUrl}/api`
		}
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
	for (const c of children) c.kill();
	github?.close();
});

describe("OpenID Connect (oidc-provider)", () => {
	test("the providers are listed", async () => {
		const r = await call("GET", "/api/v1/auth/sso/providers");
		expect(r.status).toBe(200);
		expect(r.json.items).toEqual([
			{ id: "test", name: "Test OP", kind: "oidc" },
			{ id: "short", name: "short", kind: "oidc" },
			{ id: "wrongiss", name: "wrongiss", kind: "oidc" },
			{ id: "github", name: "GitHub", kind: "github" }
		]);
	});

	test("code flow with PKCE, state and nonce: a first sign-in makes the account (address verified), the next finds it; the flow is single use", async () => {
		const s = await start("test");
		const url = new URL(s.authorizationUrl);
		expect(url.origin).toBe(mainIssuer);
		const q = url.searchParams;
		expect(q.get("response_type")).toBe("code");
		expect(q.get("code_challenge_method")).toBe("S256");
		expect(q.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
		expect(q.get("state")).toMatch(/^[A-Za-z0-9_-]{20,}$/);
		expect(q.get("nonce")).toMatch(/^[A-Za-z0-9_-]{20,}$/);
		expect(q.get("redirect_uri")).toBe(`${REDIRECT_BASE}/test`);
		expect(s.flowToken).toMatch(/^[A-Za-z0-9_-]{43}$/);

		const sub = uniqueId("alice");
		const email = `${sub}@idp.example`;
		const cb = await authorize(s.authorizationUrl, hint(sub, email, true));
		expect(cb.searchParams.get("iss")).toBe(mainIssuer);
		const first = await call("POST", "/api/v1/auth/sso/test/callback", { body: callbackBody(s.flowToken, cb) });
		expect(first.status).toBe(200);
		expect(first.json).toMatchObject({ tokenType: "Bearer", created: true, user: { email, emailVerified: true } });
		const me = await call("GET", "/api/v1/users/me", { token: first.json.accessToken });
		expect(me.status).toBe(200);
		const [session] = await sql<{ method: string }>(`SELECT method FROM user_sessions WHERE id = $1`, [
			first.json.sessionId
		]);
		expect(session.method).toBe("sso");

		// The same flow again (a replayed callback): the flow is spent.
		expectError(
			await call("POST", "/api/v1/auth/sso/test/callback", { body: callbackBody(s.flowToken, cb) }),
			401,
			"SSO_FLOW_INVALID"
		);
		const again = await ssoSignIn("test", hint(sub, email, true));
		expect(again.status).toBe(200);
		expect(again.json).toMatchObject({ created: false, user: { id: first.json.user.id } });
		// Another provider's callback route does not take this provider's flow.
		const other = await start("test");
		const otherCb = await authorize(other.authorizationUrl, hint(sub, email, true));
		expectError(
			await call("POST", "/api/v1/auth/sso/short/callback", { body: callbackBody(other.flowToken, otherCb) }),
			401,
			"SSO_FLOW_INVALID"
		);
	});

	test("a tampered state is refused (and spends the flow)", async () => {
		const s = await start("test");
		const cb = await authorize(s.authorizationUrl, hint(uniqueId("st"), "st@idp.example", true));
		const body = { ...callbackBody(s.flowToken, cb), state: `${cb.searchParams.get("state")}x` };
		expectError(await call("POST", "/api/v1/auth/sso/test/callback", { body }), 401, "SSO_STATE_MISMATCH");
		expectError(
			await call("POST", "/api/v1/auth/sso/test/callback", { body: callbackBody(s.flowToken, cb) }),
			401,
			"SSO_FLOW_INVALID"
		);
	});

	test("a wrong nonce in the ID token is refused", async () => {
		const s = await start("test");
		// The provider signs whatever nonce the request carries: the browser's request is altered.
		const altered = new URL(s.authorizationUrl);
		altered.searchParams.set("nonce", randomBytes(16).toString("base64url"));
		const cb = await authorize(altered.href, hint(uniqueId("nn"), "nn@idp.example", true));
		expectError(
			await call("POST", "/api/v1/auth/sso/test/callback", { body: callbackBody(s.flowToken, cb) }),
			401,
			"SSO_NONCE_MISMATCH"
		);
	});

	test("an expired code is refused (the provider's code lives 1 s here)", async () => {
		const s = await start("short");
		const cb = await authorize(s.authorizationUrl, hint(uniqueId("ex"), "ex@idp.example", true));
		await new Promise(r => setTimeout(r, 2500));
		expectError(
			await call("POST", "/api/v1/auth/sso/short/callback", { body: callbackBody(s.flowToken, cb) }),
			401,
			"SSO_CODE_INVALID"
		);
	});

	test("issuer mismatch: a callback naming another issuer, and a discovery document for another issuer", async () => {
		const s = await start("test");
		const cb = await authorize(s.authorizationUrl, hint(uniqueId("is"), "is@idp.example", true));
		expectError(
			await call("POST", "/api/v1/auth/sso/test/callback", {
				body: { ...callbackBody(s.flowToken, cb), iss: "http://evil.example" }
			}),
			401,
			"SSO_ISSUER_MISMATCH"
		);
		// Configured as http://localhost:<port>; the provider says it is http://127.0.0.1:<port>.
		expectError(
			await call("POST", "/api/v1/auth/sso/wrongiss/start", { body: {} }),
			503,
			"SSO_PROVIDER_UNAVAILABLE"
		);
	});

	test("no merging by e-mail: a verified address of an account answers 409 and makes nothing; an unverified one makes a separate account without it", async () => {
		const pw = await passwordUser();
		const sub = uniqueId("merge");
		expectError(await ssoSignIn("test", hint(sub, pw.email, true)), 409, "SSO_ACCOUNT_EXISTS");
		expect(await sql(`SELECT id FROM user_identities WHERE subject LIKE $1`, [`${sub}~%`])).toEqual([]);

		const sub2 = uniqueId("unverified");
		const r = await ssoSignIn("test", hint(sub2, pw.email, false));
		expect(r.status).toBe(200);
		expect(r.json.created).toBe(true);
		expect(r.json.user.id).not.toBe(pw.userId);
		expect(r.json.user.email).toBeNull();
		const [row] = await sql<{ email: string; email_verified: boolean }>(
			`SELECT email, email_verified FROM user_identities WHERE subject LIKE $1`,
			[`${sub2}~%`]
		);
		expect(row).toEqual({ email: pw.email, email_verified: false });
	});

	test("an SSO sign-up with a vouched address gets the welcome grant, once per address; an unvouched one gets none", async () => {
		const balance = async (token: string) =>
			(await call("GET", "/api/v1/billing/balance", { token })).json.available as number;
		const sub = uniqueId("grant");
		const email = `${sub}@idp.example`;
		const first = await ssoSignIn("test", hint(sub, email, true));
		expect(first.json).toMatchObject({ created: true, user: { email, emailVerified: true } });
		expect(await balance(first.json.accessToken)).toBe(2500);
		// Signing in again (not a sign-up) gives nothing more.
		const again = await ssoSignIn("test", hint(sub, email, true));
		expect(again.json.created).toBe(false);
		expect(await balance(again.json.accessToken)).toBe(2500);
		// The account deleted and made again by the same identity and address: no second grant.
		const del = await call("DELETE", "/api/v1/users/me", { token: first.json.accessToken, body: {} });
		expect(del.status).toBe(200);
		const remade = await ssoSignIn("test", hint(sub, email, true));
		expect(remade.json).toMatchObject({ created: true, user: { email } });
		expect(remade.json.user.id).not.toBe(first.json.user.id);
		expect(await balance(remade.json.accessToken)).toBe(0);
		// An address the provider does not vouch for proves nothing: no grant.
		const sub2 = uniqueId("nogrant");
		const unvouched = await ssoSignIn("test", hint(sub2, `${sub2}@idp.example`, false));
		expect(unvouched.json).toMatchObject({ created: true, user: { email: null } });
		expect(await balance(unvouched.json.accessToken)).toBe(0);
		expect(
			await sql(`SELECT user_id FROM signup_grants WHERE user_id = ANY($1::uuid[])`, [
				[first.json.user.id, remade.json.user.id, unvouched.json.user.id]
			])
		).toEqual([{ user_id: first.json.user.id }]);
	});

	test("linking: only from the signed-in account that started it; then the identity signs that account in; taken elsewhere is 409", async () => {
		const a = await passwordUser();
		const b = await passwordUser();
		const sub = uniqueId("link");
		// The flow A started cannot be finished by B's session.
		const sA = await start("test", a.access);
		const cbA = await authorize(sA.authorizationUrl, hint(sub, a.email, true));
		expectError(
			await call("POST", "/api/v1/users/me/identities/test/callback", {
				token: b.access,
				body: callbackBody(sA.flowToken, cbA)
			}),
			401,
			"SSO_FLOW_INVALID"
		);
		// A sign-in flow cannot be used to link (nor the other way round).
		const signInFlow = await start("test");
		const cbS = await authorize(signInFlow.authorizationUrl, hint(sub, a.email, true));
		expectError(
			await call("POST", "/api/v1/users/me/identities/test/callback", {
				token: a.access,
				body: callbackBody(signInFlow.flowToken, cbS)
			}),
			401,
			"SSO_FLOW_INVALID"
		);
		const s = await start("test", a.access);
		const cb = await authorize(s.authorizationUrl, hint(sub, a.email, true));
		const linked = await call("POST", "/api/v1/users/me/identities/test/callback", {
			token: a.access,
			body: callbackBody(s.flowToken, cb)
		});
		expect(linked.status).toBe(201);
		expect(linked.json).toMatchObject({
			provider: "test",
			email: a.email,
			emailVerified: true,
			alreadyLinked: false
		});

		const signIn = await ssoSignIn("test", hint(sub, a.email, true));
		expect(signIn.status).toBe(200);
		expect(signIn.json).toMatchObject({ created: false, user: { id: a.userId } });

		const sB = await start("test", b.access);
		const cbB = await authorize(sB.authorizationUrl, hint(sub, a.email, true));
		expectError(
			await call("POST", "/api/v1/users/me/identities/test/callback", {
				token: b.access,
				body: callbackBody(sB.flowToken, cbB)
			}),
			409,
			"IDENTITY_TAKEN"
		);
		const list = await call("GET", "/api/v1/users/me/identities", { token: a.access });
		expect(list.json.items).toHaveLength(1);
		// A has a password too: the identity may go.
		const removed = await call("DELETE", `/api/v1/users/me/identities/${linked.json.id}`, {
			token: a.access,
			body: {}
		});
		expect(removed.status).toBe(200);
		expectError(
			await call("DELETE", `/api/v1/users/me/identities/${linked.json.id}`, { token: a.access, body: {} }),
			404,
			"NOT_FOUND"
		);
	});

	test("an account made by SSO keeps its only way in; someone else's identity is 404", async () => {
		const r = await ssoSignIn("test", hint(uniqueId("only"), `${uniqueId("only")}@idp.example`, true));
		expect(r.status).toBe(200);
		const [identity] = (await call("GET", "/api/v1/users/me/identities", { token: r.json.accessToken })).json.items;
		expectError(
			await call("DELETE", `/api/v1/users/me/identities/${identity.id}`, { token: r.json.accessToken, body: {} }),
			409,
			"LAST_SIGN_IN_METHOD"
		);
		const other = await passwordUser();
		expectError(
			await call("DELETE", `/api/v1/users/me/identities/${identity.id}`, { token: other.access, body: {} }),
			404,
			"NOT_FOUND"
		);
	});

	test("bad input is 4xx in the contract's shape", async () => {
		expectError(await call("POST", "/api/v1/auth/sso/nope/start", { body: {} }), 404, "NOT_FOUND");
		expectError(await call("POST", "/api/v1/auth/sso/Bad!/start", { body: {} }), 422, "VALIDATION_ERROR");
		expectError(
			await call("POST", "/api/v1/auth/sso/test/callback", {
				body: { flowToken: "short", code: "c", state: "s" }
			}),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await call("POST", "/api/v1/auth/sso/test/callback", {
				body: { flowToken: randomBytes(32).toString("base64url"), code: "c", state: "s" }
			}),
			401,
			"SSO_FLOW_INVALID"
		);
		expectError(await call("POST", "/api/v1/users/me/identities/test/start", { body: {} }), 401, "UNAUTHORIZED");
	});
});

describe("GitHub (OAuth 2 against a local fake)", () => {
	test("sign-in with PKCE: the account gets the primary verified address; the fake saw the verifier", async () => {
		const login = uniqueId("octo");
		const email = `${login}@users.github.example`;
		GH_USERS[login] = {
			id: 1000 + Object.keys(GH_USERS).length,
			login,
			emails: [
				{ email: `${login}@other.example`, primary: false, verified: true },
				{ email, primary: true, verified: true }
			]
		};
		const s = await start("github");
		const q = new URL(s.authorizationUrl).searchParams;
		expect(q.get("code_challenge_method")).toBe("S256");
		expect(q.get("nonce")).toBeNull();
		const r = await ssoSignIn("github", { login });
		expect(r.status).toBe(200);
		expect(r.json).toMatchObject({ created: true, user: { email, emailVerified: true } });
		const exchange = ghSeen.filter(x => x.path === "/login/oauth/access_token").at(-1)!;
		expect(exchange.body!.code_verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
		const again = await ssoSignIn("github", { login });
		expect(again.json).toMatchObject({ created: false, user: { id: r.json.user.id } });
	});

	test("an unverified primary address is not taken; a tampered state and a bad code are refused", async () => {
		const login = uniqueId("octo");
		GH_USERS[login] = {
			id: 2000 + Object.keys(GH_USERS).length,
			login,
			emails: [{ email: `${login}@users.github.example`, primary: true, verified: false }]
		};
		const r = await ssoSignIn("github", { login });
		expect(r.status).toBe(200);
		expect(r.json.user.email).toBeNull();

		const s = await start("github");
		const cb = await authorize(s.authorizationUrl, { login });
		expectError(
			await call("POST", "/api/v1/auth/sso/github/callback", {
				body: { ...callbackBody(s.flowToken, cb), state: "tampered" }
			}),
			401,
			"SSO_STATE_MISMATCH"
		);
		const s2 = await start("github");
		const cb2 = await authorize(s2.authorizationUrl, { login });
		expectError(
			await call("POST", "/api/v1/auth/sso/github/callback", {
				body: { ...callbackBody(s2.flowToken, cb2), code: "not-a-code" }
			}),
			401,
			"SSO_CODE_INVALID"
		);
	});
});
