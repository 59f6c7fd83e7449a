/**
 * TOTP against RFC 6238's published test vectors (Appendix B), the window edges, backup codes, and
 * the account mail templates (escaping, both parts).
 */
import { authenticator } from "otplib";
import { renderAccountMail } from "../../../src/users/mail-templates";
import {
	BACKUP_CODE_COUNT,
	backupCodeHash,
	matchTotpStep,
	newBackupCode,
	newTotpSecret,
	normalizeBackupCode,
	otpauthUri,
	stepOf,
	totpAt
} from "../../../src/users/totp";

// RFC 6238 Appendix B: the seeds are these ASCII strings (20, 32 and 64 bytes).
const SEED = {
	sha1: Buffer.from("12345678901234567890"),
	sha256: Buffer.from("12345678901234567890123456789012"),
	sha512: Buffer.from("1234567890123456789012345678901234567890123456789012345678901234")
};
const VECTORS: Array<[number, string, keyof typeof SEED]> = [
	[59, "94287082", "sha1"],
	[59, "46119246", "sha256"],
	[59, "90693936", "sha512"],
	[1111111109, "07081804", "sha1"],
	[1111111109, "68084774", "sha256"],
	[1111111109, "25091201", "sha512"],
	[1111111111, "14050471", "sha1"],
	[1111111111, "67062674", "sha256"],
	[1111111111, "99943326", "sha512"],
	[1234567890, "89005924", "sha1"],
	[1234567890, "91819424", "sha256"],
	[1234567890, "93441116", "sha512"],
	[2000000000, "69279037", "sha1"],
	[2000000000, "90698825", "sha256"],
	[2000000000, "38618901", "sha512"],
	[20000000000, "65353130", "sha1"],
	[20000000000, "77737706", "sha256"],
	[20000000000, "47863826", "sha512"]
];

describe("RFC 6238 test vectors", () => {
	test.each(VECTORS)("T=%i s → %s (%s)", (t, code, algorithm) => {
		expect(totpAt(SEED[algorithm], t * 1000, { digits: 8, algorithm })).toBe(code);
	});

	test("the steps of the vectors (X = 30, T0 = 0)", () => {
		expect(stepOf(59_000)).toBe(1);
		expect(stepOf(1111111109_000)).toBe(0x23523ec);
		expect(stepOf(20000000000_000)).toBe(0x27bc86aa);
	});
});

describe("matching a code to its time step", () => {
	const secret = newTotpSecret();
	const key = Buffer.from(authenticator.decode(secret), "hex");
	const T = 1_800_000_000_000; // a step boundary: 1.8e12 ms / 30 000 = 60 000 000
	const code = (ms: number) => totpAt(key, ms);

	test("a code matches the step it was made in, from its first to its last millisecond", () => {
		expect(T % 30_000).toBe(0);
		expect(matchTotpStep(code(T), secret, T, 0)).toBe(stepOf(T));
		expect(matchTotpStep(code(T), secret, T + 29_999, 0)).toBe(stepOf(T));
		expect(matchTotpStep(code(T), secret, T + 30_000, 0)).toBeNull();
		expect(matchTotpStep(code(T), secret, T - 1, 0)).toBeNull();
	});

	test("window 1: the previous and the next step are accepted, two away is not", () => {
		const s = stepOf(T);
		expect(matchTotpStep(code(T - 30_000), secret, T, 1)).toBe(s - 1);
		expect(matchTotpStep(code(T + 30_000), secret, T, 1)).toBe(s + 1);
		expect(matchTotpStep(code(T - 60_000), secret, T, 1)).toBeNull();
		expect(matchTotpStep(code(T + 60_000), secret, T, 1)).toBeNull();
		// The last millisecond of the window for a code of the previous step.
		expect(matchTotpStep(code(T - 30_000), secret, T + 29_999, 1)).toBe(s - 1);
		expect(matchTotpStep(code(T - 30_000), secret, T + 30_000, 1)).toBeNull();
	});

	test("malformed codes never match", () => {
		for (const bad of ["", "12345", "1234567", "abcdef", " 123456", code(T).replace(/^./, "x")])
			expect(matchTotpStep(bad, secret, T, 1)).toBeNull();
	});

	test("a code of another secret does not match", () => {
		const other = Buffer.from(authenticator.decode(newTotpSecret()), "hex");
		const c = totpAt(other, T);
		// One in a million chance of a collision per step; three steps checked.
		if (![code(T - 30_000), code(T), code(T + 30_000)].includes(c))
			expect(matchTotpStep(c, secret, T, 1)).toBeNull();
	});

	test("the otpauth URI carries issuer, account, secret and the parameters apps need", () => {
		const uri = new URL(otpauthUri(secret, "ann@example.com", "ForgeFluid"));
		expect(uri.protocol).toBe("otpauth:");
		expect(uri.host).toBe("totp");
		expect(decodeURIComponent(uri.pathname)).toBe("/ForgeFluid:ann@example.com");
		expect(Object.fromEntries(uri.searchParams)).toEqual({
			secret,
			issuer: "ForgeFluid",
			algorithm: "SHA1",
			digits: "6",
			period: "30"
		});
		expect(secret).toMatch(/^[A-Z2-7]{32}$/);
	});
});

