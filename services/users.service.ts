/**
 * The users service: accounts with e-mail and password or Ethereum wallets (SIWE: EOA, EIP-1271,
 * EIP-6492), sessions (short access JWTs, rotating refresh tokens), API keys, roles, tiers and
 * $FORGE holdings. The gateway calls `verifyApiKey` and `authState` on every authenticated request;
 * other services call `getTier`. The use cases live in src/users/; this file and the mixins in
 * services/users/ are the shell: each action validates, calls one use case, and answers.
 */
import type { ServiceSchema, ServiceSettingSchema } from "moleculer";
import { getAddress } from "viem";
import { durableEvents } from "../mixins/durable-events.mixin";
import { currentUser, type Ctx } from "../src/kit/service";
import { registerRetentionMetrics, runPrune } from "../src/db/retention";
import { runtimeOf } from "../src/runtime/runtime";
import { usersPruneRules } from "../src/users/retention";
import { Administration } from "../src/users/admin";
import { ApiKeys } from "../src/users/api-keys";
import { OrgApiKeys } from "../src/users/org-api-keys";
import { OrgWallets } from "../src/users/org-wallets";
import { CACHED_ACTIONS, UserCacheInvalidator } from "../src/users/cache";
import { PasswordHasher } from "../src/users/credentials";
import { ForgeBalanceReader } from "../src/users/holdings";
import { ownView } from "../src/users/profile";
import { Sessions } from "../src/users/sessions";
import { PasswordAccounts, SignInSteps } from "../src/users/sign-in";
import { pgMethodLock } from "../src/users/sign-in-methods";
import { SignupGrants, type GrantIdentity, type GrantMoment } from "../src/users/signup-grant";
import { WalletSignatureVerifier } from "../src/users/signatures";
import { SiweProofs, type SiweInput } from "../src/users/siwe-proof";
import { UsersStore } from "../src/users/store";
import { AccountGuessLimiter, KnownAddresses, ProgressiveThrottle, makeLimiter } from "../src/users/throttle";
import { parsePlanChanged, parseStakeChanged } from "../src/users/tier-facts";
import {
	autoTopUpFailedMails,
	lowBalanceMails,
	capReachedMails,
	parseCapReached,
	parseAutoTopUpFailed,
	parseLowBalance,
	parsePastDueNotice,
	pastDueMails,
	type NoticeSources
} from "../src/users/billing-notice";
import { REFRESH_TOKEN_PATTERN } from "../src/users/tokens";
import { sessionView, type ProfileView } from "../src/users/views";
import { Wallets } from "../src/users/wallets";
import { accountsMixin } from "./users/accounts.mixin";
import { adminMixin } from "./users/admin.mixin";
import { ADDRESS_PATTERN, mfaCodeParam, siweParams, type UsersThis } from "./users/host";
import { orgWalletsMixin } from "./users/org-wallets.mixin";
import { internalMixin } from "./users/internal.mixin";
import { keysMixin } from "./users/keys.mixin";
import { chatHoldsMixin } from "./users/chat-holds.mixin";
import { ssoMixin } from "./users/sso.mixin";

const passwordParam = { type: "string", min: 1, max: 1024 } as const;

/** Where a billing notice's recipients come from (src/users/billing-notice.ts). */
const noticeSources = (svc: UsersThis): NoticeSources => ({
	billingContactsOf: orgId => svc.broker.call("orgs.billingContacts", { orgId }),
	emailOf: async id => (await svc.store.userById(id))?.email ?? null,
	appUrl: svc.cfg.mail.appUrl
});

// `merged` is a Moleculer lifecycle hook the typings leave out.
type UsersSchema = ServiceSchema<ServiceSettingSchema, Record<string, never>, Record<string, never>, UsersThis> & {
	merged?: (this: UsersThis, schema: ServiceSchema) => void;
};

