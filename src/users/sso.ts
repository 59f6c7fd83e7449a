/**
 * Single sign-on use cases (issue 18): start a sign-in or a link at a provider, finish it, list and
 * remove identities. The providers' protocol is src/users/sso-providers.ts (openid-client).
 *
 * THE RULES
 * - A started flow is a flowToken the client keeps (256 bits; only its SHA-256 names the server-side
 *   record of state, nonce and PKCE verifier). Finishing takes the record (GETDEL): single use, and
 *   bound to the provider and purpose it was started for.
 * - A known identity signs its account in. An unknown one makes a new account, unless the provider
 *   vouches for an address an account already holds: then nothing is created and 409
 *   SSO_ACCOUNT_EXISTS asks the person to sign in to that account and link the identity there.
 *   So an identity joins an existing account only from inside it (linking needs that account's
 *   session), and an address the provider does not vouch for never reaches an account at all
 *   (the new account has no e-mail; the identity keeps the address for display).
 */
import { createHash, randomBytes } from "node:crypto";
import type { Sequelize } from "sequelize";
import { Conflict, NotFound, Unauthorized } from "../errors";
import type { KeyValueStore } from "../runtime/kv";
import { normalizeEmail } from "./credentials";
import type { IdentityRow, IdentityStore } from "./identity-store";
import { removeUnlessLast } from "./sign-in-methods";
import type { SsoConfig } from "./sso-config";
import { newFlowSecrets, type CallbackParams, type FlowSecrets, type SsoProvider } from "./sso-providers";

export const FLOW_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

type Purpose = "sign_in" | "link";

interface FlowRecord extends FlowSecrets {
	provider: string;
	purpose: Purpose;
	userId: string | null;
}

const flowKey = (token: string) => `users:sso:flow:${createHash("sha256").update(token).digest("base64url")}`;
const flowInvalid = () => Unauthorized("Unknown, expired or already used sign-in; start again", "SSO_FLOW_INVALID");

export interface SsoDeps {
	cfg: SsoConfig;
	providers: Map<string, SsoProvider>;
	identities: IdentityStore;
	db: Sequelize;
	kv: KeyValueStore;
	userIdByEmail(email: string): Promise<string | null>;
	/** A second-factor step-up: a new way into the account is a sensitive change. */
	stepUp(userId: string, code: string | undefined): Promise<void>;
	audit(userId: string, action: string, details: object): Promise<void>;
}

export function identityView(r: IdentityRow) {
	return {
		id: r.id,
		provider: r.provider,
		email: r.email,
		emailVerified: r.email_verified,
		createdAt: new Date(r.created_at).toISOString(),
		lastUsedAt: r.last_used_at ? new Date(r.last_used_at).toISOString() : null
	};
}

export class SingleSignOn {
	constructor(private readonly d: SsoDeps) {}

	providerList() {
		return [...this.d.providers.values()].map(p => ({ id: p.id, name: p.name, kind: p.kind }));
	}

	private provider(id: string): SsoProvider {
		const p = this.d.providers.get(id);
		if (!p) throw NotFound("Sign-in provider");
		return p;
	}

	async start(providerId: string, purpose: Purpose, userId: string | null) {
		const provider = this.provider(providerId);
		const secrets = newFlowSecrets(provider.kind === "oidc");
		const authorizationUrl = await provider.authorizationUrl(secrets);
		const flowToken = randomBytes(32).toString("base64url");
		const record: FlowRecord = { ...secrets, provider: provider.id, purpose, userId };
		await this.d.kv.set(flowKey(flowToken), JSON.stringify(record), this.d.cfg.flowTtlS * 1000);
		return { authorizationUrl, flowToken, expiresIn: this.d.cfg.flowTtlS };
	}

	/** Takes the flow (single use) and redeems the code at the provider. */
	private async finish(providerId: string, purpose: Purpose, flowToken: string, params: CallbackParams) {
		const provider = this.provider(providerId);
		const raw = await this.d.kv.getDel(flowKey(flowToken));
		if (!raw) throw flowInvalid();
		const flow = JSON.parse(raw) as FlowRecord;
		if (flow.provider !== provider.id || flow.purpose !== purpose) throw flowInvalid();
		return { flow, profile: await provider.finish(params, flow), provider };
	}

	/** The account a sign-in lands in (made on a first sign-in). */
	async signIn(providerId: string, flowToken: string, params: CallbackParams) {
		const { profile, provider } = await this.finish(providerId, "sign_in", flowToken, params);
		const known = await this.d.identities.find(provider.id, profile.subject);
		if (known) {
			await this.d.identities.touch(known.id, profile);
			return { userId: known.user_id, created: false };
		}
		const email = profile.emailVerified && profile.email ? normalizeEmail(profile.email) : null;
		const exists = () =>
			Conflict(
				"An account already uses this e-mail address: sign in to it and link this identity from the account (POST /users/me/identities/:provider/start)",
				"SSO_ACCOUNT_EXISTS"
			);
		if (email && (await this.d.userIdByEmail(email))) throw exists();
		const made = await this.d.identities.createAccount(provider.id, profile, email);
		if (made === "email_taken") throw exists();
		if (made === "identity_taken") {
			const winner = await this.d.identities.find(provider.id, profile.subject);
			if (!winner) throw flowInvalid();
			return { userId: winner.user_id, created: false };
		}
		// `email`: the address the provider vouched for, now the new account's (it earns the welcome grant).
		return { userId: made.userId, created: true, email };
	}

	/** Links an identity to the signed-in account that started the flow. */
	async link(
		userId: string,
		providerId: string,
		flowToken: string,
		params: CallbackParams,
		mfaCode: string | undefined
	): Promise<{ identity: IdentityRow; alreadyLinked: boolean }> {
		// A new way into the account is a sensitive change, as a wallet or a passkey is.
		await this.d.stepUp(userId, mfaCode);
		const { flow, profile, provider } = await this.finish(providerId, "link", flowToken, params);
		if (flow.userId !== userId) throw flowInvalid();
		const known = await this.d.identities.find(provider.id, profile.subject);
		if (known && known.user_id !== userId)
			throw Conflict("This identity signs in to another account", "IDENTITY_TAKEN");
		if (known) return { identity: known, alreadyLinked: true };
		const row = await this.d.identities.link(userId, provider.id, profile);
		if (!row) throw Conflict("This identity signs in to another account", "IDENTITY_TAKEN");
		await this.d.audit(userId, "user.identity.link", { provider: provider.id, id: row.id });
		return { identity: row, alreadyLinked: false };
	}

	list(userId: string) {
		return this.d.identities.list(userId);
	}

	async remove(userId: string, id: string): Promise<void> {
		const r = await removeUnlessLast(this.d.db, userId, tx => this.d.identities.remove(userId, id, tx));
		if (r === "not_found") throw NotFound("Identity");
		if (r === "last_method")
			throw Conflict(
				"This is the account's only way to sign in; add a password, passkey or wallet first",
				"LAST_SIGN_IN_METHOD"
			);
		await this.d.audit(userId, "user.identity.remove", { id });
	}
}
