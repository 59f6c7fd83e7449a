/** The users service's settings, read from the environment (documented in docs/users.md). */
import type { EnvReader } from "../env-reader";
import { parseSecretKeys, type SecretKey } from "./secret-box";
import { loadSsoConfig, type SsoConfig } from "./sso-config";

export interface ThrottleRule {
	/** Failures allowed before delays start. */
	freeFailures: number;
	/** First delay, doubled with each further failure. */
	baseDelayS: number;
	/** Longest delay: throttling slows guessing down, it never locks an account out for good. */
	maxDelayS: number;
	/** Failures are forgotten this long after the first one of a run. */
	windowS: number;
}

/** The welcome grant (SIGNUP_GRANT_*): promotional credit once per proven e-mail address or wallet. */
export interface SignupGrantConfig {
	/** Credits per grant; 0 = no grant. */
	credits: number;
	/** Lifetime of the promotional lot. */
	ttlS: number;
	/** Grants per client IP per day (its own limit, apart from the sign-up limit). */
	perIpPerDay: number;
	/**
	 * When an e-mail address earns it: `verified` (the verification link was followed) or `signup`
	 * (at registration; embedded mode's default, where a developer is alone with the outbox).
	 * A wallet earns it at its first SIWE sign-in or link either way (the signature proves it).
	 */
	emailOn: "verified" | "signup";
}

export interface UsersConfig {
	signupGrant: SignupGrantConfig;
	/**
	 * SIGNUP_REVEALS_TAKEN. false (default): POST /auth/register answers 202 "pending" alike for a new
	 * and a taken address (no tokens; the owner of a taken one is mailed a notice). true: 201 with
	 * tokens, 409 EMAIL_TAKEN for a taken address (tells anyone whether an address has an account).
	 */
	signupRevealsTaken: boolean;
	/** How often each users node sweeps the expired hold leases of /v1 requests (docs/compat.md); 0 = never. */
	chatHoldSweepMs: number;
	siwe: {
		/** EIP-4361 `domain` (host[:port]) a message must name exactly. */
		domain: string;
		/** The message's `URI` must have this origin (scheme, host, port). */
		uri: string;
		chainIds: number[];
		/** Largest age of `Issued At` accepted. */
		maxAgeS: number;
		/** Largest `Expiration Time - Issued At` accepted (a signed message is a bearer credential until it expires). */
		maxValidityS: number;
		/** Lifetime of a server-issued nonce. */
		nonceTtlS: number;
		/** Clock skew tolerated on `Issued At` / `Not Before`. */
		clockSkewS: number;
	};
	chain: {
		/** JSON-RPC per chain id, for smart-account signatures (EIP-1271/6492) and $FORGE balances. */
		rpcUrls: Record<number, string>;
		/** The chain the FORGE token lives on (CHAIN_ID, as written by scripts/chain-dev.ts). */
		forgeChainId: number;
		forgeTokenAddress: string | null;
		balanceCacheTtlS: number;
		rpcTimeoutMs: number;
	};
	sessions: {
		refreshTokenTtlS: number;
		/**
		 * A refresh token spent this recently may be presented once more while its family has not moved
		 * on (parallel refreshes from two tabs): it gets its own successor instead of revoking the
		 * family. 0 = strict RFC 9700 reuse detection.
		 */
		refreshReuseGraceS: number;
		/** Absolute lifetime of a session (refresh-token family), however often it is refreshed. */
		maxAgeS: number;
		/** TTL of the cached `users.authState` answer the gateway asks on every bearer request. */
		authStateCacheTtlS: number;
		/**
		 * The gateway asks `users.authState` for every bearer token (revocation, disabled users, role changes).
		 * Off only for deployments without a users service (e.g. another service's tests with signed test tokens).
		 */
		gatewayCheck: boolean;
	};
	passwords: {
		minLength: number;
		maxLength: number;
		argon2: { memoryCostKiB: number; timeCost: number; parallelism: number };
	};
	throttle: {
		accountIp: ThrottleRule;
		ip: ThrottleRule;
		/** Per account from any address (keyed by the normalised e-mail): slows guessing spread over many IPs. */
		account: ThrottleRule;
		/** How long an address that signed in with the password skips the account-wide limiter (0 = never). */
		knownIpTtlS: number;
		registerPerIpPerHour: number;
	};
	apiKeys: { maxPerUser: number; lastUsedWriteIntervalS: number };
	maxWalletsPerUser: number;
	tierCacheTtlS: number;
	mail: MailConfig;
	accounts: AccountsConfig;
	sso: SsoConfig;
	webauthn: WebAuthnConfig;
}

export interface WebAuthnConfig {
	/** The relying party id: the site's registrable domain (a passkey is bound to it). */
	rpId: string;
	rpName: string;
	/** Origins the browser may report in clientDataJSON (the web app's). */
	origins: string[];
	/** Lifetime of a registration or sign-in challenge. */
	challengeTtlS: number;
	maxPerUser: number;
}

