/**
 * Seats (issue 19 part 3) end to end: an organisation's team subscription (bought through Checkout
 * against the Stripe fake) follows the member count through invitations accepted, members removed and
 * members leaving, with proration; replayed subscription events change nothing more; an organisation
 * without a team subscription pays no seats.
 */
import { QueryTypes } from "sequelize";
import { startStripePlatform, type StripePlatform } from "../../support/stripe-platform";
import { eventually } from "../../support/env";
import { orgPeople, type Person } from "../../support/org-people";
import { httpClient } from "../users/http";
import { apiCaller, webhookSender } from "../../support/billing-http";
import { StripeFake } from "../../support/stripe-fake";
import type { ForgeNode } from "../../../app/node";

let platform: StripePlatform;
let node: ForgeNode & { baseUrl: string };
let fake: StripeFake;

const call = apiCaller(() => node.baseUrl);
const { outboxToken, person, newOrg, join } = orgPeople(
	httpClient(() => node.baseUrl),
	{ prefix: "seat", password: "correct horse battery staple 42" }
);
const send = webhookSender(
	() => fake,
	() => node.baseUrl
);

beforeAll(async () => {
	platform = await startStripePlatform(["api", "users", "payments", "orgs"]);
	({ fake, node } = platform);
});
afterAll(() => platform?.close());

const drain = () => node.broker.call("payments.processStripeInbox", {});

/** A team plan bought through Checkout for the organisation, and Stripe's `created` event of it. */
async function teamPlan(orgId: string, owner: Person): Promise<string> {
	const c = await call("POST", `/billing/checkout?orgId=${orgId}`, {
		token: owner.token,
		body: { kind: "plan", itemId: "team" }
	});
	expect(c.status).toBe(201);
	fake.completeSession(c.json.sessionId);
	const subId = fake.sessions.get(c.json.sessionId)!.subscription as string;
	await send(fake.subscriptionEvent(subId, { type: "customer.subscription.created" }));
	await drain();
	return subId;
}

const quantityOf = (subId: string) =>
	Number((fake.subscriptions.get(subId)!.items as { data: Array<{ quantity: number }> }).data[0].quantity);
/** Every seat event about the organisation published so far has been consumed by payments. */
const seatEventsConsumed = (orgId: string) =>
	eventually(async () => {
		const [r] = await node.runtime.sequelize.query<{ pending: string }>(
			`SELECT count(*)::text AS pending FROM outbox_events o
			 WHERE o.topic IN ('payments.seats.sync', 'orgs.members.changed') AND o.payload->>'orgId' = $1
			   AND NOT EXISTS (SELECT 1 FROM inbox_events i WHERE i.consumer = 'payments' AND i.event_id = o.event_id)`,
			{ bind: [orgId], type: QueryTypes.SELECT }
		);
		return r.pending === "0";
	}, 15_000);
const changesOf = (subId: string) => fake.quantityChanges.filter(c => c.subscription === subId);

test("the team subscription's quantity follows accept, remove and leave, prorated", async () => {
	const [owner, bob, carol] = [await person(), await person(), await person()];
	const orgId = await newOrg(owner);
	const subId = await teamPlan(orgId, owner);
	expect(quantityOf(subId)).toBe(1);

	await join(orgId, owner, bob);
	await eventually(() => quantityOf(subId) === 2, 15_000);
	await join(orgId, owner, carol);
	await eventually(() => quantityOf(subId) === 3, 15_000);

	expect((await call("DELETE", `/orgs/${orgId}/members/${carol.id}`, { token: owner.token })).status).toBe(200);
	await eventually(() => quantityOf(subId) === 2, 15_000);
	expect((await call("DELETE", `/orgs/${orgId}/members/${bob.id}`, { token: bob.token })).status).toBe(200); // bob leaves
	await eventually(() => quantityOf(subId) === 1, 15_000);

	expect(changesOf(subId)).toEqual([
		{ subscription: subId, from: 1, to: 2, prorated: true },
		{ subscription: subId, from: 2, to: 3, prorated: true },
		{ subscription: subId, from: 3, to: 2, prorated: true },
		{ subscription: subId, from: 2, to: 1, prorated: true }
	]);
	const keys = fake.requests
		.filter(r => r.method === "POST" && r.path === `/v1/subscriptions/${subId}`)
		.map(r => r.idempotencyKey);
	expect(keys.every(k => k?.startsWith(`ff-seats-${subId}-`))).toBe(true);

	// Each update's customer.subscription.updated, delivered (twice, reversed): the count is right already.
	const updates = fake.events.filter(e => e.type === "customer.subscription.updated" && e.data.object.id === subId);
	for (const e of [...updates].reverse()) await send(e);
	for (const e of updates) await send(e);
	await drain();
	await seatEventsConsumed(orgId);
	expect(quantityOf(subId)).toBe(1);
	expect(changesOf(subId)).toHaveLength(4);
});

