/**
 * The users service's account flows (issue 18), mixed into services/users.service.ts: e-mail
 * verification and change, password reset, TOTP two-factor with the second sign-in step, export
 * and deletion, and the development outbox. Each action validates its params and calls one use
 * case from src/users/ (verification.ts, second-factor.ts, account-deletion.ts).
 */
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from "@simplewebauthn/server";
import type { Context } from "moleculer";
import { NotFound } from "../../src/errors";
import { runtimeOf } from "../../src/runtime/runtime";
import { ACCOUNT_TOKEN_PATTERN, AccountStore } from "../../src/users/account-store";
import { deleteAccount, exportAccount } from "../../src/users/account-deletion";
import { normalizeEmail } from "../../src/users/credentials";
import { Mailer } from "../../src/users/mailer";
import { SecondFactor } from "../../src/users/second-factor";
import { SecretBox, derivedSecretKey } from "../../src/users/secret-box";
import { ProgressiveThrottle, makeLimiter } from "../../src/users/throttle";
import { EmailFlows } from "../../src/users/verification";
import { CHALLENGE_TOKEN_PATTERN, Passkeys, passkeyView } from "../../src/users/passkeys";
import { INTERNAL, currentUser, type Ctx } from "../../src/kit/service";
import { codeParam, mfaCodeParam, type UsersMixin, type UsersThis } from "./host";

const tokenParam = {
	type: "string",
	pattern: ACCOUNT_TOKEN_PATTERN,
	description: "The token from the link (fft_…)"
} as const;
const B64URL = /^[A-Za-z0-9_-]*$/;
const challengeTokenParam = {
	type: "string",
	pattern: CHALLENGE_TOKEN_PATTERN,
	description: "The challengeToken of the options answer (binds the challenge to this client)"
} as const;
/** A PublicKeyCredential as JSON (what @simplewebauthn/browser's start* functions return). */
const credentialParam = (response: Record<string, object>) =>
	({
		type: "object",
		strict: "remove",
		props: {
			id: { type: "string", min: 16, max: 1366, pattern: B64URL },
			rawId: { type: "string", min: 16, max: 1366, pattern: B64URL },
			type: { type: "equal", value: "public-key" },
			authenticatorAttachment: { type: "enum", values: ["platform", "cross-platform"], optional: true },
			clientExtensionResults: { type: "object", optional: true, default: {} },
			response: { type: "object", strict: "remove", props: response }
		}
	}) as const;

