/** Structured log line per failed local action, tagged with the request id that the gateway assigned. */
import { Middleware } from "moleculer";

export const RequestLogMiddleware: Middleware = {
	name: "RequestLog",
	localAction(nextHandler, action) {
		// The gateway's own request handler reports its failures itself (with the request id).
		if (action.name === "api.rest") return nextHandler;
		const next = nextHandler as (ctx: import("moleculer").Context) => Promise<unknown>;
		return function logFailures(ctx) {
			return next(ctx).catch((err: { code?: number; name?: string; message?: string; stack?: string }) => {
				const code = typeof err?.code === "number" ? err.code : 500;
				// 503s are expected states (a dependency down, a provider not configured): a warning, no stack.
				if (code === 503)
					ctx.service?.logger.warn(
						{ requestId: ctx.requestID, action: action.name, err: err?.name },
						`action ${action.name} unavailable: ${err?.message}`
					);
				else if (code >= 500 || !code)
					ctx.service?.logger.error(
						{
							requestId: ctx.requestID,
							action: action.name,
							caller: ctx.caller,
							err: err?.name,
							stack: err?.stack
						},
						`action ${action.name} failed: ${err?.message}`
					);
				throw err;
			});
		};
	}
};
