/**
 * Passkeys in a real headless Chromium with a virtual authenticator (CDP WebAuthn domain): the
 * test serves a page on http://localhost:<port> (the relying party's origin); the page turns the
 * server's options into navigator.credentials calls and hands back the credential as JSON; the test
 * posts it to the API. Registration, sign-in, list, remove, single-use challenges, wrong origin.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { chromium, type Browser, type CDPSession, type Page } from "playwright-core";
import { createTestDatabase, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { runtimeOf } from "../../../src/runtime/runtime";
import { expectError, httpClient } from "./http";
import { signUp } from "../../support/sign-up";

jest.setTimeout(120_000);

const PASSWORD = "correct horse battery staple";

/** The relying party's page: base64url <-> ArrayBuffer around navigator.credentials. */
const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>rp</title></head><body><script>
const buf = s => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)), c => c.charCodeAt(0)).buffer;
const b64u = b => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
window.ffCreate = async o => {
	const c = await navigator.credentials.create({ publicKey: { ...o, challenge: buf(o.challenge), user: { ...o.user, id: buf(o.user.id) },
		excludeCredentials: (o.excludeCredentials || []).map(x => ({ ...x, id: buf(x.id) })) } });
	return { id: c.id, rawId: b64u(c.rawId), type: c.type, authenticatorAttachment: c.authenticatorAttachment || undefined,
		clientExtensionResults: c.getClientExtensionResults(),
		response: { clientDataJSON: b64u(c.response.clientDataJSON), attestationObject: b64u(c.response.attestationObject), transports: c.response.getTransports() } };
};
window.ffGet = async o => {
	const c = await navigator.credentials.get({ publicKey: { ...o, challenge: buf(o.challenge), allowCredentials: (o.allowCredentials || []).map(x => ({ ...x, id: buf(x.id) })) } });
	return { id: c.id, rawId: b64u(c.rawId), type: c.type, authenticatorAttachment: c.authenticatorAttachment || undefined,
		clientExtensionResults: c.getClientExtensionResults(),
		response: { clientDataJSON: b64u(c.response.clientDataJSON), authenticatorData: b64u(c.response.authenticatorData),
			signature: b64u(c.response.signature), userHandle: c.response.userHandle ? b64u(c.response.userHandle) : undefined } };
};
</script></body></html>`;

let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
let pageServer: http.Server;
let origin: string;
let browser: Browser;
let page: Page;
let cdp: CDPSession;
const call = httpClient(() => node.baseUrl);

beforeAll(async () => {
	pageServer = http.createServer((_req, res) => {
		res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
		res.end(PAGE);
	});
	await new Promise<void>(resolve => pageServer.listen(0, "127.0.0.1", resolve));
	origin = `http://localhost:${(pageServer.address() as AddressInfo).port}`;
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users"],
		env: { AUTH_SESSION_CHECK: "true", WEBAUTHN_RP_ID: "localhost", WEBAUTHN_ORIGINS: origin }
	});
	browser = await chromium.launch({
		executablePath: "/usr/bin/chromium",
		args: [
			"--headless",
			"--no-sandbox",
			"--disable-gpu",
			"--disable-background-networking",
			"--disable-component-update",
			"--disable-sync",
			"--no-first-run",
			"--host-resolver-rules=MAP localhost 127.0.0.1"
		]
	});
	page = await browser.newPage();
	cdp = await page.context().newCDPSession(page);
	await cdp.send("WebAuthn.enable");
	await cdp.send("WebAuthn.addVirtualAuthenticator", {
		options: {
			protocol: "ctap2",
			transport: "internal",
			hasResidentKey: true,
			hasUserVerification: true,
			isUserVerified: true,
			automaticPresenceSimulation: true
		}
	});
	await page.goto(origin + "/");
});

afterAll(async () => {
	await browser?.close();
	await node?.stop();
	await db?.drop();
	await new Promise(resolve => pageServer?.close(resolve));
});

async function register() {
	const email = `${uniqueId("pk")}@example.com`;
	const u = await signUp(call, email, PASSWORD);
	return { email, userId: u.userId, access: u.accessToken };
}

/** The page's helpers; the credential JSON is checked by the server, the test reads only its id. */
type CredentialJson = { id: string } & Record<string, unknown>;
interface RpPage {
	ffCreate(o: unknown): Promise<CredentialJson>;
	ffGet(o: unknown): Promise<CredentialJson>;
}
const create = (options: unknown) => page.evaluate(o => (globalThis as unknown as RpPage).ffCreate(o), options);
const get = (options: unknown) => page.evaluate(o => (globalThis as unknown as RpPage).ffGet(o), options);

async function addPasskey(access: string, name = "laptop") {
	const opts = await call("POST", "/api/v1/users/me/passkeys/options", { token: access });
	expect(opts.status).toBe(200);
	expect(opts.json.options).toEqual(
		expect.objectContaining({ rp: { id: "localhost", name: "ForgeFluid" }, attestation: "none" })
	);
	const credential = await create(opts.json.options);
	const r = await call("POST", "/api/v1/users/me/passkeys", {
		token: access,
		body: { challengeToken: opts.json.challengeToken, response: credential, name }
	});
	return { r, credential, challengeToken: opts.json.challengeToken as string };
}

