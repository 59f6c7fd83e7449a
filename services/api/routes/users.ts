/** REST routes of the users service: /auth/*, /users/*, /admin/users* (see docs/users.md). */
import type { RouteSpec } from "../../../src/http/route-spec";

export function usersRoutes(): RouteSpec[] {
	const tag = "users";
	const auth = "auth";
	const admin = "admin";
	return [
		{
			method: "POST",
			path: "/auth/register",
			action: "users.register",
			auth: "none",
			status: 201,
			summary: "Create an account with e-mail and password; returns tokens",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/login",
			action: "users.login",
			auth: "none",
			summary: "E-mail and password → access and refresh token",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/refresh",
			action: "users.refresh",
			auth: "none",
			summary: "Refresh token → new pair (rotation; reuse revokes the session)",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/logout",
			action: "users.logout",
			auth: "optional",
			summary: "Revoke the session of a refresh token, the current session, or all (all: true)",
			tag: auth
		},
		{
			method: "GET",
			path: "/auth/siwe/nonce",
			action: "users.siweNonce",
			auth: "none",
			summary: "Single-use SIWE nonce and the nonceToken that binds it to this client",
			tag: auth,
			rateLimit: { points: 60, durationS: 60, by: "ip" }
		},
		{
			method: "POST",
			path: "/auth/siwe/verify",
			action: "users.siweVerify",
			auth: "none",
			summary: "EIP-4361 message + signature (EOA, EIP-1271, EIP-6492) → tokens",
			tag: auth
		},
		{
			method: "GET",
			path: "/users/me",
			action: "users.me",
			auth: "required",
			summary: "Profile, role, tier, permissions, wallets, $FORGE holdings and stake",
			tag
		},
		{
			method: "PATCH",
			path: "/users/me",
			action: "users.updateMe",
			auth: "required",
			summary: "Change the display name",
			tag
		},
		{
			method: "POST",
			path: "/users/me/password",
			action: "users.changePassword",
			auth: "required",
			summary: "Change the password (ends other sessions)",
			tag
		},
		{
			method: "GET",
			path: "/users/me/sessions",
			action: "users.listSessions",
			auth: "required",
			summary: "Live sessions of the signed-in user",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/sessions/:id",
			action: "users.revokeSession",
			auth: "required",
			summary: "End one session",
			tag
		},
		{
			method: "POST",
			path: "/users/me/wallets",
			action: "users.linkWallet",
			auth: "required",
			status: 201,
			summary: "Link a wallet with a SIWE proof",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/wallets/:address",
			action: "users.unlinkWallet",
			auth: "required",
			summary: "Unlink a wallet",
			tag
		},
		{
			method: "POST",
			path: "/users/me/api-keys",
			action: "users.createApiKey",
			auth: "required",
			status: 201,
			summary: "Create a scoped API key (the secret is shown once)",
			tag
		},
		{
			method: "GET",
			path: "/users/me/api-keys",
			action: "users.listApiKeys",
			auth: "required",
			summary: "Active API keys (never their secrets)",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/api-keys/:id",
			action: "users.revokeApiKey",
			auth: "required",
			summary: "Revoke an API key",
			tag
		},
		{
			method: "GET",
			path: "/admin/users",
			action: "users.adminListUsers",
			auth: "required",
			permissions: ["admin", "operator"],
			summary: "List and search users (cursor pagination)",
			tag: admin
		},
		{
			method: "GET",
			path: "/admin/users/:id",
			action: "users.adminGetUser",
			auth: "required",
			permissions: ["admin", "operator"],
			summary: "One user with tier, wallets and sessions",
			tag: admin
		},
		{
			method: "PATCH",
			path: "/admin/users/:id",
			action: "users.adminUpdateUser",
			auth: "required",
			permissions: ["admin"],
			summary: "Change role or tier override, disable or enable",
			tag: admin
		}
	];
}
