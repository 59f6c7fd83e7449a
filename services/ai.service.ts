/**
 * The ai service: the model catalogue (`GET /ai/models`), task preprocessing (`ai.prepare`), and
 * the worker loop that leases tasks from `tasks` and runs them (docs/task-lifecycle.md, docs/ai.md).
 * The logic lives in src/ai/; this is the shell that does the I/O.
 */
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { TIER_ORDER, TIERS, TierName, allowsModelGroup } from "../src/domain/tiers";
import type { AuthUser } from "../src/auth/user";
import type { AiConfig } from "../src/ai/config";
import { CATALOG, tiersForGroup } from "../src/ai/catalog";
import { RateLimited, UsageLimiter } from "../src/ai/limits";
import { prepareTask, worstCaseTokens } from "../src/ai/prompt";
import type { CheckedAccess, PrepareInput } from "../src/tasks/contract";
import type { AttemptEvent } from "../src/ai/generate";
import { DeploymentHealth, DeploymentRouter } from "../src/ai/router";
import { LeasedTask, RunningTask, runTask } from "../src/ai/task-runner";
import { LeasePump } from "../src/ai/lease-pump";
import { SlotClaims } from "../src/ai/slot-claims";
import { sentNowhere } from "../src/runtime/call-errors";
import { LoadAnnouncer } from "../src/compat/balance";
import { OutcomeSpool } from "../src/ai/outcome-spool";
import { replaySpool } from "../src/ai/report";
import { runtimeOf } from "../src/runtime/runtime";
import { INTERNAL } from "../src/kit/service";
import { PassThrough } from "node:stream";
import { SlotGate } from "../src/compat/admission";
import { CompatError, toWire } from "../src/compat/errors";
import { orgPayerId } from "../src/payments/payer";
import { ChatDeps, ChatInput, Refused, admitChat, holdIdOf, openLeaseOf, runChat } from "../src/compat/run";
import type { KeyLimits } from "../src/compat/prepare";
import type { ChatRequest } from "../src/compat/types";
import { KeyRateLimiter } from "../src/compat/key-limits";
import { LeaseKeeper } from "../src/compat/hold-leases";
import { Speculation } from "../src/compat/speculation";
import { CACHED_ACTIONS, cacheKeyOf } from "../src/users/cache";

interface AiSettings extends ServiceSettingSchema {
	capacity: { slots: number };
}

interface AiThis extends Service<AiSettings> {
	cfg: AiConfig;
	router: DeploymentRouter;
	limiter: UsageLimiter;
	running: Map<string, RunningTask>;
	leasePump: LeasePump<LeasedTask>;
	/** Slots offered to this node's submissions, leased in their insert (src/ai/slot-claims.ts). */
	claims: SlotClaims;
	/** Finished outcomes on disk until tasks has them; replayed at start (docs/faults.md). */
	spool: OutcomeSpool;
	stopping: boolean;
	/** Worker slots for compatible requests (shared with the task loop). */
	gate: SlotGate;
	chatDeps: ChatDeps;
	/** Running compatible requests by id (ai.chat.cancel aborts them). */
	chats: Map<string, AbortController>;
	keyLimiter: KeyRateLimiter;
	/** The hold leases of this node's compatible requests (a dead node's are swept by users). */
	leases: LeaseKeeper;
	pollTimer: NodeJS.Timeout | null;
	load: LoadAnnouncer;
	idle: Set<Promise<unknown>>;
	pump(): Promise<void>;
	startTask(task: LeasedTask, access?: CheckedAccess): void;
	recordHealth(h: DeploymentHealth): void;
	tierOf(ctx: Context, userId: string): Promise<TierName>;
	orgTierOf(ctx: Context, orgId: string): Promise<TierName>;
	chatPayer(
		ctx: Context,
		userId: string,
		orgId: string | null
	): Promise<{ tier: TierName; caps: { member?: number | null; payer?: number | null } }>;
	countAttempt(ev: AttemptEvent): void;
}

const CIRCUIT_VALUE = { closed: 0, "half-open": 1, open: 2 } as const;

