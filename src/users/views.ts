/**
 * The users service's answers over HTTP: the REST contract's response schemas (src/http/schema.ts),
 * and the view functions that turn rows into them, typed with these so the schema and the code are one.
 */
import { Type, type Static } from "@sinclair/typebox";
import {
	Str,
	Uuid,
	DateTime,
	Email,
	Address,
	Count,
	Nullable,
	List,
	Enum,
	Named,
	Page,
	BigIntString
} from "../http/schema";
import { getAddress } from "viem";
import type { WalletKind } from "./signatures";
import type { ApiKeyRow, SessionRow, UserRow, WalletRow } from "./store";
import type { TierSummary } from "./tier-facts";

export const RoleName = Enum(["user", "admin", "operator"] as const);
const UserId = () => Str(128, { description: "The account's id (a UUID for accounts made here)" });

export const PublicUser = Named("PublicUser", {
	id: UserId(),
	email: Nullable(Email()),
	emailVerified: Type.Boolean({ description: "The address was proven by a link sent to it" }),
	displayName: Nullable(Str(200)),
	role: RoleName,
	createdAt: DateTime()
});
export type PublicUser = Static<typeof PublicUser>;

export const TokenPair = Named("TokenPair", {
	accessToken: Str(8192, { description: "JWT access token" }),
	tokenType: Type.Literal("Bearer"),
	expiresIn: Count("Seconds the access token is valid"),
	refreshToken: Str(256),
	refreshTokenExpiresAt: DateTime(),
	sessionId: Uuid()
});
export const SignedIn = Type.Composite([TokenPair, Type.Object({ user: PublicUser })], { $id: "SignedIn" });
/** POST /auth/register's answer unless SIGNUP_REVEALS_TAKEN: the same for a new and a taken address. */
export const SignUpPending = Named("SignUpPending", {
	status: Type.Literal("pending"),
	email: Email(),
	message: Str(200)
});
export const SiweSignedIn = Type.Composite([TokenPair, Type.Object({ user: PublicUser, created: Type.Boolean() })], {
	$id: "SiweSignedIn"
});

export const TierFacts = Named("TierFacts", {
	tier: Str(32),
	planTier: Nullable(Str(32)),
	stakeTier: Str(32),
	adminOverride: Nullable(Str(32)),
	stakedWei: BigIntString(),
	effectiveStakeWei: BigIntString(),
	feeDiscountBps: Count(),
	nextStakeMaturityAt: Nullable(DateTime())
});

export const Wallet = Named("Wallet", {
	address: Address(),
	chainId: Count(),
	kind: Str(32),
	linkedAt: DateTime()
});
export type Wallet = Static<typeof Wallet>;

export const OrgWallet = Named("OrgWallet", {
	address: Address(),
	chainId: Count(),
	kind: Str(32),
	linkedAt: DateTime(),
	linkedBy: Uuid(),
	payerId: Str(64)
});

export const Session = Named("Session", {
	id: Uuid(),
	method: Str(32),
	createdAt: Nullable(DateTime()),
	lastRefreshedAt: Nullable(DateTime()),
	expiresAt: Nullable(DateTime()),
	revokedAt: Nullable(DateTime()),
	revokedReason: Nullable(Str(64)),
	ip: Nullable(Str(64)),
	userAgent: Nullable(Str(256)),
	current: Type.Boolean()
});

const Scopes = List(Str(64), 64);
export const ApiKey = Named("ApiKey", {
	id: Str(64),
	name: Str(200),
	scopes: Scopes,
	createdAt: Nullable(DateTime()),
	expiresAt: Nullable(DateTime()),
	lastUsedAt: Nullable(DateTime()),
	// Limits the /v1 compatible endpoints enforce (docs/compat.md); null: none.
	models: Nullable(List(Str(200), 100)),
	monthlyBudgetCredits: Nullable(Count("credits per UTC month")),
	monthlyCapCredits: Nullable(
		Count("spend cap per calendar month (UTC) at every hold made with this key (tasks and /v1); null = none")
	),
	rpm: Nullable(Count("requests per minute")),
	tpm: Nullable(Count("tokens per minute"))
});
export const NewApiKey = Type.Composite([ApiKey, Type.Object({ key: Str(256, { description: "Shown once" }) })], {
	$id: "NewApiKey"
});

