/**
 * The past-due notice by mail: payments publishes the durable `billing.past_due` once per episode,
 * the users service mails it through the account mailer (the dev outbox here) to the payer, or to
 * an organisation's owners, admins and billing members.
 */
import { randomUUID } from "node:crypto";
import { QueryTypes } from "sequelize";
import { startStripePlatform, type StripePlatform } from "../../support/stripe-platform";
import { eventually, uniqueId } from "../../support/env";
import { signUp } from "../../support/sign-up";
import { apiCaller, webhookSender } from "../../support/billing-http";
import { StripeFake } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

let platform: StripePlatform;
let node: ForgeNode & { baseUrl: string };
let fake: StripeFake;

type Json = Record<string, any>; // response bodies are checked field by field
const call = apiCaller(() => node.baseUrl);
const send = webhookSender(
	() => fake,
	() => node.baseUrl
);
const SUBJECT = "A ForgeFluid plan payment failed";

beforeAll(async () => {
	platform = await startStripePlatform(["api", "users", "payments", "orgs"], {
		BILLING_PAST_DUE_GRACE_S: "86400"
	});
	({ fake, node } = platform);
});
afterAll(() => platform?.close());

const drain = () => node.broker.call("payments.processStripeInbox", {});

async function person() {
	const email = `${uniqueId("billing")}@example.com`;
	const u = await signUp(node, email, "correct horse battery staple 42");
	return { email, id: u.userId, token: u.accessToken };
}

const mailsTo = async (email: string) => {
	const box = await call("GET", `/dev/outbox?to=${encodeURIComponent(email)}`);
	return ((box.json?.items ?? []) as Json[]).filter(m => m.subject === SUBJECT);
};

/** A plan bought through Checkout, then Stripe reports its renewal failing (twice: Stripe retries). */
async function pastDue(token: string, orgId?: string) {
	const q = orgId ? `?orgId=${orgId}` : "";
	const c = await call("POST", `/billing/checkout${q}`, { token, body: { kind: "plan", itemId: "team" } });
	expect(c.status).toBe(201);
	fake.completeSession(c.json.sessionId);
	const subId = fake.sessions.get(c.json.sessionId)!.subscription as string;
	await send(fake.subscriptionEvent(subId, { type: "customer.subscription.created" }));
	const first = fake.subscriptionEvent(subId, { status: "past_due" });
	const retry = fake.subscriptionEvent(subId, { status: "past_due" });
	for (const e of [retry, first, first, retry]) await send(e);
	await drain();
	return { first, retry };
}

test("a user payer is mailed once, with the date the plan holds until", async () => {
	const alice = await person();
	const { first, retry } = await pastDue(alice.token);
	await eventually(async () => (await mailsTo(alice.email)).length > 0, 15_000);
	const [mail, ...more] = await mailsTo(alice.email);
	expect(more).toEqual([]);
	expect(mail.text).toContain("team plan of your account");
	const [sub] = await node.runtime.sequelize.query<{ past_due_since: Date }>(
		`SELECT past_due_since FROM stripe_subscriptions WHERE user_id = $1`,
		{ bind: [alice.id], type: QueryTypes.SELECT }
	);
	// The stored start is the earliest past-due event's, whatever the delivery order; the mail, sent
	// when the first past-due event was processed, dates the grace end from that event (the retry is
	// delivered first here, but the inbox may process the two in either order).
	const graceEnd = (createdS: number) => new Date(createdS * 1000 + 86_400_000).toISOString();
	expect(new Date(sub.past_due_since).toISOString()).toBe(new Date(first.created * 1000).toISOString());
	expect([graceEnd(first.created), graceEnd(retry.created)].some(d => mail.text.includes(d))).toBe(true);
	expect(mail.links).toContain(`${node.config.users.mail.appUrl}/billing`);
});

test("an organisation payer: its owners and billing members are mailed, a plain member is not", async () => {
	const [owner, billing, member] = [await person(), await person(), await person()];
	const orgId = randomUUID();
	const sql = (q: string, bind: unknown[]) => node.runtime.sequelize.query(q, { bind });
	await sql(`INSERT INTO orgs (id, name, created_by) VALUES ($1, 'Globex', $2)`, [orgId, owner.id]);
	for (const [p, role] of [
		[owner, "owner"],
		[billing, "billing"],
		[member, "member"]
	] as const)
		await sql(`INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3)`, [orgId, p.id, role]);
	await pastDue(billing.token, orgId);
	await eventually(
		async () => (await mailsTo(owner.email)).length > 0 && (await mailsTo(billing.email)).length > 0,
		15_000
	);
	for (const p of [owner, billing]) {
		const mails = await mailsTo(p.email);
		expect(mails).toHaveLength(1);
		expect(mails[0].text).toContain("the organisation Globex");
		expect(mails[0].links).toContain(`${node.config.users.mail.appUrl}/billing?orgId=${orgId}`);
	}
	expect(await mailsTo(member.email)).toEqual([]);
});