const AiService: ServiceSchema<AiSettings, Record<string, never>, Record<string, never>, AiThis> = {
	name: "ai",

	settings: {
		// Read by tasks from the registry (sum over available ai nodes); filled in created().
		capacity: { slots: 0 }
	},

	actions: {
		models: {
			auth: "optional",
			// An organisation key lists what the organisation's tier allows (docs/compat.md "Organisation keys").
			orgKey: true,
			params: { $$strict: "remove", tier: { type: "enum", values: [...TIER_ORDER], optional: true } },
			async handler(this: AiThis, ctx: Context<{ tier?: TierName }, { user?: AuthUser }>) {
				let tier: TierName | null = null;
				const user = ctx.meta.user;
				if (user) {
					try {
						tier = user.orgId
							? await this.orgTierOf(ctx, user.orgId)
							: (
									await ctx.call<{ tier: TierName }, { userId: string }>("users.getTier", {
										userId: user.id
									})
								).tier;
					} catch (err) {
						this.logger.warn(
							`users.getTier failed; models listed without the caller's tier: ${(err as Error).message}`
						);
					}
				} else tier = ctx.params.tier ?? null;
				const served = new Set(this.cfg.deployments.map(d => d.model));
				const models = CATALOG.filter(m => !m.dev || this.cfg.devProvider).map(m => ({
					id: m.id,
					provider: m.provider,
					group: m.group,
					description: m.description,
					dev: !!m.dev,
					contextWindow: m.contextWindow,
					maxOutputTokens: m.maxOutputTokens,
					prices: { unit: "credits per 1M tokens", input: m.inputPricePer1M, output: m.outputPricePer1M },
					tiers: tiersForGroup(m.group),
					available: served.has(m.id),
					...(tier ? { allowed: allowsModelGroup(tier, m.group, TIERS) && served.has(m.id) } : {})
				}));
				return { tier, devProvider: this.cfg.devProvider, models };
			}
		},

		prepare: {
			visibility: INTERNAL,
			params: {
				userId: { type: "string", min: 1, max: 128 },
				tier: { type: "enum", values: [...TIER_ORDER] },
				projectId: { type: "string", min: 1, max: 128 },
				kind: { type: "enum", values: ["chat", "code", "compare"] },
				prompt: { type: "string", max: 1_000_000 },
				model: { type: "string", min: 1, max: 200, optional: true },
				models: { type: "array", items: { type: "string", min: 1, max: 200 }, optional: true, max: 10 },
				maxOutputTokens: { type: "number", integer: true, min: 1, max: 1_000_000, optional: true }
			},
			async handler(this: AiThis, ctx: Context<PrepareInput>) {
				const p = ctx.params;
				const prepared = prepareTask(this.cfg, p);
				const window = await this.limiter.admit(p.userId, p.tier, worstCaseTokens(prepared));
				return {
					models: prepared.models.map(m => ({
						model: m.model,
						group: m.group,
						provider: m.provider,
						maxCostCredits: m.maxCostCredits
					})),
					promptTokens: prepared.promptTokens,
					contextTokensBudget: prepared.contextTokensBudget,
					maxOutputTokens: prepared.maxOutputTokens,
					maxCostCredits: prepared.maxCostCredits,
					// Which rate-limit window counted the tokens: the run gives unused ones back to it only.
					rateWindowEndMs: window.windowEndMs
				};
			}
		},

		/**
		 * One OpenAI/Anthropic-compatible request (src/compat/run.ts). Refusals are thrown before
		 * anything streams; then the answer is a stream of ChatEvents (object mode, carried by the
		 * transporter to the gateway node holding the client's connection).
		 */
		chat: {
			visibility: INTERNAL,
			// Spends credits. The gateway's /v1 route refuses a key without `ai:use` in its protocol's shape
			// first (services/api/compat.ts); this holds for any other caller carrying a key.
			scope: "ai:use",
			// An organisation key's request is paid by the organisation's wallet (`orgId`, below).
			orgKey: true,
			params: {
				id: { type: "string", pattern: /^[a-f0-9]{32}$/ },
				userId: { type: "string", min: 1, max: 128 },
				orgId: { type: "uuid", optional: true, nullable: true },
				keyId: { type: "string", max: 64, optional: true, nullable: true },
				key: { type: "object", optional: true, nullable: true },
				// The caller's tier as the gateway read it from the users service's cached answer (beside the
				// key's stamps); without it this node reads it. Not used for an organisation key.
				tier: { type: "enum", values: [...TIER_ORDER], optional: true },
				request: { type: "object" }
			},
			async handler(
				this: AiThis,
				ctx: Context<{
					id: string;
					userId: string;
					orgId?: string | null;
					keyId?: string | null;
					key?: KeyLimits | null;
					tier?: TierName;
					request: ChatRequest;
				}>
			) {
				const p = ctx.params;
				// The key's organisation, never one a caller names: an org key's request is the organisation's.
				const orgId = (ctx.meta as { user?: AuthUser }).user?.orgId ?? p.orgId ?? null;
				const payerId = orgId ? orgPayerId(orgId) : p.userId;
				// The hold's lease is written while the tier is read and the rate limits are counted.
				const leased = openLeaseOf(this.chatDeps, { id: p.id, payerId, keyId: p.keyId ?? null });
				const paying =
					!orgId && p.tier
						? { tier: p.tier, caps: {} }
						: await this.chatPayer(ctx, p.userId, orgId).catch(async (err: unknown) => {
								if (!(await leased))
									await this.chatDeps.dropLease(holdIdOf(p.id)).catch(() => undefined);
								throw toWire(err);
							});
				const ctrl = new AbortController();
				const input: ChatInput = {
					id: p.id,
					userId: p.userId,
					payerId,
					caps: paying.caps,
					tier: paying.tier,
					keyId: p.keyId ?? null,
					key: p.key ?? null,
					request: p.request
				};
				this.chats.set(p.id, ctrl);
				let admitted;
				try {
					admitted = await admitChat(this.chatDeps, input, ctrl.signal, leased);
				} catch (err) {
					this.chats.delete(p.id);
					throw toWire(err);
				}
				this.leasePump.pump().catch(() => undefined);
				const out = new PassThrough({ objectMode: true });
				void runChat(this.chatDeps, input, admitted, ev => out.write(ev), ctrl.signal)
					.catch(err => this.logger.error(`chat ${p.id}: ${(err as Error).message}`))
					.finally(() => {
						out.end();
						this.chats.delete(p.id);
						void this.pump();
					});
				return out;
			}
		},

		capacity: {
			visibility: INTERNAL,
			handler(this: AiThis) {
				return { nodeID: this.broker.nodeID, slots: this.cfg.concurrency, busy: this.running.size };
			}
		},

		deployments: {
			auth: "required",
			permissions: ["admin", "operator"],
			handler(this: AiThis) {
				return { nodeID: this.broker.nodeID, deployments: this.router.health() };
			}
		},

		/** Same as `deployments`, for operators' tools over the transporter (REPL). */
		health: {
			visibility: INTERNAL,
			handler(this: AiThis) {
				return { nodeID: this.broker.nodeID, deployments: this.router.health() };
			}
		},

		resetDeployment: {
			visibility: INTERNAL,
			params: { id: { type: "string", optional: true } },
			handler(this: AiThis, ctx: Context<{ id?: string }>) {
				this.router.reset(ctx.params.id);
				for (const h of this.router.health()) this.recordHealth(h);
				return { nodeID: this.broker.nodeID, deployments: this.router.health() };
			}
		}
	},

	events: {
		"ai.deployment.cooldown": {
			params: {
				id: { type: "string", min: 1, max: 200 },
				coolForMs: { type: "number", integer: true, min: 0, max: 86_400_000 },
				openForMs: { type: "number", integer: true, min: 0, max: 86_400_000 },
				nodeID: { type: "string" }
			},
			handler(this: AiThis, ctx: Context<{ id: string; coolForMs: number; openForMs: number; nodeID: string }>) {
				if (ctx.params.nodeID === this.broker.nodeID) return;
				if (this.router.applyShared(ctx.params))
					this.logger.info(`deployment ${ctx.params.id}: cooldown shared by ${ctx.params.nodeID}`, {
						coolForMs: ctx.params.coolForMs,
						openForMs: ctx.params.openForMs
					});
			}
		},
		"tasks.available"(this: AiThis) {
			void this.pump();
		},
		/** The client of a compatible request went away (sent by the gateway node that held it). */
		"ai.chat.cancel"(this: AiThis, ctx: Context<{ id: string }>) {
			this.chats.get(ctx.params.id)?.abort();
		},
		"tasks.cancel"(this: AiThis, ctx: Context<{ taskId: string }>) {
			const r = this.running.get(ctx.params.taskId);
			if (r) {
				r.cancelled = true;
				r.abort.abort();
			}
		}
	},

	methods: {
		/**
		 * The user's tier: the users service's cached answer read from the shared cacher directly (no
		 * transporter hop to the users node, as the gateway reads its auth state); on a miss the
		 * service is asked, and fills the cache.
		 */
		/**
		 * Who pays a compatible request and under which tier and caps: the caller, or for an
		 * organisation key the organisation (its tier from its plan, the member's and the
		 * organisation's monthly caps, as for a task in one of its projects: src/tasks/submit.ts).
		 */
		async chatPayer(this: AiThis, ctx: Context, userId: string, orgId: string | null) {
			if (!orgId) return { tier: await this.tierOf(ctx, userId), caps: {} };
			const [member, tier] = await Promise.all([
				ctx.call<{ monthlyCapCredits: number | null; orgMonthlyCapCredits?: number | null } | null, unknown>(
					"orgs.roleOf",
					{ orgId, userId }
				),
				this.orgTierOf(ctx, orgId)
			]);
			if (!member)
				throw new CompatError("authentication", "This API key's organisation no longer has you as a member");
			return { tier, caps: { member: member.monthlyCapCredits, payer: member.orgMonthlyCapCredits ?? null } };
		},

		async orgTierOf(this: AiThis, ctx: Context, orgId: string): Promise<TierName> {
			const facts = await ctx.call<{ tier?: unknown } | null, unknown>("payments.facts", {
				userId: orgPayerId(orgId)
			});
			const t = facts?.tier;
			return typeof t === "string" && (TIER_ORDER as readonly string[]).includes(t) ? (t as TierName) : "free";
		},

		async tierOf(this: AiThis, ctx: Context, userId: string): Promise<TierName> {
			const key = cacheKeyOf(this.broker, CACHED_ACTIONS.getTier, { userId });
			const hit = key
				? ((await this.broker.cacher!.get(key).catch(() => undefined)) as { tier?: unknown } | null | undefined)
				: undefined;
			if (hit && typeof hit.tier === "string" && (TIER_ORDER as readonly string[]).includes(hit.tier))
				return hit.tier as TierName;
			const { tier } = await ctx.call<{ tier: TierName }, { userId: string }>("users.getTier", { userId });
			return tier;
		},

		/** One provider attempt, of a task or a compatible request, in the attempt and TTFT metrics. */
		countAttempt(this: AiThis, ev: AttemptEvent) {
			const m = this.broker.metrics;
			m.increment("ai.attempts.total", {
				deployment: ev.deployment,
				outcome: ev.outcome,
				reason: ev.reason ?? ""
			});
			if (ev.ttftMs !== undefined) m.observe("ai.ttft.seconds", ev.ttftMs / 1000, { deployment: ev.deployment });
		},

		recordHealth(this: AiThis, h: DeploymentHealth) {
			this.broker.metrics.set("ai.deployment.circuit", CIRCUIT_VALUE[h.circuit], {
				deployment: h.id,
				model: h.model
			});
		},

		/** Fills the free slots with leases (see LeasePump: a slot freed during a lease call is not left idle). */
		async pump(this: AiThis) {
			await this.leasePump.pump();
		},

		startTask(this: AiThis, task: LeasedTask, access?: CheckedAccess) {
			const running: RunningTask = { abort: new AbortController(), cancelled: false, leaseLost: false };
			this.running.set(task.taskId, running);
			this.broker.metrics.set("ai.worker.busy", this.running.size);
			this.load.changed();
			const p = runTask(
				{
					cfg: this.cfg,
					router: this.router,
					call: (action, params, opts) => this.broker.call(action, params, opts),
					contextTimeoutMs: runtimeOf(this.broker).config.context.timeoutMs,
					onContext: ev => {
						this.broker.metrics.increment("ai.context.total", { state: ev.state, reason: ev.reason ?? "" });
						this.broker.metrics.observe("ai.context.select.seconds", ev.ms / 1000, { state: ev.state });
					},
					broadcast: (event, payload) => void this.broker.broadcast(event, payload),
					settleTokens: (userId, tier, p) => this.limiter.settle(userId, tier, p),
					onAttempt: ev => this.countAttempt(ev),
					onFallback: ev => this.broker.metrics.increment("ai.fallbacks.total", { from: ev.from, to: ev.to }),
					logger: this.logger,
					stopping: () => this.stopping,
					spool: this.spool
				},
				task,
				running,
				access
			)
				.then(outcome => this.broker.metrics.increment("ai.tasks.total", { outcome }))
				.catch(err =>
					this.logger.error(`task ${task.taskId}: could not report its outcome: ${(err as Error).message}`)
				)
				.finally(() => {
					this.running.delete(task.taskId);
					this.load.changed();
					this.gate.kick();
					this.idle.delete(p);
					this.broker.metrics.set("ai.worker.busy", this.running.size);
					void this.pump();
				});
			this.idle.add(p);
		}
	},

	created(this: AiThis) {
		this.cfg = runtimeOf(this.broker).config.ai;
		this.spool = new OutcomeSpool(this.cfg.outcomeSpoolDir, this.broker.namespace || "default");
		this.settings.capacity = { slots: this.cfg.concurrency };
		this.running = new Map();
		this.idle = new Set();
		this.stopping = false;
		this.chats = new Map();
		// What gateways pick a node for a compatible request by (src/compat/balance.ts).
		this.load = new LoadAnnouncer({
			read: () => ({
				nodeID: this.broker.nodeID,
				slots: this.cfg.concurrency,
				busy: this.running.size + this.gate.inUse,
				waiting: this.gate.queued
			}),
			send: load => void this.broker.broadcast("ai.load", load).catch(() => undefined),
			throttleMs: 20,
			everyMs: 1_000
		});
		this.claims = new SlotClaims({
			nodeId: this.broker.nodeID,
			// Compatible requests in a slot or waiting for one come first, as for leases.
			free: () =>
				this.cfg.concurrency - this.running.size - this.claims.count - this.gate.inUse - this.gate.queued,
			canClaim: () => this.cfg.leaseAtInsert && !this.stopping,
			start: (task, access) => this.startTask(task, access),
			// A queued task (or another waiting one) may take the slot now rather than at the next poll.
			released: () => void this.pump()
		});
		this.gate = new SlotGate({
			slots: () => this.cfg.concurrency,
			otherBusy: () => this.running.size + this.claims.count,
			maxWaitMs: this.cfg.compatMaxWaitMs,
			onChange: () => this.load.changed()
		});
		this.leasePump = new LeasePump<LeasedTask>({
			// Compatible requests in a slot or waiting for one come before new task leases.
			free: () =>
				this.cfg.concurrency - this.running.size - this.claims.count - this.gate.inUse - this.gate.queued,
			// No tasks service in the cluster (yet): nothing to lease, and no warning per poll.
			canLease: () =>
				!this.stopping &&
				!!(
					this.broker.registry.getActionEndpoints("tasks.lease") as unknown as
						{ hasAvailable(): boolean } | undefined
				)?.hasAvailable(),
			lease: (slots, call) =>
				this.broker.call<LeasedTask[], { nodeID: string; slots: number; leaseId: string; recover?: string[] }>(
					"tasks.lease",
					{
						nodeID: this.broker.nodeID,
						slots,
						leaseId: call.leaseId,
						...(call.recover.length ? { recover: call.recover } : {})
					}
				),
			start: task => this.startTask(task),
			isRunning: taskId => this.running.has(taskId),
			mayHaveLeased: err => !sentNowhere(err),
			onError: err => {
				if (!sentNowhere(err)) this.logger.warn(`tasks.lease failed: ${(err as Error).message}`);
			}
		});
		this.pollTimer = null;
		const m = this.broker.metrics;
		m.register({
			type: "gauge",
			name: "ai.deployment.circuit",
			labelNames: ["deployment", "model"],
			description: "Circuit state of a provider deployment: 0 closed, 1 half-open, 2 open"
		});
		m.register({
			type: "counter",
			name: "ai.attempts.total",
			labelNames: ["deployment", "outcome", "reason"],
			description: "Provider attempts by outcome"
		});
		m.register({
			type: "counter",
			name: "ai.fallbacks.total",
			labelNames: ["from", "to"],
			description: "Switches to another deployment within a generation"
		});
		m.register({
			type: "counter",
			name: "ai.tasks.total",
			labelNames: ["outcome"],
			description: "Tasks run by this node"
		});
		m.register({
			type: "histogram",
			name: "ai.ttft.seconds",
			labelNames: ["deployment"],
			unit: "seconds",
			buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
			description: "Time to first token"
		});
		m.register({
			type: "counter",
			name: "ai.context.total",
			labelNames: ["state", "reason"],
			description:
				"Task contexts by how they were obtained: selected by the context service, or degraded (reason)"
		});
		m.register({
			type: "histogram",
			name: "ai.context.select.seconds",
			labelNames: ["state"],
			unit: "seconds",
			buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
			description: "Time context.select took (or until it was given up on)"
		});
		m.register({
			type: "counter",
			name: "ai.compat.speculation.total",
			labelNames: ["outcome"],
			description:
				"/v1 requests whose upstream call started beside their hold: confirmed, or refused (the call aborted, nothing sent, nothing charged)"
		});
		m.register({
			type: "counter",
			name: "ai.compat.speculation.unpaid.credits",
			description:
				"What the upstream calls of refused speculated /v1 requests had used when aborted (credits, at list price): the platform's cost"
		});
		m.register({ type: "gauge", name: "ai.worker.busy", description: "Tasks running on this node" });
		m.register({ type: "gauge", name: "ai.worker.slots", description: "Worker slots of this node" });
		m.set("ai.worker.slots", this.cfg.concurrency);
		this.router = new DeploymentRouter(this.cfg.deployments, {
			balancing: this.cfg.balancing,
			circuitFailures: this.cfg.circuitFailures,
			circuitCooldownMs: this.cfg.circuitCooldownMs,
			onChange: h => this.recordHealth(h),
			// Tell the other ai nodes (group "ai" only) so they leave the deployment alone too.
			onShare: c =>
				void this.broker
					.broadcast("ai.deployment.cooldown", { ...c, nodeID: this.broker.nodeID }, { groups: ["ai"] })
					.catch(() => undefined)
		});
		for (const h of this.router.health()) this.recordHealth(h);
		const rt = runtimeOf(this.broker);
		this.limiter = new UsageLimiter(rt.redis, rt.config.redisPrefix);
		this.keyLimiter = new KeyRateLimiter(rt.redis, rt.config.redisPrefix);
		const call = <T>(action: string, params: unknown) => this.broker.call<T, unknown>(action, params);
		const ttlMs = this.cfg.compatHoldLeaseMs;
		this.leases = new LeaseKeeper({
			ttlMs,
			renew: async (holdIds, ttl) =>
				(await call<{ lost: string[] }>("users.renewChatHolds", { holdIds, ttlMs: ttl })).lost,
			// Swept meanwhile (this node was out of touch longer than the lease): its holds are gone.
			onLost: holdId => this.chats.get(holdId.slice("chat:".length))?.abort(),
			warn: msg => this.logger.warn(msg)
		});
		this.chatDeps = {
			cfg: this.cfg,
			router: this.router,
			gate: this.gate,
			admitTokens: async (userId, tier, tokens) => {
				try {
					return await this.limiter.admit(userId, tier, tokens);
				} catch (err) {
					if (err instanceof RateLimited) throw new Refused(err.message, err.retryAfterS);
					throw err;
				}
			},
			settleTokens: (userId, tier, p) => this.limiter.settle(userId, tier, p),
			admitKey: (keyId, limits, tokens) => this.keyLimiter.admit(keyId, limits, tokens),
			reserveKeyBudget: async (keyId, holdId, credits, limit) =>
				void (await call("users.reserveKeyBudget", { keyId, holdId, credits, limit })),
			settleKeyBudget: async (keyId, holdId, credits) =>
				void (await call("users.settleKeyBudget", { keyId, holdId, credits })),
			reserve: async (userId, taskId, maxCost, tier, attribution, caps) =>
				void (await call("payments.reserve", { userId, taskId, maxCost, tier, attribution, caps })),
			settle: async (userId, taskId, actualCost, usage) =>
				void (await call("payments.settle", { userId, taskId, actualCost, usage })),
			release: async (userId, taskId) => void (await call("payments.release", { userId, taskId })),
			openLease: async (holdId, userId, keyId) =>
				void (await call("users.openChatHold", { holdId, userId, keyId, ttlMs })),
			recordCost: async (holdId, cost) => void (await call("users.recordChatHoldCost", { holdId, cost })),
			dropLease: async holdId => void (await call("users.dropChatHold", { holdId })),
			leases: this.leases,
			onAttempt: ev => this.countAttempt(ev),
			speculation:
				this.cfg.compatSpeculateCover > 0
					? new Speculation({
							read: async payerId =>
								(await call<{ available: number }>("payments.available", { payerId })).available,
							cover: this.cfg.compatSpeculateCover,
							maxAgeMs: this.cfg.compatSpeculateMaxAgeMs,
							refreshMs: this.cfg.compatSpeculateRefreshMs,
							warn: msg => this.logger.warn(msg)
						})
					: undefined,
			onSpeculation: ev => {
				m.increment("ai.compat.speculation.total", { outcome: ev.outcome });
				if (ev.unpaidMicroCredits > 0)
					m.increment("ai.compat.speculation.unpaid.credits", undefined, ev.unpaidMicroCredits / 1_000_000);
			},
			logger: this.logger
		};
		if (rt.config.transporter && this.cfg.devProvider)
			this.logger.warn("AI_DEV_PROVIDER=true on a cluster node: dev-echo answers with canned text");
	},

	started(this: AiThis) {
		runtimeOf(this.broker).localWorker = this.claims;
		this.load.start();
		this.pollTimer = setInterval(() => void this.pump(), this.cfg.pollMs);
		this.pollTimer.unref?.();
		void this.pump();
		// Outcomes a previous run of this worker finished but could not report (killed, restarted).
		const replay = replaySpool(
			{ call: (a, p) => this.broker.call(a, p), stopping: () => this.stopping, logger: this.logger },
			this.spool
		)
			.then(s => {
				if (s.found || s.corrupt) this.logger.info(`outcome spool replayed: ${JSON.stringify(s)}`);
			})
			.catch(err => this.logger.warn(`outcome spool not replayed: ${(err as Error).message}`))
			.finally(() => this.idle.delete(replay));
		this.idle.add(replay);
	},

	async stopped(this: AiThis) {
		this.stopping = true;
		const rt = runtimeOf(this.broker);
		if (rt.localWorker === this.claims) rt.localWorker = null;
		this.load.stop();
		if (this.pollTimer) clearInterval(this.pollTimer);
		// Running tasks are left to finish (bounded by the broker's shutdown timeout); a node killed
		// anyway loses its leases, and tasks re-queues them.
		await Promise.race([Promise.allSettled([...this.idle]), new Promise(r => setTimeout(r, 10_000).unref())]);
	}
};

export default AiService as unknown as ServiceSchema;
