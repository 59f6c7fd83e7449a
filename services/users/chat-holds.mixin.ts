/**
 * The leases of compatible requests' holds (src/compat/hold-leases.ts), mixed into
 * services/users.service.ts: the ai nodes open, renew, annotate and drop them; every users node
 * sweeps the expired ones (a dead ai node's holds) every USERS_CHAT_HOLD_SWEEP_MS.
 */
import type { Context } from "moleculer";
import { HoldLeaseStore, sweepExpiredLeases } from "../../src/compat/hold-leases";
import { INTERNAL } from "../../src/kit/service";
import { runtimeOf } from "../../src/runtime/runtime";
import type { UsersMixin, UsersThis } from "./host";

interface LeasesThis extends UsersThis {
	leases: HoldLeaseStore;
	leaseSweep: NodeJS.Timeout | null;
	leaseSweeping: Promise<unknown> | null;
	sweepLeases(): Promise<number>;
}

const holdIdParam = { type: "string", pattern: /^chat:[a-f0-9]{32}$/ } as const;
const ttlParam = { type: "number", integer: true, min: 100, max: 3_600_000 } as const;

export const chatHoldsMixin: UsersMixin<LeasesThis> = {
	name: "users",
	actions: {
		openChatHold: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: {
				holdId: holdIdParam,
				userId: { type: "string", min: 1, max: 128 },
				keyId: { type: "string", max: 64, optional: true, nullable: true },
				ttlMs: ttlParam
			},
			async handler(
				this: LeasesThis,
				ctx: Context<{ holdId: string; userId: string; keyId?: string | null; ttlMs: number }>
			) {
				const p = ctx.params;
				await this.leases.open({
					holdId: p.holdId,
					userId: p.userId,
					keyId: p.keyId ?? null,
					nodeId: ctx.nodeID ?? "unknown",
					ttlMs: p.ttlMs
				});
				return { ok: true };
			}
		},

		/** Renews a node's leases at once; `lost`: those already swept (the node stops them). */
		renewChatHolds: {
			visibility: INTERNAL,
			params: { holdIds: { type: "array", items: holdIdParam, max: 10_000 }, ttlMs: ttlParam },
			async handler(this: LeasesThis, ctx: Context<{ holdIds: string[]; ttlMs: number }>) {
				return { lost: await this.leases.renew(ctx.params.holdIds, ctx.params.ttlMs) };
			}
		},

		recordChatHoldCost: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: {
				holdId: holdIdParam,
				cost: { type: "number", integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }
			},
			async handler(this: LeasesThis, ctx: Context<{ holdId: string; cost: number }>) {
				return { recorded: await this.leases.recordCost(ctx.params.holdId, ctx.params.cost) };
			}
		},

		dropChatHold: {
			visibility: INTERNAL,
			retryPolicy: { enabled: true },
			params: { holdId: holdIdParam },
			async handler(this: LeasesThis, ctx: Context<{ holdId: string }>) {
				await this.leases.drop(ctx.params.holdId);
				return { ok: true };
			}
		},

		/** One sweep now (tests, operators). */
		sweepChatHolds: {
			visibility: INTERNAL,
			async handler(this: LeasesThis) {
				return { swept: await this.sweepLeases() };
			}
		}
	},

	created(this: LeasesThis) {
		const rt = runtimeOf(this.broker);
		this.leases = new HoldLeaseStore(rt.sequelize, rt.config.dbNamedStatements);
		this.sweepLeases = () =>
			sweepExpiredLeases({
				store: this.leases,
				settleCredits: async (userId, holdId, cost) =>
					void (await this.broker.call("payments.settle", { userId, taskId: holdId, actualCost: cost })),
				releaseCredits: async (userId, holdId) =>
					void (await this.broker.call("payments.release", { userId, taskId: holdId })),
				settleKey: async (holdId, credits) => void (await this.store.settleKeyBudget(holdId, credits)),
				warn: (msg, detail) => this.logger.warn(msg, detail)
			});
		this.leaseSweep = null;
		this.leaseSweeping = null;
	},

	started(this: LeasesThis) {
		const every = this.cfg.chatHoldSweepMs;
		if (every <= 0) return;
		this.leaseSweep = setInterval(() => {
			if (this.leaseSweeping) return;
			this.leaseSweeping = this.sweepLeases()
				.then(n => {
					if (n) this.logger.info(`released or settled ${n} hold(s) of dead ai nodes`);
				})
				.catch(err => this.logger.warn("chat hold sweep failed", (err as Error).message))
				.finally(() => (this.leaseSweeping = null));
		}, every);
		this.leaseSweep.unref();
	},

	async stopped(this: LeasesThis) {
		if (this.leaseSweep) clearInterval(this.leaseSweep);
		await this.leaseSweeping;
	}
};
