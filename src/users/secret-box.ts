/**
 * Encryption at rest for the TOTP secrets (AES-256-GCM, node:crypto). A database dump alone must not
 * let anyone mint codes: the key lives in the configuration, not beside the rows.
 *
 * Sealed form: `v1.<kid>.<iv>.<ciphertext+tag>` (base64url parts; a 96-bit random IV per value, the
 * 128-bit tag appended). The row's user id is the additional authenticated data, so a sealed secret
 * copied onto another user's row does not open.
 *
 * Keys: `MFA_ENCRYPTION_KEYS` (kid:base64 of 32 bytes, comma-separated; the first seals) and, always,
 * one key derived by HKDF-SHA256 from each JWT key (kid `jwt-<kid>`), the active JWT key sealing when
 * no MFA key is given. Rotation: put the new key first, keep the old ones listed; a secret sealed
 * under an old key is resealed the next time it is read (`needsReseal`), and an old key can go once
 * no row names its kid.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { parseKeyList } from "./key-list";

export interface SecretKey {
	kid: string;
	key: Buffer;
}

const VERSION = "v1";
const KID = /^[A-Za-z0-9_-]{1,64}$/;

/** Parses `kid:base64key[,kid:base64key]`; a problem names the variable. */
export function parseSecretKeys(raw: string | null, name: string, problems: string[]): SecretKey[] {
	if (!raw) return [];
	const keys = parseKeyList(raw, (kid, value) => {
		const key = Buffer.from(value, "base64");
		return KID.test(kid) && !kid.startsWith("jwt-") && key.length === 32 ? { kid, key } : null;
	});
	if (keys) return keys;
	problems.push(
		`${name} must be a comma-separated list of kid:key pairs, each key 32 bytes in base64 (e.g. openssl rand -base64 32), kids not starting with jwt-`
	);
	return [];
}

/** The key derived from a JWT signing secret (so a node has one without extra configuration). */
export function derivedSecretKey(jwtKid: string, jwtSecret: string): SecretKey {
	const key = Buffer.from(hkdfSync("sha256", jwtSecret, "forgefluid", "totp-secret-encryption", 32));
	return { kid: `jwt-${jwtKid}`, key };
}

export class SecretBox {
	private readonly byKid: Map<string, Buffer>;

	/** `keys[0]` seals; every key opens. */
	constructor(private readonly keys: readonly SecretKey[]) {
		if (!keys.length) throw new Error("SecretBox needs at least one key");
		this.byKid = new Map(keys.map(k => [k.kid, k.key]));
	}

	seal(plain: string, aad: string): string {
		const { kid, key } = this.keys[0];
		const iv = randomBytes(12);
		const cipher = createCipheriv("aes-256-gcm", key, iv);
		cipher.setAAD(Buffer.from(aad));
		const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final(), cipher.getAuthTag()]);
		return [VERSION, kid, iv.toString("base64url"), body.toString("base64url")].join(".");
	}

	/** The plain value; throws when the value is not sealed, names an unknown key, or was altered. */
	open(sealed: string, aad: string): string {
		const [version, kid, ivB64, bodyB64, extra] = sealed.split(".");
		const key = this.byKid.get(kid ?? "");
		if (version !== VERSION || !key || !ivB64 || !bodyB64 || extra !== undefined)
			throw new Error(`sealed secret is malformed or names an unknown key (${version}.${kid})`);
		const body = Buffer.from(bodyB64, "base64url");
		const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(ivB64, "base64url"));
		decipher.setAAD(Buffer.from(aad));
		decipher.setAuthTag(body.subarray(body.length - 16));
		return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString("utf8");
	}

	/** Sealed under a key other than the sealing one (rotation: reseal it). */
	needsReseal(sealed: string): boolean {
		return sealed.split(".")[1] !== this.keys[0].kid;
	}
}
