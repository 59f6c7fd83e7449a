import {
	autoTopUpFailedMails,
	capReachedMails,
	lowBalanceMails,
	parseAutoTopUpFailed,
	parseCapReached,
	parseLowBalance,
	parsePastDueNotice,
	pastDueMails
} from "../../../src/users/billing-notice";
import { renderAccountMail } from "../../../src/users/mail-templates";

const USER = "6f1f3c1e-9d8b-4c55-a9f4-2f1f3c1e9d8b";
const ORG = "0d2c1b4a-1111-4222-8333-944455556666";
const notice = { payerId: USER, planTier: "team", graceEndsAt: "2026-12-09T00:00:00.000Z" };

describe("parsePastDueNotice", () => {
	test("accepts a user or organisation payer; refuses anything else", () => {
		expect(parsePastDueNotice({ ...notice, extra: 1 })).toEqual(notice);
		expect(parsePastDueNotice({ ...notice, payerId: `org:${ORG}` }).payerId).toBe(`org:${ORG}`);
		for (const bad of [
			null,
			{ ...notice, payerId: "alice" },
			{ ...notice, graceEndsAt: "soon" },
			{ ...notice, planTier: 3 }
		])
			expect(() => parsePastDueNotice(bad)).toThrow();
	});
});

describe("pastDueMails", () => {
	const emails: Record<string, string | null> = {
		u1: "a@example.com",
		u2: "a@example.com",
		u3: null,
		[USER]: "me@example.com"
	};
	const src = {
		billingContactsOf: async (orgId: string) =>
			orgId === ORG ? { name: "Acme", userIds: ["u1", "u2", "u3"] } : null,
		emailOf: async (id: string) => emails[id] ?? null,
		appUrl: "https://app.test"
	};

	test("a user payer: one mail to its address", async () => {
		expect(await pastDueMails(notice, src)).toEqual([
			[
				"me@example.com",
				{
					kind: "billingPastDue",
					planTier: "team",
					graceEndsAt: notice.graceEndsAt,
					orgName: null,
					link: "https://app.test/billing"
				}
			]
		]);
	});

	test("an organisation: one mail per distinct address of its billing contacts; none when it is gone", async () => {
		const mails = await pastDueMails({ ...notice, payerId: `org:${ORG}` }, src);
		expect(mails.map(([to]) => to)).toEqual(["a@example.com"]);
		expect(mails[0][1]).toMatchObject({ orgName: "Acme", link: `https://app.test/billing?orgId=${ORG}` });
		expect(await pastDueMails({ ...notice, payerId: "org:11111111-2222-4333-8444-555555555555" }, src)).toEqual([]);
	});

	test("the message names the plan, whose it is and the date; the organisation's name is escaped in HTML", () => {
		const m = renderAccountMail({
			kind: "billingPastDue",
			planTier: "team",
			graceEndsAt: notice.graceEndsAt,
			orgName: "<Acme>",
			link: "https://app.test/billing"
		});
		expect(m.text).toContain("team plan of the organisation <Acme>");
		expect(m.text).toContain(notice.graceEndsAt);
		expect(m.html).toContain("&lt;Acme&gt;");
		expect(m.html).not.toContain("<Acme>");
	});
});

describe("auto top-up failure notices", () => {
	const failed = { payerId: `org:${ORG}`, packId: "starter", reason: "authentication_required" };
	const src = {
		billingContactsOf: async () => ({ name: "Acme", userIds: ["u1"] }),
		emailOf: async () => "b@example.com",
		appUrl: "https://app.test"
	};

	test("parse: a payer, a pack id and a Stripe code; anything else is refused", () => {
		expect(parseAutoTopUpFailed({ ...failed, checkoutId: "x" })).toEqual(failed);
		for (const bad of [
			null,
			{ ...failed, payerId: "bob" },
			{ ...failed, reason: "DROP TABLE" },
			{ ...failed, packId: 1 }
		])
			expect(() => parseAutoTopUpFailed(bad)).toThrow();
	});

	test("mailed to the organisation's billing contacts; the message says why and that it is off", async () => {
		const [[to, mail]] = await autoTopUpFailedMails(failed, src);
		expect(to).toBe("b@example.com");
		expect(mail).toMatchObject({ kind: "billingAutoTopUpFailed", orgName: "Acme" });
		const m = renderAccountMail(mail);
		expect(m.subject).toBe("ForgeFluid auto top-up failed and was turned off");
		expect(m.text).toContain("starter credit pack for the organisation Acme");
		expect(m.text).toContain("asked for authentication");
		expect(m.text).toContain("Auto top-up is now off");
		expect(renderAccountMail({ ...mail, reason: "card_declined" } as typeof mail).text).toContain("was declined");
	});
});

describe("low-balance notices", () => {
	const low = { payerId: USER, thresholdCredits: "1000", availableCredits: "250" };
	const src = {
		billingContactsOf: async () => null,
		emailOf: async () => "me@example.com",
		appUrl: "https://app.test"
	};

	test("parse: decimal credit strings only", () => {
		expect(parseLowBalance({ ...low, crossing: 2 })).toEqual(low);
		for (const bad of [
			{ ...low, availableCredits: 250 },
			{ ...low, thresholdCredits: "1e3" },
			{ ...low, payerId: "x" }
		])
			expect(() => parseLowBalance(bad)).toThrow();
	});

	test("the message says what is left and what to do", async () => {
		const [[to, mail]] = await lowBalanceMails(low, src);
		expect(to).toBe("me@example.com");
		const m = renderAccountMail(mail);
		expect(m.subject).toBe("ForgeFluid credit is running low");
		expect(m.text).toContain("Your account has 250 credits left, under the 1000 credits");
		expect(m.text).toContain("auto top-up");
	});
});

describe("cap-reached notices", () => {
	const cap = {
		payerId: `org:${ORG}`,
		scope: "member" as const,
		memberId: USER,
		keyId: null,
		capCredits: "5000",
		month: "2026-12-01"
	};
	const src = {
		billingContactsOf: async () => ({ name: "Acme", userIds: ["u1", "u2"] }),
		emailOf: async (id: string) => `${id}@example.com`,
		appUrl: "https://app.test"
	};

	test("parse: a payer, a scope, a decimal cap and the month's first day", () => {
		expect(parseCapReached({ ...cap, extra: true })).toEqual(cap);
		expect(parseCapReached({ ...cap, scope: "payer", memberId: undefined })).toEqual({
			...cap,
			scope: "payer",
			memberId: null
		});
		for (const bad of [
			{ ...cap, scope: "team" },
			{ ...cap, capCredits: 5000 },
			{ ...cap, month: "2026-12-03" },
			{ ...cap, payerId: "org:nope" },
			{ ...cap, keyId: "bad key" }
		])
			expect(() => parseCapReached(bad)).toThrow();
	});

	test("an organisation's billing contacts are told which cap, how much and which month", async () => {
		const mails = await capReachedMails(cap, src);
		expect(mails.map(([to]) => to)).toEqual(["u1@example.com", "u2@example.com"]);
		const m = renderAccountMail(mails[0][1]);
		expect(m.subject).toBe("A ForgeFluid spend cap was reached");
		expect(m.text).toContain(
			"refused in 2026-12 (UTC) because it would pass a member's monthly spend cap of 5000 credits on the organisation Acme"
		);
		expect(m.text).toContain(`https://app.test/billing?orgId=${ORG}`);
	});
});
