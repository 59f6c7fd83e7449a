/**
 * Metrics in cluster mode: served on METRICS_PORT and not on the API port, without the host's
 * identity, with the payments families, and `promtool check metrics` clean for the project's own
 * families on a live scrape (promtool is Debian's `prometheus` package; .ci/run installs it).
 */
import { spawnSync } from "node:child_process";
import os from "node:os";
import { namesHost } from "../../support/host-name";
import { createTestDatabase, freePort, NATS_URL, startTestNode, type TestDatabase } from "../../support/env";
import { fakeAiWorker } from "../../support/fake-ai-worker";
import { startStripeFake, type StripeFake } from "../../support/stripe-fake";
import { api, readSse } from "../tasks/helpers";
import { signUp } from "../../support/sign-up";

const PROMTOOL = process.env.PROMTOOL ?? "promtool";
/** Moleculer's built-in families; everything else on the page is the project's own. */
const BUILT_IN = /^(moleculer|os|process)_/;
/** Moleculer's own names promtool objects to (docs/metrics.md says why they stay). */
const KNOWN_BUILT_IN_NAMES = [
	"moleculer_transporter_packets_sent_bytes",
	"moleculer_transporter_packets_received_bytes",
	"moleculer_request_levels",
	"moleculer_registry_nodes_total",
	"moleculer_registry_nodes_online_total",
	"moleculer_registry_services_total",
	"moleculer_registry_service_endpoints_total",
	"moleculer_registry_actions_total",
	"moleculer_registry_action_endpoints_total",
	"moleculer_registry_events_total",
	"moleculer_registry_event_endpoints_total",
	"moleculer_broker_local_services_total",
	"moleculer_broker_middlewares_total"
];

let db: TestDatabase;
let stripe: StripeFake;
let node: Awaited<ReturnType<typeof startTestNode>>;
let metricsPort: number;

const scrape = () =>
	fetch(`http://127.0.0.1:${metricsPort}/metrics`).then(async r => ({ status: r.status, text: await r.text() }));

