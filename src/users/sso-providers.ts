/**
 * The providers' side of single sign-on, over openid-client (OpenID Certified; it does discovery,
 * PKCE, state, nonce, the RFC 9207 `iss` check and ID-token validation). This file only builds the
 * authorization URL, redeems the code, and reads who signed in; src/users/sso.ts decides what that
 * means for accounts.
 *
 * - OpenID Connect: any issuer by discovery (`<issuer>/.well-known/openid-configuration`), code flow
 *   with PKCE (S256), state and nonce; claims from the ID token, or userinfo when the ID token leaves
 *   the e-mail out.
 * - GitHub: OAuth 2 (not OpenID): the same code flow with PKCE and state through openid-client with
 *   GitHub's endpoints written in, then /user and /user/emails. Only a primary, verified address counts.
 */
import * as oidc from "openid-client";
import { Unauthorized, Unavailable } from "../errors";
import type { GithubConfig, OidcProviderConfig, SsoConfig } from "./sso-config";

/** Who signed in, as the provider says. */
export interface SsoProfile {
	subject: string;
	email: string | null;
	/** The provider vouches for the address (OIDC `email_verified: true`; GitHub: primary and verified). */
	emailVerified: boolean;
	name: string | null;
}

/** What a started sign-in keeps server-side (under its flowToken). */
export interface FlowSecrets {
	state: string;
	nonce: string | null;
	codeVerifier: string;
}

export interface CallbackParams {
	code: string;
	state: string;
	iss?: string;
}

export interface SsoProvider {
	readonly id: string;
	readonly name: string;
	readonly kind: "oidc" | "github";
	authorizationUrl(secrets: FlowSecrets): Promise<string>;
	finish(params: CallbackParams, secrets: FlowSecrets): Promise<SsoProfile>;
}

export const newFlowSecrets = (nonce: boolean): FlowSecrets => ({
	state: oidc.randomState(),
	nonce: nonce ? oidc.randomNonce() : null,
	codeVerifier: oidc.randomPKCECodeVerifier()
});

const unavailable = (name: string) =>
	Unavailable(`The sign-in provider ${name} cannot be reached; try again later`, "SSO_PROVIDER_UNAVAILABLE");

/**
 * openid-client's failures as the contract's errors: what the callback's values caused is a 401 with
 * a code saying which check refused them; a provider that does not answer (or answers nonsense) is
 * a 503. The checks themselves are the library's.
 */
function ssoError(err: unknown, name: string): Error {
	type Coded = { code?: string; message?: string; error?: string; cause?: unknown };
	const outer = err as Coded;
	// openid-client wraps oauth4webapi's OperationProcessingError (message, cause.claim) in its own ClientError.
	const e = (outer?.cause instanceof Error ? outer.cause : outer) as Coded & { cause?: { claim?: string } };
	const msg = e?.message ?? "";
	if (e?.code === "OAUTH_INVALID_RESPONSE" && /"state"/.test(msg))
		return Unauthorized("The sign-in's state does not match the one it started with", "SSO_STATE_MISMATCH");
	if (e?.code === "OAUTH_INVALID_RESPONSE" && /"iss"/.test(msg))
		return Unauthorized("The answer names another issuer than the provider's", "SSO_ISSUER_MISMATCH");
	if (e?.code === "OAUTH_JWT_CLAIM_COMPARISON_FAILED" && e.cause?.claim === "nonce")
		return Unauthorized("The ID token's nonce is not the sign-in's", "SSO_NONCE_MISMATCH");
	if (e?.code === "OAUTH_JWT_CLAIM_COMPARISON_FAILED" && e.cause?.claim === "iss")
		return Unauthorized("The ID token names another issuer than the provider's", "SSO_ISSUER_MISMATCH");
	if (e?.code === "OAUTH_RESPONSE_BODY_ERROR" && (e.error === "invalid_grant" || e.error === "invalid_request"))
		return Unauthorized("The code is unknown, expired or already used; sign in again", "SSO_CODE_INVALID");
	if (e?.code === "OAUTH_JWT_CLAIM_COMPARISON_FAILED" || e?.code === "OAUTH_JWT_TIMESTAMP_CHECK_FAILED")
		return Unauthorized("The provider's ID token did not pass its checks", "SSO_RESPONSE_INVALID");
	return unavailable(name);
}

const insecure = (cfg: SsoConfig) => (cfg.allowHttp ? [oidc.allowInsecureRequests] : []);

class OidcProvider implements SsoProvider {
	readonly kind = "oidc" as const;
	readonly id: string;
	readonly name: string;
	/** Discovery runs at first use and again after a failure (a provider down at start is not fatal). */
	private config: Promise<oidc.Configuration> | null = null;

	constructor(
		private readonly p: OidcProviderConfig,
		private readonly sso: SsoConfig,
		private readonly log: { warn(...a: unknown[]): void }
	) {
		this.id = p.id;
		this.name = p.name;
	}

	private discover(): Promise<oidc.Configuration> {
		this.config ??= oidc
			.discovery(new URL(this.p.issuer), this.p.clientId, this.p.clientSecret, undefined, {
				execute: insecure(this.sso),
				timeout: this.sso.timeoutS
			})
			.catch(err => {
				this.config = null;
				this.log.warn(`OIDC discovery of ${this.p.issuer} (${this.id}) failed:`, (err as Error).message);
				throw unavailable(this.name);
			});
		return this.config;
	}

