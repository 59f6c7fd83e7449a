/**
 * Organisation wallets over fakes (src/users/org-wallets.ts): who links, sees and unlinks them, in
 * which order the checks run (role before the second factor before the proof, so a member learns
 * nothing and no nonce is spent), what each store answer becomes, and what payments is told.
 */
import { DomainError } from "../../../src/errors";
import { OrgWallets, type OrgWalletsDeps } from "../../../src/users/org-wallets";
import type { OrgWalletRow } from "../../../src/users/store";

const ORG = "22222222-2222-4222-8222-222222222222";
const OWNER = "11111111-1111-4111-8111-111111111111";
const MEMBER = "44444444-4444-4444-8444-444444444444";
const ADDRESS = "0x00000000000000000000000000000000000000aa";
const ROLES: Record<string, string> = { [OWNER]: "owner", [MEMBER]: "member" };

function setup(answer: "linked" | "already" | "taken" | "limit" = "linked", unlinked = true) {
	const steps: string[] = [];
	const announced: string[] = [];
	const row: OrgWalletRow = {
		address: ADDRESS,
		org_id: ORG,
		chain_id: "1",
		kind: "eoa",
		linked_by: OWNER,
		linked_at: new Date("2026-12-01T00:00:00Z")
	};
	const deps: OrgWalletsDeps = {
		store: {
			linkOrgWallet: async (orgId, by, address, chainId, kind, max) => {
				steps.push(`link ${orgId} ${by} ${address} ${chainId} ${kind} ${max}`);
				return answer === "linked" || answer === "already"
					? { result: answer, wallet: row }
					: { result: answer };
			},
			unlinkOrgWallet: async (orgId, address, by) => {
				steps.push(`unlink ${orgId} ${address} ${by}`);
				return unlinked;
			},
			orgWallets: async () => [row]
		},
		proofs: {
			verify: async () => {
				steps.push("proof");
				return { address: ADDRESS, chainId: 1, kind: "eoa" } as Awaited<
					ReturnType<OrgWalletsDeps["proofs"]["verify"]>
				>;
			}
		},
		secondFactor: { stepUp: async () => void steps.push("stepUp") },
		orgRole: async (orgId, userId) => (orgId === ORG ? (ROLES[userId] ?? null) : null),
		maxWallets: 3,
		announce: a => announced.push(a)
	};
	return { wallets: new OrgWallets(deps), steps, announced };
}

const proof = { message: "m", signature: "0x00", nonceToken: "n" };
const refusal = (p: Promise<unknown>) =>
	p.then(
		() => null,
		(e: DomainError) => ({ status: e.status, code: e.code })
	);

test("an owner links: role, step-up, proof, store, then payments is told; the answer names the organisation's payer", async () => {
	const s = setup();
	const r = await s.wallets.link(OWNER, ORG, proof);
	expect(s.steps).toEqual(["stepUp", "proof", `link ${ORG} ${OWNER} ${ADDRESS} 1 eoa 3`]);
	expect(s.announced).toEqual([ADDRESS]);
	expect(r).toMatchObject({ payerId: `org:${ORG}`, linkedBy: OWNER, alreadyLinked: false, chainId: 1 });
	expect(r.address).toBe("0x00000000000000000000000000000000000000AA");
});

test("a member gets 403 and a non-member 404, before any step-up or proof", async () => {
	const s = setup();
	expect(await refusal(s.wallets.link(MEMBER, ORG, proof))).toEqual({ status: 403, code: "INSUFFICIENT_ROLE" });
	expect(await refusal(s.wallets.link("someone", ORG, proof))).toEqual({ status: 404, code: "NOT_FOUND" });
	expect(await refusal(s.wallets.unlink(MEMBER, ORG, ADDRESS))).toEqual({ status: 403, code: "INSUFFICIENT_ROLE" });
	expect(s.steps).toEqual([]);
	expect(s.announced).toEqual([]);
});

test("taken and limit are 409 with their codes; linking again tells payments nothing", async () => {
	expect(await refusal(setup("taken").wallets.link(OWNER, ORG, proof))).toEqual({
		status: 409,
		code: "WALLET_TAKEN"
	});
	expect(await refusal(setup("limit").wallets.link(OWNER, ORG, proof))).toEqual({
		status: 409,
		code: "WALLET_LIMIT"
	});
	const again = setup("already");
	expect((await again.wallets.link(OWNER, ORG, proof)).alreadyLinked).toBe(true);
	expect(again.announced).toEqual([]);
});

test("members list; unlink lower-cases the address, tells payments, and 404s a wallet the organisation does not hold", async () => {
	const s = setup();
	expect((await s.wallets.list(MEMBER, ORG)).items.map(w => w.payerId)).toEqual([`org:${ORG}`]);
	expect(await refusal(s.wallets.list("someone", ORG))).toEqual({ status: 404, code: "NOT_FOUND" });
	const upper = "0x00000000000000000000000000000000000000AA";
	expect(await s.wallets.unlink(OWNER, ORG, upper)).toEqual({ address: upper, unlinked: true });
	expect(s.steps).toEqual([`unlink ${ORG} ${ADDRESS} ${OWNER}`]);
	expect(s.announced).toEqual([ADDRESS]);
	const none = setup("linked", false);
	expect(await refusal(none.wallets.unlink(OWNER, ORG, ADDRESS))).toEqual({ status: 404, code: "NOT_FOUND" });
	expect(none.announced).toEqual([]);
});
