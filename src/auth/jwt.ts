/**
 * Access tokens: short-lived JWTs, HS256 only (the algorithm is fixed, never taken from the token),
 * with issuer, audience and a key id. Several keys may be configured for rotation: new tokens are
 * signed with the active key, tokens signed with any configured key verify until it is removed.
 */
import { KeyObject, createSecretKey } from "node:crypto";
import jwt, { JwtPayload } from "jsonwebtoken";
import type { Config } from "../config";
import type { AuthUser, Role } from "./user";

export interface AccessClaims {
	sub: string;
	role: Role;
	sid?: string;
	scopes: string[];
}

const ROLES: readonly Role[] = ["user", "admin", "operator"];

// jsonwebtoken turns a string secret into a KeyObject on every call, first by trying (and failing)
// to parse it as a public key — a thrown exception per request. Converting once keeps verification cheap.
const keyObjects = new Map<string, KeyObject>();
function keyObject(secret: string): KeyObject {
	let k = keyObjects.get(secret);
	if (!k) {
		k = createSecretKey(Buffer.from(secret, "utf8"));
		keyObjects.set(secret, k);
	}
	return k;
}

export function signAccessToken(
	cfg: Config["jwt"],
	claims: AccessClaims,
	nowS = Math.floor(Date.now() / 1000)
): string {
	const key = cfg.keys.find(k => k.kid === cfg.activeKid);
	if (!key) throw new Error(`no JWT key with kid ${cfg.activeKid}`);
	return jwt.sign(
		{ role: claims.role, sid: claims.sid, scp: claims.scopes, iat: nowS, exp: nowS + cfg.accessTtlS },
		keyObject(key.secret),
		{
			algorithm: "HS256",
			keyid: key.kid,
			issuer: cfg.issuer,
			audience: cfg.audience,
			subject: claims.sub
		}
	);
}

// Clients send the same access token for its whole life (minutes), so a verified token is remembered
// until it expires: the signature check runs once per token instead of once per request. Keyed by the
// exact token string (a forged token cannot hit), bounded, oldest evicted first. Revocation is not
// decided here: the users service's session check runs on every request regardless.
const VERIFIED_MAX = 20_000;
const verified = new Map<string, { user: AuthUser; expMs: number; keys: Config["jwt"]["keys"] }>();

/** Returns the user the token names, or null for any invalid, expired or foreign token. */
export function verifyAccessToken(cfg: Config["jwt"], token: string): AuthUser | null {
	const hit = verified.get(token);
	if (hit && hit.keys === cfg.keys) {
		if (Date.now() < hit.expMs) return hit.user;
		verified.delete(token);
	}
	const result = verifySignedToken(cfg, token);
	if (result) {
		if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value!);
		verified.set(token, { user: result.user, expMs: result.expS * 1000, keys: cfg.keys });
	}
	return result?.user ?? null;
}

function verifySignedToken(cfg: Config["jwt"], token: string): { user: AuthUser; expS: number } | null {
	const decoded = jwt.decode(token, { complete: true });
	const kid = decoded && typeof decoded === "object" ? decoded.header.kid : undefined;
	const key = kid ? cfg.keys.find(k => k.kid === kid) : undefined;
	if (!key) return null;
	try {
		const p = jwt.verify(token, keyObject(key.secret), {
			algorithms: ["HS256"],
			issuer: cfg.issuer,
			audience: cfg.audience,
			clockTolerance: 5
		}) as JwtPayload & { role?: string; sid?: string; scp?: unknown };
		if (typeof p.sub !== "string" || !ROLES.includes(p.role as Role) || typeof p.exp !== "number") return null;
		const scopes = Array.isArray(p.scp) ? p.scp.filter((s): s is string => typeof s === "string") : [];
		return {
			user: { id: p.sub, role: p.role as Role, sid: typeof p.sid === "string" ? p.sid : undefined, scopes },
			expS: p.exp
		};
	} catch {
		return null;
	}
}
