/**
 * Sign-In with Ethereum (EIP-4361): the message checks that need no I/O. The exact string the
 * wallet signed is parsed strictly (ABNF, EIP-55 address) and must re-serialise to itself, so what
 * is checked here is exactly what the signature covers.
 */
import { SiweMessage } from "siwe";
import type { UsersConfig } from "./config";

export type SiweFailureCode =
	| "SIWE_INVALID_MESSAGE"
	| "SIWE_DOMAIN_MISMATCH"
	| "SIWE_URI_MISMATCH"
	| "SIWE_CHAIN_NOT_ALLOWED"
	| "SIWE_EXPIRATION_REQUIRED"
	| "SIWE_EXPIRED"
	| "SIWE_NOT_YET_VALID"
	| "SIWE_STALE"
	| "SIWE_ISSUED_IN_FUTURE"
	| "SIWE_VALIDITY_TOO_LONG";

export interface SiweFields {
	/** EIP-55 checksummed, as signed. */
	address: string;
	chainId: number;
	nonce: string;
	domain: string;
	uri: string;
	issuedAt: Date;
	expirationTime: Date;
	notBefore: Date | null;
}

export type SiweCheck = { ok: true; fields: SiweFields } | { ok: false; code: SiweFailureCode; message: string };

const fail = (code: SiweFailureCode, message: string): SiweCheck => ({ ok: false, code, message });

function parseTime(value: string | undefined): Date | null {
	if (!value) return null;
	const d = new Date(value);
	return Number.isNaN(d.getTime()) ? null : d;
}

function originOf(uri: string): string | null {
	try {
		return new URL(uri).origin;
	} catch {
		return null;
	}
}

export function checkSiweMessage(raw: string, expected: UsersConfig["siwe"], nowMs: number): SiweCheck {
	let msg: SiweMessage;
	try {
		msg = new SiweMessage(raw);
	} catch {
		return fail("SIWE_INVALID_MESSAGE", "The message is not a valid EIP-4361 message");
	}
	if (msg.prepareMessage() !== raw)
		return fail("SIWE_INVALID_MESSAGE", "The message is not in canonical EIP-4361 form");

	if (msg.domain !== expected.domain)
		return fail("SIWE_DOMAIN_MISMATCH", `The message must be for domain ${expected.domain}`);
	const expectedOrigin = originOf(expected.uri)!;
	if (msg.scheme && `${msg.scheme}:` !== new URL(expected.uri).protocol)
		return fail(
			"SIWE_DOMAIN_MISMATCH",
			`The message's scheme must be ${new URL(expected.uri).protocol.slice(0, -1)}`
		);
	if (originOf(msg.uri) !== expectedOrigin)
		return fail("SIWE_URI_MISMATCH", `The message's URI must be on ${expectedOrigin}`);
	if (!expected.chainIds.includes(Number(msg.chainId)))
		return fail(
			"SIWE_CHAIN_NOT_ALLOWED",
			`Chain ${msg.chainId} is not accepted (accepted: ${expected.chainIds.join(", ")})`
		);

	const skewMs = expected.clockSkewS * 1000;
	const issuedAt = parseTime(msg.issuedAt);
	if (!issuedAt) return fail("SIWE_INVALID_MESSAGE", "Issued At is missing or not a date");
	if (issuedAt.getTime() > nowMs + skewMs) return fail("SIWE_ISSUED_IN_FUTURE", "Issued At is in the future");
	if (nowMs - issuedAt.getTime() > expected.maxAgeS * 1000)
		return fail("SIWE_STALE", `The message was issued more than ${expected.maxAgeS} s ago`);

	if (!msg.expirationTime) return fail("SIWE_EXPIRATION_REQUIRED", "The message must carry an Expiration Time");
	const expirationTime = parseTime(msg.expirationTime);
	if (!expirationTime || expirationTime.getTime() <= issuedAt.getTime())
		return fail("SIWE_INVALID_MESSAGE", "Expiration Time must be a date after Issued At");
	if (expirationTime.getTime() <= nowMs) return fail("SIWE_EXPIRED", "The message has expired");
	if (expirationTime.getTime() - issuedAt.getTime() > expected.maxValidityS * 1000)
		return fail("SIWE_VALIDITY_TOO_LONG", `The message may be valid for at most ${expected.maxValidityS} s`);

	let notBefore: Date | null = null;
	if (msg.notBefore) {
		notBefore = parseTime(msg.notBefore);
		if (!notBefore) return fail("SIWE_INVALID_MESSAGE", "Not Before is not a date");
		if (notBefore.getTime() > nowMs + skewMs)
			return fail("SIWE_NOT_YET_VALID", "The message is not valid yet (Not Before)");
	}

	return {
		ok: true,
		fields: {
			address: msg.address,
			chainId: Number(msg.chainId),
			nonce: msg.nonce,
			domain: msg.domain,
			uri: msg.uri,
			issuedAt,
			expirationTime,
			notBefore
		}
	};
}