test("a team subscription bought by an organisation that has members starts at its count", async () => {
	const [owner, dana] = [await person(), await person()];
	const orgId = await newOrg(owner);
	await join(orgId, owner, dana);
	const subId = await teamPlan(orgId, owner);
	await eventually(() => quantityOf(subId) === 2, 15_000);
	expect(changesOf(subId)).toEqual([{ subscription: subId, from: 1, to: 2, prorated: true }]);
});

test("an organisation without a team subscription pays no seats", async () => {
	const [owner, erin] = [await person(), await person()];
	const orgId = await newOrg(owner);
	const before = fake.requests.length;
	await join(orgId, owner, erin);
	await seatEventsConsumed(orgId);
	expect(fake.requests.slice(before).filter(x => x.path.startsWith("/v1/subscriptions"))).toEqual([]);
});

test("the seats event commits with the membership change, or neither does", async () => {
	const [owner, fay, gil] = [await person(), await person(), await person()];
	const orgId = await newOrg(owner);
	await join(orgId, owner, fay);
	const inv = await call("POST", `/orgs/${orgId}/invitations`, {
		token: owner.token,
		body: { email: gil.email, role: "member" }
	});
	expect(inv.status).toBe(201);
	const invitation = await outboxToken(gil.email, "/invitations/accept");
	const sql = <T extends object>(q: string, bind: unknown[] = []) =>
		node.runtime.sequelize.query<T>(q, { bind, type: QueryTypes.SELECT });
	const members = async () =>
		(await sql<{ user_id: string }>(`SELECT user_id FROM org_members WHERE org_id = $1`, [orgId]))
			.map(r => r.user_id)
			.sort();

	// The event cannot be written (as if the node died before publishing): the change does not happen either.
	const fn = `refuse_seat_event_${orgId.replace(/-/g, "")}`;
	await node.runtime.sequelize.query(
		`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
		   IF NEW.topic = 'orgs.members.changed' AND NEW.payload->>'orgId' = '${orgId}' THEN RAISE EXCEPTION 'no event'; END IF;
		   RETURN NEW; END $$;
		 CREATE TRIGGER ${fn} BEFORE INSERT ON outbox_events FOR EACH ROW EXECUTE FUNCTION ${fn}();`
	);
	try {
		const as = (p: Person) => ({ meta: { user: { id: p.id, role: "user" } } });
		await expect(node.broker.call("orgs.removeMember", { id: orgId, userId: fay.id }, as(owner))).rejects.toThrow();
		await expect(node.broker.call("orgs.acceptInvitation", { token: invitation }, as(gil))).rejects.toThrow();
		expect(await members()).toEqual([owner.id, fay.id].sort());
	} finally {
		await node.runtime.sequelize.query(`DROP TRIGGER ${fn} ON outbox_events; DROP FUNCTION ${fn}();`);
	}
	// Both go through once the event can be written; the invitation was not spent by the failed try.
	expect((await call("DELETE", `/orgs/${orgId}/members/${fay.id}`, { token: owner.token })).status).toBe(200);
	expect((await call("POST", "/invitations/accept", { token: gil.token, body: { token: invitation } })).status).toBe(
		200
	);
	expect(await members()).toEqual([owner.id, gil.id].sort());
	const [events] = await sql<{ n: string }>(
		`SELECT count(*)::text AS n FROM outbox_events WHERE topic = 'orgs.members.changed' AND payload->>'orgId' = $1`,
		[orgId]
	);
	expect(events.n).toBe("3"); // fay joined, fay removed, gil joined
	await seatEventsConsumed(orgId);
});
