/**
 * The one place where the domain's errors meet Moleculer: a DomainError thrown by an action (its
 * handler, hooks or the domain code under it) leaves the node as a Moleculer error with the same
 * status, code, message and details, so it crosses the transporter intact and Moleculer's breaker,
 * retry and the gateway read it as they read any Moleculer error (5xx: a retryable server error).
 */
import { Errors, type Middleware } from "moleculer";
import { DomainError } from "../errors";

export function toMoleculerError(err: unknown): unknown {
	if (!(err instanceof DomainError)) return err;
	if (err.status >= 500) return new Errors.MoleculerServerError(err.message, err.status, err.code, err.details);
	return new Errors.MoleculerClientError(err.message, err.status, err.code, err.details);
}

export const DomainErrorMiddleware: Middleware = {
	name: "DomainErrors",
	localAction(nextHandler) {
		const next = nextHandler as (ctx: unknown) => Promise<unknown>;
		return function mapDomainErrors(ctx: unknown) {
			try {
				return Promise.resolve(next(ctx)).catch(err => {
					throw toMoleculerError(err);
				});
			} catch (err) {
				throw toMoleculerError(err);
			}
		};
	}
};
