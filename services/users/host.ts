/**
 * What the parts of the users service share: the service's `this` (its collaborators, built in
 * created() of services/users.service.ts and of the accounts mixin) and the params several actions
 * validate alike.
 */
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Transaction } from "sequelize";
import type { DurableThis } from "../../mixins/durable-events.mixin";
import type { Config } from "../../src/config";
import type { KeyValueStore } from "../../src/runtime/kv";
import type { AccountStore } from "../../src/users/account-store";
import type { Administration } from "../../src/users/admin";
import type { ApiKeys } from "../../src/users/api-keys";
import type { OrgApiKeys } from "../../src/users/org-api-keys";
import type { OrgWallets } from "../../src/users/org-wallets";
import type { UserCacheInvalidator } from "../../src/users/cache";
import type { UsersConfig } from "../../src/users/config";
import type { PasswordHasher } from "../../src/users/credentials";
import type { ForgeBalanceReader } from "../../src/users/holdings";
import type { Mailer } from "../../src/users/mailer";
import type { Passkeys } from "../../src/users/passkeys";
import type { SecondFactor } from "../../src/users/second-factor";
import type { Sessions } from "../../src/users/sessions";
import type { PasswordAccounts, SignInSteps } from "../../src/users/sign-in";
import type { GrantIdentity, GrantMoment, SignupGrants } from "../../src/users/signup-grant";
import type { SiweProofs } from "../../src/users/siwe-proof";
import type { UsersStore } from "../../src/users/store";
import type { ProgressiveThrottle } from "../../src/users/throttle";
import type { EmailFlows } from "../../src/users/verification";
import type { Wallets } from "../../src/users/wallets";

export interface UsersThis extends Service, Pick<DurableThis, "publishDurable"> {
	cfg: UsersConfig;
	jwt: Config["jwt"];
	store: UsersStore;
	kv: KeyValueStore;
	hasher: PasswordHasher;
	sessions: Sessions;
	passwords: PasswordAccounts;
	/** The end of every sign-in: disabled check, second step, session. */
	steps: SignInSteps;
	proofs: SiweProofs;
	wallets: Wallets<Transaction>;
	apiKeys: ApiKeys;
	orgApiKeys: OrgApiKeys;
	orgWallets: OrgWallets;
	admin: Administration;
	balances: ForgeBalanceReader | null;
	signupGrants: SignupGrants;
	invalidator: UserCacheInvalidator;
	pruneTimer: NodeJS.Timeout | null;
	/** The retention run in progress (src/users/retention.ts), awaited on stop. */
	pruning: Promise<unknown> | null;
	// The accounts mixin's (services/users/accounts.mixin.ts):
	accounts: AccountStore;
	mailer: Mailer;
	emailFlows: EmailFlows;
	secondFactor: SecondFactor;
	passkeys: Passkeys;
	/** Wrong passwords given as step-up (account deletion), keyed by user id. */
	stepUpPasswords: ProgressiveThrottle;
	/** Drops the user's cached profile, tier and these sessions' states. */
	forget(userId: string, sessionIds?: readonly string[]): Promise<void>;
	/** For callbacks that cannot wait (after a commit): a failure is logged; the cache TTL bounds the staleness. */
	forgetLater(userId: string): void;
	announceWalletOwner(address: string): void;
	offerSignupGrant(userId: string, id: GrantIdentity, moment: GrantMoment, ip: string | undefined): Promise<void>;
}

/** A part of the users service (services/users/*.mixin.ts), typed with the service's `this`. */
export type UsersMixin<This = UsersThis> = ServiceSchema<
	ServiceSettingSchema,
	Record<string, never>,
	Record<string, never>,
	This
>;

export const ADDRESS_PATTERN = /^0x[0-9a-fA-F]{40}$/;

/** A SIWE proof: a sign-in, a wallet linked to an account or to an organisation. */
export const siweParams = {
	message: { type: "string", min: 1, max: 4096, description: "The exact EIP-4361 message that was signed" },
	signature: {
		type: "string",
		min: 4,
		max: 20_000,
		pattern: /^0x(?:[0-9a-fA-F]{2})+$/,
		description: "0x-hex signature (65-byte ECDSA, EIP-1271 or EIP-6492 wrapped)"
	},
	nonceToken: {
		type: "string",
		pattern: /^[A-Za-z0-9_-]{43}$/,
		description: "The nonceToken returned with the nonce (binds it to this client)"
	}
} as const;

export const codeParam = {
	type: "string",
	min: 6,
	max: 32,
	trim: true,
	description: "A 6-digit code from the authenticator app, or a backup code (xxxx-xxxx-xxxx-xxxx)"
} as const;

export const mfaCodeParam = {
	...codeParam,
	optional: true,
	description: "With 2FA on: a current code (step-up)"
} as const;