	async authorizationUrl(s: FlowSecrets): Promise<string> {
		const config = await this.discover();
		return oidc
			.buildAuthorizationUrl(config, {
				redirect_uri: `${this.sso.redirectBase}/${this.id}`,
				scope: this.p.scopes,
				state: s.state,
				nonce: s.nonce!,
				code_challenge: await oidc.calculatePKCECodeChallenge(s.codeVerifier),
				code_challenge_method: "S256"
			})
			.toString();
	}

	async finish(params: CallbackParams, s: FlowSecrets): Promise<SsoProfile> {
		const config = await this.discover();
		const url = new URL(`${this.sso.redirectBase}/${this.id}`);
		url.searchParams.set("code", params.code);
		url.searchParams.set("state", params.state);
		if (params.iss !== undefined) url.searchParams.set("iss", params.iss);
		try {
			const tokens = await oidc.authorizationCodeGrant(config, url, {
				pkceCodeVerifier: s.codeVerifier,
				expectedState: s.state,
				expectedNonce: s.nonce!,
				idTokenExpected: true
			});
			let claims: Record<string, unknown> = { ...tokens.claims()! };
			if (typeof claims.email !== "string" && config.serverMetadata().userinfo_endpoint)
				claims = { ...claims, ...(await oidc.fetchUserInfo(config, tokens.access_token, String(claims.sub))) };
			const email = typeof claims.email === "string" ? claims.email : null;
			return {
				subject: String(claims.sub),
				email,
				emailVerified: email !== null && claims.email_verified === true,
				name: typeof claims.name === "string" ? claims.name : null
			};
		} catch (err) {
			throw ssoError(err, this.name);
		}
	}
}

class GithubProvider implements SsoProvider {
	readonly kind = "github" as const;
	readonly id = "github";
	readonly name = "GitHub";
	private readonly config: oidc.Configuration;

	constructor(
		private readonly g: GithubConfig,
		private readonly sso: SsoConfig
	) {
		this.config = new oidc.Configuration(
			{
				issuer: g.webUrl,
				authorization_endpoint: `${g.webUrl}/login/oauth/authorize`,
				token_endpoint: `${g.webUrl}/login/oauth/access_token`
			},
			g.clientId,
			undefined,
			oidc.ClientSecretPost(g.clientSecret)
		);
		for (const extension of insecure(sso)) extension(this.config);
		this.config.timeout = sso.timeoutS;
	}

	async authorizationUrl(s: FlowSecrets): Promise<string> {
		return oidc
			.buildAuthorizationUrl(this.config, {
				redirect_uri: `${this.sso.redirectBase}/github`,
				scope: "read:user user:email",
				state: s.state,
				code_challenge: await oidc.calculatePKCECodeChallenge(s.codeVerifier),
				code_challenge_method: "S256",
				allow_signup: "true"
			})
			.toString();
	}

	private async api<T>(path: string, token: string): Promise<T> {
		const res = await fetch(`${this.g.apiUrl}${path}`, {
			headers: {
				authorization: `Bearer ${token}`,
				accept: "application/vnd.github+json",
				"x-github-api-version": "2022-11-28",
				"user-agent": "forgefluid"
			},
			signal: AbortSignal.timeout(this.sso.timeoutS * 1000)
		}).catch(() => null);
		if (!res?.ok) throw unavailable(this.name);
		return (await res.json()) as T;
	}

	async finish(params: CallbackParams, s: FlowSecrets): Promise<SsoProfile> {
		const url = new URL(`${this.sso.redirectBase}/github`);
		url.searchParams.set("code", params.code);
		url.searchParams.set("state", params.state);
		let token: string;
		try {
			const tokens = await oidc.authorizationCodeGrant(this.config, url, {
				pkceCodeVerifier: s.codeVerifier,
				expectedState: s.state,
				idTokenExpected: false
			});
			token = tokens.access_token;
		} catch (err) {
			const mapped = ssoError(err, this.name);
			// GitHub answers a bad code with 200 and {"error": "bad_verification_code"}, which the
			// library refuses as a malformed token response.
			if (
				(err as { code?: string }).code === "OAUTH_INVALID_RESPONSE" &&
				!["SSO_STATE_MISMATCH", "SSO_ISSUER_MISMATCH"].includes((mapped as { code?: string }).code ?? "")
			)
				throw Unauthorized("The code is unknown, expired or already used; sign in again", "SSO_CODE_INVALID");
			throw mapped;
		}
		const user = await this.api<{ id?: number; login?: string; name?: string | null }>("/user", token);
		if (typeof user.id !== "number") throw unavailable(this.name);
		const emails = await this.api<Array<{ email: string; primary: boolean; verified: boolean }>>(
			"/user/emails",
			token
		);
		const primary = Array.isArray(emails) ? emails.find(e => e.primary) : undefined;
		return {
			subject: String(user.id),
			email: primary?.email ?? null,
			emailVerified: primary?.verified === true,
			name: user.name ?? user.login ?? null
		};
	}
}

export function ssoProviders(cfg: SsoConfig, log: { warn(...a: unknown[]): void }): Map<string, SsoProvider> {
	const all: SsoProvider[] = cfg.oidc.map(p => new OidcProvider(p, cfg, log));
	if (cfg.github) all.push(new GithubProvider(cfg.github, cfg));
	return new Map(all.map(p => [p.id, p]));
}
