/**
 * Opaque credentials: refresh tokens and API keys are high-entropy random strings of which only a
 * SHA-256 digest is stored (a slow hash adds nothing for 256-bit secrets and would slow every request).
 */
import { createHash, createHmac, randomBytes, randomInt, timingSafeEqual } from "node:crypto";

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function randomAlnum(length: number): string {
	let out = "";
	for (let i = 0; i < length; i++) out += ALNUM[randomInt(ALNUM.length)];
	return out;
}

export function sha256(value: string): Buffer {
	return createHash("sha256").update(value, "utf8").digest();
}

export function digestsEqual(a: Buffer, b: Buffer): boolean {
	return a.length === b.length && timingSafeEqual(a, b);
}

export const REFRESH_TOKEN_PATTERN = /^ffr_[A-Za-z0-9_-]{43}$/;

export function newRefreshToken(): { token: string; hash: Buffer } {
	const token = `ffr_${randomBytes(32).toString("base64url")}`;
	return { token, hash: sha256(token) };
}

/**
 * The one successor of a refresh token: derived from it under a server secret, not drawn at random, so
 * that refreshes racing with the same token (two tabs, within the reuse grace) are all handed the same
 * successor without the plaintext ever being stored (RFC 9700 §4.14.2: one token, one successor).
 * Only the holder of the spent token and the server can compute it.
 */
export function successorRefreshToken(serverSecret: string, spent: string): { token: string; hash: Buffer } {
	const token = `ffr_${createHmac("sha256", serverSecret).update(`refresh-successor:${spent}`, "utf8").digest("base64url")}`;
	return { token, hash: sha256(token) };
}

/** Must stay in step with the gateway's shape check in services/api.service.ts `resolveApiKey`. */
export const API_KEY_PATTERN = /^ff_([A-Za-z0-9]{1,64})_([A-Za-z0-9_-]{16,128})$/;

export function newApiKey(): { id: string; key: string; secretHash: Buffer } {
	const id = randomAlnum(16);
	const secret = randomBytes(32).toString("base64url");
	return { id, key: `ff_${id}_${secret}`, secretHash: sha256(secret) };
}

export function parseApiKey(key: string): { id: string; secret: string } | null {
	const m = API_KEY_PATTERN.exec(key);
	return m ? { id: m[1], secret: m[2] } : null;
}

/** SIWE nonce: EIP-4361 wants at least 8 alphanumerics; 24 give ~142 bits. */
export function newSiweNonce(): string {
	return randomAlnum(24);
}

/** The secret that binds a nonce to the client that asked for it (never part of the signed message). */
export function newNonceToken(): string {
	return randomBytes(32).toString("base64url");
}
