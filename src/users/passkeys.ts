/**
 * Passkeys (WebAuthn) with @simplewebauthn/server: register one on a signed-in account, sign in
 * with one (discoverable credentials: no user name first), list and remove them. The relying-party
 * id and the accepted origins come from config (WEBAUTHN_RP_ID, WEBAUTHN_ORIGINS).
 *
 * CHALLENGES are single use and bound to the client that asked: the options answer carries a
 * `challengeToken` (a secret of the client, never part of what is signed, as SIWE's nonceToken);
 * the challenge is stored under its SHA-256 and taken with GETDEL, so of two uses one wins.
 * COUNTERS: an authenticator that reports a signature counter must report a larger one each time
 * (a smaller or equal one suggests a cloned key); the update is conditional, so it is atomic too.
 */
import { createHash, randomBytes } from "node:crypto";
import {
	generateAuthenticationOptions,
	generateRegistrationOptions,
	verifyAuthenticationResponse,
	verifyRegistrationResponse,
	type AuthenticationResponseJSON,
	type AuthenticatorTransportFuture,
	type RegistrationResponseJSON
} from "@simplewebauthn/server";
import { QueryTypes, type Sequelize } from "sequelize";
import { Conflict, NotFound, Unauthorized } from "../errors";
import type { KeyValueStore } from "../runtime/kv";
import type { WebAuthnConfig } from "./config";
import { removeUnlessLast } from "./sign-in-methods";

export interface PasskeyRow {
	credential_id: string;
	user_id: string;
	public_key: Buffer;
	counter: string;
	transports: string[];
	name: string;
	created_at: Date;
	last_used_at: Date | null;
}

export const passkeyView = (p: PasskeyRow) => ({
	id: p.credential_id,
	name: p.name,
	transports: p.transports,
	createdAt: new Date(p.created_at).toISOString(),
	lastUsedAt: p.last_used_at ? new Date(p.last_used_at).toISOString() : null
});

const challengeKey = (token: string) => `users:webauthn:${createHash("sha256").update(token).digest("hex")}`;

export const CHALLENGE_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

const invalidChallenge = () =>
	Unauthorized("Unknown, expired or already used challenge; ask for new options", "PASSKEY_CHALLENGE_INVALID");
const refused = (why: string) => Unauthorized(`The passkey was not accepted: ${why}`, "PASSKEY_INVALID");

export class Passkeys {
	constructor(
		private readonly cfg: WebAuthnConfig,
		private readonly db: Sequelize,
		private readonly kv: KeyValueStore,
		private readonly hooks: {
			/** A second-factor step-up: a new way into the account is a sensitive change. */
			stepUp(userId: string, code: string | undefined): Promise<void>;
			audit(userId: string, action: string, details: object): Promise<void>;
		}
	) {}

	private rows<T extends object>(sql: string, bind: unknown[]): Promise<T[]> {
		return this.db.query<T>(sql, { bind, type: QueryTypes.SELECT });
	}

	list(userId: string): Promise<PasskeyRow[]> {
		return this.rows(`SELECT * FROM user_passkeys WHERE user_id = $1 ORDER BY created_at`, [userId]);
	}

	private async issueChallenge(challenge: string, userId: string | null, kind: "register" | "signin") {
		const challengeToken = randomBytes(32).toString("base64url");
		await this.kv.set(
			challengeKey(challengeToken),
			JSON.stringify({ challenge, userId, kind }),
			this.cfg.challengeTtlS * 1000
		);
		return challengeToken;
	}

	private async takeChallenge(token: string, kind: "register" | "signin") {
		const raw = await this.kv.getDel(challengeKey(token));
		if (!raw) throw invalidChallenge();
		const c = JSON.parse(raw) as { challenge: string; userId: string | null; kind: string };
		if (c.kind !== kind) throw invalidChallenge();
		return c;
	}

	async registrationOptions(user: { id: string; email: string | null; displayName: string | null }) {
		const existing = await this.list(user.id);
		if (existing.length >= this.cfg.maxPerUser)
			throw Conflict(`An account may hold at most ${this.cfg.maxPerUser} passkeys`, "PASSKEY_LIMIT");
		const userName = user.email ?? `user-${user.id.slice(0, 8)}`;
		const options = await generateRegistrationOptions({
			rpName: this.cfg.rpName,
			rpID: this.cfg.rpId,
			userName,
			userDisplayName: user.displayName ?? userName,
			userID: Buffer.from(user.id, "utf8"),
			attestationType: "none",
			excludeCredentials: existing.map(p => ({
				id: p.credential_id,
				transports: p.transports as AuthenticatorTransportFuture[]
			})),
			authenticatorSelection: { residentKey: "required", userVerification: "preferred" }
		});
		return { options, challengeToken: await this.issueChallenge(options.challenge, user.id, "register") };
	}

