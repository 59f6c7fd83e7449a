/**
 * Container health probe: exits 0 when the node's readiness endpoint answers 200, 1 otherwise.
 *
 *   node dist/bin/healthcheck.js [url]
 *
 * Why a script: the runtime image (node:*-slim) has neither curl nor wget, and one image serves every
 * role. Without an argument the target follows the node's own settings: a worker serves its health on
 * HEALTH_PORT, a gateway on PORT (see services/ops.service.ts and services/api.service.ts).
 */
import http from "node:http";

export const HEALTH_ROUTES = { live: "/health/live", ready: "/health/ready" } as const;

/** The URL a probe of this node should hit, derived from the same variables the config reads. */
export function healthTarget(
	env: Record<string, string | undefined>,
	route: keyof typeof HEALTH_ROUTES = "ready"
): string {
	const health = Number((env.HEALTH_PORT ?? "").trim() || 0);
	const port = health > 0 ? health : Number((env.PORT ?? "").trim() || 3000);
	return `http://127.0.0.1:${port}${HEALTH_ROUTES[route]}`;
}

export function probe(url: string, timeoutMs = 4000): Promise<boolean> {
	return new Promise(resolve => {
		const req = http.get(url, { timeout: timeoutMs }, res => {
			res.resume();
			resolve(res.statusCode === 200);
		});
		req.on("timeout", () => req.destroy(new Error("timeout")));
		req.on("error", () => resolve(false));
	});
}

if (require.main === module) {
	const url = process.argv[2] || healthTarget(process.env);
	void probe(url).then(ok => process.exit(ok ? 0 : 1));
}
