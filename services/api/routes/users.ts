/** REST routes of the users service: /auth/*, /users/*, /admin/users* (see docs/users.md). */
import type { RouteSpec } from "../../../src/http/route-spec";
import { accountViews, ssoViews, views } from "../../../src/users/views";

/** What a callback's values can fail on (state, issuer, nonce, code, the ID token, the flow). */
const SSO_CALLBACK_401 = [
	"SSO_FLOW_INVALID",
	"SSO_STATE_MISMATCH",
	"SSO_ISSUER_MISMATCH",
	"SSO_NONCE_MISMATCH",
	"SSO_CODE_INVALID",
	"SSO_RESPONSE_INVALID"
] as const;

/** What a SIWE proof can fail on (src/users/siwe.ts, src/users/siwe-proof.ts). */
export const SIWE_PROOF_401 = [
	"SIWE_DOMAIN_MISMATCH",
	"SIWE_URI_MISMATCH",
	"SIWE_CHAIN_NOT_ALLOWED",
	"SIWE_EXPIRED",
	"SIWE_NOT_YET_VALID",
	"SIWE_STALE",
	"SIWE_ISSUED_IN_FUTURE",
	"SIWE_EXPIRATION_REQUIRED",
	"SIWE_VALIDITY_TOO_LONG",
	"SIWE_NONCE_INVALID",
	"SIWE_NONCE_MISMATCH",
	"SIWE_SIGNATURE_INVALID"
] as const;

/** The OpenAPI tags of these routes. */
const tag = "users";
const auth = "auth";
const admin = "admin";