test("register a passkey in Chromium, sign in with it (discoverable), list it, remove it", async () => {
	const u = await register();
	const { r, credential, challengeToken } = await addPasskey(u.access);
	expect(r.status).toBe(201);
	expect(r.json).toEqual({
		id: credential.id,
		name: "laptop",
		transports: expect.any(Array),
		createdAt: expect.any(String),
		lastUsedAt: null
	});
	// The registration challenge is single use.
	const again = await call("POST", "/api/v1/users/me/passkeys", {
		token: u.access,
		body: { challengeToken, response: credential }
	});
	expectError(again, 401, "PASSKEY_CHALLENGE_INVALID");

	const opts = await call("POST", "/api/v1/auth/passkey/options", {});
	expect(opts.status).toBe(200);
	expect(opts.json.options.rpId).toBe("localhost");
	const assertion = await get(opts.json.options);
	const signIn = await call("POST", "/api/v1/auth/passkey/verify", {
		body: { challengeToken: opts.json.challengeToken, response: assertion }
	});
	expect(signIn.status).toBe(200);
	expect(signIn.json.user.id).toBe(u.userId);
	const me = await call("GET", "/api/v1/users/me", { token: signIn.json.accessToken });
	expect(me.json.id).toBe(u.userId);
	const sessions = await call("GET", "/api/v1/users/me/sessions", { token: signIn.json.accessToken });
	expect(sessions.json.items.find((s: { current: boolean }) => s.current).method).toBe("passkey");
	// The sign-in challenge is single use too: the same assertion again is refused.
	expectError(
		await call("POST", "/api/v1/auth/passkey/verify", {
			body: { challengeToken: opts.json.challengeToken, response: assertion }
		}),
		401,
		"PASSKEY_CHALLENGE_INVALID"
	);

	const list = await call("GET", "/api/v1/users/me/passkeys", { token: u.access });
	expect(list.json.items.map((p: { id: string; lastUsedAt: string | null }) => [p.id, !!p.lastUsedAt])).toEqual([
		[credential.id, true]
	]);
	const del = await call("DELETE", `/api/v1/users/me/passkeys/${credential.id}`, { token: u.access });
	expect(del.json).toEqual({ id: credential.id, removed: true });
	expectError(
		await call("DELETE", `/api/v1/users/me/passkeys/${credential.id}`, { token: u.access }),
		404,
		"NOT_FOUND"
	);
	// A removed passkey no longer signs in.
	const opts2 = await call("POST", "/api/v1/auth/passkey/options", {});
	const stale = await get(opts2.json.options);
	expectError(
		await call("POST", "/api/v1/auth/passkey/verify", {
			body: { challengeToken: opts2.json.challengeToken, response: stale }
		}),
		401,
		"PASSKEY_INVALID"
	);
});

test("an assertion answered for another challenge, someone else's passkey, bad input", async () => {
	const u = await register();
	const added = await addPasskey(u.access);
	expect(added.r.status).toBe(201);
	// The id of u's own passkey: the shared virtual authenticator may answer a discoverable
	// assertion with a passkey another test registered.
	const mine = added.credential.id as string;
	const a = await call("POST", "/api/v1/auth/passkey/options", {});
	const b = await call("POST", "/api/v1/auth/passkey/options", {});
	const forA = await get(a.json.options);
	// Signed over A's challenge, presented with B's token: the challenge does not match.
	expectError(
		await call("POST", "/api/v1/auth/passkey/verify", {
			body: { challengeToken: b.json.challengeToken, response: forA }
		}),
		401,
		"PASSKEY_INVALID"
	);
	const other = await register();
	expectError(await call("DELETE", `/api/v1/users/me/passkeys/${mine}`, { token: other.access }), 404, "NOT_FOUND");
	// With no password (and no wallet or other way in), the only passkey stays: 409, still listed.
	await runtimeOf(node.broker).sequelize.query(`UPDATE users SET password_hash = NULL WHERE id = $1`, {
		bind: [u.userId]
	});
	expectError(
		await call("DELETE", `/api/v1/users/me/passkeys/${mine}`, { token: u.access }),
		409,
		"LAST_SIGN_IN_METHOD"
	);
	expect((await call("GET", "/api/v1/users/me/passkeys", { token: u.access })).json.items).toHaveLength(1);
	expectError(
		await call("POST", "/api/v1/auth/passkey/verify", { body: { challengeToken: "x", response: {} } }),
		422,
		"VALIDATION_ERROR"
	);
	expectError(
		await call("POST", "/api/v1/users/me/passkeys", {
			token: u.access,
			body: { challengeToken: a.json.challengeToken }
		}),
		422,
		"VALIDATION_ERROR"
	);
	expectError(await call("POST", "/api/v1/users/me/passkeys/options", {}), 401, "UNAUTHORIZED");
});