/** The families (HELP/TYPE headers and samples) whose names `keep` accepts. */
function families(text: string, keep: (name: string) => boolean): string {
	return (
		text
			.split("\n")
			.filter(line => {
				if (!line) return false;
				const name = line.startsWith("# ") ? line.split(" ")[2] : line.split(/[{ ]/)[0];
				return keep(name.replace(/_(bucket|sum|count)$/, ""));
			})
			.join("\n") + "\n"
	);
}

beforeAll(async () => {
	db = await createTestDatabase();
	stripe = await startStripeFake();
	metricsPort = await freePort();
	node = await startTestNode({
		db,
		services: ["api", "users", "payments", "tasks", "projects"],
		extraServices: [fakeAiWorker({ runMs: 100, deltas: 2 })],
		env: {
			TRANSPORTER: NATS_URL,
			METRICS_PORT: String(metricsPort),
			AUTH_SESSION_CHECK: "true",
			...stripe.env(),
			STRIPE_INBOX_POLL_MS: "60000"
		}
	});
	expect(node.config.transporter).toBeTruthy();

	// Some of everything: a session, a task held and settled, a Stripe event, a reconciliation that finds a miss.
	const reg = await signUp(node, `metrics_${Date.now()}@example.com`, "correct horse battery staple");
	const token = reg.accessToken;
	const project = await api(node, "POST", "/projects", token, { name: "metrics" });
	await node.broker.call("payments.grant", {
		userId: reg.userId,
		credits: 100_000,
		operator: "test",
		reason: "test credits",
		key: `grant-${reg.userId}`
	});
	const task = await api(node, "POST", "/tasks", token, { projectId: project.body.id, kind: "chat", prompt: "hi" });
	expect(task.status).toBe(202);
	await readSse(node.baseUrl, `/tasks/${task.body.task.id}/events`, token, { until: e => e.event === "completed" });

	const delivered = stripe.event("customer.created", { id: "cus_metrics", object: "customer" });
	const { body, signature } = stripe.signed(delivered);
	const hook = await fetch(`${node.baseUrl}/api/v1/billing/stripe/webhook`, {
		method: "POST",
		headers: { "content-type": "application/json", "stripe-signature": signature },
		body
	});
	expect(hook.status).toBe(200);
	await node.broker.call("payments.processStripeInbox", {});
	stripe.event("customer.updated", { id: "cus_metrics", object: "customer" }); // never delivered by webhook
	await node.broker.call("payments.reconcileStripe", {});
}, 60_000);

afterAll(async () => {
	await node?.stop();
	await stripe?.stop();
	await db?.drop();
});

test("cluster mode: /metrics is not on the API port; METRICS_PORT serves it", async () => {
	const onApi = await fetch(`${node.baseUrl}/metrics`);
	expect(onApi.status).toBe(404);
	const page = await scrape();
	expect(page.status).toBe(200);
	expect(page.text).toMatch(/^moleculer_request_total\{/m);
});

test("no host identity: user, host name, addresses, MACs, process arguments", async () => {
	const { text } = await scrape();
	expect(text).not.toMatch(/^(os_hostname|os_user_|os_network_|process_arguments|process_pid|process_ppid)/m);
	expect(text).not.toMatch(/node_?id="/i);
	expect(namesHost(text)).toBe(false);
	expect(text).not.toContain(`"${os.userInfo().username}"`);
	expect(text).not.toMatch(/([0-9a-f]{2}:){5}[0-9a-f]{2}/i);
	for (const addrs of Object.values(os.networkInterfaces()))
		for (const a of addrs ?? []) if (!a.internal) expect(text).not.toContain(a.address);
});

test("payments: holds, settlements, Stripe events by type and outcome, reconciliation drift", async () => {
	const { text } = await scrape();
	expect(text).toMatch(/^payments_holds_total\{[^}]*event="placed"[^}]*\} 1$/m);
	expect(text).toMatch(/^payments_holds_total\{[^}]*event="settled"[^}]*\} 1$/m);
	expect(text).toMatch(/^payments_settled_credits_total\{[^}]*\} [1-9]\d*$/m);
	// The delivered event and the one reconciliation fetched: both of a type billing ignores.
	expect(text).toMatch(/^payments_stripe_events_total\{[^}]*type="other",outcome="ignored"[^}]*\} 2$/m);
	expect(text).toMatch(/^payments_stripe_reconcile_runs_total\{[^}]*\} 1$/m);
	expect(text).toMatch(/^payments_stripe_reconcile_missed_total\{[^}]*\} 1$/m);
	expect(text).toMatch(/^payments_stripe_reconcile_drift_events\{[^}]*\} 1$/m);
	expect(text).toMatch(/^# HELP payments_stripe_events_total \S/m);
});

test("the project's own families pass promtool check metrics; every family has help text", async () => {
	const { text } = await scrape();
	const own = families(text, name => !BUILT_IN.test(name));
	expect(own).toMatch(/^tasks_queue_wait_seconds_bucket\{/m);
	expect(own).toMatch(/^payments_holds_total\{/m);
	// Timings and sizes in base units.
	for (const [, family, type] of own.matchAll(/^# TYPE (\S+) (histogram|summary)$/gm))
		expect([family, type, /_(seconds|bytes)$/.test(family)]).toEqual([family, type, true]);
	const version = spawnSync(PROMTOOL, ["--version"], { encoding: "utf8" });
	if (version.error)
		throw new Error(`${PROMTOOL} not found: install Debian's prometheus package (.ci/run does), or set PROMTOOL`);
	const check = spawnSync(PROMTOOL, ["check", "metrics"], { input: own, encoding: "utf8" });
	expect(`${check.stdout}${check.stderr}`.trim()).toBe("");
	expect(check.status).toBe(0);

	// The whole page: promtool's only complaints are the Moleculer built-in names listed in docs/metrics.md.
	const page = spawnSync(PROMTOOL, ["check", "metrics"], { input: text, encoding: "utf8" });
	const problems = `${page.stdout}${page.stderr}`.trim().split("\n").filter(Boolean);
	for (const p of problems) expect(KNOWN_BUILT_IN_NAMES).toContain(p.split(" ")[0]);
	// A quantile label only inside a summary (Moleculer's latency histograms without buckets are rendered as summaries).
	const types = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(m => [m[1], m[2]]));
	for (const [, family] of text.matchAll(/^(\w+)\{[^}]*quantile="/gm)) expect(types.get(family)).toBe("summary");
	expect(text).not.toMatch(/^\w+_(rate|min|mean|variance|stddev|max)\{/m);
});
