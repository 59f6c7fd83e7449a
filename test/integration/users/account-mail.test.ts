/**
 * Account mail over a real SMTP exchange: nodemailer (the users service, SMTP_URL) talks to a local
 * `smtp-server` peer. Verification, e-mail change, password reset: the message's headers and both
 * parts are checked, the link in it is followed, and every token is single use. Enumeration:
 * forgot-password and login answer alike for known and unknown addresses, after the same work.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import { QueryTypes } from "sequelize";
import { runtimeOf } from "../../../src/runtime/runtime";
import { createTestDatabase, eventually, startTestNode, uniqueId, type TestDatabase } from "../../support/env";
import type { ForgeNode } from "../../../app/node";
import { expectError, httpClient } from "./http";
import { signUp } from "../../support/sign-up";

jest.setTimeout(60_000);

const PASSWORD = "correct horse battery staple";
const APP_URL = "https://app.forge.test";

interface Received {
	envelopeFrom: string;
	envelopeTo: string[];
	mail: ParsedMail;
}

let smtp: SMTPServer;
let smtpPort: number;
const inbox: Received[] = [];
let db: TestDatabase;
let node: ForgeNode & { baseUrl: string };
const call = httpClient(() => node.baseUrl);

const verified = (against: "stored" | "dummy") =>
	(node.broker.metrics.getMetric("users.password.verifications.total")?.get({ against })?.value as
		number | undefined) ?? 0;

/** The next message to `to` whose subject matches, once the SMTP peer has it. */
async function mailTo(to: string, subject: RegExp): Promise<Received> {
	let found: Received | undefined;
	await eventually(() => {
		found = inbox.find(m => m.envelopeTo.includes(to) && subject.test(m.mail.subject ?? ""));
		return !!found;
	}, 15_000);
	inbox.splice(inbox.indexOf(found!), 1);
	return found!;
}

function tokenOf(link: string, path: string): string {
	const url = new URL(link);
	expect(url.origin + url.pathname).toBe(APP_URL + path);
	return url.searchParams.get("token")!;
}

/** The one link of the text part; the HTML part must carry the same one. */
function linkOf(m: Received): string {
	const links: string[] = (m.mail.text ?? "").match(/https?:\/\/\S+/g) ?? [];
	expect(links).toHaveLength(1);
	expect(m.mail.html).toContain(`href="${links[0].replace(/&/g, "&amp;")}"`);
	return links[0];
}

async function register(email = `${uniqueId("m")}@example.com`) {
	const u = await signUp(call, email, PASSWORD);
	return { email, userId: u.userId, access: u.accessToken, refresh: u.refreshToken };
}

beforeAll(async () => {
	smtp = new SMTPServer({
		authOptional: true,
		disabledCommands: ["STARTTLS"],
		logger: false,
		onData(stream, session, done) {
			simpleParser(stream)
				.then(mail => {
					inbox.push({
						envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
						envelopeTo: session.envelope.rcptTo.map(r => r.address),
						mail
					});
					done();
				})
				.catch(done);
		}
	});
	smtp.listen(0, "127.0.0.1");
	await once(smtp.server, "listening");
	smtpPort = (smtp.server.address() as AddressInfo).port;
	db = await createTestDatabase();
	node = await startTestNode({
		db,
		services: ["api", "users"],
		env: {
			AUTH_SESSION_CHECK: "true",
			SMTP_URL: `smtp://127.0.0.1:${smtpPort}`,
			MAIL_FROM: "ForgeFluid <accounts@forge.test>",
			APP_URL
		}
	});
});

afterAll(async () => {
	await node?.stop();
	await db?.drop();
	await new Promise<void>(resolve => smtp.close(() => resolve()));
});

