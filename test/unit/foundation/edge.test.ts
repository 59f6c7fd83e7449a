import { edgeHeaders, rateLimitHeaders } from "../../../src/http/edge";
import { loadConfig } from "../../../src/config";

test("HSTS only over https; no-store on token and authenticated answers; the docs page's own CSP", () => {
	const plain = edgeHeaders({ path: "/api/v1/billing/prices", credentials: false, https: false });
	expect(plain["Strict-Transport-Security"]).toBeUndefined();
	expect(plain["Cache-Control"]).toBeUndefined();
	expect(plain["X-Content-Type-Options"]).toBe("nosniff");
	expect(plain["Content-Security-Policy"]).toMatch(/^default-src 'none'.*frame-ancestors 'none'/);
	expect(edgeHeaders({ path: "/api/v1/x", credentials: false, https: true })["Strict-Transport-Security"]).toMatch(
		/^max-age=\d+/
	);
	expect(edgeHeaders({ path: "/api/v1/auth/login", credentials: false, https: false })["Cache-Control"]).toBe(
		"no-store"
	);
	expect(edgeHeaders({ path: "/api/v1/tasks", credentials: true, https: false })["Cache-Control"]).toBe("no-store");
	expect(edgeHeaders({ path: "/api/docs", credentials: false, https: false })["Content-Security-Policy"]).toMatch(
		/^default-src 'self'.*frame-ancestors 'none'/
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
