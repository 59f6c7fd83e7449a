/**
 * The ForgeFluid node of bench/compat, in its own process (as LiteLLM's proxy is), so the SDK
 * clients and the fake upstream of the parent do not share its event loop: gateway, users, payments
 * and ai on a fresh database, PostgreSQL and Redis; an enterprise user with credits and an API key
 * with `ai:use`. Prints one line `READY {"baseUrl","key","db":{"url","name"}}` on stdout (the database:
 * for its backends' CPU); stops and drops its database
 * when its standard input closes (the parent ended) or on SIGTERM.
 * Env: BENCH_FAKE_URL (the fake OpenAI upstream, required).
 */
import { Client } from "pg";
import { createTestDatabase, startTestNode } from "../../test/support/env";

async function main() {
	const upstream = process.env.BENCH_FAKE_URL;
	if (!upstream) throw new Error("BENCH_FAKE_URL is required");
	const db = await createTestDatabase("ff_bench");
	const node = await startTestNode({
		db,
		services: ["api", "users", "payments", "ai"],
		env: {
			AI_DEPLOYMENTS: JSON.stringify([
				{ id: "oa", model: "gpt-4o-mini", provider: "openai", baseUrl: upstream, apiKey: "sk" }
			]),
			AI_DEV_PROVIDER: "false",
			AI_CONCURRENCY: "1000",
			RATE_LIMIT_PER_MINUTE: "1000000",
			LOG_LEVEL: "error"
		}
	});
	let stopping = false;
	const stop = async () => {
		if (stopping) return;
		stopping = true;
		await node.stop().catch(() => undefined);
		await db.drop().catch(() => undefined);
		process.exit(0);
	};
	process.on("SIGTERM", () => void stop());
	process.stdin.on("end", () => void stop());
	process.stdin.resume();
	const post = (path: string, body: unknown, token?: string) =>
		fetch(`${node.baseUrl}/api/v1${path}`, {
			method: "POST",
			headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
			body: JSON.stringify(body)
		}).then(r => r.json() as Promise<Record<string, string>>);
	const account = { email: "bench@example.com", password: "correct horse battery staple" };
	await post("/auth/register", account); // 202, no tokens
	const reg = await post("/auth/login", account);
	const me = (await (
		await fetch(`${node.baseUrl}/api/v1/users/me`, { headers: { authorization: `Bearer ${reg.accessToken}` } })
	).json()) as { id: string };
	// Enterprise: its rate limits do not cap the bench.
	const pg = new Client({ connectionString: db.url });
	await pg.connect();
	await pg.query(`INSERT INTO user_tier_facts (user_id, plan_tier, plan_as_of) VALUES ($1, 'enterprise', now())`, [
		me.id
	]);
	await pg.end();
	await node.broker.call("payments.grant", {
		userId: me.id,
		credits: 100_000_000,
		operator: "bench",
		reason: "bench",
		source: "paid"
	});
	const key = (await post("/users/me/api-keys", { name: "bench", scopes: ["ai:use"] }, reg.accessToken)).key;
	process.stdout.write(
		`READY ${JSON.stringify({ baseUrl: node.baseUrl, key, db: { url: db.url, name: db.name } })}\n`
	);
}

void main().catch(err => {
	console.error(err);
	process.exit(1);
});
