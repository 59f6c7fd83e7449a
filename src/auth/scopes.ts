/**
 * What a credential may do, on top of what its role allows. Session tokens carry `*` (everything the
 * role allows); API keys carry the scopes chosen when the key was made. A service checks the scope
 * of the operation with `hasScope(ctx.meta.user, "projects:write")`.
 */
import type { AuthUser, Role } from "./user";

export const SCOPES = [
	"users:read",
	"users:write",
	"projects:read",
	"projects:write",
	"tasks:read",
	"tasks:write",
	"orgs:read",
	"orgs:write",
	"billing:read",
	"billing:write",
	"ai:use",
	"admin"
] as const;
export type Scope = (typeof SCOPES)[number];

/**
 * What an organisation API key may hold: the organisation's projects, tasks, billing and AI work.
 * Never the creator's account (`users:*`), organisation management (`orgs:write`) or `admin`.
 */
export const ORG_KEY_SCOPES: readonly Scope[] = [
	"projects:read",
	"projects:write",
	"tasks:read",
	"tasks:write",
	"orgs:read",
	"billing:read",
	"billing:write",
	"ai:use"
];

/** Granted to session tokens: every scope the role has. */
export const ALL_SCOPES = "*";

/** The scopes a role can hold at all; an API key never gets more than its owner's role. */
export function scopesOfRole(role: Role): Scope[] {
	return role === "user" ? SCOPES.filter(s => s !== "admin") : [...SCOPES];
}

export function hasScope(user: Pick<AuthUser, "role" | "scopes">, scope: Scope): boolean {
	if (!scopesOfRole(user.role).includes(scope)) return false;
	return user.scopes.includes(ALL_SCOPES) || user.scopes.includes(scope);
}

/** The scopes a credential effectively has (what `GET /users/me` lists as permissions). */
export function effectiveScopes(user: Pick<AuthUser, "role" | "scopes">): Scope[] {
	return scopesOfRole(user.role).filter(s => hasScope(user, s));
}