export const accountsMixin: UsersMixin = {
	name: "users",
	actions: {
		// ── e-mail ─────────────────────────────────────────────────────────────────────────
		verifyEmail: {
			params: { $$strict: "remove", token: tokenParam },
			async handler(this: UsersThis, ctx: Ctx<{ token: string }>) {
				const r = await this.emailFlows.verify(ctx.params.token);
				await this.forget(r.userId);
				await this.offerSignupGrant(r.userId, { kind: "email", email: r.email }, "verified", ctx.meta.ip);
				return { verified: true, email: r.email, changed: r.changed };
			}
		},

		resendVerification: {
			auth: "required",
			sessionOnly: true,
			async handler(this: UsersThis, ctx: Ctx) {
				await this.emailFlows.resend(currentUser(ctx).id, ctx.meta.ip);
				return { sent: true };
			}
		},

		changeEmail: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				email: { type: "email", max: 254, normalize: true },
				mfaCode: mfaCodeParam
			},
			async handler(this: UsersThis, ctx: Ctx<{ email: string; mfaCode?: string }>) {
				const p = ctx.params;
				return {
					pending: true,
					email: await this.emailFlows.change(currentUser(ctx).id, p.email, p.mfaCode, ctx.meta.ip)
				};
			}
		},

		forgotPassword: {
			params: { $$strict: "remove", email: { type: "string", min: 1, max: 254 } },
			async handler(this: UsersThis, ctx: Ctx<{ email: string }>) {
				// A malformed address answers like any other: nothing reveals what is on file.
				const email = normalizeEmail(ctx.params.email) ?? ctx.params.email.trim().toLowerCase();
				await this.emailFlows.forgotPassword(email, ctx.meta.ip);
				return { accepted: true };
			}
		},

		resetPassword: {
			params: { $$strict: "remove", token: tokenParam, password: { type: "string", min: 1, max: 1024 } },
			async handler(this: UsersThis, ctx: Ctx<{ token: string; password: string }>) {
				const r = await this.emailFlows.resetPassword(ctx.params.token, ctx.params.password, ctx.meta.ip);
				return { reset: true, endedSessions: r.endedSessions };
			}
		},

		// ── TOTP ───────────────────────────────────────────────────────────────────────────
		totpStart: {
			auth: "required",
			sessionOnly: true,
			async handler(this: UsersThis, ctx: Ctx) {
				return this.secondFactor.start(currentUser(ctx).id);
			}
		},

		totpConfirm: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				code: { type: "string", pattern: /^\d{6}$/, description: "The app's current 6-digit code" }
			},
			async handler(this: UsersThis, ctx: Ctx<{ code: string }>) {
				return this.secondFactor.confirm(currentUser(ctx).id, ctx.params.code);
			}
		},

		totpDisable: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", code: codeParam },
			async handler(this: UsersThis, ctx: Ctx<{ code: string }>) {
				await this.secondFactor.disable(currentUser(ctx).id, ctx.params.code);
				return { enabled: false };
			}
		},

		loginMfa: {
			params: { $$strict: "remove", mfaToken: tokenParam, code: codeParam },
			async handler(this: UsersThis, ctx: Ctx<{ mfaToken: string; code: string }>) {
				return this.steps.finish(ctx.params.mfaToken, ctx.params.code, ctx.meta);
			}
		},

		// ── export and deletion ────────────────────────────────────────────────────────────
		exportMe: {
			auth: "required",
			sessionOnly: true,
			async handler(this: UsersThis, ctx: Ctx) {
				return exportAccount(currentUser(ctx).id, {
					accounts: this.accounts,
					ledger: userId => ctx.call("payments.userLedger", { userId, limit: 1000 }) as Promise<unknown>
				});
			}
		},

		deleteMe: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				password: {
					type: "string",
					min: 1,
					max: 1024,
					optional: true,
					description: "The current password, if the account has one"
				},
				mfaCode: mfaCodeParam
			},
			async handler(this: UsersThis, ctx: Ctx<{ password?: string; mfaCode?: string }>) {
				const auth = currentUser(ctx);
				const r = await deleteAccount(
					{
						userId: auth.id,
						sessionId: auth.sid ?? null,
						password: ctx.params.password,
						mfaCode: ctx.params.mfaCode
					},
					{
						cfg: this.cfg,
						store: this.store,
						accounts: this.accounts,
						hasher: this.hasher,
						secondFactor: this.secondFactor,
						mailer: this.mailer,
						passwordGuesses: this.stepUpPasswords,
						publish: (tx, topic, payload) => this.publishDurable(tx, topic, payload)
					}
				);
				await this.forget(auth.id, r.sessions);
				for (const address of r.wallets) this.announceWalletOwner(address);
				return { deleted: true };
			}
		},

		// ── passkeys ───────────────────────────────────────────────────────────────────────
		passkeyRegistrationOptions: {
			auth: "required",
			sessionOnly: true,
			async handler(this: UsersThis, ctx: Ctx) {
				const user = await this.store.userById(currentUser(ctx).id);
				if (!user) throw NotFound("User");
				return this.passkeys.registrationOptions({
					id: user.id,
					email: user.email,
					displayName: user.display_name
				});
			}
		},

		registerPasskey: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				challengeToken: challengeTokenParam,
				name: { type: "string", min: 1, max: 64, trim: true, optional: true },
				response: credentialParam({
					clientDataJSON: { type: "string", min: 1, max: 4096, pattern: B64URL },
					attestationObject: { type: "string", min: 1, max: 65_536, pattern: B64URL },
					transports: { type: "array", items: { type: "string", max: 32 }, max: 10, optional: true }
				}),
				mfaCode: mfaCodeParam
			},
			async handler(
				this: UsersThis,
				ctx: Ctx<{
					challengeToken: string;
					name?: string;
					response: RegistrationResponseJSON;
					mfaCode?: string;
				}>
			) {
				const p = ctx.params;
				const userId = currentUser(ctx).id;
				return passkeyView(
					await this.passkeys.register(userId, p.challengeToken, p.response, p.name ?? "Passkey", p.mfaCode)
				);
			}
		},

		listPasskeys: {
			auth: "required",
			sessionOnly: true,
			async handler(this: UsersThis, ctx: Ctx) {
				return { items: (await this.passkeys.list(currentUser(ctx).id)).map(passkeyView) };
			}
		},

		removePasskey: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: { type: "string", min: 16, max: 1366, pattern: B64URL } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				await this.passkeys.remove(currentUser(ctx).id, ctx.params.id);
				return { id: ctx.params.id, removed: true };
			}
		},

		passkeySignInOptions: {
			async handler(this: UsersThis) {
				return this.passkeys.signInOptions();
			}
		},

		passkeySignIn: {
			params: {
				$$strict: "remove",
				challengeToken: challengeTokenParam,
				response: credentialParam({
					clientDataJSON: { type: "string", min: 1, max: 4096, pattern: B64URL },
					authenticatorData: { type: "string", min: 1, max: 4096, pattern: B64URL },
					signature: { type: "string", min: 1, max: 4096, pattern: B64URL },
					userHandle: { type: "string", max: 1024, pattern: B64URL, optional: true }
				})
			},
			async handler(this: UsersThis, ctx: Ctx<{ challengeToken: string; response: AuthenticationResponseJSON }>) {
				const userId = await this.passkeys.signIn(ctx.params.challengeToken, ctx.params.response);
				// A passkey is itself two factors (the device and its unlock): no TOTP step after it.
				return this.steps.complete(userId, "passkey", ctx.meta);
			}
		},

		// ── development ────────────────────────────────────────────────────────────────────
		devOutbox: {
			params: { $$strict: "remove", to: { type: "string", max: 254, optional: true } },
			async handler(this: UsersThis, ctx: Ctx<{ to?: string }>) {
				if (!this.cfg.mail.outboxRoute) throw NotFound("Route");
				return {
					items: this.mailer.list(
						ctx.params.to ? (normalizeEmail(ctx.params.to) ?? ctx.params.to) : undefined
					)
				};
			}
		},

		/** REPL `users-2fa-reset <id>`: an operator removes a user's 2FA (audited). */
		resetSecondFactor: {
			visibility: INTERNAL,
			params: { userId: { type: "uuid" }, actor: { type: "string", min: 1, max: 128, default: "operator" } },
			async handler(this: UsersThis, ctx: Context<{ userId: string; actor: string }>) {
				const removed = await this.secondFactor.operatorReset(ctx.params.userId, ctx.params.actor);
				return { userId: ctx.params.userId, removed };
			}
		}
	},

	created(this: UsersThis) {
		const rt = runtimeOf(this.broker);
		const cfg = rt.config.users;
		const jwt = rt.config.jwt;
		const active = jwt.keys.find(k => k.kid === jwt.activeKid);
		const derived = [...(active ? [active] : []), ...jwt.keys.filter(k => k !== active)].map(k =>
			derivedSecretKey(k.kid, k.secret)
		);
		this.accounts = new AccountStore(rt.sequelize, new SecretBox([...cfg.accounts.mfaEncryptionKeys, ...derived]));
		this.mailer = new Mailer(cfg.mail, this.logger, rt.sequelize);
		if (!cfg.mail.smtpUrl && rt.config.nodeEnv === "production")
			this.logger.error(
				"SMTP_URL is not set: account mail (verification, reset) goes to the in-memory outbox only"
			);
	},

	started(this: UsersThis) {
		// The host's created() (store, hasher) has run by now; the mixin's ran before it.
		const rt = runtimeOf(this.broker);
		const cfg = this.cfg;
		const prefix = `${rt.config.redisPrefix}users:accounts`;
		const audit = (userId: string, actorId: string, action: string, details: object) =>
			this.store.audit(undefined, userId, actorId, action, details);
		this.emailFlows = new EmailFlows({
			cfg,
			accounts: this.accounts,
			mailer: this.mailer,
			hasher: this.hasher,
			limits: {
				mailPerAddress: makeLimiter(
					rt.redis,
					`${prefix}:mail-address`,
					cfg.accounts.mailPerAddressPerHour,
					3600
				),
				mailPerIp: makeLimiter(rt.redis, `${prefix}:mail-ip`, cfg.accounts.mailPerIpPerHour, 3600),
				resetPerIp: makeLimiter(rt.redis, `${prefix}:reset-ip`, cfg.accounts.resetPerIpPerHour, 3600)
			},
			currentEmail: async userId => {
				const user = await this.store.userById(userId);
				return user ? user.email : undefined;
			},
			stepUp: (userId, code) => this.secondFactor.stepUp(userId, code),
			endAllSessions: (userId, reason) => this.sessions.endAll(userId, reason),
			audit: (userId, action, details) => audit(userId, userId, action, details)
		});
		this.passkeys = new Passkeys(cfg.webauthn, rt.sequelize, rt.kv, {
			stepUp: (userId, code) => this.secondFactor.stepUp(userId, code),
			audit: (userId, action, details) => audit(userId, userId, action, details)
		});
		this.mailer.startQueue();
		this.stepUpPasswords = new ProgressiveThrottle(rt.redis, `${prefix}:stepup-password`, cfg.accounts.mfaThrottle);
		this.secondFactor = new SecondFactor({
			cfg,
			accounts: this.accounts,
			mailer: this.mailer,
			guesses: new ProgressiveThrottle(rt.redis, `${prefix}:mfa`, cfg.accounts.mfaThrottle),
			verifiedEmail: async userId => {
				const user = await this.store.userById(userId);
				return user?.email && (await this.accounts.emailVerifiedAt(userId)) ? user.email : null;
			},
			audit,
			now: () => Date.now()
		});
	},

	async stopped(this: UsersThis) {
		await this.mailer.close();
	}
};