export function usersRoutes(): RouteSpec[] {
	return [
		{
			method: "POST",
			path: "/auth/register",
			action: "users.register",
			response: views.register,
			errors: { 409: ["EMAIL_TAKEN"] },
			auth: "none",
			status: 202,
			alsoStatus: [201],
			summary:
				"Create an account with e-mail and password. 202 `SignUpPending` alike for a new and a taken address (then POST /auth/login); with SIGNUP_REVEALS_TAKEN=true, 201 `SignedIn` (tokens) and 409 EMAIL_TAKEN",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/login",
			action: "users.login",
			response: views.login,
			errors: { 401: ["INVALID_CREDENTIALS"], 403: ["ACCOUNT_DISABLED"], 429: ["LOGIN_THROTTLED"] },
			auth: "none",
			summary: "E-mail and password → access and refresh token",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/refresh",
			action: "users.refresh",
			response: views.refresh,
			errors: { 401: ["REFRESH_TOKEN_REUSED", "INVALID_REFRESH_TOKEN"], 403: ["ACCOUNT_DISABLED"] },
			auth: "none",
			summary: "Refresh token → new pair (rotation; reuse revokes the session)",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/logout",
			action: "users.logout",
			response: views.logout,
			auth: "optional",
			summary: "Revoke the session of a refresh token, the current session, or all (all: true)",
			tag: auth
		},
		{
			method: "GET",
			path: "/auth/siwe/nonce",
			action: "users.siweNonce",
			response: views.siweNonce,
			auth: "none",
			summary: "Single-use SIWE nonce and the nonceToken that binds it to this client",
			tag: auth,
			rateLimit: { points: 60, durationS: 60, by: "ip" }
		},
		{
			method: "POST",
			path: "/auth/siwe/verify",
			action: "users.siweVerify",
			response: views.siweVerify,
			errors: {
				401: [...SIWE_PROOF_401],
				403: ["ACCOUNT_DISABLED", "ORG_WALLET"],
				422: ["SIWE_INVALID_MESSAGE"]
			},
			auth: "none",
			summary: "EIP-4361 message + signature (EOA, EIP-1271, EIP-6492) → tokens",
			tag: auth
		},
		{
			method: "GET",
			path: "/users/me",
			action: "users.me",
			response: views.me,
			auth: "required",
			summary: "Profile, role, tier, permissions, wallets, $FORGE holdings and stake",
			tag
		},
		{
			method: "PATCH",
			path: "/users/me",
			action: "users.updateMe",
			response: views.updateMe,
			auth: "required",
			summary: "Change the display name",
			tag
		},
		{
			method: "POST",
			path: "/users/me/password",
			action: "users.changePassword",
			response: views.changePassword,
			errors: { 403: ["INVALID_CURRENT_PASSWORD", "SESSION_REQUIRED", "MFA_REQUIRED", "MFA_CODE_INVALID"] },
			auth: "required",
			summary: "Change the password (ends other sessions)",
			tag
		},
		{
			method: "GET",
			path: "/users/me/sessions",
			action: "users.listSessions",
			response: views.listSessions,
			auth: "required",
			summary: "Live sessions of the signed-in user",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/sessions/:id",
			action: "users.revokeSession",
			response: views.revokeSession,
			auth: "required",
			summary: "End one session",
			tag
		},
		{
			method: "POST",
			path: "/users/me/wallets",
			action: "users.linkWallet",
			response: views.linkWallet,
			errors: {
				401: [...SIWE_PROOF_401],
				409: ["WALLET_TAKEN"],
				422: ["SIWE_INVALID_MESSAGE"]
			},
			auth: "required",
			status: 201,
			summary: "Link a wallet with a SIWE proof",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/wallets/:address",
			action: "users.unlinkWallet",
			response: views.unlinkWallet,
			errors: { 409: ["LAST_SIGN_IN_METHOD"] },
			auth: "required",
			summary: "Unlink a wallet",
			tag
		},
		{
			method: "POST",
			path: "/users/me/api-keys",
			action: "users.createApiKey",
			response: views.createApiKey,
			errors: { 403: ["SESSION_REQUIRED", "MFA_REQUIRED", "MFA_CODE_INVALID"] },
			auth: "required",
			status: 201,
			summary: "Create a scoped API key (the secret is shown once)",
			tag
		},
		{
			method: "GET",
			path: "/users/me/api-keys",
			action: "users.listApiKeys",
			response: views.listApiKeys,
			auth: "required",
			summary: "Active API keys (never their secrets)",
			tag
		},
		{
			method: "PATCH",
			path: "/users/me/api-keys/:id",
			action: "users.updateApiKey",
			response: views.updateApiKey,
			errors: { 403: ["SESSION_REQUIRED"], 404: ["NOT_FOUND"] },
			auth: "required",
			summary: "Set or clear an API key's monthly spend cap",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/api-keys/:id",
			action: "users.revokeApiKey",
			response: views.revokeApiKey,
			auth: "required",
			summary: "Revoke an API key",
			tag
		},
		{
			method: "GET",
			path: "/admin/users",
			action: "users.adminListUsers",
			response: views.adminListUsers,
			auth: "required",
			permissions: ["admin", "operator"],
			summary: "List and search users (cursor pagination)",
			tag: admin
		},
		{
			method: "GET",
			path: "/admin/users/:id",
			action: "users.adminGetUser",
			response: views.adminGetUser,
			auth: "required",
			permissions: ["admin", "operator"],
			summary: "One user with tier, wallets and sessions",
			tag: admin
		},
		{
			method: "PATCH",
			path: "/admin/users/:id",
			action: "users.adminUpdateUser",
			response: views.adminUpdateUser,
			errors: { 409: ["SELF_CHANGE_FORBIDDEN"] },
			auth: "required",
			permissions: ["admin"],
			summary: "Change role or tier override, disable or enable",
			tag: admin
		},
		...accountRoutes()
	];
}