const UsersService: UsersSchema = {
	name: "users",
	mixins: [
		accountsMixin as unknown as ServiceSchema,
		ssoMixin as unknown as ServiceSchema,
		keysMixin as unknown as ServiceSchema,
		orgWalletsMixin as unknown as ServiceSchema,
		chatHoldsMixin as unknown as ServiceSchema,
		adminMixin as unknown as ServiceSchema,
		internalMixin as unknown as ServiceSchema,
		durableEvents({
			group: "users",
			handlers: {
				async "payments.plan.changed"(this: UsersThis, payload, { tx, event }) {
					const fact = parsePlanChanged(payload);
					if (await this.store.applyPlanFact(tx, fact.userId, fact.planTier, event.occurredAt))
						tx.afterCommit(() => this.forgetLater(fact.userId));
				},
				// A renewal failed: the payer (or its organisation's billing members) is told by mail.
				async "billing.past_due"(this: UsersThis, payload) {
					const mails = await pastDueMails(parsePastDueNotice(payload), noticeSources(this));
					for (const [to, mail] of mails) this.mailer.sendLater(to, mail);
				},
				// An auto top-up was refused by the card and turned off: the payer is told once.
				async "billing.auto_topup.failed"(this: UsersThis, payload) {
					const mails = await autoTopUpFailedMails(parseAutoTopUpFailed(payload), noticeSources(this));
					for (const [to, mail] of mails) this.mailer.sendLater(to, mail);
				},
				// The available credit crossed under the payer's threshold (once per crossing).
				async "billing.low_balance"(this: UsersThis, payload) {
					const mails = await lowBalanceMails(parseLowBalance(payload), noticeSources(this));
					for (const [to, mail] of mails) this.mailer.sendLater(to, mail);
				},
				// A hold was refused by a monthly spend cap (once per payer, cap and month).
				async "billing.cap_reached"(this: UsersThis, payload) {
					const mails = await capReachedMails(parseCapReached(payload), noticeSources(this));
					for (const [to, mail] of mails) this.mailer.sendLater(to, mail);
				},
				async "payments.stake.changed"(this: UsersThis, payload, { tx, event }) {
					const fact = parseStakeChanged(payload);
					if (await this.store.applyStakeFact(tx, fact.userId, fact.positions, event.occurredAt))
						tx.afterCommit(() => this.forgetLater(fact.userId));
				}
			}
		})
	],

	/** Cache TTLs come from the configuration, which exists only once the broker does. */
	merged(this: UsersThis, schema: ServiceSchema) {
		const cfg = runtimeOf(this.broker).config.users;
		const actions = schema.actions as Record<string, { cache?: object }>;
		const ttl: Record<string, number> = {
			authState: cfg.sessions.authStateCacheTtlS,
			getTier: cfg.tierCacheTtlS,
			profile: cfg.tierCacheTtlS
		};
		for (const [name, seconds] of Object.entries(ttl))
			actions[name] = { ...actions[name], cache: { ...actions[name].cache, ttl: seconds } };
	},

	actions: {
		// ── passwords ──────────────────────────────────────────────────────────────────────
		register: {
			params: {
				$$strict: "remove",
				email: { type: "email", max: 254, normalize: true },
				password: passwordParam,
				displayName: { type: "string", min: 1, max: 80, trim: true, optional: true }
			},
			async handler(this: UsersThis, ctx: Ctx<{ email: string; password: string; displayName?: string }>) {
				const { created, ...answer } = await this.passwords.register(ctx.params, ctx.meta);
				// 202 "pending" unless SIGNUP_REVEALS_TAKEN: then 201 with the tokens.
				ctx.meta.$statusCode = created ? 201 : 202;
				if (created) ctx.meta.$location = "/api/v1/users/me";
				return answer;
			}
		},

		login: {
			params: { $$strict: "remove", email: { type: "string", min: 1, max: 254 }, password: passwordParam },
			async handler(this: UsersThis, ctx: Ctx<{ email: string; password: string }>) {
				return this.passwords.login(ctx.params, ctx.meta);
			}
		},

		changePassword: {
			auth: "required",
			sessionOnly: true,
			params: {
				$$strict: "remove",
				currentPassword: { ...passwordParam, optional: true },
				newPassword: passwordParam,
				mfaCode: mfaCodeParam
			},
			async handler(
				this: UsersThis,
				ctx: Ctx<{ currentPassword?: string; newPassword: string; mfaCode?: string }>
			) {
				return this.passwords.changePassword(currentUser(ctx), ctx.params, ctx.meta);
			}
		},

		// ── sessions ───────────────────────────────────────────────────────────────────────
		refresh: {
			params: { $$strict: "remove", refreshToken: { type: "string", pattern: REFRESH_TOKEN_PATTERN } },
			async handler(this: UsersThis, ctx: Ctx<{ refreshToken: string }>) {
				return this.sessions.refresh(ctx.params.refreshToken, ctx.meta);
			}
		},

		logout: {
			params: {
				$$strict: "remove",
				refreshToken: { type: "string", pattern: REFRESH_TOKEN_PATTERN, optional: true },
				all: { type: "boolean", optional: true, description: "End every session of the signed-in user" }
			},
			async handler(this: UsersThis, ctx: Ctx<{ refreshToken?: string; all?: boolean }>) {
				return this.sessions.logout(ctx.meta.user, ctx.params);
			}
		},

		listSessions: {
			auth: "required",
			scope: "users:read",
			async handler(this: UsersThis, ctx: Ctx) {
				const user = currentUser(ctx);
				return { items: (await this.sessions.list(user.id, false)).map(s => sessionView(s, user.sid)) };
			}
		},

		revokeSession: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", id: { type: "uuid" } },
			async handler(this: UsersThis, ctx: Ctx<{ id: string }>) {
				await this.sessions.revoke(currentUser(ctx).id, ctx.params.id);
				return { id: ctx.params.id, revoked: true };
			}
		},

		// ── Sign-In with Ethereum and wallets ──────────────────────────────────────────────
		siweNonce: {
			async handler(this: UsersThis) {
				return this.proofs.nonce();
			}
		},

		siweVerify: {
			params: { $$strict: "remove", ...siweParams },
			async handler(this: UsersThis, ctx: Ctx<SiweInput>) {
				return this.wallets.signIn(ctx.params, ctx.meta);
			}
		},

		linkWallet: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", ...siweParams, mfaCode: mfaCodeParam },
			async handler(this: UsersThis, ctx: Ctx<SiweInput & { mfaCode?: string }>) {
				const linked = await this.wallets.link(currentUser(ctx).id, ctx.params, ctx.meta);
				ctx.meta.$location = "/api/v1/users/me";
				return linked;
			}
		},

		unlinkWallet: {
			auth: "required",
			sessionOnly: true,
			params: { $$strict: "remove", address: { type: "string", pattern: ADDRESS_PATTERN } },
			async handler(this: UsersThis, ctx: Ctx<{ address: string }>) {
				return this.wallets.unlink(currentUser(ctx).id, ctx.params.address);
			}
		},

		// ── profile ────────────────────────────────────────────────────────────────────────
		me: {
			auth: "required",
			scope: "users:read",
			params: {
				$$strict: "remove",
				refresh: {
					type: "boolean",
					convert: true,
					optional: true,
					description: "Re-read $FORGE balances from the chain"
				}
			},
			async handler(this: UsersThis, ctx: Ctx<{ refresh?: boolean }>) {
				const user = currentUser(ctx);
				const profile = (await ctx.call(CACHED_ACTIONS.profile.name, { userId: user.id })) as ProfileView;
				const deps = { chain: this.cfg.chain, balances: this.balances, kv: this.kv };
				return ownView(deps, user, profile, ctx.params.refresh === true);
			}
		},

		updateMe: {
			auth: "required",
			scope: "users:write",
			params: {
				$$strict: "remove",
				displayName: { type: "string", min: 1, max: 80, trim: true, nullable: true }
			},
			async handler(this: UsersThis, ctx: Ctx<{ displayName: string | null }>) {
				const user = currentUser(ctx);
				await this.store.setDisplayName(user.id, ctx.params.displayName);
				await this.forget(user.id);
				return ctx.call(CACHED_ACTIONS.profile.name, { userId: user.id });
			}
		}
	},

	methods: {
		/**
		 * The welcome grant for a newly proven identity (src/users/signup-grant.ts). Recorded with its
		 * durable event; then asked of payments at once so the credit is there for the next request.
		 * Never fails the caller's request: a refusal is silent, a failure is logged (the event delivers).
		 */
		async offerSignupGrant(
			this: UsersThis,
			userId: string,
			id: GrantIdentity,
			moment: GrantMoment,
			ip: string | undefined
		) {
			try {
				const r = await this.signupGrants.offer(userId, id, moment, ip);
				if (!r.granted) return;
				await this.broker.call("payments.grant", {
					userId,
					credits: r.event.credits,
					operator: "signup",
					reason: "Welcome credit",
					source: "promo",
					expiresAt: r.event.expiresAt,
					key: r.event.key
				});
			} catch (err) {
				this.logger.warn("welcome grant: delivered later by its event", (err as Error).message);
			}
		},

		/**
		 * Tells payments that a wallet changed hands, so its indexed stake is attributed (or no longer
		 * attributed) to the right user at once. A hint: payments also re-asks `walletOwner` on its own,
		 * so a failure (payments down, no chain configured) only delays the attribution.
		 */
		announceWalletOwner(this: UsersThis, address: string) {
			this.broker.call("payments.refreshWalletOwner", { address: getAddress(address) }).catch((err: Error) => {
				if (
					!["ServiceNotFoundError", "ServiceNotAvailableError"].includes(err.name) &&
					(err as { code?: number }).code !== 503
				)
					this.logger.warn(`could not announce the owner of ${address} to payments: ${err.message}`);
			});
		},

		forget(this: UsersThis, userId: string, sessionIds: readonly string[] = []) {
			return this.invalidator.forget(userId, sessionIds);
		},

		forgetLater(this: UsersThis, userId: string) {
			this.invalidator
				.forget(userId)
				.catch(err => this.logger.warn("cache invalidation failed", userId, (err as Error).message));
		}
	},

	created(this: UsersThis) {
		const rt = runtimeOf(this.broker);
		const cfg = (this.cfg = rt.config.users);
		this.jwt = rt.config.jwt;
		const store = (this.store = new UsersStore(rt.sequelize));
		this.kv = rt.kv;
		const m = this.broker.metrics;
		if (!m.hasMetric("users.password.verifications.total"))
			m.register({
				type: "counter",
				name: "users.password.verifications.total",
				labelNames: ["against"],
				description: "argon2 password verifications, against a stored hash or the dummy (unknown users)"
			});
		this.hasher = new PasswordHasher(cfg.passwords.argon2, against =>
			m.increment("users.password.verifications.total", { against })
		);
		const prefix = `${rt.config.redisPrefix}users:throttle`;
		const rpcUrl = cfg.chain.rpcUrls[cfg.chain.forgeChainId];
		this.balances =
			rpcUrl && cfg.chain.forgeTokenAddress
				? new ForgeBalanceReader({
						rpcUrl,
						chainId: cfg.chain.forgeChainId,
						tokenAddress: cfg.chain.forgeTokenAddress,
						timeoutMs: cfg.chain.rpcTimeoutMs,
						ttlS: cfg.chain.balanceCacheTtlS,
						kv: rt.kv
					})
				: null;
		this.pruneTimer = null;
		this.pruning = null;
		this.invalidator = new UserCacheInvalidator(this.broker);
		this.signupGrants = new SignupGrants({
			sequelize: rt.sequelize,
			cfg: cfg.signupGrant,
			ipLimiter: makeLimiter(rt.redis, `${prefix}:signup-grant`, cfg.signupGrant.perIpPerDay, 86_400),
			publish: (tx, topic, payload) => this.publishDurable(tx, topic, payload)
		});

		// The use cases. The accounts mixin's parts (second factor, mailer) are built after this runs,
		// so they are reached through `this` when used.
		const forget = (userId: string, sessionIds?: readonly string[]) => this.forget(userId, sessionIds);
		const secondFactor = {
			enabled: (userId: string) => this.secondFactor.enabled(userId),
			stepUp: (userId: string, code: string | undefined) => this.secondFactor.stepUp(userId, code)
		};
		const mfaChallenge = (userId: string, method: "password" | "siwe") => this.steps.challenge(userId, method);
		const now = () => Date.now();
		const sessions = (this.sessions = new Sessions({
			store,
			jwt: this.jwt,
			cfg: cfg.sessions,
			forget,
			onReuse: details => this.logger.warn(details, "refresh token reuse: session revoked")
		}));
		this.steps = new SignInSteps({
			store,
			secondFactor: {
				enabled: userId => this.secondFactor.enabled(userId),
				check: (userId, code) => this.secondFactor.check(userId, code)
			},
			tokens: this.accounts, // the accounts mixin's created() ran before this one
			sessions,
			mfa: cfg.accounts
		});
		this.passwords = new PasswordAccounts({
			store,
			hasher: this.hasher,
			passwords: cfg.passwords,
			throttles: {
				ip: new ProgressiveThrottle(rt.redis, `${prefix}:ip`, cfg.throttle.ip),
				accountIp: new ProgressiveThrottle(rt.redis, `${prefix}:account-ip`, cfg.throttle.accountIp),
				account: new AccountGuessLimiter(rt.redis, `${prefix}:account`, cfg.throttle.account),
				known: new KnownAddresses(rt.kv, "users:login-known", cfg.throttle.knownIpTtlS),
				register: makeLimiter(rt.redis, `${prefix}:register`, cfg.throttle.registerPerIpPerHour, 3600)
			},
			secondFactor,
			mfaChallenge,
			sessions,
			mail: (to, mail) => this.mailer.sendLater(to, mail),
			signedUp: async (userId, email, client) => {
				// Sign-ups are limited per IP; the mail is limited per address only.
				await this.emailFlows.sendVerification(userId, email, false, null);
				await this.offerSignupGrant(userId, { kind: "email", email }, "signup", client.ip);
			},
			signUpTaken: email => this.emailFlows.notifySignUpAttempt(email),
			revealsTaken: cfg.signupRevealsTaken,
			now: () => new Date()
		});
		this.proofs = new SiweProofs({
			cfg: cfg.siwe,
			kv: rt.kv,
			signatures: new WalletSignatureVerifier(
				cfg.chain.rpcUrls,
				cfg.chain.rpcTimeoutMs,
				rt.config.deps.chain.retries
			),
			now
		});
		this.wallets = new Wallets({
			store,
			methods: pgMethodLock(rt.sequelize),
			deleteWallet: (tx, userId, address) => store.deleteWallet(tx, userId, address),
			proofs: this.proofs,
			secondFactor,
			mfaChallenge,
			sessions,
			maxWallets: cfg.maxWalletsPerUser,
			forget,
			announce: address => this.announceWalletOwner(address),
			offerGrant: (userId, address, client) =>
				this.offerSignupGrant(userId, { kind: "wallet", address }, "wallet", client.ip)
		});
		// An organisation key's creator must still be a member: asked of the orgs service every time.
		const orgRole = async (orgId: string, userId: string) =>
			(
				await this.broker.call<{ role: string } | null, { orgId: string; userId: string }>("orgs.roleOf", {
					orgId,
					userId
				})
			)?.role ?? null;
		this.apiKeys = new ApiKeys({
			store,
			cfg: cfg.apiKeys,
			secondFactor,
			now,
			orgRole,
			onTouchFailed: err => this.logger.warn("api key last-used update failed", err.message)
		});
		this.orgApiKeys = new OrgApiKeys({ store, cfg: cfg.apiKeys, secondFactor, orgRole });
		this.orgWallets = new OrgWallets({
			store,
			proofs: this.proofs,
			secondFactor,
			orgRole,
			maxWallets: cfg.maxWalletsPerUser,
			announce: address => this.announceWalletOwner(address)
		});
		this.admin = new Administration({
			store,
			forget: async (userId, opts) =>
				this.invalidator.forget(userId, opts.sessions ? await store.sessionIdsOf(userId) : []),
			changed: (userId, fields) => this.broker.broadcast("users.changed", { userId, fields }),
			now
		});
	},

	async started(this: UsersThis) {
		// Hash the dummy password now, so the first unknown-user login is not the one that pays for it.
		await this.hasher.dummyHash();
		// Retention of sessions, refresh tokens, one-time tokens and abandoned mail (src/users/retention.ts):
		// every node tries, the one holding the lock runs.
		const rt = runtimeOf(this.broker);
		const r = rt.config.retention;
		registerRetentionMetrics(this.broker.metrics);
		this.pruneTimer = setInterval(() => {
			if (this.pruning) return;
			this.pruning = runPrune(rt.sequelize, "users", usersPruneRules(r.days), {
				now: Date.now(),
				batchRows: r.batchRows,
				maxBatches: r.maxBatches,
				pauseMs: r.pauseMs,
				onPruned: (table, rows) =>
					this.broker.metrics.increment("retention.pruned.rows.total", { table }, rows),
				stopping: () => this.pruneTimer === null
			})
				.catch(err => this.logger.warn("users retention failed", (err as Error).message))
				.finally(() => {
					this.pruning = null;
				});
		}, r.everyMs);
		this.pruneTimer.unref();
	},

	async stopped(this: UsersThis) {
		if (this.pruneTimer) clearInterval(this.pruneTimer);
		this.pruneTimer = null;
		await this.pruning;
		this.invalidator.stop();
		this.balances?.destroy();
	}
};

export default UsersService as unknown as ServiceSchema;
