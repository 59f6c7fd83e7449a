import { IncomingMessage, ServerResponse } from "node:http";
import { Socket } from "node:net";
import { applyEdgeHeaders, rateLimitHeaders } from "../../../src/http/edge";
import { loadConfig } from "../../../src/config";

/** The headers applyEdgeHeaders (helmet plus Cache-Control) sets on a fresh response. */
function edgeHeaders(edge: { path: string; credentials: boolean; https: boolean }) {
	const req = new IncomingMessage(new Socket());
	const res = new ServerResponse(req);
	applyEdgeHeaders(req, res, edge);
	return res.getHeaders();
}

test("HSTS only over https; no-store on token and authenticated answers; the docs page's own CSP", () => {
	const plain = edgeHeaders({ path: "/api/v1/billing/prices", credentials: false, https: false });
	expect(plain["strict-transport-security"]).toBeUndefined();
	expect(plain["cache-control"]).toBeUndefined();
	expect(plain["x-content-type-options"]).toBe("nosniff");
	expect(plain["referrer-policy"]).toBe("no-referrer");
	expect(plain["x-frame-options"]).toBe("DENY");
	expect(plain["content-security-policy"]).toBe(
		"default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'"
	);
	expect(edgeHeaders({ path: "/api/v1/x", credentials: false, https: true })["strict-transport-security"]).toBe(
		"max-age=31536000; includeSubDomains"
	);
	expect(edgeHeaders({ path: "/api/v1/auth/login", credentials: false, https: false })["cache-control"]).toBe(
		"no-store"
	);
	expect(edgeHeaders({ path: "/api/v1/tasks", credentials: true, https: false })["cache-control"]).toBe("no-store");
	expect(edgeHeaders({ path: "/api/docs", credentials: false, https: false })["content-security-policy"]).toMatch(
		/^default-src 'self';.*frame-ancestors 'none'/
	);
});

test("RateLimit fields: one item per policy", () => {
	expect(rateLimitHeaders([])).toEqual({});
	expect(
		rateLimitHeaders([
			{ name: "user", quota: 600, windowS: 60, remaining: 599, resetS: 59.2 },
			{ name: "route", quota: 20, windowS: 60, remaining: -1, resetS: 3 }
		])
	).toEqual({
		"RateLimit-Policy": '"user";q=600;w=60, "route";q=20;w=60',
		RateLimit: '"user";r=599;t=60, "route";r=0;t=3'
	});
});

test("CORS: any origin in embedded mode only; a cluster lists its origins", () => {
	expect(loadConfig({}).http.corsOrigins).toEqual(["*"]);
	const cluster = {
		TRANSPORTER: "nats://127.0.0.1:4222",
		DATABASE_URL: "postgres://x@127.0.0.1/x",
		REDIS_URL: "redis://127.0.0.1:6379",
		AMQP_URL: "amqp://127.0.0.1",
		JWT_KEYS: "k1:0123456789abcdef0123456789abcdef0123456789"
	};
	expect(loadConfig(cluster).http.corsOrigins).toEqual([]);
	expect(loadConfig({ ...cluster, CORS_ORIGINS: "https://app.example.com" }).http.corsOrigins).toEqual([
		"https://app.example.com"
	]);
	expect(() => loadConfig({ ...cluster, CORS_ORIGINS: "*" })).toThrow(/CORS_ORIGINS/);
});