describe("backup codes", () => {
	test("ten distinct codes of 16 symbols; typing them with other case, spaces or no dashes is the same code", () => {
		const codes = Array.from({ length: BACKUP_CODE_COUNT }, newBackupCode);
		expect(new Set(codes).size).toBe(10);
		for (const c of codes) expect(c).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
		const c = codes[0];
		const n = normalizeBackupCode(c)!;
		expect(normalizeBackupCode(c.toLowerCase())).toBe(n);
		expect(normalizeBackupCode(c.replace(/-/g, " "))).toBe(n);
		expect(normalizeBackupCode(c.replace(/-/g, ""))).toBe(n);
		expect(backupCodeHash(n).equals(backupCodeHash(normalizeBackupCode(c.toLowerCase())!))).toBe(true);
		for (const bad of ["", "123456", "ILOU-ILOU-ILOU-ILOU", `${c}-0000`])
			expect(normalizeBackupCode(bad)).toBeNull();
	});
});

describe("mail templates", () => {
	test("every kind has a subject, a text and an HTML part", () => {
		const kinds = [
			renderAccountMail({ kind: "verifyEmail", link: "https://a/v?token=t", expiresInS: 86_400, change: false }),
			renderAccountMail({ kind: "resetPassword", link: "https://a/r?token=t", expiresInS: 3600 }),
			renderAccountMail({ kind: "emailChanged", newEmail: "n@example.com" }),
			renderAccountMail({ kind: "passwordChanged" }),
			renderAccountMail({
				kind: "newSignIn",
				method: "password",
				ip: "1.2.3.4",
				userAgent: "curl",
				at: "2026-01-01T00:00:00Z"
			}),
			renderAccountMail({ kind: "twoFactorChanged", change: "enabled" }),
			renderAccountMail({ kind: "accountDeleted" })
		];
		for (const m of kinds) {
			expect(m.subject.length).toBeGreaterThan(5);
			expect(m.text.length).toBeGreaterThan(20);
			expect(m.html).toMatch(/^<!doctype html>[\s\S]*<\/html>$/);
		}
		expect(new Set(kinds.map(k => k.subject)).size).toBe(kinds.length);
		expect(kinds[1].text).toContain("Choose a new password: https://a/r?token=t");
		expect(kinds[1].html).toContain('href="https://a/r?token=t"');
	});

	test("values from users are escaped in the HTML part", () => {
		const m = renderAccountMail({
			kind: "newSignIn",
			method: "password",
			ip: null,
			userAgent: '<script>alert("x")</script>',
			at: "now"
		});
		expect(m.html).not.toContain("<script>");
		expect(m.html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
		expect(m.text).toContain('<script>alert("x")</script>');
	});
});
