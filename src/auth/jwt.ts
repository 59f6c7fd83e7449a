/**
 * Access tokens: short-lived JWTs, HS256 only (the algorithm is fixed, never taken from the token),
 * with issuer, audience and a key id. Several keys may be configured for rotation: new tokens are
 * signed with the active key, tokens signed with any configured key verify until it is removed.
 */
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

export function signAccessToken(cfg: Config["jwt"], claims: AccessClaims, nowS = Math.floor(Date.now() / 1000)): string {
	const key = cfg.keys.find(k => k.kid === cfg.activeKid);
	if (!key) throw new Error(`no JWT key with kid ${cfg.activeKid}`);
	return jwt.sign({ role: claims.role, sid: claims.sid, scp: claims.scopes, iat: nowS, exp: nowS + cfg.accessTtlS }, key.secret, {
		algorithm: "HS256",
		keyid: key.kid,
		issuer: cfg.issuer,
		audience: cfg.audience,
		subject: claims.sub
	});
}

/** Returns the user the token names, or null for any invalid, expired or foreign token. */
export function verifyAccessToken(cfg: Config["jwt"], token: string): AuthUser | null {
	const decoded = jwt.decode(token, { complete: true });
	const kid = decoded && typeof decoded === "object" ? decoded.header.kid : undefined;
	const key = kid ? cfg.keys.find(k => k.kid === kid) : undefined;
	if (!key) return null;
	try {
		const p = jwt.verify(token, key.secret, {
			algorithms: ["HS256"],
			issuer: cfg.issuer,
			audience: cfg.audience,
			clockTolerance: 5
		}) as JwtPayload & { role?: string; sid?: string; scp?: unknown };
		if (typeof p.sub !== "string" || !ROLES.includes(p.role as Role)) return null;
		const scopes = Array.isArray(p.scp) ? p.scp.filter((s): s is string => typeof s === "string") : [];
		return { id: p.sub, role: p.role as Role, sid: typeof p.sid === "string" ? p.sid : undefined, scopes };
	} catch {
		return null;
	}
}