/** An organisation's API key (docs/orgs.md "API keys"): acts as `createdBy` within `orgId` only. */
export const OrgApiKey = Type.Composite([ApiKey, Type.Object({ orgId: Uuid(), createdBy: UserId() })], {
	$id: "OrgApiKey"
});
export const NewOrgApiKey = Type.Composite([OrgApiKey, Type.Object({ key: Str(256, { description: "Shown once" }) })], {
	$id: "NewOrgApiKey"
});

export const Profile = Named("Profile", {
	...PublicUser.properties,
	hasPassword: Type.Boolean(),
	tier: TierFacts,
	wallets: List(Wallet, 100),
	permissions: Type.Optional(Scopes),
	credential: Type.Optional(
		Type.Object({ type: Str(32), sessionId: Type.Optional(Uuid()), keyId: Type.Optional(Str(64)) })
	),
	forge: Type.Optional(Type.Unknown({ description: "$FORGE token address, holdings per wallet and stake" }))
});

export const AdminUser = Named("AdminUser", {
	...PublicUser.properties,
	tierOverride: Nullable(Str(32)),
	disabled: Type.Boolean(),
	disabledAt: Nullable(DateTime()),
	lastLoginAt: Nullable(DateTime()),
	wallets: Type.Optional(List(Address(), 100))
});
export const AdminUserDetail = Named("AdminUserDetail", {
	...PublicUser.properties,
	tierOverride: Nullable(Str(32)),
	disabled: Type.Boolean(),
	disabledAt: Nullable(DateTime()),
	lastLoginAt: Nullable(DateTime()),
	tier: TierFacts,
	wallets: List(Wallet, 100),
	sessions: List(Session, 1000)
});

export const SiweNonce = Named("SiweNonce", {
	nonce: Str(128),
	nonceToken: Str(256),
	expiresAt: DateTime(),
	domain: Str(256),
	uri: Str(2048),
	chainIds: List(Count(), 64),
	version: Str(8),
	maxValiditySeconds: Count()
});

/** Sign-in of an account with 2FA on: no session yet; POST /auth/login/mfa finishes it. */
export const MfaChallenge = Named("MfaChallenge", {
	mfaRequired: Type.Literal(true),
	mfaToken: Str(64, { description: "Single use, for POST /auth/login/mfa" }),
	expiresIn: Count("Seconds the mfaToken is valid"),
	methods: List(Enum(["totp", "backup_code"] as const), 2)
});

const OutboxMessage = Named("OutboxMessage", {
	id: Str(998),
	to: Email(),
	from: Str(320),
	subject: Str(998),
	text: Str(100_000),
	html: Str(200_000),
	links: List(Str(4096), 20),
	sentAt: DateTime()
});

const Row = Type.Record(Type.String({ maxLength: 64 }), Type.Unknown());

const Passkey = Named("Passkey", {
	id: Str(1366, { description: "The credential id (base64url)" }),
	name: Str(64),
	transports: List(Str(32), 10),
	createdAt: DateTime(),
	lastUsedAt: Nullable(DateTime())
});
const PasskeyOptions = Type.Object({
	options: Type.Unknown({
		description: "PublicKeyCredentialCreationOptionsJSON / RequestOptionsJSON (WebAuthn Level 3)"
	}),
	challengeToken: Str(64, { description: "Send back with the credential; binds the challenge to this client" })
});

