/** Fixture services for foundation tests: a validated, authenticated echo and a durable-event ledger. */
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "moleculer";
import type { RouteSpec } from "../../src/http/route-spec";
import { durableEvents, type DurableThis } from "../../mixins/durable-events.mixin";
import { runtimeOf } from "../../src/runtime/runtime";
import { Type } from "../../src/http/schema";

/** The probe routes answer whatever each test makes them echo: no shape is promised. */
export const PROBE_BODY = Type.Unknown();

export const PROBE_ROUTES: RouteSpec[] = [
	{
		method: "POST",
		path: "/probe/echo",
		action: "probe.echo",
		response: PROBE_BODY,
		auth: "required",
		summary: "Echo",
		tag: "probe"
	},
	{
		method: "GET",
		path: "/probe/whoami",
		action: "probe.whoami",
		response: PROBE_BODY,
		auth: "optional",
		summary: "Who am I",
		tag: "probe"
	},
	{
		method: "GET",
		path: "/probe/admin",
		action: "probe.admin",
		response: PROBE_BODY,
		auth: "required",
		permissions: ["admin"],
		summary: "Admin only",
		tag: "probe"
	},
	{
		method: "GET",
		path: "/probe/fail",
		action: "probe.fail",
		response: PROBE_BODY,
		auth: "none",
		summary: "Always fails",
		tag: "probe"
	},
	{
		method: "GET",
		path: "/probe/missing",
		action: "absent.action",
		response: PROBE_BODY,
		auth: "none",
		summary: "Nobody serves this",
		tag: "probe"
	},
	{
		method: "POST",
		path: "/probe/created",
		action: "probe.created",
		response: PROBE_BODY,
		auth: "none",
		status: 201,
		summary: "Creates",
		tag: "probe",
		idempotent: true
	}
];

export const ProbeService: ServiceSchema = {
	name: "probe",
	actions: {
		echo: {
			params: {
				name: { type: "string", min: 1, max: 20 },
				count: { type: "number", integer: true, min: 0, max: 10 },
				tags: { type: "array", items: "string", optional: true, max: 3 }
			},
			handler(ctx: Context<{ name: string; count: number }, { user?: { id: string } }>) {
				return {
					name: ctx.params.name,
					count: ctx.params.count,
					user: ctx.meta.user?.id,
					nodeID: this.broker.nodeID
				};
			}
		},
		whoami: {
			retryPolicy: { enabled: true },
			handler(ctx: Context<unknown, { user?: { id: string } | null }>) {
				return { user: ctx.meta.user?.id ?? null, nodeID: this.broker.nodeID };
			}
		},
		admin: {
			permissions: ["admin"],
			handler() {
				return { ok: true };
			}
		},
		fail() {
			throw new Error("internal detail that must not leak");
		},
		created: {
			params: { title: "string|min:1|max:50" },
			handler(ctx: Context<{ title: string }, { idempotencyKey?: string }>) {
				return { title: ctx.params.title, idempotencyKey: ctx.meta.idempotencyKey ?? null };
			}
		},
		internalOnly: {
			visibility: "protected",
			handler() {
				return { secret: true };
			}
		}
	}
};

/** A ledger that applies "ledger.credit" events; counts each application so tests can see duplicates. */
export function ledgerFixture(opts: { failTimes?: number; failAlways?: boolean } = {}): ServiceSchema {
	let failures = 0;
	return {
		name: "ledgerfx",
		mixins: [
			durableEvents({
				group: "ledgerfx",
				handlers: {
					"fixture.credit": async function (
						this: { broker: import("moleculer").ServiceBroker },
						payload: { account: string; amount: number },
						{ tx }
					) {
						if (opts.failAlways || failures < (opts.failTimes ?? 0)) {
							failures++;
							throw new Error("consumer failure (fixture)");
						}
						await runtimeOf(this.broker).sequelize.query(
							`INSERT INTO fixture_balances (account, amount, applications) VALUES ($1, $2, 1)
							 ON CONFLICT (account) DO UPDATE SET amount = fixture_balances.amount + $2, applications = fixture_balances.applications + 1`,
							{ bind: [payload.account, payload.amount], transaction: tx }
						);
					}
				}
			})
		],
		actions: {
			credit: {
				params: { account: "string", amount: "number|integer" },
				async handler(
					this: { publishDurable: DurableThis["publishDurable"]; broker: import("moleculer").ServiceBroker },
					ctx: Context<{ account: string; amount: number }>
				) {
					const seq = runtimeOf(this.broker).sequelize;
					return seq.transaction(async tx => {
						const ev = await this.publishDurable(tx, "fixture.credit", ctx.params);
						return { eventId: ev.id };
					});
				}
			}
		},
		async started(this: { broker: import("moleculer").ServiceBroker }) {
			await runtimeOf(this.broker).sequelize.query(
				`CREATE TABLE IF NOT EXISTS fixture_balances (account TEXT PRIMARY KEY, amount BIGINT NOT NULL, applications INT NOT NULL)`
			);
		}
	} as unknown as ServiceSchema;
}

export const ServerError = Errors.MoleculerServerError;