describe("e-mail verification over SMTP", () => {
	test("sign-up sends a verification (headers, text and HTML); its link verifies once", async () => {
		const u = await register();
		const m = await mailTo(u.email, /^Confirm your e-mail address$/);
		expect(m.envelopeFrom).toBe("accounts@forge.test");
		expect(m.mail.from?.value).toEqual([{ address: "accounts@forge.test", name: "ForgeFluid" }]);
		expect(m.mail.to && !Array.isArray(m.mail.to) ? m.mail.to.value.map(v => v.address) : null).toEqual([u.email]);
		expect(m.mail.headers.get("content-type")).toEqual(expect.objectContaining({ value: "multipart/alternative" }));
		expect(m.mail.messageId).toMatch(/^<.+@.+>$/);
		expect(m.mail.text).toContain("expires in 1 day");
		expect(m.mail.html).toMatch(/^<!doctype html>/);
		const token = tokenOf(linkOf(m), "/verify-email");

		expect((await call("GET", "/api/v1/users/me", { token: u.access })).json.emailVerified).toBe(false);
		const ok = await call("POST", "/api/v1/auth/email/verify", { body: { token } });
		expect(ok.status).toBe(200);
		expect(ok.json).toEqual({ verified: true, email: u.email, changed: false });
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).json.emailVerified).toBe(true);
		// Single use.
		expectError(await call("POST", "/api/v1/auth/email/verify", { body: { token } }), 401, "INVALID_TOKEN");
	});

	test("resend: a new link for an unverified address; refused once verified", async () => {
		const u = await register();
		const first = tokenOf(linkOf(await mailTo(u.email, /^Confirm your e-mail address$/)), "/verify-email");
		const r = await call("POST", "/api/v1/auth/email/verify/resend", { token: u.access });
		expect(r.status).toBe(200);
		const second = tokenOf(linkOf(await mailTo(u.email, /^Confirm your e-mail address$/)), "/verify-email");
		expect(second).not.toBe(first);
		expect((await call("POST", "/api/v1/auth/email/verify", { body: { token: second } })).status).toBe(200);
		expectError(
			await call("POST", "/api/v1/auth/email/verify/resend", { token: u.access }),
			403,
			"EMAIL_ALREADY_VERIFIED"
		);
	});

	test("an expired link is refused", async () => {
		const u = await register();
		const token = tokenOf(linkOf(await mailTo(u.email, /^Confirm/)), "/verify-email");
		await runtimeOf(node.broker).sequelize.query(
			`UPDATE user_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1`,
			{ bind: [u.userId], type: QueryTypes.UPDATE }
		);
		expectError(await call("POST", "/api/v1/auth/email/verify", { body: { token } }), 401, "INVALID_TOKEN");
	});
});

describe("e-mail change", () => {
	test("applies on verification of the new address; the old address is told", async () => {
		const u = await register();
		await mailTo(u.email, /^Confirm/);
		const next = `${uniqueId("new")}@example.com`;
		const r = await call("POST", "/api/v1/users/me/email", {
			token: u.access,
			body: { email: next.toUpperCase() }
		});
		expect(r.status).toBe(202);
		expect(r.json).toEqual({ pending: true, email: next });
		// Nothing changes before the proof.
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).json.email).toBe(u.email);
		const m = await mailTo(next, /^Confirm your new e-mail address$/);
		const ok = await call("POST", "/api/v1/auth/email/verify", {
			body: { token: tokenOf(linkOf(m), "/verify-email") }
		});
		expect(ok.json).toEqual({ verified: true, email: next, changed: true });
		const me = await call("GET", "/api/v1/users/me", { token: u.access });
		expect({ email: me.json.email, verified: me.json.emailVerified }).toEqual({ email: next, verified: true });
		const told = await mailTo(u.email, /^Your ForgeFluid e-mail address was changed$/);
		expect(told.mail.text).toContain(next);
		// The old address no longer signs in; the new one does.
		expectError(
			await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } }),
			401,
			"INVALID_CREDENTIALS"
		);
		expect((await call("POST", "/api/v1/auth/login", { body: { email: next, password: PASSWORD } })).status).toBe(
			200
		);
	});

	test("an address in use is refused; bad input is 422 in the contract's shape", async () => {
		const a = await register();
		const b = await register();
		expectError(
			await call("POST", "/api/v1/users/me/email", { token: b.access, body: { email: a.email } }),
			409,
			"EMAIL_TAKEN"
		);
		expectError(
			await call("POST", "/api/v1/users/me/email", { token: b.access, body: { email: "nope" } }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await call("POST", "/api/v1/users/me/email", { token: b.access, body: {} }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await call("POST", "/api/v1/users/me/email", { body: { email: "x@example.com" } }),
			401,
			"UNAUTHORIZED"
		);
	});
});