const Identity = Named("Identity", {
	id: Uuid(),
	provider: Str(32),
	email: Nullable(Str(320, { description: "The address the provider gave (display only unless it vouched for it)" })),
	emailVerified: Type.Boolean({ description: "The provider vouched for the address" }),
	createdAt: DateTime(),
	lastUsedAt: Nullable(DateTime())
});
const SsoStart = Named("SsoStart", {
	authorizationUrl: Str(8192, { description: "Send the browser here" }),
	flowToken: Str(64, {
		description: "Keep it (e.g. sessionStorage) and send it back with the callback's code and state"
	}),
	expiresIn: Count("Seconds the flow stays valid")
});

/** Single sign-on answers (OpenID Connect, GitHub). */
export const ssoViews = {
	ssoProviders: Type.Object({
		items: List(Type.Object({ id: Str(32), name: Str(64), kind: Enum(["oidc", "github"] as const) }), 100)
	}),
	ssoStart: SsoStart,
	ssoCallback: Type.Union([
		Type.Composite([SignedIn, Type.Object({ created: Type.Boolean() })]),
		Type.Composite([MfaChallenge, Type.Object({ created: Type.Boolean() })])
	]),
	identityLinkStart: SsoStart,
	linkIdentity: Type.Composite([Identity, Type.Object({ alreadyLinked: Type.Boolean() })]),
	listIdentities: Type.Object({ items: List(Identity, 100) }),
	removeIdentity: Type.Object({ id: Uuid(), removed: Type.Literal(true) })
};

/** Issue 18's answers: e-mail, reset, TOTP, export, deletion, the dev outbox. */
export const accountViews = {
	verifyEmail: Type.Object({ verified: Type.Literal(true), email: Email(), changed: Type.Boolean() }),
	resendVerification: Type.Object({ sent: Type.Literal(true) }),
	forgotPassword: Type.Object({ accepted: Type.Literal(true) }),
	resetPassword: Type.Object({ reset: Type.Literal(true), endedSessions: Count() }),
	loginMfa: SignedIn,
	changeEmail: Type.Object({ pending: Type.Literal(true), email: Email() }),
	totpStart: Type.Object({
		secret: Str(64, { description: "Base32 shared secret (show as text and as a QR code of otpauthUri)" }),
		otpauthUri: Str(2048)
	}),
	totpConfirm: Type.Object({
		backupCodes: List(Str(19, { description: "xxxx-xxxx-xxxx-xxxx, single use, shown once" }), 10)
	}),
	totpDisable: Type.Object({ enabled: Type.Literal(false) }),
	exportMe: Type.Object({
		exportedAt: DateTime(),
		format: Type.Literal("forgefluid-account-export/1"),
		user: Row,
		wallets: List(Row, 1000),
		sessions: List(Row, 100_000),
		apiKeys: List(Row, 100_000),
		audit: List(Row, 100_000),
		identities: List(Row, 100),
		passkeys: List(Row, 100),
		twoFactor: Type.Object({ totpEnabledAt: Nullable(DateTime()) }),
		ledger: Type.Unknown({
			description: "payments.userLedger's answer, or {unavailable} when payments did not answer"
		})
	}),
	deleteMe: Type.Object({ deleted: Type.Literal(true) }),
	devOutbox: Type.Object({ items: List(OutboxMessage, 10_000) }),
	passkeyRegistrationOptions: PasskeyOptions,
	registerPasskey: Passkey,
	listPasskeys: Type.Object({ items: List(Passkey, 100) }),
	removePasskey: Type.Object({ id: Str(1366), removed: Type.Literal(true) }),
	passkeySignInOptions: PasskeyOptions,
	passkeySignIn: SignedIn
};