export interface MailConfig {
	/** smtp(s)://user:pass@host:port; null: the development outbox (embedded mode only). */
	smtpUrl: string | null;
	/** SMTP mode: the queue (mail_outbox) is polled this often for due messages. */
	queuePollMs: number;
	/** A refused or failed send is retried after base·2^(attempt-1) seconds, at most max, up to maxAttempts. */
	retryBaseS: number;
	retryMaxS: number;
	maxAttempts: number;
	/** The From header of every message. */
	from: string;
	/** Where the links in messages point (the web app); the token rides in the query. */
	appUrl: string;
	/** Messages kept by the development outbox (oldest dropped). */
	outboxSize: number;
	/** The outbox may be listed over HTTP (GET /dev/outbox): never with NODE_ENV=production. */
	outboxRoute: boolean;
}

export interface AccountsConfig {
	verifyTokenTtlS: number;
	resetTokenTtlS: number;
	/** Lifetime of the token between a correct password and the second factor. */
	mfaTokenTtlS: number;
	/** Wrong codes one mfaToken may take before it is spent. */
	mfaTokenMaxAttempts: number;
	/** Wrong codes per account (sign-in second step and step-up alike) before delays start. */
	mfaThrottle: ThrottleRule;
	/** Forgot-password and verification mails per address and per IP, per hour. */
	mailPerAddressPerHour: number;
	mailPerIpPerHour: number;
	/** Password resets tried per IP per hour (a reset token is 256 bits; this only bounds the work). */
	resetPerIpPerHour: number;
	totpIssuer: string;
	/** Time steps of tolerance either side of now (RFC 6238 §5.2). */
	totpWindow: number;
	/** Deleting a wallet-only account without 2FA needs a session at most this old (a fresh sign-in). */
	recentSignInS: number;
	/** MFA_ENCRYPTION_KEYS: seal the TOTP secrets (the first seals); none → derived from the JWT keys. */
	mfaEncryptionKeys: SecretKey[];
}

/** OWASP's minimum for argon2id (m=19 MiB, t=2, p=1); weaker settings are refused. */
const OWASP_ARGON2 = { memoryCostKiB: 19_456, timeCost: 2, parallelism: 1 };

function parseChainIds(r: EnvReader): number[] {
	const raw = r.str("SIWE_CHAIN_IDS", "31337");
	const ids = raw
		.split(",")
		.map(s => s.trim())
		.filter(Boolean);
	if (!ids.length || !ids.every(s => /^\d{1,12}$/.test(s) && Number(s) > 0)) {
		r.problems.push(`SIWE_CHAIN_IDS must be a comma-separated list of positive chain ids (got '${raw}')`);
		return [31337];
	}
	return [...new Set(ids.map(Number))];
}

/** CHAIN_RPC_URL serves CHAIN_ID; SIWE_RPC_URLS ("1=https://…,8453=https://…") adds other chains. */
function parseRpcUrls(r: EnvReader, forgeChainId: number): Record<number, string> {
	const urls: Record<number, string> = {};
	const main = r.optUrl("CHAIN_RPC_URL", ["http", "https"]);
	if (main) urls[forgeChainId] = main;
	const extra = r.optStr("SIWE_RPC_URLS");
	for (const part of extra
		? extra
				.split(",")
				.map(s => s.trim())
				.filter(Boolean)
		: []) {
		const m = /^(\d{1,12})=(https?:\/\/\S+)$/.exec(part);
		if (!m) {
			r.problems.push(
				`SIWE_RPC_URLS must be a comma-separated list of chainId=http(s)://url pairs (got '${part}')`
			);
			continue;
		}
		urls[Number(m[1])] = m[2];
	}
	return urls;
}

function throttleRule(r: EnvReader, prefix: string, def: ThrottleRule): ThrottleRule {
	return {
		freeFailures: r.int(`${prefix}_FREE_FAILURES`, def.freeFailures, 1, 10_000),
		baseDelayS: r.int(`${prefix}_BASE_DELAY_S`, def.baseDelayS, 1, 3600),
		maxDelayS: r.int(`${prefix}_MAX_DELAY_S`, def.maxDelayS, 1, 86_400),
		windowS: r.int(`${prefix}_WINDOW_S`, def.windowS, 1, 7 * 86_400)
	};
}

/**
 * `publicUrl`: where clients reach the gateway (PUBLIC_URL, else HOST:PORT); SIWE's defaults follow it.
 * `embedded`: no TRANSPORTER (one process on a developer's machine); the welcome grant is on by default there.
 */