describe("password reset", () => {
	test("forgot → mail → reset: new password works, every session and refresh family ends, the link works once", async () => {
		const u = await register();
		const other = await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } });
		expect(other.status).toBe(200);
		const f = await call("POST", "/api/v1/auth/password/forgot", { body: { email: u.email } });
		expect(f.status).toBe(202);
		expect(f.json).toEqual({ accepted: true });
		const m = await mailTo(u.email, /^Reset your ForgeFluid password$/);
		expect(m.mail.text).toContain("expires in 1 hour");
		const token = tokenOf(linkOf(m), "/reset-password");

		// A password the policy refuses does not burn the link.
		expectError(
			await call("POST", "/api/v1/auth/password/reset", { body: { token, password: "short" } }),
			422,
			"VALIDATION_ERROR"
		);
		const newPassword = "a brand new passphrase";
		const r = await call("POST", "/api/v1/auth/password/reset", { body: { token, password: newPassword } });
		expect(r.status).toBe(200);
		expect(r.json).toEqual({ reset: true, endedSessions: 2 });
		expectError(
			await call("POST", "/api/v1/auth/password/reset", { body: { token, password: newPassword } }),
			401,
			"INVALID_TOKEN"
		);

		// Every session and refresh family ended.
		expect((await call("GET", "/api/v1/users/me", { token: u.access })).status).toBe(401);
		for (const refreshToken of [u.refresh, other.json.refreshToken])
			expect((await call("POST", "/api/v1/auth/refresh", { body: { refreshToken } })).status).toBe(401);
		expectError(
			await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: PASSWORD } }),
			401,
			"INVALID_CREDENTIALS"
		);
		const again = await call("POST", "/api/v1/auth/login", { body: { email: u.email, password: newPassword } });
		expect(again.status).toBe(200);
		// The link reached the address: it counts as verified.
		expect(again.json.user.emailVerified).toBe(true);
		await mailTo(u.email, /^Your ForgeFluid password was changed$/);
	});

	test("bad input: 422 / 401 in the contract's shape", async () => {
		expectError(await call("POST", "/api/v1/auth/password/forgot", { body: {} }), 422, "VALIDATION_ERROR");
		expectError(
			await call("POST", "/api/v1/auth/password/forgot", { body: { email: 42 } }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await call("POST", "/api/v1/auth/password/reset", { body: { token: "fft_short", password: PASSWORD } }),
			422,
			"VALIDATION_ERROR"
		);
		expectError(
			await call("POST", "/api/v1/auth/password/reset", {
				body: { token: `fft_${"A".repeat(43)}`, password: PASSWORD }
			}),
			401,
			"INVALID_TOKEN"
		);
		expectError(await call("POST", "/api/v1/auth/email/verify", { body: { token: 7 } }), 422, "VALIDATION_ERROR");
	});
});

describe("enumeration: known and unknown addresses answer alike, after the same work", () => {
	test("forgot-password: same status and body, no password verification either way, mail only to an account", async () => {
		const u = await register();
		await mailTo(u.email, /^Confirm/);
		const unknown = `${uniqueId("nobody")}@example.com`;
		const before = { stored: verified("stored"), dummy: verified("dummy") };
		const known = await call("POST", "/api/v1/auth/password/forgot", { body: { email: u.email } });
		const stranger = await call("POST", "/api/v1/auth/password/forgot", { body: { email: unknown } });
		expect({ status: stranger.status, body: stranger.json }).toEqual({ status: known.status, body: known.json });
		expect({ stored: verified("stored"), dummy: verified("dummy") }).toEqual(before);
		await mailTo(u.email, /^Reset/);
		// The known address got its mail; give the unknown one the same time and check nothing came.
		await new Promise(r => setTimeout(r, 300));
		expect(inbox.filter(m => m.envelopeTo.includes(unknown))).toEqual([]);
	});

	test("login: a known address with a wrong password and an unknown address cost one verification each", async () => {
		const u = await register();
		const unknown = `${uniqueId("nobody")}@example.com`;
		const s0 = verified("stored");
		const d0 = verified("dummy");
		const known = await call("POST", "/api/v1/auth/login", {
			body: { email: u.email, password: "wrong password!" }
		});
		expect({ stored: verified("stored") - s0, dummy: verified("dummy") - d0 }).toEqual({ stored: 1, dummy: 0 });
		const stranger = await call("POST", "/api/v1/auth/login", {
			body: { email: unknown, password: "wrong password!" }
		});
		expect({ stored: verified("stored") - s0, dummy: verified("dummy") - d0 }).toEqual({ stored: 1, dummy: 1 });
		expect({ status: stranger.status, error: stranger.json.error }).toEqual({
			status: known.status,
			error: known.json.error
		});
	});

	test("forgot-password is throttled per address without changing the answer", async () => {
		const u = await register();
		await mailTo(u.email, /^Confirm/);
		// ACCOUNT_MAIL_PER_ADDRESS_PER_HOUR defaults to 5; the registration used one.
		for (let i = 0; i < 6; i++)
			expect((await call("POST", "/api/v1/auth/password/forgot", { body: { email: u.email } })).status).toBe(202);
		for (let i = 0; i < 4; i++) await mailTo(u.email, /^Reset/);
		await new Promise(r => setTimeout(r, 300));
		expect(inbox.filter(m => m.envelopeTo.includes(u.email))).toEqual([]);
	});
});