export const views = {
	register: Type.Union([SignUpPending, SignedIn]),
	login: Type.Union([SignedIn, MfaChallenge]),
	refresh: TokenPair,
	logout: Type.Object({ revoked: Count() }),
	siweNonce: SiweNonce,
	siweVerify: Type.Union([SiweSignedIn, Type.Composite([MfaChallenge, Type.Object({ created: Type.Boolean() })])]),
	me: Profile,
	updateMe: Profile,
	changePassword: Type.Object({ changed: Type.Boolean(), endedSessions: Count() }),
	listSessions: Type.Object({ items: List(Session, 1000) }),
	revokeSession: Type.Object({ id: Uuid(), revoked: Type.Boolean() }),
	linkWallet: Type.Composite([Wallet, Type.Object({ alreadyLinked: Type.Boolean() })]),
	unlinkWallet: Type.Object({ address: Address(), unlinked: Type.Boolean() }),
	createApiKey: NewApiKey,
	listApiKeys: Type.Object({ items: List(ApiKey, 1000) }),
	revokeApiKey: Type.Object({ id: Str(64), revoked: Type.Boolean() }),
	updateApiKey: ApiKey,
	createOrgApiKey: NewOrgApiKey,
	listOrgApiKeys: Type.Object({ items: List(OrgApiKey, 1000) }),
	revokeOrgApiKey: Type.Object({ id: Str(64), orgId: Uuid(), revoked: Type.Boolean() }),
	linkOrgWallet: Type.Composite([OrgWallet, Type.Object({ alreadyLinked: Type.Boolean() })]),
	listOrgWallets: Type.Object({ items: List(OrgWallet, 1000) }),
	unlinkOrgWallet: Type.Object({ address: Address(), unlinked: Type.Boolean() }),
	adminListUsers: Page(AdminUser),
	adminGetUser: AdminUserDetail,
	adminUpdateUser: AdminUser
};

// ── view functions: rows to the answers above ────────────────────────────────────────────────

const iso = (d: Date | string) => new Date(d).toISOString();
const isoOrNull = (d: Date | string | null) => (d == null ? null : iso(d));

export interface WalletView {
	address: string;
	chainId: number;
	kind: WalletKind;
	linkedAt: string;
}

export interface ProfileView extends PublicUser {
	hasPassword: boolean;
	tier: TierSummary;
	wallets: WalletView[];
}

export function publicUser(u: UserRow): PublicUser {
	return {
		id: u.id,
		email: u.email,
		emailVerified: u.email !== null && u.email_verified_at !== null,
		displayName: u.display_name,
		role: u.role,
		createdAt: iso(u.created_at)
	};
}

export function walletView(w: WalletRow): WalletView {
	return { address: getAddress(w.address), chainId: Number(w.chain_id), kind: w.kind, linkedAt: iso(w.linked_at) };
}

export function apiKeyView(k: ApiKeyRow) {
	return {
		id: k.id,
		name: k.name,
		scopes: k.scopes,
		models: k.allowed_models,
		monthlyBudgetCredits: k.monthly_budget_credits == null ? null : Number(k.monthly_budget_credits),
		monthlyCapCredits: k.monthly_cap_credits == null ? null : Number(k.monthly_cap_credits),
		rpm: k.rpm,
		tpm: k.tpm,
		createdAt: isoOrNull(k.created_at),
		expiresAt: isoOrNull(k.expires_at),
		lastUsedAt: isoOrNull(k.last_used_at)
	};
}

export function orgApiKeyView(k: ApiKeyRow & { org_id: string }) {
	return { ...apiKeyView(k), orgId: k.org_id, createdBy: k.user_id };
}

export function sessionView(s: SessionRow, currentSid?: string) {
	return {
		id: s.id,
		method: s.method,
		createdAt: isoOrNull(s.created_at),
		lastRefreshedAt: isoOrNull(s.last_refreshed_at),
		expiresAt: isoOrNull(s.expires_at),
		revokedAt: isoOrNull(s.revoked_at),
		revokedReason: s.revoked_reason,
		ip: s.ip,
		userAgent: s.user_agent,
		current: s.id === currentSid
	};
}

export function adminUserView(u: UserRow & { wallets?: string[] }) {
	return {
		...publicUser(u),
		tierOverride: u.tier_override,
		disabled: u.disabled_at !== null,
		disabledAt: isoOrNull(u.disabled_at),
		lastLoginAt: isoOrNull(u.last_login_at),
		...(u.wallets ? { wallets: u.wallets.map(a => getAddress(a)) } : {})
	};
}