	async register(
		userId: string,
		challengeToken: string,
		response: RegistrationResponseJSON,
		name: string,
		mfaCode: string | undefined
	): Promise<PasskeyRow> {
		await this.hooks.stepUp(userId, mfaCode);
		const c = await this.takeChallenge(challengeToken, "register");
		if (c.userId !== userId) throw invalidChallenge();
		let verification;
		try {
			verification = await verifyRegistrationResponse({
				response,
				expectedChallenge: c.challenge,
				expectedOrigin: this.cfg.origins,
				expectedRPID: this.cfg.rpId,
				requireUserVerification: false
			});
		} catch (err) {
			throw refused((err as Error).message);
		}
		if (!verification.verified || !verification.registrationInfo) throw refused("not verified");
		const cred = verification.registrationInfo.credential;
		const [row] = await this.rows<PasskeyRow>(
			`INSERT INTO user_passkeys (credential_id, user_id, public_key, counter, transports, name)
			 SELECT $1, $2, $3, $4, $5, $6
			 WHERE (SELECT count(*) FROM user_passkeys WHERE user_id = $2) < $7
			 ON CONFLICT (credential_id) DO NOTHING RETURNING *`,
			[
				cred.id,
				userId,
				Buffer.from(cred.publicKey),
				cred.counter,
				cred.transports ?? [],
				name,
				this.cfg.maxPerUser
			]
		);
		if (!row) throw Conflict("This passkey is already registered, or the account has too many", "PASSKEY_TAKEN");
		await this.hooks.audit(userId, "user.passkey.add", { id: row.credential_id });
		return row;
	}

	async signInOptions() {
		const options = await generateAuthenticationOptions({ rpID: this.cfg.rpId, userVerification: "preferred" });
		return { options, challengeToken: await this.issueChallenge(options.challenge, null, "signin") };
	}

	/** The user id the passkey belongs to, once its signature over our challenge checks out. */
	async signIn(challengeToken: string, response: AuthenticationResponseJSON): Promise<string> {
		const c = await this.takeChallenge(challengeToken, "signin");
		const [row] = await this.rows<PasskeyRow>(`SELECT * FROM user_passkeys WHERE credential_id = $1`, [
			response.id
		]);
		if (!row) throw refused("unknown credential");
		let verification;
		try {
			verification = await verifyAuthenticationResponse({
				response,
				expectedChallenge: c.challenge,
				expectedOrigin: this.cfg.origins,
				expectedRPID: this.cfg.rpId,
				credential: {
					id: row.credential_id,
					publicKey: new Uint8Array(row.public_key),
					counter: Number(row.counter),
					transports: row.transports as AuthenticatorTransportFuture[]
				},
				requireUserVerification: false
			});
		} catch (err) {
			throw refused((err as Error).message);
		}
		if (!verification.verified) throw refused("signature");
		const next = verification.authenticationInfo.newCounter;
		// Counter 0 means the authenticator keeps none (most passkeys); otherwise it must grow.
		const updated = await this.rows(
			`UPDATE user_passkeys SET counter = $2, last_used_at = now()
			 WHERE credential_id = $1 AND ($2 = 0 OR counter < $2) RETURNING credential_id`,
			[row.credential_id, next]
		);
		if (!updated.length) throw refused("signature counter did not increase (a cloned authenticator?)");
		return row.user_id;
	}

	/** Refused when the passkey is the account's only way to sign in (no password, wallet or other key). */
	async remove(userId: string, credentialId: string): Promise<void> {
		const r = await removeUnlessLast(this.db, userId, async transaction => {
			const rows = await this.db.query(
				`DELETE FROM user_passkeys WHERE user_id = $1 AND credential_id = $2 RETURNING credential_id`,
				{ bind: [userId, credentialId], type: QueryTypes.SELECT, transaction }
			);
			return rows.length > 0;
		});
		if (r === "not_found") throw NotFound("Passkey");
		if (r === "last_method")
			throw Conflict(
				"This passkey is the account's only way to sign in; add a password, wallet or another passkey first",
				"LAST_SIGN_IN_METHOD"
			);
		await this.hooks.audit(userId, "user.passkey.remove", { id: credentialId });
	}
}