export function loadUsersConfig(r: EnvReader, publicUrl = "http://localhost:3000", embedded = false): UsersConfig {
	let publicHost = "localhost:3000";
	try {
		publicHost = new URL(publicUrl).host;
	} catch {
		r.problems.push(`PUBLIC_URL must be an absolute http(s) URL (got '${publicUrl}')`);
	}
	const domain = r.str("SIWE_DOMAIN", publicHost);
	if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(domain))
		r.problems.push(`SIWE_DOMAIN must be host[:port] (got '${domain}')`);
	const uri = r.optUrl("SIWE_URI", ["http", "https"]) ?? publicUrl;
	const forgeChainId = r.int("CHAIN_ID", 31337, 1, 1e12);
	const token = r.optStr("FORGE_TOKEN_ADDRESS");
	if (token && !/^0x[0-9a-fA-F]{40}$/.test(token))
		r.problems.push(`FORGE_TOKEN_ADDRESS must be a 0x-prefixed 20-byte hex address (got '${token}')`);

	const argon2 = {
		memoryCostKiB: r.int(
			"ARGON2_MEMORY_KIB",
			OWASP_ARGON2.memoryCostKiB,
			OWASP_ARGON2.memoryCostKiB,
			4 * 1024 * 1024
		),
		timeCost: r.int("ARGON2_TIME_COST", OWASP_ARGON2.timeCost, OWASP_ARGON2.timeCost, 20),
		parallelism: r.int("ARGON2_PARALLELISM", OWASP_ARGON2.parallelism, 1, 16)
	};
	const minLength = r.int("PASSWORD_MIN_LENGTH", 10, 8, 64);
	const maxLength = r.int("PASSWORD_MAX_LENGTH", 128, 64, 1024);

	const smtpUrl = r.optUrl("SMTP_URL", ["smtp", "smtps"]);
	const from = r.str("MAIL_FROM", "ForgeFluid <no-reply@localhost>");
	if (!/^(?:[^<>\r\n]*<[^\s<>@]+@[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+)$/.test(from))
		r.problems.push(`MAIL_FROM must be an address or 'Name <address>' (got '${from}')`);
	const appUrl =
		r.optUrl("APP_URL", ["http", "https"]) ?? r.optUrl("PUBLIC_URL", ["http", "https"]) ?? "http://localhost:3000";

	const rpId = r.str("WEBAUTHN_RP_ID", "localhost");
	if (!/^[a-z0-9.-]+$/.test(rpId)) r.problems.push(`WEBAUTHN_RP_ID must be a host name (got '${rpId}')`);
	const origins = r
		.str("WEBAUTHN_ORIGINS", "http://localhost:3000")
		.split(",")
		.map(o => o.trim())
		.filter(Boolean);
	for (const o of origins)
		if (!/^https?:\/\/[^/\s]+$/.test(o))
			r.problems.push(`WEBAUTHN_ORIGINS must be comma-separated origins like https://app.example (got '${o}')`);

	return {
		signupRevealsTaken: r.bool("SIGNUP_REVEALS_TAKEN", false),
		chatHoldSweepMs: r.int("USERS_CHAT_HOLD_SWEEP_MS", 5_000, 0, 3_600_000),
		signupGrant: {
			credits: r.int("SIGNUP_GRANT_CREDITS", embedded ? 5000 : 0, 0, 100_000_000),
			ttlS: r.int("SIGNUP_GRANT_TTL_S", 30 * 86_400, 60, 10 * 365 * 86_400),
			perIpPerDay: r.int("SIGNUP_GRANT_PER_IP_PER_DAY", 3, 1, 1_000_000),
			emailOn: r.oneOf("SIGNUP_GRANT_EMAIL_ON", embedded ? "signup" : "verified", ["verified", "signup"] as const)
		},
		webauthn: {
			rpId,
			rpName: r.str("WEBAUTHN_RP_NAME", "ForgeFluid"),
			origins,
			challengeTtlS: r.int("WEBAUTHN_CHALLENGE_TTL_S", 300, 30, 3600),
			maxPerUser: r.int("PASSKEYS_MAX_PER_USER", 10, 1, 100)
		},
		siwe: {
			domain,
			uri,
			chainIds: parseChainIds(r),
			maxAgeS: r.int("SIWE_MAX_AGE_S", 600, 10, 86_400),
			maxValidityS: r.int("SIWE_MAX_VALIDITY_S", 86_400, 60, 30 * 86_400),
			nonceTtlS: r.int("SIWE_NONCE_TTL_S", 600, 10, 86_400),
			clockSkewS: r.int("SIWE_CLOCK_SKEW_S", 60, 0, 600)
		},
		chain: {
			rpcUrls: parseRpcUrls(r, forgeChainId),
			forgeChainId,
			forgeTokenAddress: token && /^0x[0-9a-fA-F]{40}$/.test(token) ? token : null,
			balanceCacheTtlS: r.int("FORGE_BALANCE_CACHE_TTL_S", 30, 1, 86_400),
			rpcTimeoutMs: r.int("CHAIN_RPC_TIMEOUT_MS", 5000, 100, 60_000)
		},
		sessions: {
			refreshTokenTtlS: r.int("REFRESH_TOKEN_TTL_S", 30 * 86_400, 60, 365 * 86_400),
			refreshReuseGraceS: r.int("REFRESH_REUSE_GRACE_S", 10, 0, 300),
			maxAgeS: r.int("SESSION_MAX_AGE_S", 90 * 86_400, 60, 3 * 365 * 86_400),
			authStateCacheTtlS: r.int("AUTH_STATE_CACHE_TTL_S", 60, 1, 3600),
			gatewayCheck: r.bool("AUTH_SESSION_CHECK", true)
		},
		passwords: { minLength, maxLength: Math.max(minLength, maxLength), argon2 },
		throttle: {
			accountIp: throttleRule(r, "LOGIN_THROTTLE_ACCOUNT", {
				freeFailures: 5,
				baseDelayS: 2,
				maxDelayS: 900,
				windowS: 3600
			}),
			ip: throttleRule(r, "LOGIN_THROTTLE_IP", {
				freeFailures: 50,
				baseDelayS: 2,
				maxDelayS: 900,
				windowS: 3600
			}),
			// A day's budget well above anyone's own typos; past it about one guess per 15 minutes.
			account: throttleRule(r, "LOGIN_THROTTLE_EMAIL", {
				freeFailures: 20,
				baseDelayS: 2,
				maxDelayS: 900,
				windowS: 86_400
			}),
			knownIpTtlS: r.int("LOGIN_KNOWN_IP_TTL_S", 30 * 86_400, 0, 365 * 86_400),
			registerPerIpPerHour: r.int("REGISTER_PER_IP_PER_HOUR", 30, 1, 1_000_000)
		},
		apiKeys: {
			maxPerUser: r.int("API_KEYS_MAX_PER_USER", 25, 1, 1000),
			lastUsedWriteIntervalS: r.int("API_KEY_LAST_USED_INTERVAL_S", 60, 1, 86_400)
		},
		maxWalletsPerUser: r.int("WALLETS_MAX_PER_USER", 10, 1, 100),
		tierCacheTtlS: r.int("TIER_CACHE_TTL_S", 60, 1, 3600),
		mail: {
			smtpUrl,
			from,
			appUrl: appUrl.replace(/\/+$/, ""),
			outboxSize: r.int("MAIL_OUTBOX_SIZE", 200, 1, 10_000),
			outboxRoute: !smtpUrl && r.str("NODE_ENV", "development") !== "production",
			queuePollMs: r.int("MAIL_QUEUE_POLL_MS", 2000, 50, 600_000),
			retryBaseS: r.int("MAIL_RETRY_BASE_S", 30, 1, 3600),
			retryMaxS: r.int("MAIL_RETRY_MAX_S", 3600, 1, 86_400),
			maxAttempts: r.int("MAIL_MAX_ATTEMPTS", 12, 1, 100)
		},
		accounts: {
			verifyTokenTtlS: r.int("EMAIL_VERIFY_TOKEN_TTL_S", 86_400, 60, 30 * 86_400),
			resetTokenTtlS: r.int("PASSWORD_RESET_TOKEN_TTL_S", 3600, 60, 86_400),
			mfaTokenTtlS: r.int("MFA_TOKEN_TTL_S", 300, 30, 3600),
			mfaTokenMaxAttempts: r.int("MFA_TOKEN_MAX_ATTEMPTS", 5, 1, 100),
			mfaThrottle: throttleRule(r, "MFA_THROTTLE", {
				freeFailures: 5,
				baseDelayS: 2,
				maxDelayS: 900,
				windowS: 3600
			}),
			mailPerAddressPerHour: r.int("ACCOUNT_MAIL_PER_ADDRESS_PER_HOUR", 5, 1, 1000),
			mailPerIpPerHour: r.int("ACCOUNT_MAIL_PER_IP_PER_HOUR", 30, 1, 1_000_000),
			resetPerIpPerHour: r.int("PASSWORD_RESET_PER_IP_PER_HOUR", 30, 1, 1_000_000),
			totpIssuer: r.str("TOTP_ISSUER", "ForgeFluid"),
			totpWindow: r.int("TOTP_WINDOW", 1, 0, 10),
			recentSignInS: r.int("RECENT_SIGN_IN_S", 600, 30, 86_400),
			mfaEncryptionKeys: parseSecretKeys(r.optStr("MFA_ENCRYPTION_KEYS"), "MFA_ENCRYPTION_KEYS", r.problems)
		},
		sso: loadSsoConfig(r, appUrl.replace(/\/+$/, ""))
	};
}
