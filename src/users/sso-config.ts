/**
 * Single sign-on settings (issue 18): OpenID Connect issuers by discovery URL, and GitHub over OAuth 2.
 * Read by src/users/config.ts; every problem names its variable.
 */
import type { EnvReader } from "../env-reader";

export const SSO_PROVIDER_ID = /^[a-z0-9-]{1,32}$/;

export interface OidcProviderConfig {
	id: string;
	name: string;
	/** The issuer identifier; discovery reads `<issuer>/.well-known/openid-configuration`. */
	issuer: string;
	clientId: string;
	clientSecret: string;
	scopes: string;
}

export interface GithubConfig {
	clientId: string;
	clientSecret: string;
	/** https://github.com (or a GitHub Enterprise host): /login/oauth/authorize and /access_token. */
	webUrl: string;
	/** https://api.github.com: /user and /user/emails. */
	apiUrl: string;
}

export interface SsoConfig {
	oidc: OidcProviderConfig[];
	github: GithubConfig | null;
	/** The web app's callback page; the provider id is appended (`<base>/<provider>`), registered at each provider. */
	redirectBase: string;
	/** Issuers and GitHub over plain http (a local Keycloak); refused with NODE_ENV=production. */
	allowHttp: boolean;
	/** Lifetime of a started sign-in (the flowToken). */
	flowTtlS: number;
	/** Timeout of each request to a provider. */
	timeoutS: number;
}

function parseOidcProviders(r: EnvReader): OidcProviderConfig[] {
	const raw = r.optStr("OIDC_PROVIDERS");
	if (!raw) return [];
	const problem = (why: string) => {
		r.problems.push(
			`OIDC_PROVIDERS must be a JSON array of {"id","issuer","clientId","name"?,"scopes"?} (${why}); secrets go in OIDC_CLIENT_SECRETS`
		);
		return [];
	};
	let list: unknown;
	try {
		list = JSON.parse(raw);
	} catch {
		return problem("not JSON");
	}
	if (!Array.isArray(list)) return problem("not an array");
	const secrets = new Map<string, string>();
	for (const part of (r.optStr("OIDC_CLIENT_SECRETS") ?? "").split(",").filter(s => s.trim())) {
		const idx = part.indexOf(":");
		if (idx <= 0) {
			r.problems.push("OIDC_CLIENT_SECRETS must be a comma-separated list of id:secret pairs");
			return [];
		}
		secrets.set(part.slice(0, idx).trim(), part.slice(idx + 1).trim());
	}
	const out: OidcProviderConfig[] = [];
	for (const item of list as Array<Record<string, unknown>>) {
		const id = typeof item?.id === "string" ? item.id : "";
		if (!SSO_PROVIDER_ID.test(id) || id === "github" || out.some(p => p.id === id))
			return problem(`bad or repeated id '${id}' (a-z, 0-9, -; 'github' is GitHub's)`);
		let issuer: URL;
		try {
			issuer = new URL(String(item.issuer));
		} catch {
			return problem(`issuer of '${id}' is not a URL`);
		}
		if (issuer.protocol !== "https:" && issuer.protocol !== "http:")
			return problem(`issuer of '${id}' is not http(s)`);
		if (typeof item.clientId !== "string" || !item.clientId) return problem(`clientId of '${id}' missing`);
		const secret = secrets.get(id);
		if (!secret) {
			r.problems.push(`OIDC_CLIENT_SECRETS has no secret for the OIDC provider '${id}'`);
			return [];
		}
		out.push({
			id,
			name: typeof item.name === "string" && item.name ? item.name.slice(0, 64) : id,
			issuer: String(item.issuer),
			clientId: item.clientId,
			clientSecret: secret,
			scopes: typeof item.scopes === "string" && item.scopes ? item.scopes : "openid email profile"
		});
	}
	return out;
}

export function loadSsoConfig(r: EnvReader, appUrl: string): SsoConfig {
	const production = r.str("NODE_ENV", "development") === "production";
	const allowHttp = r.bool("SSO_ALLOW_HTTP", false);
	if (allowHttp && production) r.problems.push("SSO_ALLOW_HTTP must not be set with NODE_ENV=production");
	const schemes = allowHttp ? ["https", "http"] : ["https"];
	const oidc = parseOidcProviders(r);
	for (const p of oidc)
		if (!allowHttp && new URL(p.issuer).protocol !== "https:")
			r.problems.push(
				`OIDC_PROVIDERS: the issuer of '${p.id}' is http; https only (SSO_ALLOW_HTTP for development)`
			);
	const githubId = r.optStr("GITHUB_CLIENT_ID");
	const githubSecret = r.optStr("GITHUB_CLIENT_SECRET");
	if (!!githubId !== !!githubSecret)
		r.problems.push("GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET go together (GitHub sign-in needs both)");
	const trim = (u: string) => u.replace(/\/+$/, "");
	return {
		oidc,
		github:
			githubId && githubSecret
				? {
						clientId: githubId,
						clientSecret: githubSecret,
						webUrl: trim(r.optUrl("GITHUB_URL", schemes) ?? "https://github.com"),
						apiUrl: trim(r.optUrl("GITHUB_API_URL", schemes) ?? "https://api.github.com")
					}
				: null,
		redirectBase: trim(r.optUrl("SSO_REDIRECT_BASE", ["http", "https"]) ?? `${appUrl}/sso/callback`),
		allowHttp,
		flowTtlS: r.int("SSO_FLOW_TTL_S", 600, 60, 3600),
		timeoutS: r.int("SSO_HTTP_TIMEOUT_S", 10, 1, 60)
	};
}
