/**
 * The users service's answers over HTTP (the REST contract's response schemas; see src/http/schema.ts).
 * The service's view functions are typed with these, so the published schema and the code are one.
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

export const RoleName = Enum(["user", "admin", "operator"] as const);
const UserId = () => Str(128, { description: "The account's id (a UUID for accounts made here)" });

export const PublicUser = Named("PublicUser", {
	id: UserId(),
	email: Nullable(Email()),
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
	lastUsedAt: Nullable(DateTime())
});
export const NewApiKey = Type.Composite([ApiKey, Type.Object({ key: Str(256, { description: "Shown once" }) })], {
	$id: "NewApiKey"
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

export const views = {
	register: SignedIn,
	login: SignedIn,
	refresh: TokenPair,
	logout: Type.Object({ revoked: Count() }),
	siweNonce: SiweNonce,
	siweVerify: SiweSignedIn,
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
	adminListUsers: Page(AdminUser),
	adminGetUser: AdminUserDetail,
	adminUpdateUser: AdminUser
};
