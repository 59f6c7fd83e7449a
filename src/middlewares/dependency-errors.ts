/**
 * Connection errors of the drivers (Sequelize/pg, ioredis, amqplib, nats) leave an action as a 503
 * `DEPENDENCY_UNAVAILABLE`, never as the driver's own error (which the gateway could only call a 500).
 * Not retryable: every replica shares the dependency, so another attempt elsewhere costs time and
 * finds it down too; the caller's Retry-After says when to come back.
 */
import { Errors } from "moleculer";
import type { Context, Middleware } from "moleculer";
import { isDependencyDown } from "../runtime/dependency-policy";
import { DomainError } from "../errors";

export class DependencyUnavailableError extends Errors.MoleculerError {
	constructor(cause: unknown) {
		super("A dependency of this service is unavailable; try again shortly", 503, "DEPENDENCY_UNAVAILABLE", {
			cause: String((cause as Error)?.message ?? cause).slice(0, 200)
		});
		this.name = "DependencyUnavailableError";
	}
}

export function asDependencyError(err: unknown): unknown {
	if (err instanceof Errors.MoleculerError || err instanceof DomainError) return err;
	return isDependencyDown(err) ? new DependencyUnavailableError(err) : err;
}

export const DependencyErrorsMiddleware: Middleware = {
	name: "DependencyErrors",
	localAction(next) {
		const handler = next as (ctx: Context) => Promise<unknown>;
		return function mapDependencyErrors(ctx: Context) {
			return handler(ctx).catch(err => {
				throw asDependencyError(err);
			});
		};
	}
} as Middleware;