/** Issue 18: e-mail verification and change, password reset, TOTP, export and deletion, the dev outbox. */
function accountRoutes(): RouteSpec[] {
	// Mail and reset limits per address and per IP are the service's (ACCOUNT_MAIL_*, PASSWORD_RESET_*).
	return [
		{
			method: "POST",
			path: "/auth/email/verify",
			action: "users.verifyEmail",
			response: accountViews.verifyEmail,
			errors: { 401: ["INVALID_TOKEN"], 409: ["EMAIL_TAKEN"] },
			auth: "none",
			summary: "Prove an e-mail address with the token from its link (single use); applies a pending change",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/email/verify/resend",
			action: "users.resendVerification",
			response: accountViews.resendVerification,
			errors: { 403: ["EMAIL_ALREADY_VERIFIED", "EMAIL_REQUIRED", "SESSION_REQUIRED"], 429: ["RATE_LIMITED"] },
			auth: "required",
			summary: "Send the verification link again",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/password/forgot",
			action: "users.forgotPassword",
			response: accountViews.forgotPassword,
			errors: { 429: ["RATE_LIMITED"] },
			auth: "none",
			status: 202,
			summary: "Mail a reset link if the address has an account; always 202, whatever is on file",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/password/reset",
			action: "users.resetPassword",
			response: accountViews.resetPassword,
			errors: { 401: ["INVALID_TOKEN"], 429: ["RATE_LIMITED"] },
			auth: "none",
			summary: "Set a new password with the reset token (single use); ends every session",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/login/mfa",
			action: "users.loginMfa",
			response: accountViews.loginMfa,
			errors: {
				401: ["MFA_TOKEN_INVALID"],
				403: ["MFA_CODE_INVALID", "ACCOUNT_DISABLED"],
				429: ["MFA_THROTTLED"]
			},
			auth: "none",
			summary: "Second sign-in step: the mfaToken from /auth/login and a TOTP or backup code → tokens",
			tag: auth
		},
		{
			method: "POST",
			path: "/users/me/email",
			action: "users.changeEmail",
			response: accountViews.changeEmail,
			errors: {
				403: ["MFA_REQUIRED", "MFA_CODE_INVALID", "SESSION_REQUIRED"],
				409: ["EMAIL_TAKEN"],
				429: ["RATE_LIMITED", "MFA_THROTTLED"]
			},
			auth: "required",
			status: 202,
			summary: "Add or change the e-mail address: applies once the new address is verified (old one told)",
			tag
		},
		{
			method: "POST",
			path: "/users/me/2fa/totp",
			action: "users.totpStart",
			response: accountViews.totpStart,
			errors: { 403: ["EMAIL_NOT_VERIFIED", "MFA_ALREADY_ENABLED", "SESSION_REQUIRED"] },
			auth: "required",
			summary: "Start TOTP enrolment: the secret and its otpauth:// URI",
			tag
		},
		{
			method: "POST",
			path: "/users/me/2fa/totp/confirm",
			action: "users.totpConfirm",
			response: accountViews.totpConfirm,
			errors: {
				403: ["MFA_CODE_INVALID", "MFA_NOT_STARTED", "MFA_ALREADY_ENABLED", "SESSION_REQUIRED"],
				429: ["MFA_THROTTLED"]
			},
			auth: "required",
			summary: "Confirm TOTP with a first code: 2FA on, 10 backup codes (shown once)",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/2fa/totp",
			action: "users.totpDisable",
			response: accountViews.totpDisable,
			errors: { 403: ["MFA_CODE_INVALID", "MFA_NOT_ENABLED", "SESSION_REQUIRED"], 429: ["MFA_THROTTLED"] },
			auth: "required",
			summary: "Turn TOTP off (needs a code)",
			tag
		},
		{
			method: "GET",
			path: "/users/me/export",
			action: "users.exportMe",
			response: accountViews.exportMe,
			errors: { 403: ["SESSION_REQUIRED"] },
			auth: "required",
			summary: "Everything held about the account, as JSON",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me",
			action: "users.deleteMe",
			response: accountViews.deleteMe,
			errors: {
				403: [
					"MFA_REQUIRED",
					"MFA_CODE_INVALID",
					"PASSWORD_REQUIRED",
					"INVALID_CURRENT_PASSWORD",
					"RECENT_SIGN_IN_REQUIRED",
					"SESSION_REQUIRED"
				],
				429: ["MFA_THROTTLED", "STEP_UP_THROTTLED"]
			},
			auth: "required",
			summary: "Delete the account (step-up: 2FA code, else password, else a fresh sign-in)",
			tag
		},
		{
			method: "POST",
			path: "/users/me/passkeys/options",
			action: "users.passkeyRegistrationOptions",
			response: accountViews.passkeyRegistrationOptions,
			errors: { 403: ["SESSION_REQUIRED"], 409: ["PASSKEY_LIMIT"] },
			auth: "required",
			summary: "WebAuthn registration options and the challengeToken for POST /users/me/passkeys",
			tag
		},
		{
			method: "POST",
			path: "/users/me/passkeys",
			action: "users.registerPasskey",
			response: accountViews.registerPasskey,
			errors: {
				401: ["PASSKEY_CHALLENGE_INVALID", "PASSKEY_INVALID"],
				403: ["SESSION_REQUIRED", "MFA_REQUIRED", "MFA_CODE_INVALID"],
				409: ["PASSKEY_TAKEN"],
				429: ["MFA_THROTTLED"]
			},
			auth: "required",
			status: 201,
			summary: "Register a passkey (the browser's credential for the options' challenge)",
			tag
		},
		{
			method: "GET",
			path: "/users/me/passkeys",
			action: "users.listPasskeys",
			response: accountViews.listPasskeys,
			errors: { 403: ["SESSION_REQUIRED"] },
			auth: "required",
			summary: "The account's passkeys",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/passkeys/:id",
			action: "users.removePasskey",
			response: accountViews.removePasskey,
			errors: { 403: ["SESSION_REQUIRED"], 404: ["NOT_FOUND"], 409: ["LAST_SIGN_IN_METHOD"] },
			auth: "required",
			summary: "Remove a passkey (refused when it is the only way to sign in)",
			tag
		},
		{
			method: "POST",
			path: "/auth/passkey/options",
			action: "users.passkeySignInOptions",
			response: accountViews.passkeySignInOptions,
			auth: "none",
			summary: "WebAuthn sign-in options (discoverable credentials) and their challengeToken",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/passkey/verify",
			action: "users.passkeySignIn",
			response: accountViews.passkeySignIn,
			errors: { 401: ["PASSKEY_CHALLENGE_INVALID", "PASSKEY_INVALID"], 403: ["ACCOUNT_DISABLED"] },
			auth: "none",
			summary: "Sign in with a passkey → tokens",
			tag: auth
		},
		{
			method: "GET",
			path: "/auth/sso/providers",
			action: "users.ssoProviders",
			response: ssoViews.ssoProviders,
			auth: "none",
			summary: "The configured single sign-on providers (OpenID Connect issuers, GitHub)",
			tag: auth
		},
		{
			method: "POST",
			path: "/auth/sso/:provider/start",
			action: "users.ssoStart",
			response: ssoViews.ssoStart,
			errors: { 404: ["NOT_FOUND"], 503: ["SSO_PROVIDER_UNAVAILABLE"] },
			auth: "none",
			summary: "Start a sign-in at a provider (code flow with PKCE, state and nonce): the URL and a flowToken",
			tag: auth,
			rateLimit: { points: 60, durationS: 60, by: "ip" }
		},
		{
			method: "POST",
			path: "/auth/sso/:provider/callback",
			action: "users.ssoCallback",
			response: ssoViews.ssoCallback,
			errors: {
				401: [...SSO_CALLBACK_401],
				403: ["ACCOUNT_DISABLED"],
				404: ["NOT_FOUND"],
				409: ["SSO_ACCOUNT_EXISTS"],
				503: ["SSO_PROVIDER_UNAVAILABLE"]
			},
			auth: "none",
			summary:
				"Finish a sign-in with the callback's code and state → tokens (a first sign-in creates the account)",
			tag: auth
		},
		{
			method: "POST",
			path: "/users/me/identities/:provider/start",
			action: "users.identityLinkStart",
			response: ssoViews.identityLinkStart,
			errors: { 403: ["SESSION_REQUIRED"], 404: ["NOT_FOUND"], 503: ["SSO_PROVIDER_UNAVAILABLE"] },
			auth: "required",
			summary: "Start linking a provider's identity to this account",
			tag
		},
		{
			method: "POST",
			path: "/users/me/identities/:provider/callback",
			action: "users.linkIdentity",
			response: ssoViews.linkIdentity,
			errors: {
				401: [...SSO_CALLBACK_401],
				403: ["SESSION_REQUIRED", "MFA_REQUIRED", "MFA_CODE_INVALID"],
				404: ["NOT_FOUND"],
				409: ["IDENTITY_TAKEN"],
				429: ["MFA_THROTTLED"],
				503: ["SSO_PROVIDER_UNAVAILABLE"]
			},
			auth: "required",
			status: 201,
			summary: "Finish linking with the callback's code and state (the flow must be this account's)",
			tag
		},
		{
			method: "GET",
			path: "/users/me/identities",
			action: "users.listIdentities",
			response: ssoViews.listIdentities,
			errors: { 403: ["SESSION_REQUIRED"] },
			auth: "required",
			summary: "The account's single sign-on identities",
			tag
		},
		{
			method: "DELETE",
			path: "/users/me/identities/:id",
			action: "users.removeIdentity",
			response: ssoViews.removeIdentity,
			errors: { 403: ["SESSION_REQUIRED"], 404: ["NOT_FOUND"], 409: ["LAST_SIGN_IN_METHOD"] },
			auth: "required",
			summary: "Unlink an identity (refused when it is the only way to sign in)",
			tag
		},
		{
			method: "GET",
			path: "/dev/outbox",
			action: "users.devOutbox",
			response: accountViews.devOutbox,
			// 404 when the outbox is off (SMTP_URL set or production).
			errors: { 404: ["NOT_FOUND"] },
			auth: "none",
			summary: "Development only (no SMTP_URL, NODE_ENV not production): the mail the outbox holds",
			tag: "dev"
		}
	];
}
